//! Maintenance under the shard lock: counts, purge, expiry, checks outside the lock,
//! eviction for the global cap.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;

use super::{CloseList, Entry, ShardGuard};
use crate::conn::{Conn, NEVER};
use crate::key::key_eq;
use crate::stats::CloseReason;

/// Idle connections of one key taken out for a check outside the lock.
#[derive(Debug)]
pub(crate) struct CheckOut {
    hash: u64,
    key: Box<[u8]>,
    /// The entry's purge count when they left.
    purges: u32,
    pub conns: Vec<Conn>,
}

/// Closes an idle connection of `e` (its place under the cap given back, and with a limit
/// its slot freed after the close).
fn close_idle(e: &mut Entry, c: Conn, why: CloseReason, limit: u32, closes: &mut CloseList) {
    e.count_closed(why, 1);
    closes.close_idle(c, why);
    if limit != 0 {
        e.rare().closing += 1;
        closes.settle(e.hash);
    }
}

impl ShardGuard<'_> {
    /// How many unexpired idle connections `key` holds, after closing its expired ones.
    pub fn live_count(
        &mut self,
        hash: u64,
        key: &[u8],
        now: impl FnOnce(u64) -> u64,
        closes: &mut CloseList,
    ) -> usize {
        let limit = self.shard.limit;
        let st = &mut *self.st;
        let Some(e) = st.table.find_mut(hash, |e| key_eq(&e.key, key)) else {
            return 0;
        };
        let was_empty = e.is_empty();
        let now = now(e.earliest());
        let mut gone = Vec::new();
        let expired = e.expire(now, |c| gone.push(c));
        for c in gone {
            close_idle(e, c, CloseReason::Expired, limit, closes);
        }
        let n = e.len();
        st.idle -= expired;
        st.empty += usize::from(!was_empty && n == 0);
        self.sweep_empty();
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
        let limit = self.shard.limit;
        let st = &mut *self.st;
        let Some(e) = st.table.find_mut(hash, |e| key_eq(&e.key, key)) else {
            return 0;
        };
        let n = e.len();
        let was_empty = e.is_empty();
        e.count_purge();
        let conns: Vec<Conn> = e.drain().collect();
        for c in conns {
            close_idle(e, c, CloseReason::Purged, limit, closes);
        }
        st.idle -= n;
        st.empty += usize::from(!was_empty);
        if !e.pinned(limit != 0) {
            let counters = e.counters();
            st.counters.absorb(&counters);
            if st.table.remove(hash, |e| key_eq(&e.key, key)).is_some() {
                st.empty -= 1;
            }
        }
        self.shrink_if_sparse();
        n
    }

    /// Closes every idle connection here (counted purged) and removes every entry but the
    /// pinned ones. `drain`: the connections lent now will be closed at their release too.
    pub fn purge_all(&mut self, drain: bool, closes: &mut CloseList) -> usize {
        let limit = self.shard.limit;
        let st = &mut *self.st;
        let n = st.idle;
        let counters = &mut st.counters;
        st.table.retain(|e| {
            e.count_purge();
            if drain {
                e.count_drain();
            }
            let conns: Vec<Conn> = e.drain().collect();
            for c in conns {
                close_idle(e, c, CloseReason::Purged, limit, closes);
            }
            let keep = e.pinned(limit != 0);
            if !keep {
                counters.absorb(&e.counters());
            }
            keep
        });
        st.empty = st.table.len();
        st.kept_empty = st.empty;
        st.idle = 0;
        self.shrink_if_sparse();
        n
    }

    /// Closes every connection expired at `now` and removes every empty entry. Returns
    /// how many it closed and the earliest deadline left (a lower bound).
    pub fn expire_all(&mut self, now: u64, closes: &mut CloseList) -> (usize, u64) {
        let limit = self.shard.limit;
        let st = &mut *self.st;
        let mut expired = 0;
        let mut next = NEVER;
        let counters = &mut st.counters;
        st.table.retain(|e| {
            let mut gone = Vec::new();
            expired += e.expire(now, |c| gone.push(c));
            for c in gone {
                close_idle(e, c, CloseReason::Expired, limit, closes);
            }
            next = next.min(e.earliest());
            let keep = !e.is_empty() || e.pinned(limit != 0);
            if !keep {
                counters.absorb(&e.counters());
            }
            keep
        });
        st.empty = st.table.iter().filter(|e| e.is_empty()).count();
        st.kept_empty = st.empty;
        st.idle -= expired;
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
    /// lock ([`ShardGuard::check_in`] puts them back). They keep their places under the cap
    /// and their slots, and their entry stays until they are back.
    pub fn check_out(&mut self, hash: u64) -> Vec<CheckOut> {
        let st = &mut *self.st;
        let mut out = Vec::new();
        // The keys with exactly this hash (a bucket may hold others whose hash has the
        // same top bits: their connections are not this check's).
        st.table.for_hash(hash, |e| {
            if e.is_empty() {
                return;
            }
            let (conns, purges) = e.check_out();
            st.idle -= conns.len();
            st.empty += 1;
            out.push(CheckOut {
                hash,
                key: (*e.key).into(),
                purges,
                conns,
            });
        });
        out
    }

    /// Takes back checked-out connections: `healthy[i]` is the check's verdict on
    /// `out.conns[i]`. A failed one is closed (dead); a healthy one is put back where its
    /// release time places it, unless its key was purged meanwhile (closed, purged), it has
    /// expired (closed, expired) or releases filled its key up to `max` meanwhile (closed,
    /// evicted: an idle connection closed to keep a cap; `closed_full` counts releases).
    /// Returns how many it closed; adds the fds it put back to `kept`.
    pub fn check_in(
        &mut self,
        out: CheckOut,
        healthy: &[bool],
        (max, now): (usize, u64),
        kept: &mut Vec<RawFd>,
        closes: &mut CloseList,
    ) -> usize {
        let limit = self.shard.limit;
        let st = &mut *self.st;
        let n = out.conns.len();
        let Some(e) = st.table.find_mut(out.hash, |e| key_eq(&e.key, &out.key)) else {
            // Pinned while out, so always found; but never leak one.
            for c in out.conns {
                closes.close_idle(c, CloseReason::Purged);
            }
            st.counters.closed(CloseReason::Purged, n);
            return n;
        };
        let purged = e.check_in(n, out.purges);
        let was_empty = e.is_empty();
        let mut closed = 0;
        for (c, &ok) in out.conns.into_iter().zip(healthy) {
            let why = if !ok {
                CloseReason::Dead
            } else if purged {
                CloseReason::Purged
            } else if c.deadline <= now {
                CloseReason::Expired
            } else if e.len() >= max {
                CloseReason::Evicted
            } else {
                kept.push(c.fd.as_raw_fd());
                e.insert_by_release(c);
                st.idle += 1;
                continue;
            };
            close_idle(e, c, why, limit, closes);
            closed += 1;
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
            .filter_map(|e| e.oldest_seq())
            .min()
            .unwrap_or(NEVER)
    }

    /// With a global cap: closes (counted evicted) the least recently released idle
    /// connection here, if `bound` (the oldest sequence number the caller read without the
    /// lock) is still exact, or `force`. Otherwise makes the published bound exact and
    /// returns false.
    pub fn evict_oldest(&mut self, bound: u64, force: bool, closes: &mut CloseList) -> bool {
        let limit = self.shard.limit;
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
        close_idle(e, victim, CloseReason::Evicted, limit, closes);
        st.empty += usize::from(e.is_empty());
        st.idle -= 1;
        let next = self.oldest_seq();
        self.shard.oldest.store(next, Ordering::Relaxed);
        self.sweep_empty();
        true
    }
}
