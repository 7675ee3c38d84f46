//! The shard lock: `parking_lot::Mutex`, behind a small wrapper so that the rule "no fd is
//! closed while a pool lock is held" is checked, not just claimed. In debug builds every
//! guard counts itself in a thread-local, and `ffi::sys::close` asserts the count is zero, so
//! every debug test checks the rule on every close.

use std::ops::{Deref, DerefMut};

#[cfg(debug_assertions)]
thread_local! {
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A mutex whose guards are counted per thread in debug builds.
#[derive(Debug, Default)]
pub struct Lock<T>(parking_lot::Mutex<T>);

/// Proof that the lock is held; unlocks when dropped.
pub struct Guard<'a, T>(parking_lot::MutexGuard<'a, T>);

impl<T> Lock<T> {
    pub fn new(value: T) -> Self {
        Lock(parking_lot::Mutex::new(value))
    }

    #[inline]
    pub fn lock(&self) -> Guard<'_, T> {
        let guard = self.0.lock();
        #[cfg(debug_assertions)]
        HELD.with(|h| h.set(h.get() + 1));
        Guard(guard)
    }
}

impl<T> Lock<T> {
    /// The lock if it is free now; never waits.
    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        let guard = self.0.try_lock()?;
        #[cfg(debug_assertions)]
        HELD.with(|h| h.set(h.get() + 1));
        Some(Guard(guard))
    }
}

impl<T> Drop for Guard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        HELD.with(|h| h.set(h.get() - 1));
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// Panics (debug builds) if this thread holds a pool lock. Called before every close().
#[inline]
pub fn assert_unlocked() {
    #[cfg(debug_assertions)]
    HELD.with(|h| assert_eq!(h.get(), 0, "close() called while a pool lock is held"));
}
