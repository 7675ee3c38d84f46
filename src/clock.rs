//! The clock the pool reads. Injectable so that tests can move time without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A monotonic clock in nanoseconds.
pub trait Clock: Send + Sync + 'static {
    /// Current time in nanoseconds from an arbitrary, fixed origin. Never goes backwards.
    fn now_ns(&self) -> u64;
    /// How far behind real time a reading may be. The pool adds it before comparing with a
    /// deadline, so a coarse clock makes connections expire early, never late.
    fn lag_ns(&self) -> u64 {
        0
    }
    /// A reading that does not lag (the pool's timer fires by the precise clock, so what it
    /// finds due must be judged by the same clock). Defaults to `now_ns`.
    fn precise_now_ns(&self) -> u64 {
        self.now_ns()
    }
}

/// The system's monotonic clock: `CLOCK_MONOTONIC_COARSE` (~6 ns a read, up to one tick of
/// 1 to 4 ms behind) or `CLOCK_MONOTONIC` (~18 ns, exact).
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    precise: bool,
}

/// A coarse tick may be at most this fraction of a timeout: a timeout under 16 ticks (64 ms
/// at the common 250 Hz) reads the precise clock, so that expiring up to one tick early
/// never costs more than 1/16 of the timeout (a 3 ms timeout would otherwise expire at once).
const TICKS_PER_TIMEOUT: u64 = 16;

impl MonotonicClock {
    /// The coarse clock, cheap enough to read on every acquire and release.
    pub fn coarse() -> Self {
        MonotonicClock { precise: false }
    }
    /// The precise clock.
    pub fn precise() -> Self {
        MonotonicClock { precise: true }
    }
    /// The cheapest clock whose lag is small next to `timeout_ns`.
    pub fn for_timeout(timeout_ns: u64) -> Self {
        let tick = MonotonicClock::coarse().lag_ns();
        MonotonicClock {
            precise: timeout_ns < tick.saturating_mul(TICKS_PER_TIMEOUT),
        }
    }
}

impl Default for MonotonicClock {
    /// The coarse clock.
    fn default() -> Self {
        MonotonicClock::coarse()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        if self.precise {
            crate::sys::precise_now_ns()
        } else {
            crate::sys::coarse_now_ns()
        }
    }
    fn precise_now_ns(&self) -> u64 {
        crate::sys::precise_now_ns()
    }
    fn lag_ns(&self) -> u64 {
        // An atomic, not a OnceLock: a fork child may inherit a Once half-run by another
        // parent thread and wait on it forever. 0: not read yet.
        static TICK: AtomicU64 = AtomicU64::new(0);
        if self.precise {
            return 0;
        }
        match TICK.load(Ordering::Relaxed) {
            0 => {
                let tick = crate::sys::coarse_resolution_ns().max(1);
                TICK.store(tick, Ordering::Relaxed);
                tick
            }
            tick => tick,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_timeouts_read_the_precise_clock() {
        let tick = MonotonicClock::coarse().lag_ns();
        assert!(tick > 0);
        assert_eq!(MonotonicClock::for_timeout(3_000_000).lag_ns(), 0);
        assert_eq!(MonotonicClock::for_timeout(tick * 16 - 1).lag_ns(), 0);
        assert_eq!(MonotonicClock::for_timeout(tick * 16).lag_ns(), tick);
        assert_eq!(MonotonicClock::for_timeout(60_000_000_000).lag_ns(), tick);
        let (a, b) = (
            MonotonicClock::precise().now_ns(),
            MonotonicClock::precise().now_ns(),
        );
        assert!(b >= a);
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
