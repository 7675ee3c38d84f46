//! One key's entry in a shard: its idle connections, most recently released last (reuse is
//! LIFO, eviction takes the front), what it has out (lent, connect slots, connections being
//! closed or checked), its waiters and its counters. Only the shard guard changes an entry
//! (its methods are private to `crate::shard`), so the shard's counts stay in step.

use std::collections::VecDeque;

use super::conns::Conns;
use crate::cell::Shared;
use crate::conn::{Conn, NEVER};
use crate::key::KeyBytes;
use crate::stats::{CloseReason, Counters};
use crate::wait::Waiter;

/// 128 bytes (one slab slot, `entries.rs`), with the key's bytes (up to 22) and one idle
/// connection inline: most keys of a big pool need no other block (the test below).
#[derive(Debug)]
pub(crate) struct Entry {
    /// The key's hash, kept so the table can grow without hashing keys again.
    pub hash: u64,
    /// No deadline in `conns` is earlier than this (a lower bound: it may be stale-low after
    /// pops, which only costs a scan that then recomputes it).
    earliest: u64,
    pub key: KeyBytes,
    conns: Conns,
    /// What only limits, checks outside the lock and drains use, made when
    /// first needed: most keys of a pool without them never need it.
    rare: Option<Box<Rare>>,
    /// The counters' high parts: the closes by reason, and 2^32 per wrap of the low halves
    /// below (made at the first close or wrap: counts stay exact 64-bit ones).
    tally: Option<Box<Counters>>,
    hits: u32,
    misses: u32,
    pooled: u32,
    /// Handed out (by an acquire or a hand-off) and not yet given back (release, discard).
    pub(super) lent: u32,
    /// A key handle names it: kept even when it holds nothing (its counters live on).
    pub(super) handle: bool,
}

/// The parts of an entry few keys use.
#[derive(Debug, Default)]
pub(super) struct Rare {
    /// Connections taken out for a check outside the lock, not yet back.
    pub checking: u32,
    /// Purges of this key so far: a connection checked out before one is closed, not put
    /// back, when it returns.
    pub purges: u32,
    /// Connect slots reserved by acquires at a limit's key.
    pub connecting: u32,
    /// With a limit: taken to be closed, not closed yet (their slots are freed after).
    pub closing: u32,
    /// Threads waiting for a connection or a slot, longest waiting first.
    pub waiters: VecDeque<Shared<Waiter>>,
    /// An acquire found the key at its limit since the event loop was last told of a slot.
    pub blocked: bool,
    /// Drains of this key: connections lent before one are closed at their release.
    pub drains: u16,
}

impl Entry {
    pub(super) fn new(hash: u64, key: &[u8]) -> Self {
        Entry {
            hash,
            earliest: NEVER,
            key: KeyBytes::new(key),
            conns: Conns::default(),
            rare: None,
            tally: None,
            hits: 0,
            misses: 0,
            pooled: 0,
            lent: 0,
            handle: false,
        }
    }

    #[inline(always)]
    pub(super) fn count_hit(&mut self) {
        count(&mut self.hits, &mut self.tally, |t| &mut t.hits);
    }
    #[inline(always)]
    pub(super) fn count_miss(&mut self) {
        count(&mut self.misses, &mut self.tally, |t| &mut t.misses);
    }
    #[inline(always)]
    pub(super) fn count_pooled(&mut self) {
        count(&mut self.pooled, &mut self.tally, |t| &mut t.pooled);
    }
    pub(super) fn count_closed(&mut self, why: CloseReason, n: usize) {
        if n > 0 {
            self.tally.get_or_insert_with(Box::default).closed(why, n);
        }
    }

    /// The key's counters, whole.
    pub(super) fn counters(&self) -> Counters {
        let mut c = self.tally.as_deref().cloned().unwrap_or_default();
        c.hits += u64::from(self.hits);
        c.misses += u64::from(self.misses);
        c.pooled += u64::from(self.pooled);
        c
    }

    /// The rare parts, made now if they were not.
    pub(super) fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn rare_or<T>(&self, f: impl FnOnce(&Rare) -> T, none: T) -> T {
        self.rare.as_deref().map_or(none, f)
    }

    #[inline]
    pub(super) fn drains(&self) -> u16 {
        self.rare_or(|r| r.drains, 0)
    }
    pub(super) fn connecting(&self) -> u32 {
        self.rare_or(|r| r.connecting, 0)
    }
    pub(super) fn checking(&self) -> u32 {
        self.rare_or(|r| r.checking, 0)
    }
    pub(super) fn closing(&self) -> u32 {
        self.rare_or(|r| r.closing, 0)
    }
    pub(super) fn blocked(&self) -> bool {
        self.rare_or(|r| r.blocked, false)
    }
    pub(super) fn waiting(&self) -> usize {
        self.rare_or(|r| r.waiters.len(), 0)
    }

    /// Whether the event loop was refused by the key since it was last told; clears it.
    pub(super) fn take_blocked(&mut self) -> bool {
        self.rare
            .as_deref_mut()
            .is_some_and(|r| std::mem::take(&mut r.blocked))
    }

    /// The longest waiter, taken off the queue.
    pub(super) fn pop_waiter(&mut self) -> Option<Shared<Waiter>> {
        self.rare.as_deref_mut()?.waiters.pop_front()
    }

    /// A drain of this key.
    pub(super) fn count_drain(&mut self) {
        let r = self.rare();
        r.drains = r.drains.wrapping_add(1);
    }

    /// Whether the entry must stay even with no idle connection: something of it is out
    /// and will come back to it, or a handle names it. Its loans pin it only with a limit
    /// (`limited`), where every loan must come back, or once it was drained (the drain must
    /// meet them at their release): without a limit a caller may close a lent connection
    /// itself, and the entry of a key it never comes back to must not stay for ever.
    pub fn pinned(&self, limited: bool) -> bool {
        self.rare_or(|r| r.checking > 0, false)
            || (self.lent > 0 && (limited || self.drains() != 0))
            || self.connecting() > 0
            || self.closing() > 0
            || self.waiting() > 0
            || self.handle
    }

    /// Connections of this key that count against a limit: idle, out for a check, lent,
    /// being connected, being closed.
    pub(super) fn total(&self) -> u32 {
        let out = self.rare_or(|r| r.checking + r.connecting + r.closing, 0);
        self.len() as u32 + self.lent + out
    }

    /// Idle connections held.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.len() == 0
    }

    /// A lower bound of the earliest deadline here.
    pub fn earliest(&self) -> u64 {
        self.earliest
    }

    /// Connections that have not expired at `now`, without changing anything.
    pub fn unexpired(&self, now: u64) -> usize {
        if self.earliest > now {
            return self.conns.len();
        }
        self.conns
            .as_slice()
            .iter()
            .filter(|c| c.deadline > now)
            .count()
    }

    /// Moves every connection expired at `now` to `out`; returns how many.
    #[inline]
    pub(super) fn expire(&mut self, now: u64, out: impl FnMut(Conn)) -> usize {
        if self.earliest > now {
            return 0;
        }
        self.expire_scan(now, out)
    }

    #[cold]
    fn expire_scan(&mut self, now: u64, out: impl FnMut(Conn)) -> usize {
        let n = self.retain(|c| c.deadline > now, out);
        self.earliest = (self.conns.as_slice().iter())
            .map(|c| c.deadline)
            .min()
            .unwrap_or(NEVER);
        n
    }

    /// Keeps the connections `keep` accepts, in order, and moves the others to `out`;
    /// returns how many went. Stacks are short (max_idle_per_key).
    pub(super) fn retain(
        &mut self,
        mut keep: impl FnMut(&Conn) -> bool,
        mut out: impl FnMut(Conn),
    ) -> usize {
        let before = self.conns.len();
        let mut kept = Vec::with_capacity(if before > 1 { before } else { 0 });
        for c in std::mem::take(&mut self.conns) {
            if keep(&c) {
                kept.push(c);
            } else {
                out(c);
            }
        }
        self.conns = Conns::from(kept);
        before - self.conns.len()
    }

    #[inline(always)]
    pub(super) fn pop(&mut self) -> Option<Conn> {
        self.conns.pop()
    }

    #[inline(always)]
    pub(super) fn push(&mut self, c: Conn) {
        self.earliest = self.earliest.min(c.deadline);
        self.conns.push(c);
    }

    /// The release sequence number of the least recently released connection.
    pub(super) fn oldest_seq(&self) -> Option<u64> {
        self.conns.as_slice().first().map(|c| c.seq)
    }

    pub(super) fn pop_oldest(&mut self) -> Option<Conn> {
        self.conns.pop_oldest()
    }

    /// Every idle connection, taken out (the entry's own bookkeeping done by the caller).
    pub(super) fn drain(&mut self) -> impl Iterator<Item = Conn> {
        self.earliest = NEVER;
        std::mem::take(&mut self.conns).into_iter()
    }

    /// Puts back a connection taken out for a check, where its release time places it (the
    /// stack is in release order).
    pub(super) fn insert_by_release(&mut self, c: Conn) {
        let i = (self.conns.as_slice()).partition_point(|x| x.released <= c.released);
        self.earliest = self.earliest.min(c.deadline);
        self.conns.insert(i, c);
    }

    pub(super) fn check_out(&mut self) -> (Vec<Conn>, u32) {
        let conns: Vec<Conn> = self.drain().collect();
        let r = self.rare();
        r.checking += conns.len() as u32;
        (conns, r.purges)
    }

    /// `n` checked-out connections came back; whether the key was purged meanwhile.
    pub(super) fn check_in(&mut self, n: usize, purges: u32) -> bool {
        let r = self.rare();
        r.checking -= n as u32;
        r.purges != purges
    }

    pub(super) fn count_purge(&mut self) {
        // Only a check in progress compares it, and a check made the rare parts.
        if let Some(r) = self.rare.as_deref_mut() {
            r.purges = r.purges.wrapping_add(1);
        }
    }
}

/// Adds one to a counter's low half, carrying into the tally when it wraps.
#[inline(always)]
fn count(low: &mut u32, tally: &mut Option<Box<Counters>>, high: fn(&mut Counters) -> &mut u64) {
    *low = low.wrapping_add(1);
    if *low == 0 {
        carry(tally, high);
    }
}

#[cold]
#[inline(never)]
fn carry(tally: &mut Option<Box<Counters>>, high: fn(&mut Counters) -> &mut u64) {
    *high(tally.get_or_insert_with(Box::default)) += 1 << 32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_with_a_short_key_and_one_connection_fits_a_slab_slot() {
        assert!(std::mem::size_of::<Entry>() <= 128);
    }

    #[test]
    fn a_key_emptied_by_expiry_holds_its_next_connection_inline() {
        let fd = |_| std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let conn = |deadline| Conn {
            fd: fd(()),
            ctx: 0,
            deadline,
            released: 0,
            born: 0,
            uses: 1,
            seq: 0,
        };
        let mut e = Entry::new(1, b"k");
        e.push(conn(5));
        assert_eq!(e.expire(10, drop), 1);
        e.push(conn(NEVER));
        assert!(matches!(e.conns, Conns::One(_)));
        // And a key whose one connection survives a scan keeps it inline.
        e.push(conn(20));
        assert_eq!(e.pop().map(|c| c.deadline), Some(20));
        assert_eq!(e.retain(|_| true, drop), 0);
        assert!(matches!(e.conns, Conns::One(_)));
    }

    #[test]
    fn counters_stay_exact_past_the_low_halves() {
        let mut e = Entry::new(1, b"k");
        (e.hits, e.misses, e.pooled) = (u32::MAX - 1, u32::MAX, 7);
        for _ in 0..3 {
            e.count_hit();
        }
        e.count_miss();
        e.count_pooled();
        e.count_closed(CloseReason::Expired, 0);
        e.count_closed(CloseReason::Dead, 2);
        let c = e.counters();
        assert_eq!(c.hits, u64::from(u32::MAX) + 2);
        assert_eq!(c.misses, u64::from(u32::MAX) + 1);
        assert_eq!(c.pooled, 8);
        let mut want = Counters::default();
        want.closed(CloseReason::Dead, 2);
        assert_eq!(c.closed, want.closed);
    }
}
