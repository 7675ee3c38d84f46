//! The harvest check (`Config::harvest`): one level-triggered epoll set per pool generation
//! over its connections, each registered once (at its first release), asking for input and
//! hang-ups. Instead of a `recv(MSG_PEEK)` per acquire, an acquire harvests the set with one
//! `epoll_wait(0)` when the last harvest started more than [`WINDOW_NS`] ago, and every idle
//! connection it reports readable (data, EOF, reset: what the peek would call dead) is
//! flagged suspect in the fd table; an acquire checks only suspect connections. So a
//! connection is handed out dead only if it became readable within the window before the
//! acquire, or while it was being acquired.
//!
//! The set is level-triggered so that nothing readable is ever missed, including bytes or a
//! hang-up that arrived while a caller held the connection and that are still unread at its
//! release. A lent connection that a harvest finds readable (a response not read yet) would
//! then be reported by every harvest until it is read: its entry is muted instead (one
//! `EPOLL_CTL_MOD` asking for nothing) and flagged in the fd table, and its release unmutes
//! it (one more). A connection read promptly is almost never caught readable, so pairs pay
//! no system call but the harvest's share.
//!
//! Muting and flagging race with acquires and releases (which change the fd's state without
//! the harvest's lock); the rule that keeps the entry and the flag in agreement: the harvest
//! mutes first, then flags by compare-and-swap from the state it read; if the state changed
//! meanwhile it unmutes again (the next harvest looks afresh). `fd_table::lend_watched`
//! carries a flag set between an acquire's look and its loan over to the loan.
//!
//! An fd leaves the set before the pool closes it. A lent fd the caller `close()`s leaves
//! it by itself (the kernel drops the entry with the file), and a new socket that gets its
//! number looks, at its release, like the lent connection coming back, so it would not be
//! registered: with this check, callers end connections with `connpool_discard()`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cell::Lock;
use crate::closer::close_fd;
use crate::fd_table::{self, Seen};
use crate::sys;

/// How old the last harvest may be when an acquire decides on a connection.
pub const WINDOW_NS: u64 = 1_000_000;

/// Events read per `epoll_wait`, and rounds of it per harvest at most.
const BATCH: usize = 256;
const ROUNDS: usize = 64;

/// What the set asks for while a connection is watched (level-triggered).
const WATCHED: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;

#[derive(Debug)]
pub struct Harvest {
    set: Option<OwnedFd>,
    /// Precise clock time at which the last harvest started (0: none yet).
    last: AtomicU64,
    /// One harvest at a time; an acquire that finds one running waits for its result.
    running: Lock<()>,
}

impl Harvest {
    pub fn new(pool_id: u32) -> std::io::Result<Self> {
        let set = sys::epoll_create()?;
        fd_table::claim(set.as_raw_fd(), pool_id); // a fork child closes its copy
        Ok(Harvest {
            set: Some(set),
            last: AtomicU64::new(0),
            running: Lock::new(()),
        })
    }

    fn set(&self) -> RawFd {
        self.set.as_ref().expect("open until drop").as_raw_fd()
    }

    /// The set's fd, which every fd the pool closes leaves first.
    pub fn fd(&self) -> RawFd {
        self.set()
    }

    /// Registers a connection about to be stored that is not in the set yet. False: epoll
    /// cannot watch it (a regular file), so it cannot be kept under this check.
    pub fn register(&self, fd: BorrowedFd<'_>) -> bool {
        let raw = fd.as_raw_fd();
        match sys::epoll_ctl(self.set(), libc::EPOLL_CTL_ADD, raw, WATCHED, raw as u64) {
            Ok(()) => true,
            // Still registered (a number released again without having left): watch it.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self.unmute(raw),
            Err(_) => false,
        }
    }

    /// Watches a muted entry again.
    pub fn unmute(&self, fd: RawFd) -> bool {
        sys::epoll_ctl(self.set(), libc::EPOLL_CTL_MOD, fd, WATCHED, fd as u64).is_ok()
    }

    /// Asks for nothing (hang-ups and errors, which the kernel always reports, at most once
    /// more: `EPOLLONESHOT`).
    fn mute(&self, fd: RawFd) {
        let oneshot = libc::EPOLLONESHOT as u32;
        let _ = sys::epoll_ctl(self.set(), libc::EPOLL_CTL_MOD, fd, oneshot, fd as u64);
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
        // Level-triggered: each call reports every ready entry once; entries muted below
        // are not reported again, so a full batch means more are ready.
        for _ in 0..ROUNDS {
            fds.clear();
            sys::epoll_ready(self.set.as_ref().expect("open").as_fd(), &mut fds, BATCH);
            for &fd in &fds {
                self.readable(fd as RawFd);
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

    /// A readable entry: muted, then flagged (see the module's rules).
    fn readable(&self, fd: RawFd) {
        self.mute(fd);
        match fd_table::seen_readable(fd) {
            Seen::Pooled | Seen::Leave => {}
            Seen::Out(state) => {
                if !fd_table::set_muted(fd, state) {
                    self.unmute(fd);
                }
            }
            Seen::Undo => {
                self.unmute(fd);
            }
        }
    }
}

impl Drop for Harvest {
    fn drop(&mut self) {
        if let Some(set) = self.set.take() {
            close_fd(set);
        }
    }
}
