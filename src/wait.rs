//! A thread waiting for a connection of a key at its connection limit
//! (`Pool::acquire_wait`). It waits on a futex word of its own (no process-wide state, not
//! a cancellation point); whoever serves it (a release handing over its connection, a close
//! freeing a slot, a shutdown) fills in the result under the key's shard lock, marks the
//! word, and wakes it after unlocking.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::cell::{Lock, Shared};
use crate::conn::Conn;
use crate::sys;

/// What a waiter was given.
#[derive(Debug)]
pub(crate) enum Served {
    /// A connection released by another thread, now lent to the waiter (not yet counted a
    /// hit: the waiter checks it first, as any acquire), and its key's drain epoch at the
    /// hand-off (a drain after it closes the connection at its release).
    Conn(Conn, u16),
    /// A connection slot, reserved for the waiter to connect.
    Slot,
    /// The pool is shutting down (`Pool::shutdown`).
    Cancelled,
}

#[derive(Debug, Default)]
pub(crate) struct Waiter {
    /// 0 while waiting, 1 once served.
    word: AtomicU32,
    served: Lock<Option<Served>>,
}

impl Waiter {
    pub fn new() -> Shared<Waiter> {
        Shared::new(Waiter::default())
    }

    /// Under the key's shard lock, with the waiter taken off the queue: its result. Wake it
    /// with [`Waiter::wake`] after unlocking.
    pub fn serve(&self, s: Served) {
        *self.served.lock() = Some(s);
        self.word.store(1, Ordering::Release);
    }

    pub fn wake(&self) {
        sys::futex_wake(&self.word, 1);
    }

    /// Sleeps until served or until the CLOCK_MONOTONIC time `deadline_ns`; true if served.
    pub fn sleep(&self, deadline_ns: u64) -> bool {
        loop {
            if self.word.load(Ordering::Acquire) == 1 {
                return true;
            }
            if sys::precise_now_ns() >= deadline_ns {
                return self.word.load(Ordering::Acquire) == 1;
            }
            sys::futex_wait(&self.word, 0, Some(deadline_ns));
        }
    }

    /// The result, once served.
    pub fn take(&self) -> Option<Served> {
        self.served.lock().take()
    }
}
