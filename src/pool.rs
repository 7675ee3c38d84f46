//! The pool core: safe Rust over [`OwnedFd`].
//!
//! # Ownership
//! An fd in the pool is an [`OwnedFd`] inside the table; [`Pool::acquire`] moves it out to
//! the caller and [`Pool::release`] moves it in (or closes it). There is no other
//! copy of an fd number anywhere in the pool, so an fd cannot be handed to two owners or closed
//! twice by construction.
//!
//! # Locking design
//! - The keys are split over [`SHARDS`] shards by key hash. Each shard is one
//!   `parking_lot::Mutex` (wrapped in `crate::lock::Lock`) around a table from key to that
//!   key's idle stack, so calls on different keys rarely meet on a lock, and no call ever
//!   holds two shard locks.
//! - A lock is held only to move [`OwnedFd`]s in and out of the table. No syscall runs under it:
//!   the clock is read before locking, and every fd to close is moved into a local `doomed`
//!   list that is dropped (closed) after the guard is released. `close()` of a TCP socket
//!   costs microseconds and can block (`SO_LINGER`), so it must never stall other callers.
//!   Debug builds check this on every close (`crate::lock::assert_unlocked`).
//! - Each shard publishes its idle count in an atomic written under its lock, so
//!   [`Pool::idle_count`] reads counters without locking (a sum of per-shard snapshots).
//! - Shards are cache-line aligned so two cores working on different shards do not share a
//!   line.

use std::hash::BuildHasher;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hashbrown::hash_table::{Entry, HashTable};

use crate::clock::{Clock, MonotonicClock};
use crate::ffi::sys::Doomed;
use crate::key::{Key, KeyHashBuilder};
use crate::lock::Lock;

/// Number of lock shards (a power of two). 64 keeps contention between unrelated keys rare on
/// machines with tens of cores while costing 8 KiB per pool.
pub const SHARDS: usize = 64;

/// A deadline that never passes.
const NEVER: u64 = u64::MAX;

/// Emptied key entries kept per shard for reuse, so a key that goes empty and comes back
/// (one connection going out and in) costs no allocation. Small ones only: with the
/// smallest tables below, they bound what a pool holds beyond its idle connections
/// (about 100 KiB at most, whatever the past peak).
const SPARES: usize = 2;
const SPARE_KEY_CAPACITY: usize = 128;
const SPARE_STACK_CAPACITY: usize = 16;
/// A shard's table is shrunk once it is less than a quarter full, down to this capacity.
const MIN_TABLE_CAPACITY: usize = 16;

/// Pool limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Idle connections kept per key; a release into a full key closes the fd. At least 1.
    pub max_idle_per_key: usize,
    /// A connection idle this long is never handed out; `None` keeps idle connections forever.
    pub idle_timeout: Option<Duration>,
}

impl Default for Config {
    /// 8 idle connections per key and a 60 s idle timeout.
    fn default() -> Self {
        Config {
            max_idle_per_key: 8,
            idle_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// The configuration cannot make a useful pool (`max_idle_per_key` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidConfig;

impl std::fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("max_idle_per_key must be at least 1")
    }
}

impl std::error::Error for InvalidConfig {}

/// What [`Pool::release`] did with the fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The fd is idle in the pool, which owns it.
    Pooled,
    /// The pool did not keep the fd and has closed it.
    Closed,
}

/// One idle connection.
#[derive(Debug)]
struct Idle {
    fd: OwnedFd,
    /// Clock time at which it expires ([`NEVER`] without an idle timeout).
    deadline: u64,
}

/// The idle connections of one key, most recently released last (reuse is LIFO).
#[derive(Debug)]
struct Stack {
    /// The key's hash, kept so the table can grow without hashing keys again.
    hash: u64,
    key: Vec<u8>,
    idle: Vec<Idle>,
    /// No deadline in `idle` is earlier than this (a lower bound: it may be stale-low after
    /// pops, which only costs a scan that then recomputes it).
    earliest: u64,
}

impl Stack {
    /// Moves every connection expired at `now` into `doomed`; returns how many.
    #[inline]
    fn expire(&mut self, now: u64, doomed: &mut Doomed) -> usize {
        if self.earliest > now {
            return 0;
        }
        self.expire_scan(now, doomed)
    }

    #[cold]
    fn expire_scan(&mut self, now: u64, doomed: &mut Doomed) -> usize {
        let before = self.idle.len();
        let mut earliest = NEVER;
        // Keeps order (LIFO) for the survivors; stacks are short (max_idle_per_key).
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
}

#[derive(Debug, Default)]
struct ShardInner {
    /// One entry per key with idle connections, found by the hash computed once per call.
    keys: HashTable<Stack>,
    idle: usize,
    /// Emptied entries for reuse (see [`SPARES`]).
    spare: Vec<Stack>,
}

/// The entry for a key that has none, reusing a spare allocation when there is one.
fn new_stack(spare: &mut Vec<Stack>, hash: u64, key: &[u8]) -> Stack {
    match spare.pop() {
        Some(mut s) => {
            s.hash = hash;
            s.key.extend_from_slice(key);
            s
        }
        None => Stack {
            hash,
            key: key.to_vec(),
            idle: Vec::new(),
            earliest: NEVER,
        },
    }
}

impl ShardInner {
    /// Takes an entry that was just removed from the table because it emptied: shrinks the
    /// table if it became sparse, and keeps the entry's allocations for the next new key,
    /// within bounds.
    fn recycle(&mut self, mut s: Stack) {
        debug_assert!(s.idle.is_empty());
        self.shrink_if_sparse();
        if self.spare.len() < SPARES
            && s.key.capacity() <= SPARE_KEY_CAPACITY
            && s.idle.capacity() <= SPARE_STACK_CAPACITY
        {
            s.key.clear();
            s.earliest = NEVER;
            self.spare.push(s);
        }
    }

    /// hashbrown tables never shrink by themselves: without this, memory would follow the
    /// peak number of keys, not the keys that hold idle connections now. Shrinking at a
    /// quarter to half leaves room for the table to double before it grows again.
    fn shrink_if_sparse(&mut self) {
        let (len, cap) = (self.keys.len(), self.keys.capacity());
        if cap > MIN_TABLE_CAPACITY && len < cap / 4 {
            self.keys.shrink_to(len * 2, |s| s.hash);
        }
    }
}

#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    inner: Lock<ShardInner>,
    /// Mirror of `inner.idle`, written under the lock, read without it.
    idle: AtomicUsize,
}

impl Shard {
    fn publish(&self, inner: &ShardInner) {
        self.idle.store(inner.idle, Ordering::Relaxed);
    }
}

/// A pool of idle connections (socket fds) keyed by byte strings. `Sync`: share it by
/// reference between threads.
#[derive(Debug)]
pub struct Pool<C: Clock = MonotonicClock> {
    shards: Box<[Shard]>,
    hasher: KeyHashBuilder,
    max_idle_per_key: usize,
    /// Idle timeout in clock ns; [`NEVER`] for none.
    idle_timeout_ns: u64,
    clock: C,
    /// `clock.lag_ns()`, read once.
    lag_ns: u64,
}

impl Pool<MonotonicClock> {
    /// A pool on the system's monotonic clock: the coarse one, unless the idle timeout is
    /// short enough for its tick to matter (see [`MonotonicClock::for_timeout`]).
    pub fn new(config: Config) -> Result<Self, InvalidConfig> {
        let clock = MonotonicClock::for_timeout(timeout_ns(config.idle_timeout));
        Pool::with_clock(config, clock)
    }
}

/// An idle timeout in nanoseconds; [`NEVER`] for none (zero means none too).
fn timeout_ns(timeout: Option<Duration>) -> u64 {
    match timeout {
        Some(d) if !d.is_zero() => u64::try_from(d.as_nanos()).unwrap_or(NEVER),
        _ => NEVER,
    }
}

impl<C: Clock> Pool<C> {
    /// A pool that reads time from `clock` (tests inject a [`crate::ManualClock`]).
    pub fn with_clock(config: Config, clock: C) -> Result<Self, InvalidConfig> {
        if config.max_idle_per_key == 0 {
            return Err(InvalidConfig);
        }
        let hasher = KeyHashBuilder::new();
        let shards = (0..SHARDS)
            .map(|_| Shard {
                inner: Lock::new(ShardInner::default()),
                idle: AtomicUsize::new(0),
            })
            .collect();
        let idle_timeout_ns = timeout_ns(config.idle_timeout);
        Ok(Pool {
            shards,
            hasher,
            max_idle_per_key: config.max_idle_per_key,
            idle_timeout_ns,
            lag_ns: clock.lag_ns(),
            clock,
        })
    }

    /// The key's hash (computed once per call) and its shard.
    fn shard(&self, key: &[u8]) -> (u64, &Shard) {
        let h = self.hasher.hash_one(key);
        // Middle bits: hashbrown uses the low bits and the top 7 within each shard's table.
        (h, &self.shards[(h >> 32) as usize & (SHARDS - 1)])
    }

    /// The clock, read only when something can expire. Returns (reading, the latest the real
    /// time may be): deadlines are set from the first and compared with the second, so a
    /// coarse clock makes connections expire up to one tick early, never late.
    fn now(&self) -> (u64, u64) {
        if self.idle_timeout_ns == NEVER {
            (0, 0)
        } else {
            let t = self.clock.now_ns();
            (t, t.saturating_add(self.lag_ns))
        }
    }

    /// Takes the most recently released live connection of `key`, now owned by the caller.
    /// The key's expired connections are closed first.
    pub fn acquire(&self, key: Key<'_>) -> Option<OwnedFd> {
        let key = key.as_bytes();
        let (_, now) = self.now();
        let (hash, shard) = self.shard(key);
        let mut doomed = Doomed::default();
        let got = {
            let mut guard = shard.inner.lock();
            let inner = &mut *guard;
            let Ok(mut entry) = inner.keys.find_entry(hash, |s| s.key == key) else {
                return None;
            };
            let stack = entry.get_mut();
            let expired = stack.expire(now, &mut doomed);
            let got = stack.idle.pop().map(|c| c.fd);
            if stack.idle.is_empty() {
                let (emptied, _) = entry.remove();
                inner.recycle(emptied);
            }
            inner.idle -= expired + usize::from(got.is_some());
            shard.publish(inner);
            got
        };
        drop(doomed); // closes, outside the lock
        got
    }

    /// Gives `fd` to the pool as an idle connection of `key`. The pool owns it either way:
    /// it is kept ([`Released::Pooled`]) or closed ([`Released::Closed`]) when the key is full.
    pub fn release(&self, key: Key<'_>, fd: OwnedFd) -> Released {
        let key = key.as_bytes();
        let (reading, now) = self.now();
        let deadline = if self.idle_timeout_ns == NEVER {
            NEVER
        } else {
            reading.saturating_add(self.idle_timeout_ns)
        };
        let (hash, shard) = self.shard(key);
        let mut doomed = Doomed::default();
        let result = {
            let mut guard = shard.inner.lock();
            let inner = &mut *guard;
            let stack = match inner.keys.entry(hash, |s| s.key == key, |s| s.hash) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => v.insert(new_stack(&mut inner.spare, hash, key)).into_mut(),
            };
            let expired = stack.expire(now, &mut doomed);
            let result = if stack.idle.len() >= self.max_idle_per_key {
                doomed.push(fd);
                Released::Closed
            } else {
                stack.idle.push(Idle { fd, deadline });
                stack.earliest = stack.earliest.min(deadline);
                Released::Pooled
            };
            inner.idle = inner.idle + usize::from(result == Released::Pooled) - expired;
            shard.publish(inner);
            result
        };
        drop(doomed);
        result
    }

    /// Idle connections held, over all keys, expired ones not yet closed included (call
    /// [`Pool::prune`] first to drop those). Lock-free; under concurrent calls it is a sum
    /// of per-shard snapshots.
    pub fn idle_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.idle.load(Ordering::Relaxed))
            .sum()
    }

    /// Idle connections held for `key`. Like every call on a key, it first closes the key's
    /// expired connections, so they are not counted.
    pub fn idle_count_key(&self, key: Key<'_>) -> usize {
        let key = key.as_bytes();
        let (_, now) = self.now();
        let (hash, shard) = self.shard(key);
        let mut doomed = Doomed::default();
        let mut guard = shard.inner.lock();
        let inner = &mut *guard;
        let Ok(mut entry) = inner.keys.find_entry(hash, |s| s.key == key) else {
            return 0;
        };
        let expired = entry.get_mut().expire(now, &mut doomed);
        let n = entry.get().idle.len();
        if n == 0 {
            let (emptied, _) = entry.remove();
            inner.recycle(emptied);
        }
        inner.idle -= expired;
        shard.publish(inner);
        drop(guard);
        n // dropping `doomed` closes, outside the lock
    }

    /// Closes every idle connection of `key`, or of every key for `None`; returns how many.
    pub fn purge(&self, key: Option<Key<'_>>) -> usize {
        let Some(key) = key else {
            return self.shards.iter().map(|s| self.purge_shard(s)).sum();
        };
        let key = key.as_bytes();
        let (hash, shard) = self.shard(key);
        let mut doomed = Doomed::default();
        {
            let mut guard = shard.inner.lock();
            let inner = &mut *guard;
            let Ok(entry) = inner.keys.find_entry(hash, |s| s.key == key) else {
                return 0;
            };
            let (mut stack, _) = entry.remove();
            doomed.extend(stack.idle.drain(..).map(|c| c.fd));
            inner.recycle(stack);
            inner.idle -= doomed.len();
            shard.publish(inner);
        }
        doomed.len() // dropping `doomed` closes, outside the lock
    }

    fn purge_shard(&self, shard: &Shard) -> usize {
        let keys = {
            let mut inner = shard.inner.lock();
            let keys = std::mem::take(&mut inner.keys);
            inner.idle = 0;
            shard.publish(&inner);
            keys
        };
        let mut doomed = Doomed::default();
        doomed.extend(keys.into_iter().flat_map(|s| s.idle).map(|c| c.fd));
        doomed.len()
    }

    /// Closes every expired idle connection now, over all keys; returns how many.
    pub fn prune(&self) -> usize {
        if self.idle_timeout_ns == NEVER {
            return 0;
        }
        let (_, now) = self.now();
        let mut total = 0;
        let mut doomed = Doomed::default();
        for shard in self.shards.iter() {
            {
                let mut guard = shard.inner.lock();
                let inner = &mut *guard;
                let mut expired = 0;
                inner.keys.retain(|stack| {
                    expired += stack.expire(now, &mut doomed);
                    !stack.idle.is_empty()
                });
                inner.shrink_if_sparse();
                inner.idle -= expired;
                shard.publish(inner);
                total += expired;
            }
            drop(std::mem::take(&mut doomed)); // closes, outside the lock
        }
        total
    }
}

impl<C: Clock> Drop for Pool<C> {
    /// Closes every idle connection (through the same path as purge).
    fn drop(&mut self) {
        self.purge(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    impl<C: Clock> Pool<C> {
        /// (key entries, table capacity), over all shards.
        fn tables(&self) -> (usize, usize) {
            self.shards.iter().fold((0, 0), |(n, c), s| {
                let inner = s.inner.lock();
                (n + inner.keys.len(), c + inner.keys.capacity())
            })
        }
    }

    #[test]
    fn a_key_without_idle_connections_has_no_entry() {
        let pool = Pool::new(Config::default()).unwrap();
        let keys: Vec<String> = (0..100).map(|i| format!("10.0.0.{i}:80")).collect();
        let mut peers = Vec::new();
        for k in &keys {
            let (a, b) = UnixStream::pair().unwrap();
            pool.release(Key::try_from(k.as_str()).unwrap(), a.into());
            peers.push(b);
        }
        assert_eq!(pool.tables().0, 100);
        for k in &keys[..50] {
            assert!(pool.acquire(Key::try_from(k.as_str()).unwrap()).is_some());
        }
        assert_eq!(pool.tables().0, 50, "acquire removes the emptied entries");
        assert_eq!(
            pool.purge(Some(Key::try_from(keys[60].as_str()).unwrap())),
            1
        );
        assert_eq!(pool.tables().0, 49, "purge removes the entry");
        assert_eq!(pool.idle_count_key(Key::try_from("none:1").unwrap()), 0);
        assert_eq!(pool.tables().0, 49, "counting a key does not create it");
    }

    /// Memory follows the keys that hold idle connections, not the past peak.
    #[test]
    fn tables_shrink_when_keys_go_away() {
        let mut inner = ShardInner::default();
        let peak = 5_000;
        for i in 0..peak {
            let key = format!("backend-{i}:443");
            let hash = KeyHashBuilder::new().hash_one(key.as_bytes());
            let stack = new_stack(&mut inner.spare, hash, key.as_bytes());
            inner.keys.insert_unique(hash, stack, |s| s.hash);
        }
        assert!(inner.keys.capacity() >= peak);
        while let Some(hash) = inner.keys.iter().next().map(|s| s.hash) {
            let entry = inner.keys.find_entry(hash, |s| s.hash == hash).unwrap();
            let (emptied, _) = entry.remove();
            inner.recycle(emptied);
        }
        assert!(
            inner.keys.capacity() <= MIN_TABLE_CAPACITY * 2,
            "capacity {} after the peak of {peak}",
            inner.keys.capacity()
        );
        assert!(inner.spare.len() <= SPARES);
    }
}
