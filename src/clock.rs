//! The clock the pool reads. Injectable so that tests can move time without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// A monotonic clock in nanoseconds.
pub trait Clock: Send + Sync {
    /// Current time in nanoseconds from an arbitrary, fixed origin. Never goes backwards.
    fn now_ns(&self) -> u64;
    /// How far behind real time a reading may be. The pool adds it before comparing with a
    /// deadline, so a coarse clock makes connections expire early, never late.
    fn lag_ns(&self) -> u64 {
        0
    }
}

/// `CLOCK_MONOTONIC_COARSE`: the default, cheap enough to read on every acquire and release.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        crate::ffi::sys::coarse_now_ns()
    }
    fn lag_ns(&self) -> u64 {
        static RES: OnceLock<u64> = OnceLock::new();
        *RES.get_or_init(crate::ffi::sys::coarse_resolution_ns)
    }
}

/// A clock that moves only when told to; clones share the same time. For tests.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at time `start_ns`.
    pub fn new(start_ns: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start_ns)))
    }
    /// Moves the clock forward by `ns`.
    pub fn advance_ns(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::SeqCst);
    }
    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.advance_ns(ms * 1_000_000);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
