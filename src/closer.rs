//! Closing the pool's connections: never under a lock, always unwatched first, always
//! forgotten by the fd table before the number can be reused, and the places they held
//! under the global cap given back.

use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cell::assert_unlocked;
use crate::config::{Callback, OnClose};
use crate::conn::Conn;
use crate::fd_table;
use crate::stats::CloseReason;
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
    /// With the idle watcher: its epoll fd, which every closed fd leaves first.
    epoll: Option<RawFd>,
    /// With a global cap: idle connections plus places reserved by releases in progress.
    pub total: Option<AtomicUsize>,
    /// The caller's close callback.
    on_close: Option<Callback<OnClose>>,
}

impl Closing {
    pub fn new(epoll: Option<RawFd>, capped: bool, on_close: Option<Callback<OnClose>>) -> Self {
        Closing {
            epoll,
            total: capped.then(|| AtomicUsize::new(0)),
            on_close,
        }
    }

    /// Gives back `n` places under the cap (connections that left the pool's idle set
    /// without a close list: handed out).
    #[inline]
    pub fn give_back(&self, n: usize) {
        if let Some(total) = &self.total {
            total.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// A list of connections to close after unlocking.
    #[inline]
    pub fn list(&self) -> CloseList<'_> {
        CloseList {
            conns: Vec::new(),
            places: 0,
            closing: self,
        }
    }
}

/// Connections to close once the lock is released, and cap places to give back: done when
/// the list is dropped, so a list made before a guard (and so dropped after it) can only
/// close after unlocking.
#[derive(Debug)]
pub(crate) struct CloseList<'a> {
    conns: Vec<(Conn, CloseReason)>,
    places: usize,
    closing: &'a Closing,
}

impl CloseList<'_> {
    /// Closes `conn`, which held no place under the cap (any more).
    pub fn close(&mut self, conn: Conn, why: CloseReason) {
        self.conns.push((conn, why));
    }

    /// Closes an idle connection, giving its place back.
    pub fn close_idle(&mut self, conn: Conn, why: CloseReason) {
        self.places += 1;
        self.close(conn, why);
    }

    /// Gives back `n` places (idle connections handed out, reservations not used).
    #[inline]
    pub fn give_back(&mut self, n: usize) {
        self.places += n;
    }
}

impl Drop for CloseList<'_> {
    #[inline]
    fn drop(&mut self) {
        if let (n @ 1.., Some(total)) = (self.places, &self.closing.total) {
            total.fetch_sub(n, Ordering::AcqRel);
        }
        // Empty on almost every call: keep that path to one test.
        if !self.conns.is_empty() {
            self.close_all();
        }
    }
}

impl CloseList<'_> {
    #[cold]
    fn close_all(&mut self) {
        for (conn, why) in self.conns.drain(..) {
            if let Some(epoll) = self.closing.epoll {
                sys::epoll_del_raw(epoll, conn.fd.as_raw_fd());
            }
            if let Some(f) = &self.closing.on_close {
                // C code: a cancellation there would unwind through these frames.
                sys::without_cancellation(|| f(conn.fd.as_fd(), conn.ctx, why));
            }
            close_fd(conn.fd);
        }
    }
}
