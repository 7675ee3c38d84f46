//! The global cap (`max_idle_total`): places reserved before a release locks its shard,
//! made by evicting the least recently released idle connection when the pool is full.

use std::sync::atomic::Ordering;

use super::{Generation, Pool, SHARDS};
use crate::clock::Clock;
use crate::conn::NEVER;
use crate::shard::Shard;

/// How many times a release at the global cap tries to evict before giving up (it then
/// closes its own connection). Only reached when every counted connection is a release in
/// progress on another thread.
const EVICT_TRIES: usize = 2 * SHARDS;

impl<C: Clock> Pool<C> {
    /// Takes a place below the cap for a release into `key`, evicting the least recently
    /// released idle connection while the pool is full. False if no place could be made,
    /// or if the key is full already (a release into it keeps nothing, so it must not
    /// evict anything).
    pub(super) fn reserve(
        &self,
        st: &Generation,
        shard: &Shard,
        hash: u64,
        key: &[u8],
        now: u64,
    ) -> bool {
        let cap = self.limits.max_idle_total;
        let Some(total) = &st.closing.total else {
            return true; // no cap
        };
        if total.load(Ordering::Acquire) >= cap && self.key_is_full(st, shard, hash, key, now) {
            return false;
        }
        let mut tries = 0;
        loop {
            let cur = total.load(Ordering::Acquire);
            if cur < cap {
                if total
                    .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            tries += 1;
            if tries > EVICT_TRIES {
                return false;
            }
            if !self.evict_one(st) {
                std::thread::yield_now(); // the places are releases in progress elsewhere
            }
        }
    }

    /// Whether `key` already holds `max_idle_per_key` live (unexpired) connections; closes
    /// its expired ones on the way, like every call on a key.
    fn key_is_full(&self, st: &Generation, shard: &Shard, hash: u64, key: &[u8], now: u64) -> bool {
        let mut closes = self.close_list(st);
        let mut guard = shard.lock();
        let n = guard.live_count(hash, key, |e| self.exact_near(now, e), &mut closes);
        n >= self.limits.max_idle_per_key
    }

    /// Closes the least recently released idle connection of the pool. False if none.
    fn evict_one(&self, st: &Generation) -> bool {
        for attempt in 0..EVICT_TRIES {
            let (i, bound) = st
                .shards
                .iter()
                .map(Shard::oldest_bound)
                .enumerate()
                .min_by_key(|&(_, o)| o)
                .unwrap_or((0, NEVER));
            if bound == NEVER {
                return false;
            }
            let mut closes = self.close_list(st);
            let mut guard = st.shards[i].lock();
            // A stale bound is made exact and the shard picked again; the last try takes
            // whatever is oldest there.
            if guard.evict_oldest(bound, attempt + 1 == EVICT_TRIES, &mut closes) {
                return true;
            }
        }
        false
    }
}
