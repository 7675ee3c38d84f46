//! The hot path of pools that need nothing more (no connection limit, no global cap):
//! acquire and release in one lock hold each, with the connection moved once.
//! Everything else (a check to run, expired connections to close, a full key, a loan from
//! before a drain) falls through, with nothing changed, to the full path in `acquire.rs`
//! and `release.rs`, which handles every case; so this file decides nothing the full path
//! does not decide the same way.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::acquire::Outcome;
use super::{inject_panic, Generation, Pool, Released};
use crate::clock::Clock;
use crate::conn::{Conn, NEVER};
use crate::fd_table::{self, Loan};
use crate::shard::{Popped, Return};
use crate::stats::CloseReason;

/// Which operations a pool's configuration lets take the lean path.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lean {
    /// Acquire (none of the above).
    pub acquire: bool,
    /// Release (none of the above).
    pub release: bool,
    /// Acquire reads the clock before taking the lock: connections can expire by the
    /// configuration (an idle timeout, a lifetime) or a check may look at their idle time.
    /// Otherwise only a key holding a connection with a keep-alive hint's deadline needs a
    /// reading, taken then.
    pub clock: bool,
}

impl Lean {
    pub(super) fn new(limits: &super::Limits) -> Self {
        let plain = limits.max_conns_per_key == 0 && limits.max_idle_total == 0;
        Lean {
            acquire: plain,
            release: plain,
            clock: limits.idle_timeout_ns != NEVER
                || limits.lifetime_ns != NEVER
                || limits.check_liveness,
        }
    }
}

impl<C: Clock> Pool<C> {
    /// Acquire, for the callers that want the fd and its state only: the lean path when
    /// the configuration allows it and it applies, else the full one.
    #[inline(always)]
    pub(super) fn take_fd(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        place: Option<&AtomicUsize>,
    ) -> Result<(OwnedFd, usize), Outcome> {
        if self.lean.acquire {
            if let Some(r) = self.take_lean(st, hash, key, place, |c| (c.fd, c.ctx)) {
                return r;
            }
        }
        self.take_fd_full(st, hash, key)
    }

    /// Acquire's lean path: the connection handed out (as `out` makes it), or
    /// `Outcome::Connect`; `None` when the full path must run (nothing changed, but dead
    /// connections closed).
    #[inline(always)]
    pub(super) fn take_lean<T>(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        place: Option<&AtomicUsize>,
        out: impl Fn(Conn) -> T,
    ) -> Option<Result<T, Outcome>> {
        self.harvest_due(st);
        if self.lean.clock {
            let (reading, now) = self.now();
            self.take_lean_at(st, (hash, key, place), out, reading, |e| {
                self.exact_near(now, e)
            })
        } else {
            // Read only for a key holding a connection that can expire (a hint's deadline).
            self.take_lean_at(st, (hash, key, place), out, 0, |e| {
                if e == NEVER {
                    0
                } else {
                    self.exact_near(self.now().1, e)
                }
            })
        }
    }

    /// [`Pool::take_lean`] with the clock's `reading` and `now(earliest)`, the time to
    /// judge deadlines by (as `exact_near` makes it).
    #[inline(always)]
    fn take_lean_at<T>(
        &self,
        st: &Generation,
        (hash, key, place): (u64, &[u8], Option<&AtomicUsize>),
        out: impl Fn(Conn) -> T,
        reading: u64,
        now: impl Fn(u64) -> u64,
    ) -> Option<Result<T, Outcome>> {
        let shard = self.shard_of(st, hash);
        // Bounded: each round takes one idle connection out of the key for good (handed
        // out, or found dead and closed).
        loop {
            let popped = {
                let mut guard = shard.lock();
                inject_panic(key);
                guard.pop_lean(
                    hash,
                    key,
                    place,
                    &now,
                    |c| self.must_check(c, reading),
                    |c, drains| self.lend(st, c, hash, drains, 0),
                    &out,
                )?
            };
            let (c, drains) = match popped {
                Popped::Hit(t) => return Some(Ok(t)),
                Popped::Miss => return Some(Err(Outcome::Connect)),
                Popped::Check(c, drains) => (c, drains),
            };
            if self.healthy(&c) {
                shard.lock().checked_hit(hash);
                // With the harvest, a connection is checked because a harvest flagged it
                // (and disarmed its entry): its release re-arms it.
                let muted = if self.limits.harvest {
                    fd_table::MUTED_HARVEST
                } else {
                    0
                };
                self.lend(st, &c, hash, drains, muted);
                return Some(Ok(out(c)));
            }
            let mut closes = self.close_list(st);
            let kept = shard.lock().checked(hash, key, c, false, &mut closes);
            debug_assert!(kept.is_none()); // dead: closed after unlocking; on to the next
        }
    }

    #[inline(never)]
    fn take_fd_full(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
    ) -> Result<(OwnedFd, usize), Outcome> {
        match self.take(st, hash, key, None) {
            super::acquire::Taken::Hit(c, _) => Ok((c.fd, c.ctx)),
            taken => Err(self.outcome(taken)),
        }
    }

    /// Records the loan of `c` from the key with hash `hash`, for its release. `muted`: the
    /// entries of its epoll sets known to be muted (`fd_table::MUTED_*`).
    #[inline]
    pub(super) fn lend(&self, st: &Generation, c: &Conn, hash: u64, key_drains: u16, muted: u64) {
        let loan = Loan {
            born: c.born,
            uses: c.uses,
            key: hash,
            mark: self.mark(st, key_drains),
            muted,
        };
        if self.limits.watched {
            fd_table::lend_watched(c.fd.as_raw_fd(), self.id, loan);
        } else {
            fd_table::lend(c.fd.as_raw_fd(), self.id, loan);
        }
    }

    /// With the harvest check: harvests if the last harvest is older than its window (so
    /// that the fd table's suspect flags are at most that old when an acquire looks).
    #[inline]
    pub(super) fn harvest_due(&self, st: &Generation) {
        if self.limits.harvest {
            if let Some(h) = st.harvest() {
                h.harvest_if_due_now();
            }
        }
    }

    /// With the harvest check or the idle watcher: watches `fd`, about to be stored under
    /// the key with hash `hash`, in their epoll sets (`crate::watch_set`; `loan`: this
    /// pool's record of it, if it lent it). False: the harvest set cannot watch it.
    #[inline]
    pub(super) fn watch_sets(
        &self,
        st: &Generation,
        fd: BorrowedFd<'_>,
        hash: u64,
        loan: Option<Loan>,
    ) -> bool {
        if !self.limits.watched {
            return true;
        }
        // Lent in this process generation: registered then, and still (a fork child's sets
        // are its own).
        let lent = loan.filter(|l| l.mark >> 32 == st.process & 0xffff_ffff);
        if let Some(w) = st.watcher() {
            fd_table::note_key(fd.as_raw_fd(), hash);
            w.watch(fd, lent);
        }
        st.harvest().is_none_or(|h| h.watch(fd, lent))
    }

    /// Release's lean path for the claimed connection `fd` (`loan`: its record if this
    /// pool lent it). `Err`: not the lean path's case, nothing done, everything given back.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn store_lean(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        fd: OwnedFd,
        ctx: usize,
        hint_ns: u64,
        loan: Option<Loan>,
        place: Option<&AtomicUsize>,
    ) -> Result<Released, OwnedFd> {
        // A loan of this key, this process generation, made since the last drain of every
        // key: its connection returns (the key's own drains are judged under the lock).
        let key_drains = match loan {
            None => None,
            Some(l)
                if l.mark >> 32 == st.process & 0xffff_ffff
                    && l.key == hash
                    && (l.mark >> 16) as u16 == st.drains.load(Ordering::Relaxed) as u16 =>
            {
                Some(l.mark as u16)
            }
            Some(_) => return Err(fd),
        };
        let lim = &self.limits;
        let (reading, now) = self.now();
        let (born, uses) = loan.map_or((reading, 1), |l| (l.born, l.uses.saturating_add(1)));
        let deadline = reading
            .saturating_add(lim.idle_timeout_ns.min(hint_ns))
            .min(born.saturating_add(lim.lifetime_ns));
        if (lim.max_uses != 0 && uses >= lim.max_uses) || deadline <= self.exact_near(now, deadline)
        {
            return Err(fd);
        }
        let conn = Conn {
            fd,
            ctx,
            deadline,
            released: reading,
            born,
            uses,
            seq: 0,
        };
        let shard = self.shard_of(st, hash);
        let pushed = {
            let mut guard = shard.lock();
            inject_panic(key);
            let max = lim.max_idle_per_key;
            guard.push_lean(hash, key, place, conn, key_drains, max, |e| {
                self.exact_near(now, e)
            })
        };
        Ok(match pushed {
            Ok(()) => {
                if let Some(w) = st.watcher() {
                    w.lower_timer(deadline);
                }
                Released::Pooled
            }
            Err(conn) => {
                let ret = key_drains.map_or(Return::Fresh, |d| Return::Lent {
                    key_drains: d,
                    drained: false,
                });
                let released = self.put_full(st, (hash, key, ret, now), conn);
                if let (Some(w), Released::Pooled) = (st.watcher(), released) {
                    w.lower_timer(deadline);
                }
                released
            }
        })
    }

    #[inline(never)]
    fn put_full(&self, st: &Generation, at: (u64, &[u8], Return, u64), conn: Conn) -> Released {
        self.put_closing(st, at, conn, None::<CloseReason>, false)
    }
}
