//! The harvest check (`Config::harvest`): instead of a `recv(MSG_PEEK)` per acquire, an
//! acquire harvests the pool's set of connections (`crate::watch_set`: registered once,
//! level-triggered, input and hang-ups) with one `epoll_wait(0)` when the last harvest
//! started more than [`WINDOW_NS`] ago; every idle connection it reports readable (data,
//! EOF, reset: what the peek would call dead) is flagged suspect in the fd table, and an
//! acquire checks only suspect connections. So a connection is handed out dead only if it
//! became readable within the window before the acquire (or while it was being acquired).
//!
//! The window is judged by the precise clock: the last harvest's start is published only
//! once what it found is flagged, and an acquire that finds it too old harvests (or waits
//! for the harvest running) before it looks at a connection.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cell::Lock;
use crate::fd_table;
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
    /// One harvest at a time; an acquire that finds one running waits for its result.
    running: Lock<()>,
}

impl Harvest {
    pub fn new(pool_id: u32) -> std::io::Result<Self> {
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        Ok(Harvest {
            set: WatchSet::new(pool_id, events, fd_table::MUTED_HARVEST)?,
            last: AtomicU64::new(0),
            running: Lock::new(()),
        })
    }

    /// Harvests if the last harvest started at least [`WINDOW_NS`] before `now` (precise
    /// clock), or `force`; returns once one that started no earlier than `now - WINDOW_NS`
    /// has flagged what it found.
    pub fn harvest_if_due(&self, now: u64, force: bool) {
        if !force && !self.due(now) {
            return;
        }
        let _one = self.running.lock();
        if !force && !self.due(now) {
            return; // another thread harvested meanwhile
        }
        let start = sys::precise_now_ns();
        let mut fds = Vec::with_capacity(BATCH);
        // Each call reports every ready entry once, and reported entries are disarmed, so
        // a full batch means more are ready.
        for _ in 0..ROUNDS {
            fds.clear();
            sys::epoll_ready(self.set.borrow(), &mut fds, BATCH);
            for &fd in &fds {
                self.set.reported(fd as RawFd);
            }
            if fds.len() < BATCH {
                break;
            }
        }
        self.last.store(start.max(1), Ordering::Release);
    }

    #[inline]
    fn due(&self, now: u64) -> bool {
        now.saturating_sub(self.last.load(Ordering::Acquire)) >= WINDOW_NS
    }
}
