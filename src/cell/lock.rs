//! The pool's mutex: a futex lock of our own (three states, as in Drepper's "Futexes Are
//! Tricky"), instead of parking_lot, whose waiting goes through a process-wide table of
//! parked threads that a fork() child inherits half-updated (a child using its pool from
//! several threads could hang forever). This lock's whole state is its one word: a child
//! that replaces the locks its parent's threads may have held has nothing else to inherit.
//! Waiting is a raw futex system call, not a thread cancellation point.
//!
//! Debug builds also count the guards each thread holds, so that the rule "no fd is closed
//! while a pool lock is held" is checked on every close ([`assert_unlocked`]).

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and a thread may be sleeping on the futex.
const CONTENDED: u32 = 2;
/// Looks at the lock word before sleeping (after 2, 4, ... 2^SPIN_ROUNDS pauses: 254 in
/// all): a pool's critical sections are a few dozen instructions.
const SPIN_ROUNDS: u32 = 7;

#[cfg(debug_assertions)]
thread_local! {
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A mutual-exclusion lock around a `T`.
#[derive(Default)]
pub struct Lock<T> {
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one thread at a time.
unsafe impl<T: Send> Send for Lock<T> {}
unsafe impl<T: Send> Sync for Lock<T> {}

/// Proof that the lock is held; unlocks when dropped.
pub struct Guard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Lock<T> {
    pub const fn new(value: T) -> Self {
        Lock {
            state: AtomicU32::new(UNLOCKED),
            value: UnsafeCell::new(value),
        }
    }

    #[inline]
    pub fn lock(&self) -> Guard<'_, T> {
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        #[cfg(debug_assertions)]
        HELD.with(|h| h.set(h.get() + 1));
        Guard { lock: self }
    }

    #[cold]
    fn lock_contended(&self) {
        // Exponential backoff: polling the word on every pause would pull its line away
        // from the holder, which is about to take the lock again (as parking_lot's
        // SpinWait does: 2, 4, ... pauses between looks).
        for round in 0..SPIN_ROUNDS {
            match self.state.load(Ordering::Relaxed) {
                UNLOCKED
                    if self
                        .state
                        .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok() =>
                {
                    return;
                }
                CONTENDED => break,
                _ => {}
            }
            for _ in 0..2u32 << round {
                std::hint::spin_loop();
            }
        }
        // Mark it contended, so the holder wakes a sleeper when it unlocks.
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            sys::futex_wait(&self.state, CONTENDED, None);
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Lock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lock { .. }")
    }
}

impl<T> Drop for Guard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        HELD.with(|h| h.set(h.get() - 1));
        if self.lock.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            sys::futex_wake(&self.lock.state, 1);
        }
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes the access unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

/// Panics (debug builds) if this thread holds a pool lock. Called before every close().
#[inline]
pub fn assert_unlocked() {
    #[cfg(debug_assertions)]
    HELD.with(|h| assert_eq!(h.get(), 0, "close() called while a pool lock is held"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many threads incrementing under the lock lose no update (the contended path, with
    /// sleeping, included).
    #[test]
    fn mutual_exclusion_under_contention() {
        let lock = Lock::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        let mut g = lock.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                });
            }
        });
        assert_eq!(*lock.lock(), 160_000);
    }
}
