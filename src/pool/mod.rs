//! The pool core: safe Rust over [`OwnedFd`].
//!
//! # Ownership
//! An idle connection is a `Conn` (its [`OwnedFd`] and the caller's state) inside a shard's
//! table; [`Pool::acquire`] moves it out to the caller and [`Pool::release`] moves it in (or
//! closes it). There is no other copy of an fd in the pool, so an fd cannot be handed to two
//! owners or closed twice by construction. The process-wide table in `crate::fd_table`
//! records, per fd number, whether a pool owns it (to refuse a double release and to close a
//! fork child's copies) and the history of fds lent to callers (for lifetime and uses).
//!
//! # Locking design (the one place it is written down)
//! - The keys are split over [`SHARDS`] shards by a keyed hash. Each shard is one lock
//!   (`crate::cell::Lock`, a futex lock with no process-wide state) around a table from key
//!   to that key's idle connections, so calls on different keys rarely meet on a lock, and
//!   no call ever holds two shard locks (but [`Pool::stats`], below).
//! - A lock is held only to move connections in and out of the table, through a
//!   `ShardGuard`, which keeps the shard's counts, counters and published gauges in step
//!   with every change. No blocking system call runs under a shard lock: the clock is read
//!   before locking, acquire's liveness check (`recv`) runs on a connection already taken
//!   out of the table, and every connection to close goes to a `CloseList` made before the
//!   guard, so it is closed after the guard is released. Prune and the watcher's reap
//!   check a key's connections taken out of the table too (see [`Pool::prune`]).
//!   `close()` of a TCP socket can block (`SO_LINGER`), so it must never
//!   stall other callers; debug builds assert on every close that the closing thread holds
//!   no pool lock.
//! - Each shard publishes its idle count in an atomic written under its lock, so
//!   [`Pool::idle_count`] reads counters without locking (a sum of per-shard snapshots).
//! - The global cap (`max_idle_total`) is an atomic count of idle connections plus releases
//!   in progress: a release reserves its place (compare-and-swap below the cap) before it
//!   locks its shard, evicting the least recently released connection first if the pool is
//!   full, so the cap is never exceeded even for an instant. Eviction locks one shard at a
//!   time, picking the shard by an atomic lower bound of its oldest sequence number. A close
//!   list gives the places of the connections it closes back when it is dropped.
//! - The fd table and the per-generation state pointer are lock-free (`crate::cell`),
//!   because a fork() child must use them while parent-thread locks may be held forever; a
//!   child replaces the whole per-generation state (shards, counters, watcher) with a fresh
//!   one and never touches the old one (`fork.rs`).
//! - Counters are plain integers under the shard lock; the few events that happen outside
//!   any lock (a failed liveness check, a release closed before it reached a shard) use
//!   atomics. [`Pool::stats`] is the one call that holds several shard locks: all of them,
//!   in shard order, for a consistent snapshot (no other call holds two, so the order cannot
//!   deadlock).
//! - Shards are cache-line aligned so two cores working on different shards do not share a
//!   line; so are the fd table's slots of neighbouring fd numbers (`crate::fd_table`).
//! - The epoll sets of the harvest check and the idle watcher (`crate::watch_set`) are
//!   changed under no pool lock: each connection is registered before it is stored, and the
//!   sets' reports race with acquires and releases through per-fd flags in the fd table,
//!   changed by compare-and-swap (`crate::fd_table::muted` has the protocol). One harvest
//!   runs at a time (its own lock, never held with a shard lock).

mod acquire;
mod cap;
mod fork;
mod generation;
mod handle;
mod lean;
mod limits;
mod maintain;
mod reaper;
mod release;

pub use acquire::{Acquired, Outcome};
pub use handle::KeyHandle;
pub use limits::Discarded;

use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::cell::{Registry, SwapCell};
use crate::clock::{Clock, MonotonicClock};
use crate::config::Config;
use crate::conn::Conn;
use crate::error::Error;
use crate::key::KeyHasher;
use crate::process;
use crate::shard::{CloseList, Shard};

use crate::sys::{self, Peek};

use generation::{nanos, Generation, Hooks, Limits};

pub use crate::shard::SHARDS;

/// How close to a deadline a coarse clock reading is checked against the precise clock
/// (see [`Pool::exact_near`]): far more than the coarse clock was ever seen to lag.
const LATE_SLACK_NS: u64 = 250_000_000;

/// What [`Pool::release`] did with the fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The fd is idle in the pool, which owns it.
    Pooled,
    /// The pool did not keep the fd and has closed it (key full, lifetime or uses reached,
    /// zero keep-alive hint).
    Closed,
    /// The pool already owned this fd number (it is idle in this or another pool): a double
    /// release. Nothing was changed and nothing was closed; the `OwnedFd` passed in was
    /// forgotten, since it was a second claim on an fd the pool owns.
    AlreadyPooled,
}

/// What [`Pool::acquire_info`] knows about the connection it hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// How long it was idle in the pool.
    pub idle: Duration,
    /// How long ago it was first released to the pool.
    pub age: Duration,
    /// Requests it has served (1 after its first release).
    pub uses: u32,
}

/// What a pool is made of, before it is assembled.
type Parts = (Limits, Hooks, Generation, u32, KeyHasher);

/// Pool ids tag the records of lent fds (see `crate::fd_table`); 0 is never used.
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A pool of idle connections (socket fds) keyed by byte strings. `Sync`: share it by
/// reference between threads.
#[derive(Debug)]
pub struct Pool<C: Clock = MonotonicClock> {
    limits: Limits,
    /// Which operations may take the lean path.
    lean: lean::Lean,
    hooks: Hooks,
    hasher: KeyHasher,
    clock: C,
    /// `clock.lag_ns()`, read once.
    lag_ns: u64,
    id: u32,
    current: SwapCell<Generation>,
    /// In a fork child: generation + 1 of the thread replacing `current`; 0 when none.
    resetting: AtomicU64,
    /// This pool, for the reaper thread (empty unless made by `Pool::new_shared`).
    me: Weak<Self>,
    /// Key handles, kept until the pool is dropped (across fork() too).
    handles: Registry<KeyHandle>,
}

impl std::fmt::Debug for SwapCell<Generation> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// The cheapest system clock that is exact enough for the configuration's timeouts.
fn system_clock(config: &Config) -> MonotonicClock {
    MonotonicClock::for_timeout(nanos(config.idle_timeout).min(nanos(config.max_lifetime)))
}

impl Pool<MonotonicClock> {
    /// A pool on the system's monotonic clock: the coarse one, unless the shortest timeout is
    /// short enough for its tick to matter (see [`MonotonicClock::for_timeout`]).
    pub fn new(config: Config) -> Result<Self, Error> {
        let clock = system_clock(&config);
        Pool::with_clock(config, clock)
    }

    /// A shared pool on the system's monotonic clock; the only kind that can run a reaper
    /// thread (`Config::reaper_thread`), which holds a weak reference to it.
    pub fn new_shared(config: Config) -> Result<Arc<Self>, Error> {
        let clock = system_clock(&config);
        let parts = Self::parts(&config)?;
        let pool = Arc::new_cyclic(|me| Pool::assemble(parts, clock, me.clone()));
        if pool.limits.reaper_thread {
            pool.start_reaper(pool.state())?;
        }
        Ok(pool)
    }
}

impl<C: Clock> Pool<C> {
    /// A pool that reads time from `clock` (tests inject a [`crate::ManualClock`]).
    pub fn with_clock(config: Config, clock: C) -> Result<Self, Error> {
        if config.reaper_thread {
            return Err(Error::InvalidConfig("reaper_thread needs Pool::new_shared"));
        }
        let parts = Self::parts(&config)?;
        Ok(Self::assemble(parts, clock, Weak::new()))
    }

    /// The limits, the callbacks, the first generation and the pool id. With thread
    /// cancellation disabled: the hash seed's getrandom() is a cancellation point.
    fn parts(config: &Config) -> Result<Parts, Error> {
        sys::without_cancellation(|| Self::make_parts(config))
    }

    fn make_parts(config: &Config) -> Result<Parts, Error> {
        config.validate()?;
        process::register();
        let limits = Limits::new(config);
        let hooks = Hooks {
            on_close: config.on_close.clone(),
            check: config.check.clone(),
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed).max(1);
        let first = Generation::new(process::generation(), &limits, &hooks, id);
        if (limits.watch && first.watcher.is_none()) || (limits.harvest && first.harvest.is_none())
        {
            return Err(first.no_watcher);
        }
        Ok((limits, hooks, first, id, KeyHasher::new()))
    }

    fn assemble((limits, hooks, first, id, hasher): Parts, clock: C, me: Weak<Self>) -> Self {
        Pool {
            lean: lean::Lean::new(&limits),
            limits,
            hooks,
            hasher,
            lag_ns: clock.lag_ns(),
            clock,
            id,
            current: SwapCell::new(first),
            resetting: AtomicU64::new(0),
            me,
            handles: Registry::new(handle::HANDLE_BUCKETS),
        }
    }

    /// The current generation; in a new process, on the first call, a fresh empty one.
    #[inline]
    fn state(&self) -> &Generation {
        let st = self.current.get();
        if process::is_current(st.process) {
            st
        } else {
            self.after_fork()
        }
    }

    /// The shard of the key with hash `h`.
    #[inline]
    fn shard_of<'g>(&self, st: &'g Generation, h: u64) -> &'g Shard {
        &st.shards[crate::shard::shard_index(h)]
    }

    /// A list of connections to close after unlocking (unwatched first, cap places given
    /// back, slots freed after).
    #[inline]
    fn close_list<'g>(&self, st: &'g Generation) -> CloseList<'g> {
        CloseList::new(&st.closing, &st.shards)
    }

    /// The mark of a loan made now from a key whose drain count is `key_drains`: the
    /// process generation (a fork child's pool knows nothing of its parent's loans) and the
    /// drain counts (a connection lent before a drain is closed at its release).
    #[inline]
    fn mark(&self, st: &Generation, key_drains: u16) -> u64 {
        let pool_drains = st.drains.load(Ordering::Relaxed) as u16;
        (st.process & 0xffff_ffff) << 32 | u64::from(pool_drains) << 16 | u64::from(key_drains)
    }

    /// Whether an idle connection is healthy: the caller's check, or one non-blocking
    /// `recv(MSG_PEEK)` (nothing to read: healthy). Never under a lock.
    fn healthy(&self, c: &Conn) -> bool {
        if self.limits.harvest && !crate::fd_table::is_suspect_or_reported(c.fd.as_raw_fd()) {
            return true; // neither the harvest nor the watcher found anything on it
        }
        match &self.hooks.check {
            // C code: a cancellation there would unwind through these frames.
            Some(check) => sys::without_cancellation(|| check(c.fd.as_fd(), c.ctx)),
            None => sys::peek(c.fd.as_fd()) == Peek::Empty,
        }
    }

    /// Returns (reading, the latest the real time may be): deadlines are set from the first
    /// and compared with the second, so a coarse clock makes connections expire up to one
    /// tick early, never late (near a deadline, see [`Pool::exact_near`]).
    #[inline]
    fn now(&self) -> (u64, u64) {
        let t = self.clock.now_ns();
        (t, t.saturating_add(self.lag_ns))
    }

    /// `now` from [`Pool::now`], made exact when a deadline as early as `earliest` is near.
    /// The coarse clock is normally at most one tick (its resolution) behind, but on a VM
    /// whose timekeeping vCPU is descheduled it is updated late (see docs/design.md); the
    /// precise clock counts from the hardware counter and is not. Reading it only within
    /// [`LATE_SLACK_NS`] of a deadline keeps it off the hot path.
    #[inline(always)]
    fn exact_near(&self, now: u64, earliest: u64) -> u64 {
        if self.lag_ns == 0 || earliest > now.saturating_add(LATE_SLACK_NS) {
            now
        } else {
            self.exact(now)
        }
    }

    /// Out of line, so that the closures made of [`Pool::exact_near`] stay small enough
    /// to be inlined into the hot paths.
    #[cold]
    #[inline(never)]
    fn exact(&self, now: u64) -> u64 {
        now.max(self.clock.precise_now_ns())
    }
}

impl<C: Clock> Drop for Pool<C> {
    /// Stops the reaper thread, then closes every idle connection (through the same path as
    /// purge; again if a close callback released more into the pool meanwhile).
    fn drop(&mut self) {
        self.stop_reaper();
        while self.purge(None) > 0 {}
    }
}

/// Test feature `panic-inject`: a panic inside a shard lock for one magic key, to prove that
/// the C boundary stops it, the lock is released and the pool stays usable.
#[inline(always)]
fn inject_panic(key: &[u8]) {
    #[cfg(feature = "panic-inject")]
    if key == b"connpool-test-panic" {
        panic!("injected panic (test feature panic-inject)");
    }
    let _ = key;
}

/// Clears an fd's entry in the fd table when dropped, which only a panic does: the normal
/// path disarms it with `std::mem::forget` (no panic check per call).
struct ForgetOnUnwind(std::os::fd::RawFd);

impl Drop for ForgetOnUnwind {
    fn drop(&mut self) {
        crate::fd_table::forget(self.0);
    }
}

#[cfg(test)]
mod interleavings;
#[cfg(test)]
mod tests;
