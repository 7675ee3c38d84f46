//! Maintenance: counts, stats, purge, prune, and the idle watcher's reap.

use std::os::fd::{AsRawFd, RawFd};

use super::{Generation, Pool};
use crate::clock::Clock;
use crate::error::Error;
use crate::key::Key;
use crate::shard::Shard;
use crate::stats::Stats;
use crate::watch::{Ready, Watcher};

/// At most this many batches of watcher events per [`Pool::reap`] (64 events each): a reap
/// stays bounded even while backends close connections faster than it closes them.
const MAX_REAP_BATCHES: usize = 1024;

impl<C: Clock> Pool<C> {
    /// Idle connections held, over all keys, expired ones not yet closed included (call
    /// [`Pool::prune`] first to drop those). Lock-free; under concurrent calls it is a sum
    /// of per-shard snapshots taken at slightly different instants (use [`Pool::stats`] for
    /// a consistent one), never above the global cap.
    pub fn idle_count(&self) -> usize {
        let sum = self.state().shards.iter().map(|s| s.idle_gauge()).sum();
        match self.limits.max_idle_total {
            0 => sum,
            // A sum above the cap can only come from reading shards at different instants.
            cap => sum.min(cap),
        }
    }

    /// Idle connections held for `key` that have not expired. Changes nothing (expired
    /// connections are closed by the next acquire, release or prune).
    pub fn idle_count_key(&self, key: Key<'_>) -> usize {
        let key = key.as_bytes();
        let st = self.state();
        let (_, now) = self.now();
        let hash = self.hasher.hash_key(key);
        let shard = self.shard_of(st, hash);
        let mut guard = shard.lock();
        guard.unexpired(hash, key, |earliest| self.exact_near(now, earliest))
    }

    /// Closes every idle connection of `key`, or of every key for `None`; returns how many.
    pub fn purge(&self, key: Option<Key<'_>>) -> usize {
        let st = self.state();
        match key {
            None => st
                .shards
                .iter()
                .map(|shard| {
                    let mut closes = self.close_list(st);
                    let mut guard = shard.lock();
                    guard.purge_all(false, &mut closes)
                })
                .sum(),
            Some(key) => {
                let key = key.as_bytes();
                let hash = self.hasher.hash_key(key);
                let shard = self.shard_of(st, hash);
                let mut closes = self.close_list(st);
                let mut guard = shard.lock();
                guard.purge_key(hash, key, &mut closes)
            }
        }
    }

    /// Closes every expired idle connection now, over all keys, and, with the liveness check
    /// on, every idle connection that fails it; returns how many were closed.
    ///
    /// The check runs outside the lock, one key at a time: the key's idle connections are
    /// taken out, checked, and the healthy ones put back where their release time places
    /// them (a connection out for its check is missed by a concurrent acquire of its key,
    /// for the time of a few checks; a purge meanwhile still closes it when it comes back).
    pub fn prune(&self) -> usize {
        let st = self.state();
        // Maintenance, not the hot path: judged by the exact clock (see `Pool::exact_near`).
        let now = self.exact_near(self.now().1, 0);
        self.harvest_now(st);
        let mut total = 0;
        for shard in st.shards.iter() {
            let hashes = {
                let mut closes = self.close_list(st);
                let mut guard = shard.lock();
                total += guard.expire_all(now, &mut closes).0;
                if self.limits.check_liveness {
                    guard.hashes()
                } else {
                    Vec::new()
                }
            };
            for hash in hashes {
                total += self.check_key(st, shard, hash, now);
            }
        }
        total
    }

    /// With the harvest check: harvests now, so that the checks below (which check only the
    /// connections it flags) judge by what is readable now.
    fn harvest_now(&self, st: &Generation) {
        if let Some(h) = st.harvest() {
            h.harvest_if_due(crate::sys::precise_now_ns(), true);
        }
    }

    /// Checks the idle connections of the key(s) with `hash` outside the lock, closing
    /// those that fail (and any that expired or whose key was purged meanwhile); returns
    /// how many it closed. With the watcher, a connection a reap was told of while this
    /// check had it out is re-armed as it is put back, so that the next reap looks at it.
    pub(super) fn check_key(&self, st: &Generation, shard: &Shard, hash: u64, now: u64) -> usize {
        let outs = shard.lock().check_out(hash);
        if outs.is_empty() {
            return 0;
        }
        let watcher = st.watcher();
        let taken: Vec<RawFd> = match watcher {
            Some(w) => {
                let taken: Vec<RawFd> = (outs.iter())
                    .flat_map(|o| o.conns.iter().map(|c| c.fd.as_raw_fd()))
                    .collect();
                w.found(&taken);
                taken
            }
            None => Vec::new(),
        };
        let verdicts: Vec<Vec<bool>> = outs
            .iter()
            .map(|o| o.conns.iter().map(|c| self.healthy(c)).collect())
            .collect();
        let mut kept = Vec::new();
        let closed = {
            let mut closes = self.close_list(st);
            let mut guard = shard.lock();
            let limits = (self.limits.max_idle_per_key, now);
            outs.into_iter()
                .zip(&verdicts)
                .map(|(o, ok)| guard.check_in(o, ok, limits, &mut kept, &mut closes))
                .sum()
        }; // the guard unlocks, then the close list closes
        if let Some(w) = watcher {
            w.rearm_missed(&taken, &kept);
        }
        closed
    }

    /// The pool's gauges and counters: a consistent snapshot, exact also while other threads
    /// call the pool. It holds every shard lock at once (taken in shard order, and no other
    /// call holds two, so this cannot deadlock) for the time it takes to add them up.
    pub fn stats(&self) -> Stats {
        let st = self.state();
        let mut s = Stats::default();
        let guards: Vec<_> = st.shards.iter().map(|shard| shard.lock()).collect();
        for g in &guards {
            g.add_to(&mut s);
        }
        drop(guards);
        s
    }

    /// The idle watcher's fd (an epoll fd owned by the pool): readable when an idle
    /// connection has an event or the earliest idle deadline has passed.
    /// [`Error::NoWatcher`] without `Config::watch`; [`Error::Os`] if it could not be made
    /// (in a fork child out of fds).
    pub fn watch_fd(&self) -> Result<RawFd, Error> {
        let st = self.state();
        st.watcher().map(Watcher::fd).ok_or(st.no_watcher)
    }

    /// Never blocks: checks the idle connections of every key the watcher reported (an
    /// idle fd of it had a hang-up, an error or, without a caller's check, input), closing
    /// those that fail (counted dead), and, when the timer fired, closes every expired one
    /// (counted expired); re-arms the watcher. Returns how many were closed; 0 without a
    /// watcher.
    pub fn reap(&self) -> usize {
        let st = self.state();
        let Some(w) = st.watcher() else {
            return 0;
        };
        let mut closed = 0;
        let mut timer = false;
        let now = self.exact_near(self.now().1, 0);
        self.harvest_now(st);
        // One batch at a time: each closed fd leaves the set, so the next batch holds new
        // events. A full batch that closed nothing stops the loop. A reported fd that its
        // key's check does not find (a release registered it and has not stored it yet, or
        // prune or another reap has it out) is re-armed by that release, prune or reap. One
        // whose check passes stays disarmed until its next loan: no event can make the
        // reaper spin.
        for _ in 0..MAX_REAP_BATCHES {
            let (batch, reported, full) = w.ready_batch();
            w.note_missed(&reported);
            let mut progress = 0;
            for ready in batch {
                match ready {
                    Ready::Timer => timer = true,
                    Ready::Notice => {} // consumed: the caller retries its refused acquires
                    Ready::Key { hash } => {
                        let shard = self.shard_of(st, hash);
                        progress += self.check_key(st, shard, hash, now);
                    }
                }
            }
            closed += progress;
            if !full || progress == 0 {
                break;
            }
        }
        if timer {
            w.begin_rescan();
            let (n, next) = self.expire_all(st);
            closed += n;
            w.finish_rescan(next);
        }
        closed
    }

    /// Closes every expired idle connection; returns how many, and the earliest deadline
    /// left (a lower bound, exact for every key that had something to expire). Judged by the
    /// precise clock, the one the watcher's timer fires by: a coarse reading may still be a
    /// tick short of the deadline the timer just reached.
    fn expire_all(&self, st: &Generation) -> (usize, u64) {
        let now = self.clock.precise_now_ns().max(self.now().1);
        let mut total = 0;
        let mut next = crate::conn::NEVER;
        for shard in st.shards.iter() {
            let mut closes = self.close_list(st);
            let mut guard = shard.lock();
            let (n, earliest) = guard.expire_all(now, &mut closes);
            total += n;
            next = next.min(earliest);
        }
        (total, next)
    }
}
