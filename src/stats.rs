//! Pool counters, and why the pool closes a connection.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why the pool closed a connection it owned: one reason per closing counter of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Released into a key that already held `max_idle_per_key` (or no place under the
    /// global cap could be made).
    Full,
    /// Idle, closed to keep the global cap (`max_idle_total`).
    Evicted,
    /// Its idle timeout, keep-alive hint or lifetime passed.
    Expired,
    /// Found closed, reset or desynchronised by its backend (the liveness check, the idle
    /// watcher).
    Dead,
    /// Released at `max_uses`.
    Retired,
    /// Idle, closed by purge or by dropping the pool.
    Purged,
}

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
    pub closed: [u64; REASONS],
}

/// Counters for events that happen outside any lock (a failed liveness check, a release
/// closed before it reached a shard).
#[derive(Debug, Default)]
pub(crate) struct AtomicCounters {
    closed: [AtomicU64; REASONS],
}

const REASONS: usize = 6;

impl CloseReason {
    fn index(self) -> usize {
        self as usize
    }
}

impl Counters {
    #[inline]
    pub fn closed(&mut self, why: CloseReason, n: usize) {
        self.closed[why.index()] += n as u64;
    }
}

impl AtomicCounters {
    pub fn closed(&self, why: CloseReason, n: usize) {
        self.closed[why.index()].fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Stats {
    fn add_closed(&mut self, closed: [u64; REASONS]) {
        let [full, evicted, expired, dead, retired, purged] = closed;
        self.closed_full += full;
        self.evicted += evicted;
        self.expired += expired;
        self.dead += dead;
        self.retired += retired;
        self.purged += purged;
    }

    pub(crate) fn add(&mut self, c: &Counters) {
        self.hits += c.hits;
        self.misses += c.misses;
        self.pooled += c.pooled;
        self.add_closed(c.closed);
    }

    pub(crate) fn add_atomic(&mut self, c: &AtomicCounters) {
        self.add_closed(c.closed.each_ref().map(|a| a.load(Ordering::Relaxed)));
    }
}
