//! The reference model of a pool, shared by the model test (`tests/model.rs`) and the fuzz
//! target (`fuzz/fuzz_targets/ops.rs`, which includes this file by path): per-key LIFO
//! stacks of connections with their deadlines, uses and release order, the counters, and
//! for every operation the result the pool must give and the connections it must close,
//! each with its reason. The harnesses drive the pool and this model with the same
//! operations and compare; each connection carries the harness's own payload `T` (the
//! backend's end, inodes, ...), and whether one is alive is the harness's question.
#![allow(dead_code)] // each harness uses a different part

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::time::Duration;

use connpool::{CloseReason, Config, Released, Stats};

/// The model's limits, in clock nanoseconds (`u64::MAX`: none).
#[derive(Debug, Clone)]
pub struct Limits {
    pub per_key: usize,
    pub total: Option<usize>,
    pub idle_ns: u64,
    pub lifetime_ns: u64,
    pub max_uses: u32,
    pub check: bool,
    /// `Config::skip_check_if_idle_under` in ns (0: none).
    pub skip_ns: u64,
}

impl Limits {
    /// The pool configuration these limits describe.
    pub fn config(&self) -> Config {
        let dur = |ns: u64| (ns != u64::MAX).then(|| Duration::from_nanos(ns));
        Config {
            max_idle_per_key: self.per_key,
            max_idle_total: self.total,
            idle_timeout: dur(self.idle_ns),
            max_lifetime: dur(self.lifetime_ns),
            max_uses: (self.max_uses != 0).then_some(self.max_uses),
            check_liveness: self.check,
            skip_check_if_idle_under: (self.skip_ns != 0)
                .then(|| Duration::from_nanos(self.skip_ns)),
            ..Config::default()
        }
    }
}

/// A connection as the model knows it.
#[derive(Debug)]
pub struct Conn<T> {
    /// The harness's payload.
    pub t: T,
    pub born: u64,
    pub uses: u32,
    pub released: u64,
    pub deadline: u64,
    /// Release order (with a global cap only, as the pool).
    pub seq: u64,
}

/// Connections the pool must have closed during one operation, with the reason.
pub type Closed<T> = Vec<(Conn<T>, CloseReason)>;

pub struct Model<T> {
    pub lim: Limits,
    pub keys: Vec<Vec<Conn<T>>>,
    pub stats: Stats,
    /// Releases the pool closed because the connection had already expired (counted in
    /// `expired` but never pooled).
    pub expired_on_release: u64,
    /// Releases other than double releases.
    pub releases: u64,
    seq: u64,
    /// The pool's record of fd numbers it lent and the caller closed: (born, uses). A new
    /// socket that gets such a number continues that history (see src/fd_table.rs).
    stale: HashMap<RawFd, (u64, u32)>,
}

impl<T> Model<T> {
    pub fn new(lim: Limits, keys: usize) -> Self {
        Model {
            lim,
            keys: (0..keys).map(|_| Vec::new()).collect(),
            stats: Stats::default(),
            expired_on_release: 0,
            releases: 0,
            seq: 0,
            stale: HashMap::new(),
        }
    }

    pub fn idle(&self) -> usize {
        self.keys.iter().map(Vec::len).sum()
    }

    /// The pool's stats as the model has them.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.idle = self.idle() as u64;
        s.keys = self.keys.iter().filter(|s| !s.is_empty()).count() as u64;
        s
    }

    /// A new connection of the caller's on fd number `fd` (a recycled number continues the
    /// history the pool kept for it).
    pub fn connect(&mut self, fd: RawFd, now: u64, t: T) -> Conn<T> {
        let (born, uses) = self.stale.remove(&fd).unwrap_or((now, 0));
        Conn {
            t,
            born,
            uses,
            released: 0,
            deadline: 0,
            seq: 0,
        }
    }

    /// The caller closed a connection it held (fd number `fd`) instead of releasing it.
    pub fn caller_closed(&mut self, fd: RawFd, c: &Conn<T>) {
        self.stale.insert(fd, (c.born, c.uses));
    }

    /// Whether acquire checks `c` at `now` (prune checks every connection).
    pub fn checks(&self, c: &Conn<T>, now: u64) -> bool {
        self.lim.check && now - c.released >= self.lim.skip_ns
    }

    /// Removes the key's connections expired at `now` into `closed`.
    fn expire(&mut self, k: usize, now: u64, closed: &mut Closed<T>) {
        let stack = std::mem::take(&mut self.keys[k]);
        for c in stack {
            if c.deadline <= now {
                self.stats.expired += 1;
                closed.push((c, CloseReason::Expired));
            } else {
                self.keys[k].push(c);
            }
        }
    }

    /// Acquire of key `k`: the connection handed out, if any.
    pub fn acquire(
        &mut self,
        k: usize,
        now: u64,
        alive: impl Fn(&T) -> bool,
        closed: &mut Closed<T>,
    ) -> Option<Conn<T>> {
        self.expire(k, now, closed);
        while let Some(c) = self.keys[k].pop() {
            if self.checks(&c, now) && !alive(&c.t) {
                self.stats.dead += 1;
                closed.push((c, CloseReason::Dead));
                continue;
            }
            self.stats.hits += 1;
            return Some(c);
        }
        self.stats.misses += 1;
        None
    }

    /// Release of `c` into key `k` with a keep-alive hint in ns.
    pub fn release(
        &mut self,
        k: usize,
        mut c: Conn<T>,
        now: u64,
        hint_ns: Option<u64>,
        closed: &mut Closed<T>,
    ) -> Released {
        self.releases += 1;
        c.uses += 1;
        c.released = now;
        let lim = &self.lim;
        let idle = lim.idle_ns.min(hint_ns.unwrap_or(u64::MAX));
        c.deadline = now
            .saturating_add(idle)
            .min(c.born.saturating_add(lim.lifetime_ns));
        if lim.max_uses != 0 && c.uses >= lim.max_uses {
            self.stats.retired += 1;
            closed.push((c, CloseReason::Retired));
            return Released::Closed;
        }
        if c.deadline <= now {
            self.stats.expired += 1;
            self.expired_on_release += 1;
            closed.push((c, CloseReason::Expired));
            return Released::Closed;
        }
        // The key's expired connections go first (before the cap is judged).
        self.expire(k, now, closed);
        let full = self.keys[k].len() >= self.lim.per_key;
        if let (Some(cap), false) = (self.lim.total, full) {
            if self.idle() >= cap {
                // Evict the least recently released idle connection of any key.
                let vk = (0..self.keys.len())
                    .filter(|&i| !self.keys[i].is_empty())
                    .min_by_key(|&i| self.keys[i][0].seq)
                    .expect("at the cap, something is idle");
                let v = self.keys[vk].remove(0);
                self.stats.evicted += 1;
                closed.push((v, CloseReason::Evicted));
            }
            self.seq += 1;
            c.seq = self.seq;
        }
        if full {
            self.stats.closed_full += 1;
            closed.push((c, CloseReason::Full));
            Released::Closed
        } else {
            self.keys[k].push(c);
            self.stats.pooled += 1;
            Released::Pooled
        }
    }

    /// Prune: every expired connection and, with the check on, every dead one.
    pub fn prune(&mut self, now: u64, alive: impl Fn(&T) -> bool, closed: &mut Closed<T>) {
        for k in 0..self.keys.len() {
            self.expire(k, now, closed);
            if self.lim.check {
                let stack = std::mem::take(&mut self.keys[k]);
                for c in stack {
                    if alive(&c.t) {
                        self.keys[k].push(c);
                    } else {
                        self.stats.dead += 1;
                        closed.push((c, CloseReason::Dead));
                    }
                }
            }
        }
    }

    /// Purge of key `k`, or of every key.
    pub fn purge(&mut self, k: Option<usize>, closed: &mut Closed<T>) {
        let keys = match k {
            Some(k) => k..k + 1,
            None => 0..self.keys.len(),
        };
        for k in keys {
            for c in std::mem::take(&mut self.keys[k]) {
                self.stats.purged += 1;
                closed.push((c, CloseReason::Purged));
            }
        }
    }

    /// idle_count_key: the key's connections that have not expired (nothing changes).
    pub fn count_key(&self, k: usize, now: u64) -> usize {
        self.keys[k].iter().filter(|c| c.deadline > now).count()
    }

    /// Every idle connection, as dropping the pool closes them (counted purged).
    pub fn drain(&mut self) -> Vec<Conn<T>> {
        self.keys.iter_mut().flat_map(std::mem::take).collect()
    }
}
