//! A lock shard: a table from key to that key's [`Entry`], behind one [`Lock`]. Every change
//! to a shard goes through a [`ShardGuard`], whose methods keep the idle count, the set of
//! empty entries, the counters and the published gauges in step with the entries, and hand
//! every connection they remove to a [`CloseList`] (closed after unlocking). The locking
//! rules are in `crate::pool`.

mod entry;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hashbrown::hash_table::{Entry as Slot, HashTable};

use crate::cell::{Guard, Lock};
use crate::closer::CloseList;
use crate::conn::{Conn, NEVER};
use crate::key::key_eq;
use crate::stats::{CloseReason, Counters, Stats};

pub(crate) use entry::Entry;

/// A shard's table is shrunk once it is less than a quarter full, down to this capacity.
const MIN_TABLE_CAPACITY: usize = 16;

/// Empty entries are swept once there are more than this many and they outnumber the
/// non-empty ones (so memory stays within twice what the live keys need, plus this).
const EMPTY_SLACK: usize = 16;

#[derive(Debug, Default)]
struct ShardState {
    /// One entry per key, found by the hash computed once per call. A key whose last idle
    /// connection is taken keeps its (empty) entry, so the usual acquire-then-release of a
    /// busy key neither removes nor re-inserts it; empty entries are swept in bulk.
    table: HashTable<Entry>,
    /// Entries in `table` with no idle connection.
    empty: usize,
    /// Idle connections in `table`.
    idle: usize,
    counters: Counters,
}

#[derive(Debug)]
#[repr(align(128))] // two cores working on different shards share no cache line
pub(crate) struct Shard {
    state: Lock<ShardState>,
    /// `state.idle`, published under the lock for lock-free readers.
    idle: AtomicUsize,
    /// With a global cap: no idle connection here has a smaller release sequence number (a
    /// lower bound, written under the lock; eviction makes it exact).
    oldest: AtomicU64,
    /// With the liveness check: acquires that returned a connection, counted after the check
    /// (outside the lock; this cache line is the lock's, so the add is cheap).
    checked_hits: AtomicU64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            state: Lock::new(ShardState::default()),
            idle: AtomicUsize::new(0),
            oldest: AtomicU64::new(NEVER),
            checked_hits: AtomicU64::new(0),
        }
    }
}

impl Shard {
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

    /// A connection handed out after passing the liveness check.
    pub fn count_checked_hit(&self) {
        self.checked_hits.fetch_add(1, Ordering::Relaxed);
    }
}

/// Idle connections of one key taken out for a check outside the lock.
#[derive(Debug)]
pub(crate) struct CheckOut {
    hash: u64,
    key: Box<[u8]>,
    /// The entry's purge count when they left.
    purges: u32,
    pub conns: Vec<Conn>,
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

    /// Acquire's fast path, when nothing of the key can have expired at `now(earliest)`:
    /// takes its most recently released connection, if any, counting a miss, or a hit
    /// unless `checked` says the caller checks it first (then the caller counts it). `None`
    /// (nothing done) when the key may hold an expired connection: closing needs a close
    /// list ([`ShardGuard::take`]). The cap place of a connection taken is the caller's to
    /// give back.
    #[inline]
    pub fn take_fast(
        &mut self,
        hash: u64,
        key: &[u8],
        now: impl FnOnce(u64) -> u64,
        checked: impl FnOnce(&Conn) -> bool,
    ) -> Option<Option<(Conn, bool)>> {
        let st = &mut *self.st;
        let Some(e) = st.table.find_mut(hash, |e| key_eq(&e.key, key)) else {
            st.counters.misses += 1;
            return Some(None);
        };
        if e.earliest() <= now(e.earliest()) {
            return None;
        }
        let Some(c) = e.pop() else {
            st.counters.misses += 1;
            return Some(None);
        };
        st.idle -= 1;
        let checked = checked(&c);
        st.counters.hits += u64::from(!checked);
        if e.is_empty() {
            st.empty += 1; // kept for the next release (see sweep_empty)
            self.sweep_empty();
        }
        Some(Some((c, checked)))
    }

    /// Release's fast path, when nothing of the key can have expired at `now(earliest)` and
    /// it holds fewer than `max`: stores `conn` and returns `Ok`. Otherwise gives it back,
    /// untouched: the release needs a close list ([`ShardGuard::put`]).
    #[inline]
    pub fn put_fast(
        &mut self,
        hash: u64,
        key: &[u8],
        conn: Conn,
        max: usize,
        now: impl FnOnce(u64) -> u64,
    ) -> Result<(), Conn> {
        let st = &mut *self.st;
        let (e, was_empty) = match st.table.entry(hash, |e| key_eq(&e.key, key), |e| e.hash) {
            Slot::Occupied(o) => {
                let e = o.into_mut();
                let empty = e.is_empty();
                (e, empty)
            }
            Slot::Vacant(v) => (v.insert(Entry::new(hash, key)).into_mut(), false),
        };
        if e.len() >= max || e.earliest() <= now(e.earliest()) {
            return Err(conn);
        }
        if conn.seq != 0 {
            self.shard.oldest.fetch_min(conn.seq, Ordering::Relaxed);
        }
        e.push(conn);
        st.empty -= usize::from(was_empty);
        st.idle += 1;
        st.counters.pooled += 1;
        Ok(())
    }

    /// Acquire: closes the key's expired connections (judged at `now(earliest)`), then takes
    /// its most recently released one, if any (its cap place is given back). A miss is
    /// counted here; a hit by the caller ([`ShardGuard::count_hit`]) once it knows.
    #[inline]
    pub fn take(
        &mut self,
        hash: u64,
        key: &[u8],
        now: impl FnOnce(u64) -> u64,
        closes: &mut CloseList,
    ) -> Option<Conn> {
        let st = &mut *self.st;
        let mut emptied = false;
        let got = st
            .table
            .find_mut(hash, |e| key_eq(&e.key, key))
            .and_then(|e| {
                let was_empty = e.is_empty();
                let expired = e.expire(now(e.earliest()), |c| {
                    closes.close_idle(c, CloseReason::Expired)
                });
                let got = e.pop();
                st.counters.closed(CloseReason::Expired, expired);
                st.idle -= expired + usize::from(got.is_some());
                // An emptied entry stays for the next release (see sweep_empty).
                emptied = !was_empty && e.is_empty();
                st.empty += usize::from(emptied);
                got
            });
        match got {
            Some(_) => closes.give_back(1),
            None => st.counters.misses += 1,
        }
        if emptied {
            self.sweep_empty();
        }
        got
    }

    #[inline]
    pub fn count_hit(&mut self) {
        self.st.counters.hits += 1;
    }

    /// Release: stores `conn` as the key's most recently released connection after closing
    /// the key's expired ones, unless the key already holds `max` (then `conn` is closed,
    /// counted full, and false returned). `conn` holds a place under the cap, if there is
    /// one, which a close gives back.
    #[inline]
    pub fn put(
        &mut self,
        hash: u64,
        key: &[u8],
        conn: Conn,
        max: usize,
        now: impl FnOnce(u64) -> u64,
        closes: &mut CloseList,
    ) -> bool {
        let st = &mut *self.st;
        let (e, was_empty) = match st.table.entry(hash, |e| key_eq(&e.key, key), |e| e.hash) {
            Slot::Occupied(o) => {
                let e = o.into_mut();
                let empty = e.is_empty();
                (e, empty)
            }
            Slot::Vacant(v) => (v.insert(Entry::new(hash, key)).into_mut(), false),
        };
        let expired = e.expire(now(e.earliest()), |c| {
            closes.close_idle(c, CloseReason::Expired)
        });
        st.counters.closed(CloseReason::Expired, expired);
        st.idle -= expired;
        if e.len() >= max {
            closes.close_idle(conn, CloseReason::Full);
            st.counters.closed(CloseReason::Full, 1);
            return false; // a key at max is not empty, before or after
        }
        if conn.seq != 0 {
            self.shard.oldest.fetch_min(conn.seq, Ordering::Relaxed);
        }
        e.push(conn);
        if was_empty {
            st.empty -= 1;
        }
        st.idle += 1;
        st.counters.pooled += 1;
        true
    }

    /// How many unexpired idle connections `key` holds, after closing its expired ones.
    pub fn live_count(
        &mut self,
        hash: u64,
        key: &[u8],
        now: impl FnOnce(u64) -> u64,
        closes: &mut CloseList,
    ) -> usize {
        let st = &mut *self.st;
        let Some(e) = st.table.find_mut(hash, |e| key_eq(&e.key, key)) else {
            return 0;
        };
        let expired = e.expire(now(e.earliest()), |c| {
            closes.close_idle(c, CloseReason::Expired)
        });
        let n = e.len();
        st.counters.closed(CloseReason::Expired, expired);
        st.idle -= expired;
        if expired > 0 && n == 0 {
            st.empty += 1;
            self.sweep_empty();
        }
        n
    }

    /// How many idle connections of `key` have not expired at `now`; changes nothing.
    pub fn unexpired(&mut self, hash: u64, key: &[u8], now: impl FnOnce(u64) -> u64) -> usize {
        self.find(hash, key)
            .map_or(0, |e| e.unexpired(now(e.earliest())))
    }

    /// Closes every idle connection of `key` (counted purged) and removes its entry, unless
    /// it is pinned (then connections checked out come back to be closed).
    pub fn purge_key(&mut self, hash: u64, key: &[u8], closes: &mut CloseList) -> usize {
        let st = &mut *self.st;
        let Ok(mut slot) = st.table.find_entry(hash, |e| key_eq(&e.key, key)) else {
            return 0;
        };
        let e = slot.get_mut();
        let n = e.len();
        let was_empty = e.is_empty();
        e.count_purge();
        for c in e.drain() {
            closes.close_idle(c, CloseReason::Purged);
        }
        if !e.pinned() {
            slot.remove();
            st.empty -= usize::from(was_empty);
        } else {
            st.empty += usize::from(!was_empty);
        }
        st.idle -= n;
        st.counters.closed(CloseReason::Purged, n);
        self.shrink_if_sparse();
        n
    }

    /// Closes every idle connection here (counted purged) and removes every entry but the
    /// pinned ones.
    pub fn purge_all(&mut self, closes: &mut CloseList) -> usize {
        let st = &mut *self.st;
        let n = st.idle;
        st.table.retain(|e| {
            e.count_purge();
            for c in e.drain() {
                closes.close_idle(c, CloseReason::Purged);
            }
            e.pinned()
        });
        st.empty = st.table.len();
        st.idle = 0;
        st.counters.closed(CloseReason::Purged, n);
        self.shrink_if_sparse();
        n
    }

    /// Closes every connection expired at `now` and removes every empty entry. Returns
    /// how many it closed and the earliest deadline left (a lower bound).
    pub fn expire_all(&mut self, now: u64, closes: &mut CloseList) -> (usize, u64) {
        let st = &mut *self.st;
        let mut expired = 0;
        let mut next = NEVER;
        st.table.retain(|e| {
            expired += e.expire(now, |c| closes.close_idle(c, CloseReason::Expired));
            next = next.min(e.earliest());
            !e.is_empty() || e.pinned()
        });
        st.empty = st.table.iter().filter(|e| e.is_empty()).count();
        st.idle -= expired;
        st.counters.closed(CloseReason::Expired, expired);
        self.shrink_if_sparse();
        (expired, next)
    }

    /// The hashes of the keys that hold idle connections (for a scan one key at a time).
    pub fn hashes(&self) -> Vec<u64> {
        let mut h: Vec<u64> = self
            .st
            .table
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| e.hash)
            .collect();
        h.sort_unstable();
        h.dedup();
        h
    }

    /// Takes every idle connection of the key(s) with `hash` out, for a check outside the
    /// lock ([`ShardGuard::check_in`] puts them back). They keep their places under the cap,
    /// and their entry stays until they are back.
    pub fn check_out(&mut self, hash: u64) -> Vec<CheckOut> {
        let st = &mut *self.st;
        let mut out = Vec::new();
        for e in st.table.iter_hash_mut(hash) {
            if e.is_empty() {
                continue;
            }
            let (conns, purges) = e.check_out();
            st.idle -= conns.len();
            st.empty += 1;
            out.push(CheckOut {
                hash,
                key: e.key.clone(),
                purges,
                conns,
            });
        }
        out
    }

    /// Takes back checked-out connections: `healthy[i]` is the check's verdict on
    /// `out.conns[i]`. A failed one is closed (dead); a healthy one is put back where its
    /// release time places it, unless its key was purged meanwhile (closed, purged), it has
    /// expired (closed, expired) or its key filled up with `max` meanwhile (closed, full).
    /// Returns how many it closed.
    pub fn check_in(
        &mut self,
        out: CheckOut,
        healthy: &[bool],
        max: usize,
        now: u64,
        closes: &mut CloseList,
    ) -> usize {
        let st = &mut *self.st;
        let n = out.conns.len();
        let mut closed = 0;
        let mut close = |c, why| {
            st.counters.closed(why, 1);
            closes.close_idle(c, why);
            closed += 1;
        };
        let Some(e) = st.table.find_mut(out.hash, |e| key_eq(&e.key, &out.key)) else {
            // Pinned while out: not reached (kept for robustness).
            for (c, &ok) in out.conns.into_iter().zip(healthy) {
                close(
                    c,
                    if ok {
                        CloseReason::Purged
                    } else {
                        CloseReason::Dead
                    },
                );
            }
            return closed;
        };
        let purged = e.check_in(n, out.purges);
        let was_empty = e.is_empty();
        for (c, &ok) in out.conns.into_iter().zip(healthy) {
            if !ok {
                close(c, CloseReason::Dead);
            } else if purged {
                close(c, CloseReason::Purged);
            } else if c.deadline <= now {
                close(c, CloseReason::Expired);
            } else if e.len() >= max {
                close(c, CloseReason::Full);
            } else {
                e.insert_by_release(c);
                st.idle += 1;
            }
        }
        if was_empty && !e.is_empty() {
            st.empty -= 1;
        }
        self.sweep_empty();
        closed
    }

    /// The smallest release sequence number of any idle connection here ([`NEVER`]: none).
    fn oldest_seq(&self) -> u64 {
        self.st
            .table
            .iter()
            .filter_map(Entry::oldest_seq)
            .min()
            .unwrap_or(NEVER)
    }

    /// With a global cap: closes (counted evicted) the least recently released idle
    /// connection here, if `bound` (the oldest sequence number the caller read without the
    /// lock) is still exact, or `force`. Otherwise makes the published bound exact and
    /// returns false.
    pub fn evict_oldest(&mut self, bound: u64, force: bool, closes: &mut CloseList) -> bool {
        let oldest = self.oldest_seq();
        if oldest == NEVER || (oldest != bound && !force) {
            self.shard.oldest.store(oldest, Ordering::Relaxed);
            return false;
        }
        let st = &mut *self.st;
        let Some(e) = st.table.iter_mut().find(|e| e.oldest_seq() == Some(oldest)) else {
            return false;
        };
        let Some(victim) = e.pop_oldest() else {
            return false;
        };
        closes.close_idle(victim, CloseReason::Evicted);
        st.empty += usize::from(e.is_empty());
        st.idle -= 1;
        st.counters.closed(CloseReason::Evicted, 1);
        let next = self.oldest_seq();
        self.shard.oldest.store(next, Ordering::Relaxed);
        self.sweep_empty();
        true
    }

    /// Adds this shard's gauges and counters to `s`.
    pub fn add_to(&self, s: &mut Stats) {
        s.idle += self.st.idle as u64;
        s.keys += (self.st.table.len() - self.st.empty) as u64;
        s.add(&self.st.counters);
        s.hits += self.shard.checked_hits.load(Ordering::Relaxed);
    }

    /// Entries in the table, empty ones included (for tests of memory bounds).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.st.table.len()
    }

    /// Sweeps the empty entries when they are many.
    #[inline]
    fn sweep_empty(&mut self) {
        let st = &*self.st;
        if st.empty > EMPTY_SLACK && st.empty * 2 > st.table.len() {
            self.sweep();
        }
    }

    #[cold]
    fn sweep(&mut self) {
        let st = &mut *self.st;
        st.table.retain(|e| !e.is_empty() || e.pinned());
        st.empty = st.table.iter().filter(|e| e.is_empty()).count();
        self.shrink_if_sparse();
    }

    /// hashbrown tables never shrink by themselves: without this, memory would follow the
    /// peak number of keys, not the keys that hold idle connections now. Shrinking at a
    /// quarter to half leaves room for the table to double before it grows again.
    fn shrink_if_sparse(&mut self) {
        let table = &mut self.st.table;
        let (len, cap) = (table.len(), table.capacity());
        if cap > MIN_TABLE_CAPACITY && len < cap / 4 {
            table.shrink_to(len * 2, |e| e.hash);
        }
    }
}
