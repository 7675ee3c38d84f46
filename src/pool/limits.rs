//! A key's connection limit and the calls around it: discard, drain, shutdown, per-key
//! figures.

use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::{Generation, Pool};
use crate::clock::Clock;
use crate::conn::Conn;
use crate::fd_table;
use crate::key::Key;
use crate::stats::Stats;

/// What [`Pool::discard`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discarded {
    /// The connection was closed (the close callback called first) and its slot freed.
    Closed,
    /// A pool owns this fd number (it is idle there): nothing was done, nothing closed.
    AlreadyPooled,
}

impl<C: Clock> Pool<C> {
    /// The caller ends a connection of `key` it holds (an error, "Connection: close", a
    /// protocol failure): the close callback gets `ctx` (reason `Discarded`), the fd is
    /// closed, and the connection slot it held (its loan's, or a reserved connect slot of
    /// `key`) is freed after, for the longest waiter. Counted in `Stats::discarded`.
    pub fn discard(&self, key: Key<'_>, fd: OwnedFd, ctx: usize) -> Discarded {
        let st = self.state();
        let hash = self.hasher.hash_key(key.as_bytes());
        self.discard_in(st, hash, key.as_bytes(), fd, ctx)
    }

    pub(super) fn discard_in(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        fd: OwnedFd,
        ctx: usize,
    ) -> Discarded {
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let Ok(loan) = fd_table::end_loan(raw, self.id) else {
            let _ = fd.into_raw_fd(); // the pool's fd: not ours to close
            return Discarded::AlreadyPooled;
        };
        let loan = loan.filter(|l| l.mark >> 32 == st.process & 0xffff_ffff);
        let lent_here = loan.is_some_and(|l| l.key == hash);
        let mut closes = self.close_list(st);
        if let Some(l) = loan.filter(|l| l.key != hash) {
            // Lent by another key (a caller's mix-up): that loan ends there.
            self.shard_of(st, l.key).lock().end_loan(l.key, &mut closes);
        }
        let conn = Conn {
            fd,
            ctx,
            deadline: 0,
            released: 0,
            born: 0,
            uses: 0,
            seq: 0,
        };
        let mut guard = self.shard_of(st, hash).lock();
        guard.discard(hash, key, conn, lent_here, &mut closes);
        Discarded::Closed
        // the guard unlocks, then the close list closes and frees the slot
    }

    /// A connect slot of `key` is given back unused (the caller's connect failed): the
    /// longest waiter gets it. False if the key had none reserved.
    pub fn discard_slot(&self, key: Key<'_>) -> bool {
        let st = self.state();
        let hash = self.hasher.hash_key(key.as_bytes());
        self.return_slot_in(st, hash, key.as_bytes())
    }

    pub(super) fn return_slot_in(&self, st: &Generation, hash: u64, key: &[u8]) -> bool {
        let mut closes = self.close_list(st);
        let mut guard = self.shard_of(st, hash).lock();
        guard.return_slot(hash, key, &mut closes)
    }

    /// As [`Pool::purge`] (the idle connections of `key`, or of every key for `None`, are
    /// closed, counted purged; returns how many), and the connections of that key lent now
    /// are closed at their release (`Released::Closed`, counted purged) instead of kept: a
    /// backend that was removed or restarted gets no old connection back.
    pub fn drain(&self, key: Option<Key<'_>>) -> usize {
        let st = self.state();
        match key {
            None => {
                st.drains.fetch_add(1, Ordering::AcqRel);
                st.shards
                    .iter()
                    .map(|shard| {
                        let mut closes = self.close_list(st);
                        let mut guard = shard.lock();
                        guard.purge_all(true, &mut closes)
                    })
                    .sum()
            }
            Some(key) => {
                let key = key.as_bytes();
                let hash = self.hasher.hash_key(key);
                let mut closes = self.close_list(st);
                let mut guard = self.shard_of(st, hash).lock();
                guard.drain_key(hash, key, &mut closes)
            }
        }
    }

    /// Wakes every thread waiting in [`Pool::acquire_wait`] (they get
    /// `Outcome::Cancelled`), and makes every later wait end at once the same way: call it
    /// before stopping the threads that may wait, then drop the pool. Returns how many
    /// waiters it woke.
    pub fn shutdown(&self) -> usize {
        let st = self.state();
        // Set before the shards are visited, and read by waiters under their shard's lock:
        // a waiter either sees it or is queued in time to be woken here.
        st.shutdown.store(true, Ordering::Release);
        st.shards
            .iter()
            .map(|shard| {
                let mut closes = self.close_list(st);
                let mut guard = shard.lock();
                guard.cancel_waiters(&mut closes)
            })
            .sum()
    }

    /// The figures of one key: its counters (kept while the key has an entry: from its
    /// first connection, connect slot or handle until it holds nothing and is swept) and its
    /// gauges. Exact once calls have returned.
    pub fn stats_key(&self, key: Key<'_>) -> Stats {
        let st = self.state();
        let key = key.as_bytes();
        let hash = self.hasher.hash_key(key);
        let mut guard = self.shard_of(st, hash).lock();
        guard.key_stats(hash, key).unwrap_or_default()
    }
}
