//! Pool counters, and why the pool closes a connection.

/// Why the pool closed a connection it owned: one reason per closing counter of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Released into a key that already held `max_idle_per_key` (or no place under the
    /// global cap could be made).
    Full,
    /// Idle, closed to keep the global cap (`max_idle_total`), or the per-key one when
    /// releases filled its key while it was out for a check.
    Evicted,
    /// Its idle timeout, keep-alive hint or lifetime passed.
    Expired,
    /// Found closed, reset or desynchronised by its backend (the liveness check, the idle
    /// watcher).
    Dead,
    /// Released at `max_uses`.
    Retired,
    /// Idle, closed by purge, drain or dropping the pool; or lent before a drain of its
    /// key, at its release.
    Purged,
    /// Ended by the caller (`Pool::discard`).
    Discarded,
}

/// A snapshot of a pool's gauges and counters (see `Pool::stats`). Counters only grow, and
/// each close of an idle or released connection is counted under exactly one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Idle connections held now (also those out for a check by prune or the watcher).
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
    /// Idle connections closed to keep the global cap (`max_idle_total`), or the per-key one
    /// when releases filled the key while they were out for a check.
    pub evicted: u64,
    /// Connections closed for the idle timeout, the lifetime or a keep-alive hint.
    pub expired: u64,
    /// Idle connections closed by the liveness check (peer closed, reset, stray bytes).
    pub dead: u64,
    /// Connections closed by their release at `max_uses`.
    pub retired: u64,
    /// Idle connections closed by purge or by dropping the pool, and connections lent
    /// before a drain of their key, closed at their release.
    pub purged: u64,
    /// Connections handed out and not yet given back (release or discard) now. A caller that
    /// closes a connection itself instead leaves it counted.
    pub lent: u64,
    /// Connect slots reserved now (with `Config::max_conns_per_key`).
    pub connecting: u64,
    /// Threads waiting in `Pool::acquire_wait` now.
    pub waiting: u64,
    /// Connections the caller ended with `Pool::discard`.
    pub discarded: u64,
}

/// The counters of [`Stats`], as plain integers updated under a shard lock.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub pooled: u64,
    pub closed: [u64; REASONS],
}

impl Counters {
    /// Adds `other` (the counters of an entry that goes) to these.
    pub fn absorb(&mut self, other: &Counters) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.pooled += other.pooled;
        for (a, b) in self.closed.iter_mut().zip(other.closed) {
            *a += b;
        }
    }
}

const REASONS: usize = 7;

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

impl Stats {
    fn add_closed(&mut self, closed: [u64; REASONS]) {
        let [full, evicted, expired, dead, retired, purged, discarded] = closed;
        self.discarded += discarded;
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
}
