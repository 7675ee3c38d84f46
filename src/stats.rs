//! Pool counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a pool's gauges and counters (see `Pool::stats`). Counters only grow, and
/// each close of an idle or released connection is counted under exactly one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Idle connections held now.
    pub idle: u64,
    /// Keys with at least one idle connection now.
    pub keys: u64,
    /// Acquires that returned a connection.
    pub hits: u64,
    /// Acquires that found no usable connection.
    pub misses: u64,
    /// Releases that kept the connection.
    pub pooled: u64,
    /// Releases closed because the key was full (or the global cap could not be kept).
    pub closed_full: u64,
    /// Idle connections closed to keep the global cap (`max_idle_total`).
    pub evicted: u64,
    /// Connections closed for the idle timeout, the lifetime or a keep-alive hint.
    pub expired: u64,
    /// Idle connections closed by the liveness check (peer closed, reset, stray bytes).
    pub dead: u64,
    /// Connections closed by their release at `max_uses`.
    pub retired: u64,
    /// Idle connections closed by purge or by dropping the pool.
    pub purged: u64,
}

/// The counters of [`Stats`], as plain integers updated under a shard lock.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub pooled: u64,
    pub closed_full: u64,
    pub evicted: u64,
    pub expired: u64,
    pub dead: u64,
    pub purged: u64,
}

/// Counters for events that happen outside any lock (rare ones: a failed liveness check, a
/// retired connection).
#[derive(Debug, Default)]
pub(crate) struct AtomicCounters {
    pub closed_full: AtomicU64,
    pub expired: AtomicU64,
    pub dead: AtomicU64,
    pub retired: AtomicU64,
}

impl AtomicCounters {
    pub fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Stats {
    pub(crate) fn add(&mut self, c: &Counters) {
        self.hits += c.hits;
        self.misses += c.misses;
        self.pooled += c.pooled;
        self.closed_full += c.closed_full;
        self.evicted += c.evicted;
        self.expired += c.expired;
        self.dead += c.dead;
        self.purged += c.purged;
    }

    pub(crate) fn add_atomic(&mut self, c: &AtomicCounters) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.closed_full += get(&c.closed_full);
        self.expired += get(&c.expired);
        self.dead += get(&c.dead);
        self.retired += get(&c.retired);
    }
}
