//! Acquire and release under the shard lock: a fast path that closes nothing (no close
//! list made), and the full one.

use std::sync::atomic::Ordering;

use super::{CloseList, Entry, ShardGuard};
use crate::conn::Conn;
use crate::stats::CloseReason;
use crate::wait::Served;

/// What an acquire found.
#[derive(Debug)]
pub(crate) enum Took {
    /// A connection, now lent; true if the caller must check it before handing it out (it
    /// then reports the check's verdict with `ShardGuard::checked`); the key's drain epoch,
    /// for the loan's record.
    Conn(Conn, bool, u16),
    /// None idle (no limit: the caller connects; nothing is counted for that).
    Miss,
    /// None idle, and a connect slot was reserved for the caller (a limit's key).
    Slot,
    /// None idle, and the key is at its limit: nothing changed.
    AtLimit,
    /// None idle, and at the limit only for the expired connections this call is closing:
    /// nothing counted; look again once the close list has closed them (freeing their
    /// slots).
    Retry,
}

/// How a released connection stands with its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Return {
    /// Lent by this key: it comes back. `key_drains` is the key's drain count when it was
    /// lent; `drained`: the whole pool was drained since.
    Lent { key_drains: u16, drained: bool },
    /// Not lent by this key: a new connection (from a connect slot, if one is reserved).
    Fresh,
}

/// What the acquire and release paths do with a key's entry.
impl Entry {
    /// `c`, taken from this key, now lent: a hit unless `check` says the caller checks it
    /// first (the verdict then comes with `ShardGuard::checked`).
    #[inline(always)]
    fn lend(&mut self, c: Conn, check: impl FnOnce(&Conn) -> bool) -> Took {
        self.lent += 1;
        let check = check(&c);
        if !check {
            self.count_hit();
        }
        Took::Conn(c, check, self.drains())
    }

    /// Closes the connections expired at `now` (counted; with a limit, each slot freed after
    /// its close); returns how many.
    fn expire_closing(&mut self, now: u64, limit: u32, closes: &mut CloseList) -> usize {
        let hash = self.hash;
        let mut expired = 0;
        self.expire(now, |c| {
            expired += 1;
            closes.close_idle(c, CloseReason::Expired);
            if limit != 0 {
                closes.settle(hash);
            }
        });
        self.count_closed(CloseReason::Expired, expired);
        if limit != 0 && expired > 0 {
            self.rare().closing += expired as u32;
        }
        expired
    }

    /// None idle: without a limit a miss; below it a miss with a connect slot reserved; at
    /// it nothing counted (-EAGAIN is not a miss: a miss is an acquire told to connect).
    #[inline(always)]
    fn none_idle(&mut self, limit: u32) -> Took {
        if limit == 0 {
            self.count_miss();
            Took::Miss
        } else if self.total() < limit {
            self.count_miss();
            self.rare().connecting += 1;
            Took::Slot
        } else {
            self.rare().blocked = true;
            Took::AtLimit
        }
    }
}

/// Acquire.
impl ShardGuard<'_> {
    /// Acquire's fast path, when nothing of the key can have expired at `now(earliest)`:
    /// [`ShardGuard::take`] without closing. `None` (nothing done) when the key may hold an
    /// expired connection: closing needs a close list. The cap place of a connection taken
    /// is the caller's to give back.
    #[inline]
    pub fn take_fast(
        &mut self,
        hash: u64,
        key: &[u8],
        now: impl FnOnce(u64) -> u64,
        check: impl FnOnce(&Conn) -> bool,
    ) -> Option<Took> {
        let limit = self.shard.limit;
        let st = &mut *self.st;
        let Some(e) = st.table.find_mut(hash, |e| crate::key::key_eq(&e.key, key)) else {
            if limit != 0 {
                return None; // the slot needs an entry: made on the full path
            }
            st.counters.misses += 1;
            return Some(Took::Miss);
        };
        if e.earliest() <= now(e.earliest()) {
            return None;
        }
        let took = match e.pop() {
            Some(c) => {
                st.idle -= 1;
                let took = e.lend(c, check);
                if e.is_empty() {
                    st.empty += 1; // kept for the next release (see sweep_empty)
                }
                took
            }
            None => e.none_idle(limit),
        };
        self.sweep_empty();
        Some(took)
    }

    /// Acquire: closes the key's expired connections (judged at `now(earliest)`), then takes
    /// its most recently released one, now lent (its cap place is given back), counting a
    /// hit unless `check` says the caller checks it first; or, with none, counts a miss and,
    /// with a limit, reserves a connect slot if the key is below it.
    pub fn take(
        &mut self,
        hash: u64,
        key: &[u8],
        now: impl FnOnce(u64) -> u64,
        check: impl FnOnce(&Conn) -> bool,
        closes: &mut CloseList,
    ) -> Took {
        let limit = self.shard.limit;
        if limit == 0 && self.find(hash, key).is_none() {
            self.st.counters.misses += 1;
            return Took::Miss;
        }
        let e = self.entry(hash, key);
        let was_empty = e.is_empty();
        let now = now(e.earliest());
        let expired = e.expire_closing(now, limit, closes);
        let took = match e.pop() {
            Some(c) => {
                closes.give_back(1);
                e.lend(c, check)
            }
            None if limit != 0 && expired > 0 && e.total() >= limit => Took::Retry,
            None => e.none_idle(limit),
        };
        let now_empty = e.is_empty();
        let st = &mut *self.st;
        st.idle -= expired + usize::from(matches!(took, Took::Conn(..)));
        st.empty += usize::from(!was_empty && now_empty);
        self.sweep_empty();
        took
    }

    /// [`ShardGuard::take`], and at the limit `w` is queued (after the waiters already
    /// there) in the same hold of the lock, so no slot freed meanwhile is missed.
    pub fn take_or_queue(
        &mut self,
        hash: u64,
        key: &[u8],
        now: impl FnOnce(u64) -> u64,
        check: impl FnOnce(&Conn) -> bool,
        w: &crate::cell::Shared<crate::wait::Waiter>,
        closes: &mut CloseList,
    ) -> Took {
        let took = self.take(hash, key, now, check, closes);
        if let Took::AtLimit = took {
            self.enqueue(hash, key, w.clone());
        }
        took
    }
}

/// Release.
impl ShardGuard<'_> {
    /// Release's fast path: stores `conn` if nothing of the key can have expired at
    /// `now(earliest)`, it holds fewer than `max` idle, it is not being drained, nobody waits
    /// and no event loop waits for room; otherwise gives `conn` back untouched (and changes
    /// nothing): the release needs the full path ([`ShardGuard::put`]).
    #[inline]
    pub fn put_fast(
        &mut self,
        hash: u64,
        key: &[u8],
        conn: Conn,
        ret: Return,
        max: usize,
        now: impl FnOnce(u64) -> u64,
    ) -> Result<(), Conn> {
        let limit = self.shard.limit;
        // A key's first connection makes its entry on the full path.
        let Some(e) = self.find(hash, key) else {
            return Err(conn);
        };
        let was_empty = e.is_empty();
        // As `put` decides: a loan of the key comes back (unless drained: the full path), or a
        // connect slot is used, or a fresh connection needs room under the limit.
        let (ok, returns) = match ret {
            Return::Lent {
                key_drains,
                drained,
            } if e.lent > 0 => (!drained && key_drains == e.drains(), true),
            _ => (limit == 0 || e.connecting() > 0 || e.total() < limit, false),
        };
        if !ok
            || e.len() >= max
            || e.waiting() > 0
            || e.blocked()
            || e.earliest() <= now(e.earliest())
        {
            return Err(conn);
        }
        if returns {
            e.lent -= 1;
        } else if e.connecting() > 0 {
            e.rare().connecting -= 1;
        }
        let seq = conn.seq;
        e.push(conn);
        e.count_pooled();
        let st = &mut *self.st;
        st.empty -= usize::from(was_empty);
        st.idle += 1;
        if seq != 0 {
            self.shard.oldest.fetch_min(seq, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Release, the full path. `conn` comes back to its key as `ret` says: a loan of the
    /// key ends, or a reserved connect slot is used, or (neither) it is a fresh connection,
    /// which a key at its limit refuses (closed, counted full, taking no slot). The key's
    /// expired connections are closed. Then `conn` is closed for `close` if given (retired
    /// or expired at its release), or closed (purged) if it was lent before a drain of its
    /// key, or handed to the longest waiter, or closed (full) if the key holds `max` idle,
    /// or stored. `placed`: it holds a place under the cap, given back unless it is stored.
    /// Returns whether it was stored or handed over (`Released::Pooled`).
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        hash: u64,
        key: &[u8],
        conn: Conn,
        ret: Return,
        max: usize,
        now: u64,
        close: Option<CloseReason>,
        placed: bool,
        closes: &mut CloseList,
    ) -> bool {
        let (limit, shard) = (self.shard.limit, self.shard);
        let e = self.entry(hash, key);
        let was_empty = e.is_empty();
        let drained = match ret {
            Return::Lent {
                key_drains,
                drained,
            } if e.lent > 0 => {
                e.lent -= 1;
                drained || key_drains != e.drains()
            }
            _ if e.connecting() > 0 => {
                e.rare().connecting -= 1;
                false
            }
            _ if limit != 0 && e.total() >= limit => {
                e.count_closed(CloseReason::Full, 1);
                closes.give_back(usize::from(placed));
                closes.close(conn, CloseReason::Full);
                return false;
            }
            _ => false,
        };
        // From here `conn` holds a slot of the key (with a limit), freed after its close.
        let expired = e.expire_closing(now, limit, closes);
        let why = match close {
            Some(why) => Some(why),
            None if drained => Some(CloseReason::Purged),
            None if e.waiting() == 0 && e.len() >= max => Some(CloseReason::Full),
            None => None,
        };
        let mut pushed = false;
        match why {
            Some(why) => {
                e.count_closed(why, 1);
                closes.give_back(usize::from(placed));
                closes.close(conn, why);
                if limit != 0 {
                    e.rare().closing += 1;
                    closes.settle(hash);
                }
            }
            None => {
                e.count_pooled();
                if let Some(w) = e.pop_waiter() {
                    // Straight to the longest waiter: lent to it, never idle (its check
                    // counts the hit, or the dead connection: `checked`).
                    e.lent += 1;
                    closes.give_back(usize::from(placed));
                    w.serve(Served::Conn(conn, e.drains()));
                    closes.wake(w);
                } else {
                    if conn.seq != 0 {
                        shard.oldest.fetch_min(conn.seq, Ordering::Relaxed);
                    }
                    e.push(conn);
                    pushed = true;
                    if e.take_blocked() {
                        closes.notify();
                    }
                }
            }
        }
        let now_empty = e.is_empty();
        let st = &mut *self.st;
        st.idle = st.idle + usize::from(pushed) - expired;
        match (was_empty, now_empty) {
            (true, false) => st.empty -= 1,
            (false, true) => st.empty += 1,
            _ => {}
        }
        self.sweep_empty();
        why.is_none()
    }
}
