//! The reference model of a pool, shared by the model test (`tests/model.rs`) and the fuzz
//! target (`fuzz/fuzz_targets/ops.rs`, which includes this file by path): per-key LIFO
//! stacks of connections with their deadlines, uses and release order; per key, its loans,
//! connect slots and drains (with a connection limit); the counters; and for every
//! operation the result the pool must give and the connections it must close, each with
//! its reason. The harnesses drive the pool and this model with the same operations and
//! compare; each connection carries the harness's own payload `T` (the backend's end,
//! inodes, ...), and whether one is alive is the harness's question.
#![allow(dead_code)] // each harness uses a different part

mod keys;

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::time::Duration;

use connpool::{CloseReason, Config, Released, Stats};

pub use keys::KeyState;

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
    /// `Config::max_conns_per_key` (0: none).
    pub conns: u32,
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
            max_conns_per_key: (self.conns != 0).then_some(self.conns),
            ..Config::default()
        }
    }
}

/// A loan, as the pool records it by fd number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loan {
    pub key: usize,
    pub key_drains: u16,
    pub pool_drains: u16,
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
    /// While the caller holds it: the loan it was handed out with (None: a new one).
    pub loan: Option<Loan>,
}

/// Connections the pool must have closed during one operation, with the reason.
pub type Closed<T> = Vec<(Conn<T>, CloseReason)>;

/// What an acquire found.
#[derive(Debug)]
pub enum Got<T> {
    Hit(Conn<T>),
    /// Connect a new one (with a limit, a slot is reserved).
    Connect,
    AtLimit,
}

pub struct Model<T> {
    pub lim: Limits,
    /// Per key: its idle stack (most recent last) and what the pool keeps of it.
    pub keys: Vec<Vec<Conn<T>>>,
    pub slots: Vec<KeyState>,
    pub stats: Stats,
    /// Releases the pool closed because the connection had already expired (counted in
    /// `expired` but never pooled).
    pub expired_on_release: u64,
    /// Releases the pool closed because their connection was lent before a drain (counted
    /// in `purged` but never pooled).
    pub purged_on_release: u64,
    /// Releases other than double releases.
    pub releases: u64,
    pool_drains: u16,
    seq: u64,
    /// The pool's record of fd numbers it lent and the caller closed: (born, uses, loan).
    /// A new socket that gets such a number continues that history (src/fd_table.rs).
    stale: HashMap<RawFd, (u64, u32, Loan)>,
}

impl<T> Model<T> {
    pub fn new(lim: Limits, keys: usize) -> Self {
        Model {
            lim,
            keys: (0..keys).map(|_| Vec::new()).collect(),
            slots: (0..keys).map(|_| KeyState::default()).collect(),
            stats: Stats::default(),
            expired_on_release: 0,
            purged_on_release: 0,
            releases: 0,
            pool_drains: 0,
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
        for k in self.slots.iter().filter(|k| k.entry) {
            s.lent += u64::from(k.lent);
            s.connecting += u64::from(k.connecting);
        }
        s
    }

    /// A new connection of the caller's on fd number `fd` (a recycled number continues the
    /// history the pool kept for it).
    pub fn connect(&mut self, fd: RawFd, now: u64, t: T) -> Conn<T> {
        let (born, uses, loan) = match self.stale.remove(&fd) {
            Some((born, uses, loan)) => (born, uses, Some(loan)),
            None => (now, 0, None),
        };
        Conn {
            t,
            born,
            uses,
            released: 0,
            deadline: 0,
            seq: 0,
            loan,
        }
    }

    /// The caller closed a connection it held (fd number `fd`) instead of releasing it.
    pub fn caller_closed(&mut self, fd: RawFd, c: &Conn<T>) {
        if let Some(loan) = c.loan {
            self.stale.insert(fd, (c.born, c.uses, loan));
        }
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

    /// Acquire of key `k`.
    pub fn acquire(
        &mut self,
        k: usize,
        now: u64,
        alive: impl Fn(&T) -> bool,
        closed: &mut Closed<T>,
    ) -> Got<T> {
        let limited = self.lim.conns != 0;
        if !limited && !self.slots[k].entry {
            self.stats.misses += 1;
            return Got::Connect;
        }
        self.slots[k].entry = true;
        self.expire(k, now, closed);
        while let Some(mut c) = self.keys[k].pop() {
            if self.checks(&c, now) && !alive(&c.t) {
                self.stats.dead += 1;
                closed.push((c, CloseReason::Dead));
                continue;
            }
            self.stats.hits += 1;
            let s = &mut self.slots[k];
            s.lent += 1;
            c.loan = Some(Loan {
                key: k,
                key_drains: s.drains,
                pool_drains: self.pool_drains,
            });
            return Got::Hit(c);
        }
        if !limited {
            self.stats.misses += 1;
            return Got::Connect;
        }
        let idle = self.keys[k].len() as u32;
        let s = &mut self.slots[k];
        if s.total(idle) < self.lim.conns {
            s.connecting += 1;
            self.stats.misses += 1;
            Got::Connect
        } else {
            Got::AtLimit // not a miss: -EAGAIN
        }
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
        let ret = self.returning(k, c.loan.take());
        c.uses += 1;
        c.released = now;
        let lim = self.lim.clone();
        let idle = lim.idle_ns.min(hint_ns.unwrap_or(u64::MAX));
        c.deadline = now
            .saturating_add(idle)
            .min(c.born.saturating_add(lim.lifetime_ns));
        if lim.max_uses != 0 && c.uses >= lim.max_uses {
            return self.put(k, c, ret, now, Some(CloseReason::Retired), closed);
        }
        if c.deadline <= now {
            return self.put(k, c, ret, now, Some(CloseReason::Expired), closed);
        }
        if let Some(cap) = lim.total {
            if self.idle() >= cap {
                // A key already full keeps nothing and evicts nothing (judged after its
                // expired connections go).
                self.expire(k, now, closed);
                if self.keys[k].len() >= lim.per_key {
                    return self.put(k, c, ret, now, Some(CloseReason::Full), closed);
                }
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
            }
            self.seq += 1;
            c.seq = self.seq;
        }
        self.put(k, c, ret, now, None, closed)
    }

    /// The release into `k`, under the key's lock: see `ShardGuard::put`.
    fn put(
        &mut self,
        k: usize,
        c: Conn<T>,
        ret: Option<(u16, bool)>,
        now: u64,
        close: Option<CloseReason>,
        closed: &mut Closed<T>,
    ) -> Released {
        let idle = self.keys[k].len() as u32;
        let s = &mut self.slots[k];
        s.entry = true;
        let drained = match ret {
            Some((key_drains, drained)) if s.lent > 0 => {
                s.lent -= 1;
                drained || key_drains != s.drains
            }
            _ if s.connecting > 0 => {
                s.connecting -= 1;
                false
            }
            _ if self.lim.conns != 0 && s.total(idle) >= self.lim.conns => {
                self.stats.closed_full += 1;
                closed.push((c, CloseReason::Full));
                return Released::Closed;
            }
            _ => false,
        };
        self.expire(k, now, closed);
        let why = match close {
            Some(why) => Some(why),
            None if drained => Some(CloseReason::Purged),
            None if self.keys[k].len() >= self.lim.per_key => Some(CloseReason::Full),
            None => None,
        };
        match why {
            Some(why) => {
                self.count(why);
                match (close, why) {
                    (Some(CloseReason::Expired), _) => self.expired_on_release += 1,
                    (None, CloseReason::Purged) => self.purged_on_release += 1,
                    _ => {}
                }
                closed.push((c, why));
                Released::Closed
            }
            None => {
                self.keys[k].push(c);
                self.stats.pooled += 1;
                Released::Pooled
            }
        }
    }

    fn count(&mut self, why: CloseReason) {
        let s = &mut self.stats;
        match why {
            CloseReason::Full => s.closed_full += 1,
            CloseReason::Evicted => s.evicted += 1,
            CloseReason::Expired => s.expired += 1,
            CloseReason::Dead => s.dead += 1,
            CloseReason::Retired => s.retired += 1,
            CloseReason::Purged => s.purged += 1,
            CloseReason::Discarded => s.discarded += 1,
        }
    }

    /// How a connection lent as `loan` stands with key `k`: `Some((key drains at the loan,
    /// drained since by a drain of every key))` for a loan of `k`; a loan of another key
    /// ends there (None: a new connection here).
    fn returning(&mut self, k: usize, loan: Option<Loan>) -> Option<(u16, bool)> {
        let loan = loan?;
        if loan.key != k {
            self.end_loan(loan.key);
            return None;
        }
        Some((loan.key_drains, loan.pool_drains != self.pool_drains))
    }

    fn end_loan(&mut self, k: usize) {
        let s = &mut self.slots[k];
        if s.entry && s.lent > 0 {
            s.lent -= 1;
        }
    }
}
