//! A lock shard: a table from key to that key's [`Entry`], behind one [`Lock`]. Every change
//! to a shard goes through a [`ShardGuard`], whose methods keep the idle count, the set of
//! empty entries, the counters and the published gauges in step with the entries, and hand
//! every connection they remove to a [`CloseList`] (acted on after unlocking). The locking
//! rules are in `crate::pool`.
//!
//! The guard's methods, by job: `lean.rs` (acquire and release, the common case), `hot.rs`
//! (acquire and release, the full path), `slots.rs` (a key's
//! connection limit: loans, connect slots, waiters, drains), `maintain.rs` (counts, purge,
//! expiry, checks outside the lock, eviction).

mod closes;
mod conns;
mod entries;
mod entry;
mod hot;
mod index;
mod lean;
mod maintain;
mod slots;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::cell::{Guard, Lock};
use crate::conn::NEVER;
use crate::key::key_eq;
use crate::stats::{Counters, Stats};

pub(crate) use closes::CloseList;
pub(crate) use entry::Entry;
pub(crate) use hot::{Return, Took};
pub(crate) use lean::Popped;

/// Number of lock shards (a power of two). 64 keeps contention between unrelated keys rare on
/// machines with tens of cores while costing 8 KiB per pool.
pub const SHARDS: usize = 64;

/// The shard of the key with hash `hash`: its middle bits (each shard's index uses the low
/// 32, the string keys' guesses the top 16).
#[inline]
pub(crate) fn shard_index(hash: u64) -> usize {
    (hash >> 32) as usize & (SHARDS - 1)
}

/// A shard's table is shrunk once it is less than a quarter full, down to this capacity.
const MIN_TABLE_CAPACITY: usize = 16;

/// Empty entries are swept once there are more than this many (plus twice those the last
/// sweep had to keep) and they outnumber the non-empty ones (so memory stays within about
/// twice what the live keys need, plus this).
const EMPTY_SLACK: usize = 16;

#[derive(Debug, Default)]
struct ShardState {
    /// One entry per key, found by the hash computed once per call. A key whose last idle
    /// connection is taken keeps its (empty) entry, so the usual acquire-then-release of a
    /// busy key neither removes nor re-inserts it; empty entries are swept in bulk. In a
    /// slab, not in the table: a table runs half empty after it doubles, and its empty
    /// buckets then cost 4 bytes, not an entry's 128 (see `entries.rs`).
    table: entries::Entries,
    /// Entries in `table` with no idle connection.
    empty: usize,
    /// Empty entries the last sweep had to keep (pinned: a key handle, loans under a limit):
    /// the next sweep waits for as many again, so that keeping them costs no sweep per call.
    kept_empty: usize,
    /// Sweeps so far (for the test that they stay few).
    #[cfg(test)]
    sweeps: usize,
    /// Idle connections in `table`.
    idle: usize,
    /// The counters of the entries swept or purged away, and the misses of keys that had
    /// no entry; the rest are in the entries.
    counters: Counters,
    /// Where recently used keys' entries were found in `table`, by a few bits of their hash:
    /// guesses, checked by hash and key, that spare the hot path the table's probe.
    places: [u64; PLACES],
}

/// Guesses of entry places per shard.
const PLACES: usize = 16;

#[derive(Debug)]
#[repr(align(128))] // two cores working on different shards share no cache line
pub(crate) struct Shard {
    state: Lock<ShardState>,
    /// `state.idle`, published under the lock for lock-free readers.
    idle: AtomicUsize,
    /// With a global cap: no idle connection here has a smaller release sequence number (a
    /// lower bound, written under the lock; eviction makes it exact).
    oldest: AtomicU64,
    /// The pool's connection limit per key (0: none).
    limit: u32,
}

impl Shard {
    pub fn new(limit: u32) -> Self {
        Shard {
            state: Lock::new(ShardState::default()),
            idle: AtomicUsize::new(0),
            oldest: AtomicU64::new(NEVER),
            limit,
        }
    }

    #[inline]
    pub fn lock(&self) -> ShardGuard<'_> {
        ShardGuard {
            shard: self,
            st: self.state.lock(),
        }
    }

    /// Idle connections here (the published gauge; no lock).
    pub fn idle_gauge(&self) -> usize {
        self.idle.load(Ordering::Relaxed)
    }

    /// The lower bound of the oldest release sequence number here (no lock).
    pub fn oldest_bound(&self) -> u64 {
        self.oldest.load(Ordering::Relaxed)
    }
}

/// The shard's lock, held: the only way to read or change its entries.
pub(crate) struct ShardGuard<'a> {
    shard: &'a Shard,
    st: Guard<'a, ShardState>,
}

impl Drop for ShardGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.shard.idle.store(self.st.idle, Ordering::Relaxed);
    }
}

impl ShardGuard<'_> {
    fn find(&mut self, hash: u64, key: &[u8]) -> Option<&mut Entry> {
        self.st.table.find_mut(hash, |e| key_eq(&e.key, key))
    }

    /// The entry of the key with hash `hash` (keys are told apart by a keyed 64-bit hash:
    /// for the bookkeeping that only has the hash of a loan or a slot).
    fn find_hash(&mut self, hash: u64) -> Option<&mut Entry> {
        self.st.table.find_mut(hash, |e| e.hash == hash)
    }

    /// The key's entry, made (empty) if it has none.
    #[inline]
    fn entry(&mut self, hash: u64, key: &[u8]) -> &mut Entry {
        let st = &mut *self.st;
        let (e, new) =
            (st.table).get_or_insert(hash, |e| key_eq(&e.key, key), || Entry::new(hash, key));
        st.empty += usize::from(new);
        e
    }

    /// Per-key figures of `key`: its counters and gauges (`None`: the key has no entry).
    pub fn key_stats(&mut self, hash: u64, key: &[u8]) -> Option<Stats> {
        let e = self.find(hash, key)?;
        let mut s = Stats::default();
        add_entry(&mut s, e);
        Some(s)
    }

    /// Adds this shard's gauges and counters to `s`.
    pub fn add_to(&self, s: &mut Stats) {
        s.add(&self.st.counters);
        for e in self.st.table.iter() {
            add_entry(s, e);
        }
    }

    /// Entries in the table, empty ones included (for tests of memory bounds).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.st.table.len()
    }

    /// Sweeps of empty entries so far.
    #[cfg(test)]
    pub fn sweeps(&self) -> usize {
        self.st.sweeps
    }

    /// Sweeps the empty entries when they are many.
    #[inline]
    fn sweep_empty(&mut self) {
        let st = &*self.st;
        if st.empty > EMPTY_SLACK + 2 * st.kept_empty && st.empty * 2 > st.table.len() {
            self.sweep();
        }
    }

    /// Removes every entry that holds nothing and is not pinned, keeping its counters.
    #[cold]
    fn sweep(&mut self) {
        let limited = self.shard.limit != 0;
        let st = &mut *self.st;
        let counters = &mut st.counters;
        st.table.retain(|e| {
            let keep = !e.is_empty() || e.pinned(limited);
            if !keep {
                counters.absorb(&e.counters());
            }
            keep
        });
        st.empty = st.table.iter().filter(|e| e.is_empty()).count();
        st.kept_empty = st.empty;
        #[cfg(test)]
        {
            st.sweeps += 1;
        }
        self.shrink_if_sparse();
    }

    /// The index never shrinks by itself: without this, memory would follow the
    /// peak number of keys, not the keys that hold idle connections now. Shrinking at a
    /// quarter to half leaves room for the table to double before it grows again.
    fn shrink_if_sparse(&mut self) {
        let table = &mut self.st.table;
        let (len, cap) = (table.len(), table.capacity());
        if cap > MIN_TABLE_CAPACITY && len < cap / 4 {
            table.shrink_to(len * 2);
        }
    }
}

/// Adds one entry's figures to `s`. Connections out for a check (prune, the watcher's reap)
/// are still idle: the check's verdict moves them to `dead` under the lock, so a snapshot
/// taken meanwhile still adds up.
fn add_entry(s: &mut Stats, e: &Entry) {
    s.add(&e.counters());
    let idle = e.len() + e.checking() as usize;
    s.idle += idle as u64;
    s.keys += u64::from(idle != 0);
    s.lent += u64::from(e.lent);
    s.connecting += u64::from(e.connecting());
    s.waiting += e.waiting() as u64;
}
