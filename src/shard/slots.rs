//! A key's loans, connect slots, waiters and drains, under the shard lock. With a limit,
//! `idle + out for a check + lent + connecting + closing <= limit` at every instant: a
//! slot passes from one connection to the next only after the first one's fd is closed
//! (`CloseList` frees it then, with [`ShardGuard::free_slot`]).

use super::{CloseList, ShardGuard};
use crate::cell::Shared;
use crate::conn::Conn;
use crate::stats::CloseReason;
use crate::wait::{Served, Waiter};

impl ShardGuard<'_> {
    /// The verdict of an acquire's check on `conn`, lent from `key` by `take`: a healthy one
    /// is counted a hit and returned; a dead one is closed (counted dead), its loan ended.
    pub fn checked(
        &mut self,
        hash: u64,
        key: &[u8],
        conn: Conn,
        healthy: bool,
        closes: &mut CloseList,
    ) -> Option<Conn> {
        let limit = self.shard.limit;
        let e = self.entry(hash, key);
        if healthy {
            e.count_hit();
            return Some(conn);
        }
        e.count_closed(CloseReason::Dead, 1);
        e.lent = e.lent.saturating_sub(1);
        closes.close(conn, CloseReason::Dead);
        if limit != 0 {
            e.rare().closing += 1;
            closes.settle(hash);
        }
        None
    }

    /// The verdict of a waiter's check on `conn`, handed to it by a release: a healthy one
    /// is counted a hit and returned; a dead one is closed (counted dead) and its slot
    /// becomes the waiter's connect slot (counted a miss), so the waiter keeps its turn. The
    /// caller connects only after the close list has closed it.
    pub fn checked_handoff(
        &mut self,
        hash: u64,
        key: &[u8],
        conn: Conn,
        healthy: bool,
        closes: &mut CloseList,
    ) -> Option<Conn> {
        let e = self.entry(hash, key);
        if healthy {
            e.count_hit();
            return Some(conn);
        }
        e.count_closed(CloseReason::Dead, 1);
        e.count_miss();
        e.lent = e.lent.saturating_sub(1);
        e.rare().connecting += 1;
        closes.close(conn, CloseReason::Dead);
        None
    }

    /// A loan of the key with hash `hash` ends without its connection coming back to it
    /// (released into another key: a caller's mix-up): the slot is free at once.
    pub fn end_loan(&mut self, hash: u64, closes: &mut CloseList) {
        let ended = match self.find_hash(hash) {
            Some(e) if e.lent > 0 => {
                e.lent -= 1;
                true
            }
            _ => false,
        };
        if ended {
            self.free_slot(hash, false, closes);
        }
    }

    /// The caller ends `conn` (a discard): it is closed (counted discarded, on `key`), and
    /// the slot it held is freed after: its loan's, if `loan` says `key` lent it, else a
    /// reserved connect slot of `key`, if any.
    pub fn discard(
        &mut self,
        hash: u64,
        key: &[u8],
        conn: Conn,
        lent_here: bool,
        closes: &mut CloseList,
    ) {
        let limit = self.shard.limit;
        let e = self.entry(hash, key);
        e.count_closed(CloseReason::Discarded, 1);
        let slot = if lent_here && e.lent > 0 {
            e.lent -= 1;
            true
        } else if e.connecting() > 0 {
            e.rare().connecting -= 1;
            true
        } else {
            false
        };
        closes.close(conn, CloseReason::Discarded);
        if slot && limit != 0 {
            e.rare().closing += 1;
            closes.settle(hash);
        }
        self.sweep_empty();
    }

    /// A connect slot of `key` is given back unused (its connect failed). False if it had
    /// none reserved.
    pub fn return_slot(&mut self, hash: u64, key: &[u8], closes: &mut CloseList) -> bool {
        let had = match self.find(hash, key) {
            Some(e) if e.connecting() > 0 => {
                e.rare().connecting -= 1;
                true
            }
            _ => false,
        };
        if had {
            self.free_slot(hash, false, closes);
        }
        had
    }

    /// A slot of the key with hash `hash` is free (`closed`: a connection being closed is
    /// closed now): the longest waiter gets it, reserved to connect; with no waiter, an
    /// event loop refused by the key is told.
    pub fn free_slot(&mut self, hash: u64, closed: bool, closes: &mut CloseList) {
        let Some(e) = self.find_hash(hash) else {
            return;
        };
        if closed {
            let r = e.rare();
            r.closing = r.closing.saturating_sub(1);
        }
        if let Some(w) = e.pop_waiter() {
            e.rare().connecting += 1;
            e.count_miss(); // its acquire returns "connect"
            w.serve(Served::Slot);
            closes.wake(w);
        } else if e.take_blocked() {
            closes.notify();
        }
        self.sweep_empty();
    }

    /// Queues `w` (the key is at its limit), after the waiters already there.
    pub fn enqueue(&mut self, hash: u64, key: &[u8], w: Shared<Waiter>) {
        self.entry(hash, key).rare().waiters.push_back(w);
    }

    /// Takes `w` off the queue (it gave up: timeout). False if it was served meanwhile.
    pub fn dequeue(&mut self, hash: u64, key: &[u8], w: &Shared<Waiter>) -> bool {
        let Some(e) = self.find(hash, key) else {
            return false;
        };
        let Some(i) = e.rare().waiters.iter().position(|x| Shared::ptr_eq(x, w)) else {
            return false;
        };
        e.rare().waiters.remove(i);
        self.sweep_empty();
        true
    }

    /// Serves every waiter here with `Served::Cancelled`; returns how many.
    pub fn cancel_waiters(&mut self, closes: &mut CloseList) -> usize {
        let mut n = 0;
        for e in self.st.table.iter_mut() {
            while let Some(w) = e.pop_waiter() {
                w.serve(Served::Cancelled);
                closes.wake(w);
                n += 1;
            }
        }
        self.sweep_empty();
        n
    }

    /// Drain of `key`: its idle connections are closed (counted purged; how many is
    /// returned), and those lent now will be at their release.
    pub fn drain_key(&mut self, hash: u64, key: &[u8], closes: &mut CloseList) -> usize {
        if let Some(e) = self.find(hash, key) {
            e.count_drain();
        }
        self.purge_key(hash, key, closes)
    }

    /// A key handle names `key`: its entry stays (with its counters) for the pool's life.
    pub fn mark_handle(&mut self, hash: u64, key: &[u8]) {
        self.entry(hash, key).handle = true;
    }
}
