//! The pool core: safe Rust over [`OwnedFd`].
//!
//! # Ownership
//! An idle fd is an [`OwnedFd`] inside a shard's table; [`Pool::acquire`] moves it out to the
//! caller and [`Pool::release`] moves it in (or closes it). There is no other copy of an fd
//! in the pool, so an fd cannot be handed to two owners or closed twice by construction.
//! The process-wide table in `crate::fds` records, per fd number, whether a pool owns it
//! (to refuse a double release and to close a fork child's copies) and the history of fds
//! lent to callers (for lifetime and uses).
//!
//! # Locking design (the one place it is written down)
//! - The keys are split over [`SHARDS`] shards by key hash. Each shard is one
//!   `parking_lot::Mutex` (wrapped in `crate::lock::Lock`) around a table from key to that
//!   key's idle stack, so calls on different keys rarely meet on a lock, and no call ever
//!   holds two shard locks.
//! - A lock is held only to move [`OwnedFd`]s in and out of the table. No blocking syscall
//!   runs under a shard lock: the clock is read before locking, acquire's liveness check (`recv`) runs
//!   on a connection already taken out of the table, and every fd to close is moved into a
//!   local `Doomed` list that is closed after the guard is released. The one syscall under a
//!   lock is prune's non-blocking `recv(MSG_PEEK | MSG_DONTWAIT)`, one key at a time (see
//!   [`Pool::prune`]). `close()` of a TCP socket costs
//!   microseconds and can block (`SO_LINGER`), so it must never stall other callers. Debug
//!   builds check this on every close (`crate::lock::assert_unlocked`).
//! - Each shard publishes its idle count in an atomic written under its lock, so
//!   [`Pool::idle_count`] reads counters without locking (a sum of per-shard snapshots).
//! - The global cap (`max_idle_total`) is an atomic count of idle connections plus releases
//!   in progress: a release reserves its place (compare-and-swap below the cap) before it
//!   locks its shard, evicting the least recently released connection first if the pool is
//!   full, so the cap is never exceeded even for an instant. Eviction locks one shard at a
//!   time, picking the shard by an atomic lower bound of its oldest sequence number.
//! - The fd table and the per-pool state pointer are lock-free (`crate::ffi::cell`), because
//!   a fork() child must use them while parent-thread locks may be held forever.
//! - Counters are plain integers under the shard lock; the few events that happen outside
//!   any lock (a failed liveness check, a retired connection) use atomics. [`Pool::stats`]
//!   is the one call that holds several shard locks: all of them, in shard order, for a
//!   consistent snapshot (no other call holds two, so the order cannot deadlock).
//! - Shards are cache-line aligned so two cores working on different shards do not share a
//!   line.

use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hashbrown::hash_table::Entry;

use crate::clock::{Clock, MonotonicClock};
use crate::config::{Config, InvalidConfig};
use crate::fds::{self, Claim};
use crate::ffi::cell::Current;
use crate::ffi::fork;
use crate::ffi::sys::{self, Doomed};
use crate::key::{key_eq, Key, KeyHashBuilder};
use crate::shard::{new_stack, Idle, Shard, NEVER};
use crate::stats::{AtomicCounters, Stats};
use crate::watch::{Ready, Watcher};

/// Number of lock shards (a power of two). 64 keeps contention between unrelated keys rare on
/// machines with tens of cores while costing 8 KiB per pool.
pub const SHARDS: usize = 64;

/// How many times a release at the global cap tries to evict before giving up (it then
/// closes its own connection). Only reached when every counted connection is a release in
/// progress on another thread.
const EVICT_TRIES: usize = 2 * SHARDS;

/// How close to a deadline a coarse clock reading is checked against the precise clock
/// (see [`Pool::refine`]): far more than the coarse clock was ever seen to lag.
const LATE_SLACK_NS: u64 = 250_000_000;

/// At most this many batches of watcher events per [`Pool::reap`] (64 events each): a reap
/// stays bounded even while backends close connections faster than it closes them.
const MAX_REAP_BATCHES: usize = 1024;

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

/// The limits in clock units, as the hot path reads them.
#[derive(Debug)]
struct Limits {
    max_idle_per_key: usize,
    /// 0: no global cap.
    max_idle_total: usize,
    /// [`NEVER`]: none.
    idle_timeout_ns: u64,
    /// [`NEVER`]: none.
    lifetime_ns: u64,
    /// 0: none.
    max_uses: u32,
    check_liveness: bool,
    /// With `check_liveness`: connections idle for less are not checked (0: all are).
    skip_check_ns: u64,
    watch: bool,
    reaper_thread: bool,
}

/// Everything a fork() child must replace: the shards (whose locks another parent thread may
/// have held at the fork) and the counters.
#[derive(Debug)]
struct State {
    /// The process generation (`ffi::fork`) this state belongs to.
    generation: u64,
    shards: Box<[Shard]>,
    /// With a global cap: idle connections plus reserved places of releases in progress.
    total: AtomicUsize,
    /// With a global cap: the next release sequence number.
    seq: AtomicU64,
    outside: AtomicCounters,
    /// With `watch`: the epoll set and timer (an error if they could not be made, e.g. in a
    /// fork child out of fds).
    watch: Result<Watcher, i32>,
    reaper: parking_lot::Mutex<Option<Reaper>>,
}

impl State {
    fn new(generation: u64, limits: &Limits, pool_id: u32) -> Self {
        let watch = if limits.watch {
            Watcher::new(pool_id).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
        } else {
            Err(libc::EINVAL)
        };
        State {
            generation,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            total: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            outside: AtomicCounters::default(),
            watch,
            reaper: parking_lot::Mutex::new(None),
        }
    }

    fn watcher(&self) -> Option<&Watcher> {
        self.watch.as_ref().ok()
    }

    /// A list of fds to close after unlocking (unwatching them first).
    fn doomed(&self) -> Doomed<'_> {
        Doomed::new(self.watcher().map(Watcher::epoll_fd))
    }

    /// Closes an fd the pool owns now, unwatching it first (a lent fd is still registered,
    /// disarmed: see `crate::watch`). Never under a lock.
    fn close_now(&self, fd: OwnedFd) {
        self.doomed().push(fd);
    }
}

/// The background thread of `Config::reaper_thread`.
#[derive(Debug)]
struct Reaper {
    /// Readable when the thread must stop.
    stop: OwnedFd,
    stopped: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

thread_local! {
    /// True on reaper threads.
    static IN_REAPER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The reaper thread: waits for the watch fd (or the stop fd), reaps, repeats. It holds
/// the pool weakly and its fds by number: both stay valid until `stop_reaper` has joined it.
fn reaper_loop<C: Clock>(
    pool: Weak<Pool<C>>,
    watch_fd: std::os::fd::RawFd,
    stop_fd: std::os::fd::RawFd,
    stopped: Arc<AtomicBool>,
) {
    IN_REAPER.with(|f| f.set(true));
    sys::block_all_signals(); // process signals belong to the application's threads
    while !stopped.load(Ordering::Acquire) {
        let (ready, stop) = sys::wait_readable_raw(watch_fd, stop_fd);
        if stop || stopped.load(Ordering::Acquire) {
            break;
        }
        if ready {
            let reaped = match pool.upgrade() {
                Some(pool) => pool.reap(),
                None => break,
            };
            if reaped == 0 {
                // Readable but nothing to reap: an fd between the pool and a caller (about to
                // be stored or unwatched). Let that thread run rather than spin.
                std::thread::yield_now();
            }
        }
    }
}

/// Clears an fd's entry in the fd table when dropped during a panic.
struct ForgetOnUnwind(std::os::fd::RawFd);

impl Drop for ForgetOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            fds::forget(self.0);
        }
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

/// Pool ids tag the records of lent fds (see `crate::fds`); 0 is never used.
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A pool of idle connections (socket fds) keyed by byte strings. `Sync`: share it by
/// reference between threads.
#[derive(Debug)]
pub struct Pool<C: Clock = MonotonicClock> {
    limits: Limits,
    hasher: KeyHashBuilder,
    clock: C,
    /// `clock.lag_ns()`, read once.
    lag_ns: u64,
    id: u32,
    state: Current<State>,
    /// In a fork child: generation + 1 of the thread replacing `state`; 0 when none.
    resetting: AtomicU64,
    /// This pool, for the reaper thread (empty unless made by `Pool::new_shared`).
    me: Weak<Self>,
}

impl std::fmt::Debug for Current<State> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// A duration in nanoseconds; [`NEVER`] for none (zero means none too).
fn nanos(d: Option<Duration>) -> u64 {
    match d {
        Some(d) if !d.is_zero() => u64::try_from(d.as_nanos()).unwrap_or(NEVER),
        _ => NEVER,
    }
}

impl Pool<MonotonicClock> {
    /// A pool on the system's monotonic clock: the coarse one, unless the shortest timeout is
    /// short enough for its tick to matter (see [`MonotonicClock::for_timeout`]).
    pub fn new(config: Config) -> Result<Self, InvalidConfig> {
        let shortest = nanos(config.idle_timeout).min(nanos(config.max_lifetime));
        Pool::with_clock(config, MonotonicClock::for_timeout(shortest))
    }

    /// A shared pool on the system's monotonic clock; the only kind that can run a reaper
    /// thread (`Config::reaper_thread`), which holds a weak reference to it. Err(errno):
    /// EINVAL for an invalid config, or why the watcher's fds could not be made.
    pub fn new_shared(config: Config) -> Result<Arc<Self>, i32> {
        let shortest = nanos(config.idle_timeout).min(nanos(config.max_lifetime));
        let clock = MonotonicClock::for_timeout(shortest);
        let (limits, state, id) = Self::parts(config)?;
        let pool = Arc::new_cyclic(|me| Pool::assemble(limits, state, id, clock, me.clone()));
        if pool.limits.reaper_thread {
            pool.start_reaper(pool.state())?;
        }
        Ok(pool)
    }
}

impl<C: Clock> Pool<C> {
    /// A pool that reads time from `clock` (tests inject a [`crate::ManualClock`]).
    pub fn with_clock(config: Config, clock: C) -> Result<Self, InvalidConfig> {
        if config.reaper_thread {
            return Err(InvalidConfig("reaper_thread needs Pool::new_shared"));
        }
        config.validate()?;
        let (limits, state, id) =
            Self::parts(config).map_err(|_| InvalidConfig("cannot create the watcher's fds"))?;
        Ok(Self::assemble(limits, state, id, clock, Weak::new()))
    }

    /// The limits, the first state and the pool id; Err(errno) for an invalid config or
    /// when the watcher's fds could not be made.
    fn parts(config: Config) -> Result<(Limits, State, u32), i32> {
        config.validate().map_err(|_| libc::EINVAL)?;
        fork::register();
        let limits = Limits {
            max_idle_per_key: config.max_idle_per_key,
            max_idle_total: config.max_idle_total.unwrap_or(0),
            idle_timeout_ns: nanos(config.idle_timeout),
            lifetime_ns: nanos(config.max_lifetime),
            max_uses: config.max_uses.unwrap_or(0),
            check_liveness: config.check_liveness,
            skip_check_ns: config
                .skip_check_if_idle_under
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(NEVER)),
            watch: config.watch || config.reaper_thread,
            reaper_thread: config.reaper_thread,
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed).max(1);
        let state = State::new(fork::generation(), &limits, id);
        if let (true, Err(e)) = (limits.watch, &state.watch) {
            return Err(*e);
        }
        Ok((limits, state, id))
    }

    fn assemble(limits: Limits, state: State, id: u32, clock: C, me: Weak<Self>) -> Self {
        Pool {
            limits,
            hasher: KeyHashBuilder::new(),
            lag_ns: clock.lag_ns(),
            clock,
            id,
            state: Current::new(state),
            resetting: AtomicU64::new(0),
            me,
        }
    }

    /// The current state; in a fork child, on the first call, a fresh empty one.
    #[inline]
    fn state(&self) -> &State {
        let st = self.state.get();
        if st.generation == fork::generation() {
            st
        } else {
            self.after_fork()
        }
    }

    /// First call in a fork child: the atfork handler has already closed the child's copies
    /// of the idle fds; replace the shards (their locks may be held forever) with empty ones.
    /// The old state is kept whole, never dropped nor locked: its fds are closed now
    /// (dropping would close the numbers again), a shard whose lock was held at the fork may
    /// be half-updated, and even unlocking a free parking_lot mutex may touch its global
    /// wait table, whose lock another parent thread may have held.
    #[cold]
    fn after_fork(&self) -> &State {
        let generation = fork::generation();
        let mine = generation + 1;
        loop {
            let st = self.state.get();
            if st.generation == generation {
                return st;
            }
            let r = self.resetting.load(Ordering::Acquire);
            if r == mine {
                std::thread::yield_now(); // another thread of this process is on it
                continue;
            }
            // 0, or a value left by an ancestor process whose thread does not exist here.
            if self
                .resetting
                .compare_exchange(r, mine, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let st = self
                    .state
                    .replace(State::new(generation, &self.limits, self.id));
                if self.limits.reaper_thread {
                    // In a child there is no caller to report a failure to: without a
                    // thread, the watch fd still works for a caller that reaps.
                    let _ = self.start_reaper(st);
                }
                self.resetting.store(0, Ordering::Release);
                return st;
            }
        }
    }

    /// The key's hash (computed once per call) and its shard.
    #[inline]
    fn shard<'s>(&self, st: &'s State, key: &[u8]) -> (u64, &'s Shard) {
        let (h, shard, _) = self.shard_index(st, key);
        (h, shard)
    }

    #[inline]
    fn shard_index<'s>(&self, st: &'s State, key: &[u8]) -> (u64, &'s Shard, usize) {
        let h = self.hasher.hash_key(key);
        // Middle bits: hashbrown uses the low bits and the top 7 within each shard's table.
        let i = (h >> 32) as usize & (SHARDS - 1);
        (h, &st.shards[i], i)
    }

    /// Returns (reading, the latest the real time may be): deadlines are set from the first
    /// and compared with the second, so a coarse clock makes connections expire up to one
    /// tick early, never late (near a deadline, see [`Pool::refine`]).
    #[inline]
    fn now(&self) -> (u64, u64) {
        let t = self.clock.now_ns();
        (t, t.saturating_add(self.lag_ns))
    }

    /// `now` from [`Pool::now`], made exact when a deadline as early as `earliest` is near.
    /// The coarse clock is normally at most one tick (its resolution) behind, but on a VM
    /// whose timekeeping vCPU is descheduled it is updated late (2 to 26 ms behind was seen
    /// on a loaded 2-vCPU VM); the precise clock counts from the hardware counter and is not.
    /// Reading it only within [`LATE_SLACK_NS`] of a deadline keeps it off the hot path.
    #[inline]
    fn refine(&self, now: u64, earliest: u64) -> u64 {
        if self.lag_ns == 0 || earliest > now.saturating_add(LATE_SLACK_NS) {
            now
        } else {
            now.max(self.clock.precise_now_ns())
        }
    }

    /// With a global cap, gives back `n` places (idle connections removed).
    #[inline]
    fn unreserve(&self, st: &State, n: usize) {
        if self.limits.max_idle_total != 0 && n != 0 {
            st.total.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Takes the most recently released live connection of `key`, now owned by the caller.
    pub fn acquire(&self, key: Key<'_>) -> Option<OwnedFd> {
        self.take(key).map(|(c, _)| c.fd)
    }

    /// As [`Pool::acquire`], with what is known of the connection. The key's expired
    /// connections are closed first; with the liveness check on, each candidate is checked
    /// (outside the lock) and closed if dead, and the next one is tried.
    pub fn acquire_info(&self, key: Key<'_>) -> Option<(OwnedFd, ConnInfo)> {
        self.take(key).map(|(c, reading)| {
            // The exact time (a coarse reading may lag, see `Pool::refine`); the stamps
            // may lag too, which can only make a connection look idler and older, never
            // fresher.
            let reading = reading.max(self.clock.precise_now_ns());
            let info = ConnInfo {
                idle: Duration::from_nanos(reading.saturating_sub(c.released)),
                age: Duration::from_nanos(reading.saturating_sub(c.born)),
                uses: c.uses,
            };
            (c.fd, info)
        })
    }

    /// The acquire itself: the connection handed out (now the caller's) and the clock
    /// reading it was taken at.
    #[inline]
    fn take(&self, key: Key<'_>) -> Option<(Idle, u64)> {
        let key = key.as_bytes();
        let st = self.state();
        let (reading, now) = self.now();
        let (hash, shard) = self.shard(st, key);
        loop {
            let mut doomed = st.doomed();
            let got = {
                let mut guard = shard.inner.lock();
                let inner = &mut *guard;
                inject_panic(key);
                let got = match inner.keys.find_mut(hash, |s| key_eq(&s.key, key)) {
                    None => None,
                    Some(stack) => {
                        let was_empty = stack.idle.is_empty();
                        let now = self.refine(now, stack.earliest);
                        let expired = stack.expire(now, &mut doomed);
                        let got = stack.idle.pop();
                        // An emptied entry stays for the next release (see shard.rs).
                        let emptied = !was_empty && stack.idle.is_empty();
                        inner.idle -= expired + usize::from(got.is_some());
                        inner.stats.expired += expired as u64;
                        if emptied {
                            inner.note_emptied();
                        }
                        got
                    }
                };
                // A hit is counted once the connection is known to be handed out: here if
                // it is not checked, after the check otherwise (so hits never go down).
                let check = got.as_ref().is_some_and(|c| self.must_check(c, reading));
                match (&got, check) {
                    (None, _) => inner.stats.misses += 1,
                    (Some(_), false) => inner.stats.hits += 1,
                    (Some(_), true) => {}
                }
                shard.publish(inner);
                got.map(|c| (c, check))
            };
            self.unreserve(st, doomed.len() + usize::from(got.is_some()));
            drop(doomed); // closes, outside the lock
            let (c, checked) = got?;
            // Disarmed first: a dead one would keep the watch fd readable while nothing
            // in the pool can be reaped for it.
            if let Some(w) = st.watcher() {
                w.disarm(c.fd.as_raw_fd());
            }
            if !checked || sys::is_alive(c.fd.as_fd()) {
                if checked {
                    shard.checked_hits.fetch_add(1, Ordering::Relaxed);
                }
                fds::lend(c.fd.as_raw_fd(), self.id, c.born, c.uses);
                return Some((c, reading));
            }
            // Dead: close it and try the next one.
            AtomicCounters::bump(&st.outside.dead, 1);
            st.doomed().push(c.fd);
        }
    }

    /// Whether acquire checks `c` before handing it out: with the check on, unless the
    /// skip window is set and `c` was certainly idle for less (its idle time read from a
    /// coarse clock may be up to one tick short).
    #[inline]
    fn must_check(&self, c: &Idle, reading: u64) -> bool {
        self.limits.check_liveness
            && reading
                .saturating_sub(c.released)
                .saturating_add(self.lag_ns)
                >= self.limits.skip_check_ns
    }

    /// Gives `fd` to the pool as an idle connection of `key`. The pool owns it either way:
    /// it is kept ([`Released::Pooled`]) or closed ([`Released::Closed`]), unless the pool
    /// already owned that fd number ([`Released::AlreadyPooled`]).
    pub fn release(&self, key: Key<'_>, fd: OwnedFd) -> Released {
        self.release_inner(key, fd, NEVER)
    }

    /// As [`Pool::release`], for a connection whose server announced it keeps idle
    /// connections `keepalive` long (`Keep-Alive: timeout=N`): it expires after the shorter of
    /// that and the idle timeout. A zero hint closes it at once.
    pub fn release_hint(&self, key: Key<'_>, fd: OwnedFd, keepalive: Duration) -> Released {
        let hint = u64::try_from(keepalive.as_nanos()).unwrap_or(NEVER);
        self.release_inner(key, fd, hint)
    }

    fn release_inner(&self, key: Key<'_>, fd: OwnedFd, hint_ns: u64) -> Released {
        let key = key.as_bytes();
        let st = self.state();
        let (born, uses) = match fds::claim(fd.as_raw_fd(), self.id) {
            Claim::AlreadyPooled => {
                let _ = fd.into_raw_fd(); // the pool's fd already: not ours to close
                return Released::AlreadyPooled;
            }
            Claim::Fresh => (None, 1),
            Claim::Lent { born, uses } => (Some(born), uses.saturating_add(1)),
        };
        let lent = born.is_some();
        // If a bug panics before the fd is stored or closed, unwinding closes it (OwnedFd's
        // drop): forget the claim too, or the number would stay marked as the pool's.
        let _unclaim = ForgetOnUnwind(fd.as_raw_fd());
        let lim = &self.limits;
        let (reading, now) = self.now();
        let born = born.unwrap_or(reading);
        if lim.max_uses != 0 && uses >= lim.max_uses {
            AtomicCounters::bump(&st.outside.retired, 1);
            st.close_now(fd);
            return Released::Closed;
        }
        let idle_ns = lim.idle_timeout_ns.min(hint_ns);
        let deadline = reading
            .saturating_add(idle_ns)
            .min(born.saturating_add(lim.lifetime_ns));
        if deadline <= self.refine(now, deadline) {
            AtomicCounters::bump(&st.outside.expired, 1);
            st.close_now(fd);
            return Released::Closed;
        }
        let capped = lim.max_idle_total != 0;
        let (hash, shard, index) = self.shard_index(st, key);
        // At the cap a release evicts to make room; one into a full key keeps nothing, so it
        // must not evict anything: check the key first (and again under the lock below).
        if capped
            && st.total.load(Ordering::Acquire) >= lim.max_idle_total
            && self.key_is_full(st, shard, hash, key, now)
        {
            AtomicCounters::bump(&st.outside.closed_full, 1);
            st.close_now(fd);
            return Released::Closed;
        }
        let seq = if capped {
            if !self.reserve(st) {
                AtomicCounters::bump(&st.outside.closed_full, 1);
                st.close_now(fd);
                return Released::Closed;
            }
            st.seq.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let watcher = st.watcher();
        // Watched before it is findable: see crate::watch.
        let token = watcher.map_or(0, |w| w.watch(fd.as_fd(), index, lent));
        let mut doomed = st.doomed();
        let result = {
            let mut guard = shard.inner.lock();
            let inner = &mut *guard;
            inject_panic(key);
            let (stack, was_empty_entry) =
                match inner.keys.entry(hash, |s| key_eq(&s.key, key), |s| s.hash) {
                    Entry::Occupied(o) => {
                        let stack = o.into_mut();
                        let empty = stack.idle.is_empty();
                        (stack, empty)
                    }
                    Entry::Vacant(v) => (v.insert(new_stack(hash, key)).into_mut(), false),
                };
            let expired = stack.expire(self.refine(now, stack.earliest), &mut doomed);
            let result = if stack.idle.len() >= lim.max_idle_per_key {
                doomed.push(fd);
                inner.stats.closed_full += 1;
                Released::Closed
            } else {
                stack.push(Idle {
                    fd,
                    deadline,
                    released: reading,
                    born,
                    uses,
                    seq,
                    token,
                });
                inner.stats.pooled += 1;
                if was_empty_entry {
                    inner.empty -= 1;
                }
                if capped {
                    shard.oldest.fetch_min(seq, Ordering::Relaxed);
                }
                Released::Pooled
            };
            inner.stats.expired += expired as u64;
            inner.idle = inner.idle + usize::from(result == Released::Pooled) - expired;
            shard.publish(inner);
            result
        };
        if capped {
            self.unreserve(st, doomed.len());
        }
        drop(doomed); // closes, outside the lock
        if let (Some(w), Released::Pooled) = (watcher, result) {
            w.lower_timer(deadline);
        }
        result
    }

    /// Whether `key` already holds `max_idle_per_key` live (unexpired) connections; closes
    /// its expired ones on the way, like every call on a key.
    fn key_is_full(&self, st: &State, shard: &Shard, hash: u64, key: &[u8], now: u64) -> bool {
        self.live_count(st, shard, hash, key, now) >= self.limits.max_idle_per_key
    }

    /// How many live (unexpired) idle connections `key` holds, after closing its expired
    /// ones.
    fn live_count(&self, st: &State, shard: &Shard, hash: u64, key: &[u8], now: u64) -> usize {
        let mut doomed = st.doomed();
        let n = {
            let mut guard = shard.inner.lock();
            let inner = &mut *guard;
            let Some(stack) = inner.keys.find_mut(hash, |s| key_eq(&s.key, key)) else {
                return 0;
            };
            let expired = stack.expire(self.refine(now, stack.earliest), &mut doomed);
            let n = stack.idle.len();
            if expired > 0 && n == 0 {
                inner.note_emptied();
            }
            inner.idle -= expired;
            inner.stats.expired += expired as u64;
            shard.publish(inner);
            n
        };
        self.unreserve(st, doomed.len());
        n // dropping `doomed` closes, outside the lock
    }

    /// With a global cap: takes a place below the cap, evicting the least recently released
    /// idle connection while the pool is full. False if no place could be made.
    fn reserve(&self, st: &State) -> bool {
        let cap = self.limits.max_idle_total;
        let mut tries = 0;
        loop {
            let cur = st.total.load(Ordering::Acquire);
            if cur < cap {
                if st
                    .total
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

    /// Closes the least recently released idle connection of the pool. False if none.
    fn evict_one(&self, st: &State) -> bool {
        for attempt in 0..EVICT_TRIES {
            let (i, bound) = st
                .shards
                .iter()
                .map(|s| s.oldest.load(Ordering::Relaxed))
                .enumerate()
                .min_by_key(|&(_, o)| o)
                .unwrap_or((0, NEVER));
            if bound == NEVER {
                return false;
            }
            let shard = &st.shards[i];
            let mut doomed = st.doomed();
            {
                let mut guard = shard.inner.lock();
                let inner = &mut *guard;
                let oldest = inner.oldest_seq();
                if oldest != bound && attempt + 1 < EVICT_TRIES {
                    // The bound was stale: make it exact and pick again.
                    shard.oldest.store(oldest, Ordering::Relaxed);
                    continue;
                }
                let Some(victim) = inner.remove_oldest() else {
                    shard.oldest.store(NEVER, Ordering::Relaxed);
                    continue;
                };
                inner.stats.evicted += 1;
                shard.oldest.store(inner.oldest_seq(), Ordering::Relaxed);
                shard.publish(inner);
                doomed.push(victim.fd);
            }
            self.unreserve(st, 1);
            return true; // dropping `doomed` closes, outside the lock
        }
        false
    }

    /// Idle connections held, over all keys, expired ones not yet closed included (call
    /// [`Pool::prune`] first to drop those). Lock-free; under concurrent calls it is a sum
    /// of per-shard snapshots taken at slightly different instants (use [`Pool::stats`] for
    /// a consistent one), never above the global cap.
    pub fn idle_count(&self) -> usize {
        let sum = self
            .state()
            .shards
            .iter()
            .map(|s| s.idle.load(Ordering::Relaxed))
            .sum();
        match self.limits.max_idle_total {
            0 => sum,
            // A sum above the cap can only come from reading shards at different instants.
            cap => sum.min(cap),
        }
    }

    /// Idle connections held for `key`. Like every call on a key, it first closes the key's
    /// expired connections, so they are not counted.
    pub fn idle_count_key(&self, key: Key<'_>) -> usize {
        let key = key.as_bytes();
        let st = self.state();
        let (_, now) = self.now();
        let (hash, shard) = self.shard(st, key);
        self.live_count(st, shard, hash, key, now)
    }

    /// Closes every idle connection of `key`, or of every key for `None`; returns how many.
    pub fn purge(&self, key: Option<Key<'_>>) -> usize {
        let st = self.state();
        let Some(key) = key else {
            return st.shards.iter().map(|s| self.purge_shard(st, s)).sum();
        };
        let key = key.as_bytes();
        let (hash, shard) = self.shard(st, key);
        let mut doomed = st.doomed();
        {
            let mut guard = shard.inner.lock();
            let inner = &mut *guard;
            let Ok(entry) = inner.keys.find_entry(hash, |s| key_eq(&s.key, key)) else {
                return 0;
            };
            let (mut stack, _) = entry.remove();
            if stack.idle.is_empty() {
                inner.empty -= 1;
            }
            doomed.extend(stack.idle.drain(..).map(|c| c.fd));
            inner.shrink_if_sparse();
            inner.idle -= doomed.len();
            inner.stats.purged += doomed.len() as u64;
            shard.publish(inner);
        }
        self.unreserve(st, doomed.len());
        doomed.len() // dropping `doomed` closes, outside the lock
    }

    fn purge_shard(&self, st: &State, shard: &Shard) -> usize {
        let keys = {
            let mut inner = shard.inner.lock();
            let keys = std::mem::take(&mut inner.keys);
            inner.empty = 0;
            inner.stats.purged += inner.idle as u64;
            inner.idle = 0;
            shard.publish(&inner);
            keys
        };
        let mut doomed = st.doomed();
        doomed.extend(keys.into_iter().flat_map(|s| s.idle).map(|c| c.fd));
        self.unreserve(st, doomed.len());
        doomed.len()
    }

    /// Closes every expired idle connection now, over all keys, and, with the liveness check
    /// on, every idle connection that fails it; returns how many were closed.
    ///
    /// The liveness check of prune runs under the lock, one key at a time: taking
    /// connections out to check them would hide them from a concurrent purge and from the
    /// global cap, and checking numbers after unlocking would peek at fds the pool may no
    /// longer own. recv(MSG_PEEK | MSG_DONTWAIT) never blocks, and a key holds at most
    /// max_idle_per_key connections, so each hold stays short; close() still runs after
    /// unlocking.
    pub fn prune(&self) -> usize {
        let st = self.state();
        // Maintenance, not the hot path: judged by the exact clock (see `Pool::refine`).
        let now = self.refine(self.now().1, 0);
        let mut total = 0;
        for shard in st.shards.iter() {
            let mut doomed = st.doomed();
            let hashes: Vec<u64> = {
                let mut guard = shard.inner.lock();
                let inner = &mut *guard;
                let mut expired = 0;
                inner.keys.retain(|stack| {
                    expired += stack.expire(now, &mut doomed);
                    !stack.idle.is_empty()
                });
                inner.empty = 0; // every empty entry went
                inner.shrink_if_sparse();
                inner.idle -= expired;
                inner.stats.expired += expired as u64;
                shard.publish(inner);
                if self.limits.check_liveness {
                    inner.keys.iter().map(|s| s.hash).collect()
                } else {
                    Vec::new()
                }
            };
            total += doomed.len();
            self.unreserve(st, doomed.len());
            drop(doomed); // closes, outside the lock
            for hash in hashes {
                total += self.prune_dead(st, shard, hash);
            }
        }
        total
    }

    /// Closes the dead idle connections of the key(s) with `hash` in `shard`.
    fn prune_dead(&self, st: &State, shard: &Shard, hash: u64) -> usize {
        let mut doomed = st.doomed();
        {
            let mut guard = shard.inner.lock();
            let inner = &mut *guard;
            let mut emptied = 0;
            for stack in inner.keys.iter_hash_mut(hash) {
                if stack.idle.is_empty() {
                    continue;
                }
                let mut kept = Vec::with_capacity(stack.idle.len());
                for c in stack.idle.drain(..) {
                    if sys::is_alive(c.fd.as_fd()) {
                        kept.push(c);
                    } else {
                        doomed.push(c.fd);
                    }
                }
                stack.idle = kept;
                emptied += usize::from(stack.idle.is_empty());
            }
            for _ in 0..emptied {
                inner.note_emptied();
            }
            inner.idle -= doomed.len();
            inner.stats.dead += doomed.len() as u64;
            shard.publish(inner);
        }
        self.unreserve(st, doomed.len());
        doomed.len() // dropping `doomed` closes, outside the lock
    }

    /// The idle watcher's fd (an epoll fd owned by the pool): readable when an idle
    /// connection has an event or the earliest idle deadline has passed. Err(errno) without
    /// `Config::watch` (EINVAL) or if it could not be made.
    pub fn watch_fd(&self) -> Result<std::os::fd::RawFd, i32> {
        match &self.state().watch {
            Ok(w) => Ok(w.fd()),
            Err(e) => Err(*e),
        }
    }

    /// Never blocks: closes every idle connection the watcher reported (peer closed, reset,
    /// stray bytes: counted dead) and, when the timer fired, every expired one (counted
    /// expired); re-arms the watcher. Returns how many were closed; 0 without a watcher.
    pub fn reap(&self) -> usize {
        let st = self.state();
        let Some(w) = st.watcher() else {
            return 0;
        };
        let mut closed = 0;
        let mut timer = false;
        // One batch at a time: each closed fd leaves the set, so the next batch holds new
        // events. A full batch that closed nothing (fds being handed out or stored right
        // now) stops the loop: level-triggering reports them again once they settle.
        for _ in 0..MAX_REAP_BATCHES {
            let batch = w.ready_batch();
            let full = batch.len() == Watcher::BATCH;
            let mut progress = 0;
            for ready in batch {
                match ready {
                    Ready::Timer => timer = true,
                    Ready::Fd { token, shard } => progress += self.reap_fd(st, shard, token),
                }
            }
            closed += progress;
            if !full || progress == 0 {
                break;
            }
        }
        if timer {
            w.begin_rescan();
            let (n, next) = self.prune_expired(st);
            closed += n;
            w.finish_rescan(next);
        }
        closed
    }

    /// Closes the idle fd registered with `token` in `shard` if it is still there (it may
    /// have been handed out or closed since the event, and its number reused). Returns 1 if
    /// it was.
    fn reap_fd(&self, st: &State, shard: usize, token: u64) -> usize {
        let Some(shard) = st.shards.get(shard) else {
            return 0;
        };
        let mut doomed = st.doomed();
        {
            let mut guard = shard.inner.lock();
            let inner = &mut *guard;
            let found = inner.keys.iter().find_map(|s| {
                let i = s.idle.iter().position(|c| c.token == token)?;
                Some((s.hash, s.key.as_ptr(), i))
            });
            let Some((hash, key, i)) = found else {
                return 0;
            };
            let Ok(mut entry) = inner.keys.find_entry(hash, |s| s.key.as_ptr() == key) else {
                return 0;
            };
            doomed.push(entry.get_mut().idle.remove(i).fd);
            let emptied = entry.get().idle.is_empty();
            if emptied {
                inner.note_emptied();
            }
            inner.idle -= 1;
            inner.stats.dead += 1; // under the lock: a stats snapshot sees it with idle
            shard.publish(inner);
        }
        self.unreserve(st, 1);
        1 // dropping `doomed` unwatches and closes, outside the lock
    }

    /// Closes every expired idle connection; returns how many, and the earliest deadline
    /// left (a lower bound, exact for every key that had something to expire). Judged by the
    /// precise clock, the one the watcher's timer fires by: a coarse reading may still be a
    /// tick short of the deadline the timer just reached.
    fn prune_expired(&self, st: &State) -> (usize, u64) {
        let now = self.clock.precise_now_ns().max(self.now().1);
        let mut total = 0;
        let mut next = NEVER;
        for shard in st.shards.iter() {
            let mut doomed = st.doomed();
            {
                let mut guard = shard.inner.lock();
                let inner = &mut *guard;
                let mut expired = 0;
                inner.keys.retain(|stack| {
                    expired += stack.expire(now, &mut doomed);
                    next = next.min(stack.earliest);
                    !stack.idle.is_empty()
                });
                inner.empty = 0; // every empty entry went
                inner.shrink_if_sparse();
                inner.idle -= expired;
                inner.stats.expired += expired as u64;
                shard.publish(inner);
            }
            total += doomed.len();
            self.unreserve(st, doomed.len());
        }
        (total, next)
    }

    /// Starts the reaper thread for state `st` (a new pool, or a fork child's first call).
    /// Err(errno) if it could not (no fd for its eventfd, no thread).
    fn start_reaper(&self, st: &State) -> Result<(), i32> {
        let Some(w) = st.watcher() else {
            return Err(libc::EINVAL);
        };
        let stop = sys::eventfd_create().map_err(|e| e.raw_os_error().unwrap_or(libc::EMFILE))?;
        fds::claim(stop.as_raw_fd(), self.id); // the pool's: a fork child closes its copy
        let stopped = Arc::new(AtomicBool::new(false));
        let (watch_fd, stop_fd) = (w.fd(), stop.as_raw_fd());
        let me = self.me.clone();
        let flag = stopped.clone();
        let spawned = std::thread::Builder::new()
            .name("connpool-reaper".into())
            .spawn(move || reaper_loop(me, watch_fd, stop_fd, flag));
        match spawned {
            Ok(thread) => {
                *st.reaper.lock() = Some(Reaper {
                    stop,
                    stopped,
                    thread,
                });
                Ok(())
            }
            Err(e) => {
                sys::close(stop);
                Err(e.raw_os_error().unwrap_or(libc::EAGAIN))
            }
        }
    }

    /// Stops the reaper thread of the current state, waiting for it to finish (unless this
    /// is the reaper thread itself, dropping the last reference to the pool).
    pub fn stop_reaper(&self) {
        let Some(r) = self.state().reaper.lock().take() else {
            return;
        };
        r.stopped.store(true, Ordering::Release);
        sys::eventfd_signal(r.stop.as_fd());
        // Not std::thread::current(): in a thread C created it allocates a handle that is
        // never freed.
        if !IN_REAPER.with(|f| f.get()) {
            let _ = r.thread.join();
        }
        sys::close(r.stop);
    }

    /// The pool's gauges and counters: a consistent snapshot, exact also while other threads
    /// call the pool. It holds every shard lock at once (taken in shard order, and no other
    /// call holds two, so this cannot deadlock) for the time it takes to add them up.
    pub fn stats(&self) -> Stats {
        let st = self.state();
        let mut s = Stats::default();
        let guards: Vec<_> = st.shards.iter().map(|shard| shard.inner.lock()).collect();
        for shard in st.shards.iter() {
            s.hits += shard.checked_hits.load(Ordering::Relaxed);
        }
        for inner in &guards {
            s.idle += inner.idle as u64;
            s.keys += (inner.keys.len() - inner.empty) as u64;
            s.add(&inner.stats);
        }
        s.add_atomic(&st.outside);
        drop(guards);
        s
    }
}

impl<C: Clock> Drop for Pool<C> {
    /// Stops the reaper thread, then closes every idle connection (through the same path as
    /// purge).
    fn drop(&mut self) {
        self.stop_reaper();
        self.purge(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;

    /// Entries of keys whose connections were all taken stay for the next release, but
    /// memory still follows the keys that hold connections: empty entries are swept once
    /// they outnumber the live ones (beyond a small slack per shard), and by prune.
    #[test]
    #[allow(unsafe_code)]
    fn empty_entries_stay_bounded() {
        const N: usize = 3_000;
        // 2 fds per key: raise the soft fd limit if it is lower (CI machines often have 1024).
        // SAFETY: plain get/setrlimit on a valid struct.
        unsafe {
            let mut r = std::mem::zeroed::<libc::rlimit>();
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
            if r.rlim_cur < 4 * N as u64 {
                r.rlim_cur = r.rlim_max.min(8 * N as u64);
                libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            }
        }
        let pool = Pool::new(Config::default()).unwrap();
        let entries = |pool: &Pool| -> usize {
            pool.state()
                .shards
                .iter()
                .map(|s| s.inner.lock().keys.len())
                .sum()
        };
        let keys: Vec<String> = (0..N)
            .map(|i| format!("10.{}.{}.1:80", i / 256, i % 256))
            .collect();
        let mut peers = Vec::new();
        for k in &keys {
            let (a, b) = UnixStream::pair().unwrap();
            pool.release(Key::try_from(k.as_str()).unwrap(), a.into());
            peers.push(b);
        }
        assert_eq!(entries(&pool), N);
        for k in &keys {
            assert!(pool.acquire(Key::try_from(k.as_str()).unwrap()).is_some());
        }
        assert!(
            entries(&pool) <= SHARDS * 16,
            "{} empty entries kept",
            entries(&pool)
        );
        assert_eq!(pool.stats().keys, 0);
        pool.prune();
        assert_eq!(entries(&pool), 0);
    }

    /// An event is handled after its batch was read; by then its fd may have been closed
    /// (here by an acquire's liveness check) and the number reused by a new, live connection
    /// in the same shard. The event's token, not the number, decides: the new connection
    /// is left alone.
    #[test]
    fn a_stale_event_never_closes_a_reused_number() {
        let config = Config {
            watch: true,
            ..Config::default()
        };
        let pool = Pool::new(config).unwrap();
        let key = Key::try_from("stale:1").unwrap();
        let (a, a_peer) = UnixStream::pair().unwrap();
        let a_raw = a.as_raw_fd();
        pool.release(key, a.into());
        drop(a_peer); // dead while idle: an event is ready
        let st = pool.state();
        let w = st.watcher().unwrap();
        // Await it: a child forked by a test running in parallel may hold a copy of the
        // peer until it exits, and only then does the hang-up arrive.
        assert!(
            readable_within(w.fd(), 10_000),
            "no event for the dead connection"
        );
        let batch = w.ready_batch();
        assert_eq!(batch.len(), 1);
        assert!(pool.acquire(key).is_none(), "the check closes it");
        let (b, _b_peer) = UnixStream::pair().unwrap();
        // The lowest free number: the same one, unless a test running in parallel took it
        // (then this only checks that a stale token matches nothing).
        let _reused = b.as_raw_fd() == a_raw;
        pool.release(key, b.into());
        let Ready::Fd { token, shard } = batch[0] else {
            panic!("not an fd event");
        };
        assert_eq!(pool.reap_fd(st, shard, token), 0);
        assert_eq!(pool.idle_count_key(key), 1, "the new connection stays");
    }

    /// A coarse clock that falls behind far more than its declared tick (as on a VM whose
    /// timekeeping vCPU was descheduled): near a deadline the exact clock decides, so an
    /// expired connection is neither handed out nor kept.
    #[test]
    fn a_late_coarse_clock_never_makes_expiry_late() {
        #[derive(Debug, Clone)]
        struct LateCoarse(crate::ManualClock, Arc<AtomicU64>);
        impl Clock for LateCoarse {
            fn now_ns(&self) -> u64 {
                self.0.now_ns() - self.1.load(Ordering::Relaxed)
            }
            fn lag_ns(&self) -> u64 {
                1_000_000 // what it claims
            }
            fn precise_now_ns(&self) -> u64 {
                self.0.now_ns()
            }
        }
        let manual = crate::ManualClock::new(10_000_000_000);
        let behind = Arc::new(AtomicU64::new(0));
        let config = Config {
            idle_timeout: Some(Duration::from_millis(100)),
            check_liveness: false,
            ..Config::default()
        };
        let pool = Pool::with_clock(config, LateCoarse(manual.clone(), behind.clone())).unwrap();
        let key = Key::try_from("late:1").unwrap();
        let (a, _a_peer) = UnixStream::pair().unwrap();
        assert_eq!(pool.release(key, a.into()), Released::Pooled);
        manual.advance_ms(110);
        behind.store(20_000_000, Ordering::Relaxed); // reads 90 ms idle; the truth is 110
        assert!(pool.acquire(key).is_none(), "expired by the exact clock");
        assert_eq!(pool.stats().expired, 1);
        // Far from any deadline the coarse reading alone decides (and is right).
        let (b, _b_peer) = UnixStream::pair().unwrap();
        assert_eq!(pool.release(key, b.into()), Released::Pooled);
        manual.advance_ms(1);
        assert!(pool.acquire(key).is_some());

        // The lifetime, judged on release.
        behind.store(0, Ordering::Relaxed);
        let config = Config {
            max_lifetime: Some(Duration::from_millis(100)),
            check_liveness: false,
            ..Config::default()
        };
        let pool = Pool::with_clock(config, LateCoarse(manual.clone(), behind.clone())).unwrap();
        let (c, _c_peer) = UnixStream::pair().unwrap();
        assert_eq!(pool.release(key, c.into()), Released::Pooled);
        let c = pool.acquire(key).unwrap();
        manual.advance_ms(110);
        behind.store(20_000_000, Ordering::Relaxed);
        assert_eq!(pool.release(key, c), Released::Closed, "past its lifetime");
    }

    /// A fork child must never take a shard lock: another parent thread may have held it at
    /// the fork, and in the child nobody will ever release it. Here a parent thread holds
    /// the very shard the child uses, for the whole life of the child.
    #[test]
    #[allow(unsafe_code)]
    fn a_fork_child_never_waits_for_a_lock_held_at_the_fork() {
        let pool = Pool::new(Config::default()).unwrap();
        let key = Key::try_from("held:1").unwrap();
        let (a, _a_peer) = UnixStream::pair().unwrap();
        let a_raw = a.as_raw_fd();
        assert_eq!(pool.release(key, a.into()), Released::Pooled);
        let (_, shard) = pool.shard(pool.state(), key.as_bytes());
        let (locked_tx, locked_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            s.spawn(move || {
                let _held = shard.inner.lock();
                locked_tx.send(()).unwrap();
                let _ = done_rx.recv();
            });
            locked_rx.recv().unwrap();
            // SAFETY: the child only runs the closure below and leaves with _exit.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                let code = std::panic::catch_unwind(|| {
                    // SAFETY: fcntl on a number only queries it.
                    if unsafe { libc::fcntl(a_raw, libc::F_GETFD) } != -1 {
                        return 2; // the child's copy of the idle fd must be closed
                    }
                    if pool.acquire(key).is_some() {
                        return 3; // the child's pool starts empty
                    }
                    let (c, _c_peer) = UnixStream::pair().unwrap();
                    if pool.release(key, c.into()) != Released::Pooled {
                        return 4;
                    }
                    if pool.acquire(key).is_none() || pool.stats().hits != 1 {
                        return 5;
                    }
                    0
                })
                .unwrap_or(6);
                // SAFETY: leaves the child without running the parent's test harness.
                unsafe { libc::_exit(code) };
            }
            let status = wait_child(pid, 10_000);
            done_tx.send(()).unwrap();
            assert_eq!(status, Some(0), "child exit status (None: hung, killed)");
        });
        // The parent's pool is untouched by the child.
        assert_eq!(pool.acquire(key).map(|fd| fd.as_raw_fd()), Some(a_raw));
    }

    /// Whether `fd` becomes readable within `ms` milliseconds.
    #[allow(unsafe_code)]
    fn readable_within(fd: std::os::fd::RawFd, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    }

    /// The child's exit code, waiting at most `ms` (through a pidfd, so no polling loop);
    /// None, after killing it, if it did not exit in time.
    #[allow(unsafe_code)]
    fn wait_child(pid: libc::pid_t, ms: i32) -> Option<i32> {
        // SAFETY: plain syscalls on our own child.
        unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
            assert!(pidfd >= 0);
            let mut p = libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ready = libc::poll(&mut p, 1, ms) == 1;
            libc::close(pidfd);
            if !ready {
                libc::kill(pid, libc::SIGKILL);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            (ready && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status))
        }
    }
}
