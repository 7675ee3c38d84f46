//! One lock shard of a pool: a table from key to that key's idle connections. The locking
//! rules are in `crate::pool`; everything here runs with the shard's lock held and never
//! closes an fd itself (fds to close go to a `Doomed` list, closed after unlocking).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hashbrown::hash_table::HashTable;

use crate::ffi::sys::Doomed;
use crate::lock::Lock;
use crate::stats::Counters;

/// A deadline that never passes, and a sequence number no connection has.
pub const NEVER: u64 = u64::MAX;

/// A shard's table is shrunk once it is less than a quarter full, down to this capacity.
pub const MIN_TABLE_CAPACITY: usize = 16;

/// One idle connection and its history.
#[derive(Debug)]
pub struct Idle {
    pub fd: OwnedFd,
    /// Clock time at which it expires: the earliest of its idle timeout (or keep-alive hint)
    /// and the end of its lifetime; [`NEVER`] without either.
    pub deadline: u64,
    /// Clock time of the release that put it here.
    pub released: u64,
    /// Clock time of its first release to the pool.
    pub born: u64,
    /// Requests served: 1 at the first release, +1 per acquire and release.
    pub uses: u32,
    /// Release order over the whole pool, for the global cap's eviction (0 without a cap).
    pub seq: u64,
    /// With the idle watcher: the token of its registration (`crate::watch`), else 0.
    pub token: u64,
}

/// The idle connections of one key, most recently released last (reuse is LIFO, eviction
/// takes the front).
#[derive(Debug)]
pub struct Stack {
    /// The key's hash, kept so the table can grow without hashing keys again.
    pub hash: u64,
    pub key: Vec<u8>,
    pub idle: Vec<Idle>,
    /// No deadline in `idle` is earlier than this (a lower bound: it may be stale-low after
    /// pops, which only costs a scan that then recomputes it).
    pub earliest: u64,
}

impl Stack {
    /// Moves every connection expired at `now` into `doomed`; returns how many.
    #[inline]
    pub fn expire(&mut self, now: u64, doomed: &mut Doomed) -> usize {
        if self.earliest > now {
            return 0;
        }
        self.expire_scan(now, doomed)
    }

    #[cold]
    fn expire_scan(&mut self, now: u64, doomed: &mut Doomed) -> usize {
        let before = self.idle.len();
        let mut earliest = NEVER;
        // Keeps order for the survivors; stacks are short (max_idle_per_key).
        let mut kept = Vec::with_capacity(self.idle.len());
        for c in self.idle.drain(..) {
            if c.deadline <= now {
                doomed.push(c.fd);
            } else {
                earliest = earliest.min(c.deadline);
                kept.push(c);
            }
        }
        self.idle = kept;
        self.earliest = earliest;
        before - self.idle.len()
    }

    pub fn push(&mut self, c: Idle) {
        self.earliest = self.earliest.min(c.deadline);
        self.idle.push(c);
    }
}

/// The entry for a key that has none.
pub fn new_stack(hash: u64, key: &[u8]) -> Stack {
    Stack {
        hash,
        key: key.to_vec(),
        idle: Vec::new(),
        earliest: NEVER,
    }
}

/// Empty entries are swept once there are more than this many and they outnumber the
/// non-empty ones (so memory stays within twice what the live keys need, plus this).
const EMPTY_SLACK: usize = 16;

#[derive(Debug, Default)]
pub struct ShardInner {
    /// One entry per key, found by the hash computed once per call. A key whose last idle
    /// connection is taken keeps its (empty) entry, so the usual acquire-then-release of a
    /// busy key neither removes nor re-inserts it; empty entries are swept in bulk (see
    /// `note_emptied`) and by prune.
    pub keys: HashTable<Stack>,
    /// Entries in `keys` with no idle connection.
    pub empty: usize,
    /// Idle connections in `keys`.
    pub idle: usize,
    pub stats: Counters,
}

impl ShardInner {
    /// hashbrown tables never shrink by themselves: without this, memory would follow the
    /// peak number of keys, not the keys that hold idle connections now. Shrinking at a
    /// quarter to half leaves room for the table to double before it grows again.
    pub fn shrink_if_sparse(&mut self) {
        let (len, cap) = (self.keys.len(), self.keys.capacity());
        if cap > MIN_TABLE_CAPACITY && len < cap / 4 {
            self.keys.shrink_to(len * 2, |s| s.hash);
        }
    }

    /// An entry just became empty. Sweeps the empty entries when they are many.
    pub fn note_emptied(&mut self) {
        self.empty += 1;
        if self.empty > EMPTY_SLACK && self.empty * 2 > self.keys.len() {
            self.keys.retain(|s| !s.idle.is_empty());
            self.empty = 0;
            self.shrink_if_sparse();
        }
    }

    /// The smallest release sequence number of any idle connection here ([`NEVER`] if
    /// none). Each key's oldest is the front of its stack.
    pub fn oldest_seq(&self) -> u64 {
        self.keys
            .iter()
            .filter_map(|s| s.idle.first())
            .map(|c| c.seq)
            .min()
            .unwrap_or(NEVER)
    }

    /// Removes the idle connection with the smallest sequence number, if any.
    pub fn remove_oldest(&mut self) -> Option<Idle> {
        let hash = self
            .keys
            .iter()
            .filter_map(|s| s.idle.first().map(|c| (c.seq, s.hash, s.key.as_ptr())))
            .min()?;
        let mut entry = self
            .keys
            .find_entry(hash.1, |s| s.key.as_ptr() == hash.2)
            .ok()?;
        let victim = entry.get_mut().idle.remove(0);
        let emptied = entry.get().idle.is_empty();
        self.idle -= 1;
        if emptied {
            self.note_emptied();
        }
        Some(victim)
    }
}

#[derive(Debug)]
#[repr(align(128))]
pub struct Shard {
    pub inner: Lock<ShardInner>,
    /// Mirror of `inner.idle`, written under the lock, read without it.
    pub idle: AtomicUsize,
    /// With a global cap: no idle connection here has a smaller sequence number (a lower
    /// bound, written under the lock; eviction recomputes it).
    pub oldest: AtomicU64,
    /// With the liveness check: acquires that returned a connection, counted after the check
    /// (outside the lock; this cache line is the lock's, so the add is cheap).
    pub checked_hits: AtomicU64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            inner: Lock::new(ShardInner::default()),
            idle: AtomicUsize::new(0),
            oldest: AtomicU64::new(NEVER),
            checked_hits: AtomicU64::new(0),
        }
    }
}

impl Shard {
    pub fn publish(&self, inner: &ShardInner) {
        self.idle.store(inner.idle, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyHashBuilder;

    /// Memory follows the keys that hold idle connections, not the past peak.
    #[test]
    fn tables_shrink_when_keys_go_away() {
        let mut inner = ShardInner::default();
        let peak = 5_000;
        for i in 0..peak {
            let key = format!("backend-{i}:443");
            let hash = KeyHashBuilder::new().hash_key(key.as_bytes());
            let stack = new_stack(hash, key.as_bytes());
            inner.keys.insert_unique(hash, stack, |s| s.hash);
        }
        assert!(inner.keys.capacity() >= peak);
        while let Some(hash) = inner.keys.iter().next().map(|s| s.hash) {
            let entry = inner.keys.find_entry(hash, |s| s.hash == hash).unwrap();
            entry.remove();
            inner.shrink_if_sparse();
        }
        assert!(
            inner.keys.capacity() <= MIN_TABLE_CAPACITY * 2,
            "capacity {} after the peak of {peak}",
            inner.keys.capacity()
        );
    }
}
