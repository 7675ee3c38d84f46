//! The harvest check (`Config::harvest`): instead of a `recv(MSG_PEEK)` per acquire, an
//! acquire harvests the pool's set of connections (`crate::watch_set`: registered once,
//! level-triggered and one-shot, input and hang-ups) with one `epoll_wait(0)` when the last harvest
//! started more than [`WINDOW_NS`] ago; every idle connection it reports readable (data,
//! EOF, reset: what the peek would call dead) is flagged suspect in the fd table, and an
//! acquire checks only suspect connections. So a connection is handed out dead only if it
//! became readable within the window before the acquire (or while it was being acquired).
//!
//! The window is judged by the precise clock: the last harvest's start is published only
//! once what it found is flagged, and an acquire that finds it too old harvests (or waits
//! for the harvest running) before it looks at a connection. Where the kernel keeps time by
//! the CPU's time-stamp counter, an acquire first reads that counter (a third of the
//! precise clock's cost), calibrated against the precise clock by the harvests themselves,
//! and reads the precise clock only once 90% of the window has passed by the counter.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cell::Lock;
use crate::fd_table::{self, Loan};
use crate::sys;
use crate::watch_set::WatchSet;

/// How old the last harvest may be when an acquire decides on a connection.
pub const WINDOW_NS: u64 = 1_000_000;

/// Events read per `epoll_wait`, and rounds of it per harvest at most.
const BATCH: usize = 256;
const ROUNDS: usize = 64;

#[derive(Debug)]
pub struct Harvest {
    pub set: WatchSet,
    /// Precise clock time at which the last harvest started (0: none yet).
    last: AtomicU64,
    /// The time-stamp counter when the last harvest started.
    last_cycles: AtomicU64,
    /// 90% of the window in counter ticks (0: not calibrated, or not trusted).
    window_cycles: AtomicU64,
    /// One harvest at a time (an acquire that finds one running waits for its result); the
    /// counter's calibration base: (ticks, precise ns), or none.
    running: Lock<Option<(u64, u64)>>,
}

/// The counter is calibrated over at least this long, and re-based after this much more
/// (so that its rate follows the precise clock's adjustments).
const CALIBRATE_NS: u64 = 10_000_000;
const REBASE_NS: u64 = 1_000_000_000;

impl Harvest {
    pub fn new(pool_id: u32) -> std::io::Result<Self> {
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        Ok(Harvest {
            set: WatchSet::new(pool_id, events, fd_table::MUTED_HARVEST)?,
            last: AtomicU64::new(0),
            last_cycles: AtomicU64::new(0),
            window_cycles: AtomicU64::new(0),
            running: Lock::new(None),
        })
    }

    /// Watches `fd`, about to be stored ([`WatchSet::watch`]; false: epoll cannot). A loan
    /// whose entry is disarmed (reported while lent, or passed by an acquire's check as
    /// suspect) is re-armed, and flagged suspect if it is ready now: what arrived before
    /// the re-arm may be older than the window, and the next harvest up to a window away.
    #[inline]
    pub fn watch(&self, fd: BorrowedFd<'_>, lent: Option<Loan>) -> bool {
        match lent {
            Some(l) if l.muted & fd_table::MUTED_HARVEST != 0 => self.rewatch(fd, l),
            _ => self.set.watch(fd, lent),
        }
    }

    #[cold]
    #[inline(never)]
    fn rewatch(&self, fd: BorrowedFd<'_>, lent: Loan) -> bool {
        self.set.watch(fd, Some(lent));
        if sys::ready_now(fd) {
            fd_table::flag_suspect(fd.as_raw_fd());
        }
        true
    }

    /// For an acquire: harvests if the last harvest is older than the window. By the
    /// counter when it is calibrated (the precise clock is read only near the window's end,
    /// or if the counter went backwards), by the precise clock otherwise.
    #[inline]
    pub fn harvest_if_due_now(&self) {
        let window = self.window_cycles.load(Ordering::Relaxed);
        if window != 0 {
            let since = sys::cycles().wrapping_sub(self.last_cycles.load(Ordering::Acquire));
            if since < window {
                return;
            }
        }
        self.harvest_if_due(sys::precise_now_ns(), false);
    }

    /// Harvests if the last harvest started at least [`WINDOW_NS`] before `now` (precise
    /// clock), or `force`; returns once one that started no earlier than `now - WINDOW_NS`
    /// has flagged what it found (or, with more ready than one harvest reads, once this one
    /// has read its share: it is not published, so the next acquire harvests on).
    pub fn harvest_if_due(&self, now: u64, force: bool) {
        if !force && !self.due(now) {
            return;
        }
        let mut base = self.running.lock();
        if !force && !self.due(now) {
            return; // another thread harvested meanwhile
        }
        let start_cycles = sys::cycles();
        let start = sys::precise_now_ns();
        let mut fds = Vec::with_capacity(BATCH);
        // Each call reports every ready entry once, and reported entries are disarmed, so
        // a full batch means more are ready.
        let mut complete = false;
        for _ in 0..ROUNDS {
            fds.clear();
            sys::epoll_ready(self.set.borrow(), &mut fds, BATCH);
            for &fd in &fds {
                self.set.reported(fd as RawFd);
            }
            if fds.len() < BATCH {
                complete = true;
                break;
            }
        }
        if !complete {
            return; // more were ready than one harvest reads: the next acquire goes on
        }
        self.calibrate(&mut base, start_cycles, start);
        self.last_cycles.store(start_cycles, Ordering::Release);
        self.last.store(start.max(1), Ordering::Release);
    }

    /// Updates the counter's rate from the harvests' own readings (under `running`).
    fn calibrate(&self, base: &mut Option<(u64, u64)>, cycles: u64, ns: u64) {
        if !sys::cycles_trusted() {
            return;
        }
        let Some((c0, t0)) = *base else {
            *base = Some((cycles, ns));
            return;
        };
        let (dc, dt) = (cycles.wrapping_sub(c0), ns.saturating_sub(t0));
        if cycles < c0 || ns < t0 {
            // Not monotonic after all (a migration between unsynchronised CPUs?): distrust.
            self.window_cycles.store(0, Ordering::Relaxed);
            *base = Some((cycles, ns));
            return;
        }
        if dt >= CALIBRATE_NS {
            let window = u128::from(dc) * u128::from(WINDOW_NS) * 9 / 10 / u128::from(dt);
            self.window_cycles
                .store(u64::try_from(window).unwrap_or(0), Ordering::Relaxed);
            if dt >= REBASE_NS {
                *base = Some((cycles, ns));
            }
        }
    }

    #[inline]
    fn due(&self, now: u64) -> bool {
        now.saturating_sub(self.last.load(Ordering::Acquire)) >= WINDOW_NS
    }
}
