//! Closing an fd the pool owns: always forgotten by the fd table before the number can be
//! reused, never under a lock. What closing a connection needs (the watcher's epoll fd, the
//! close callback, the global cap's count) is a pool generation's `Closing`; the list of
//! connections to close after unlocking is `crate::shard::CloseList`.

use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cell::assert_unlocked;
use crate::config::{Callback, OnClose};
use crate::fd_table;
use crate::sys;

/// Closes an fd the pool owns now. Every fd the pool closes goes through here. Not
/// `drop(fd)`: std aborts debug builds when an `OwnedFd` turns out to be closed already
/// (EBADF), and a C caller that releases an fd number it had already closed must get a
/// documented answer, not a crash of its process.
pub(crate) fn close_fd(fd: OwnedFd) {
    assert_unlocked();
    let raw = fd.into_raw_fd();
    fd_table::forget(raw);
    sys::close_raw(raw);
}

/// What closing needs to know of a pool generation, made once with it.
#[derive(Debug)]
pub(crate) struct Closing {
    /// The epoll sets every closed fd leaves first: the idle watcher's, the harvest's.
    sets: [Option<RawFd>; 2],
    /// With the idle watcher: its notice eventfd (a refused key has room).
    notice: Option<RawFd>,
    /// With a global cap: idle connections plus places reserved by releases in progress.
    pub total: Option<AtomicUsize>,
    /// The caller's close callback.
    on_close: Option<Callback<OnClose>>,
}

impl Closing {
    pub fn new(
        watcher: Option<(RawFd, RawFd)>,
        harvest: Option<RawFd>,
        capped: bool,
        on_close: Option<Callback<OnClose>>,
    ) -> Self {
        Closing {
            sets: [watcher.map(|w| w.0), harvest],
            notice: watcher.map(|w| w.1),
            total: capped.then(|| AtomicUsize::new(0)),
            on_close,
        }
    }

    /// Takes `fd` out of the pool's epoll sets, before it is closed: the kernel keeps a
    /// closed fd in a set while another process (a fork child) holds the same file.
    pub fn unwatch(&self, fd: RawFd) {
        for set in self.sets.into_iter().flatten() {
            sys::epoll_del_raw(set, fd);
        }
    }

    pub fn on_close(&self) -> Option<&Callback<OnClose>> {
        self.on_close.as_ref()
    }

    /// Gives back `n` places under the cap (connections that left the pool's idle set).
    #[inline]
    pub fn give_back(&self, n: usize) {
        if let (Some(total), 1..) = (&self.total, n) {
            total.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Makes the watch fd readable: a key that refused an acquire (-EAGAIN) has a slot or
    /// an idle connection now.
    pub fn notify_event_loop(&self) {
        if let Some(fd) = self.notice {
            sys::eventfd_signal_raw(fd);
        }
    }
}
