//! Release: the caller gives a connection to the pool, which keeps it, hands it to a
//! waiter, or closes it.

use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{inject_panic, ForgetOnUnwind, Generation, Pool, Released};
use crate::clock::Clock;
use crate::conn::{Conn, NEVER};
use crate::fd_table::{self, Claim, Loan};
use crate::key::Key;
use crate::shard::Return;
use crate::stats::CloseReason;

impl<C: Clock> Pool<C> {
    /// Gives `fd` to the pool as an idle connection of `key`. The pool owns it either way:
    /// it is kept ([`Released::Pooled`]) or closed ([`Released::Closed`]), unless the pool
    /// already owned that fd number ([`Released::AlreadyPooled`]).
    pub fn release(&self, key: Key<'_>, fd: OwnedFd) -> Released {
        self.release_ctx(key, fd, 0, None)
    }

    /// As [`Pool::release`], for a connection whose server announced it keeps idle
    /// connections `keepalive` long (`Keep-Alive: timeout=N`): it expires after the shorter of
    /// that and the idle timeout. A zero hint closes it at once.
    pub fn release_hint(&self, key: Key<'_>, fd: OwnedFd, keepalive: Duration) -> Released {
        self.release_ctx(key, fd, 0, Some(keepalive))
    }

    /// As [`Pool::release_hint`] (`None`: no hint), with the caller's state `ctx` (opaque:
    /// never dereferenced), which travels with the connection: it is the pool's until handed
    /// out again with it or passed to the close callback. With [`Released::AlreadyPooled`]
    /// it stays the caller's. A key with waiters ([`Pool::acquire_wait`]) gets the
    /// connection handed straight to the longest one ([`Released::Pooled`]).
    pub fn release_ctx(
        &self,
        key: Key<'_>,
        fd: OwnedFd,
        ctx: usize,
        keepalive: Option<Duration>,
    ) -> Released {
        let st = self.state();
        let hash = self.hasher.hash_key(key.as_bytes());
        self.put(st, hash, key.as_bytes(), fd, ctx, hint_ns(keepalive), None)
    }

    /// The release itself, into the key `key` with hash `hash`, with the caller's state
    /// and a keep-alive hint in ns ([`NEVER`]: none). Inlined into its two callers (string
    /// key, key handle): the call, with its arguments on the stack, cost as much as a fork check.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        fd: OwnedFd,
        ctx: usize,
        hint_ns: u64,
        place: Option<&AtomicUsize>,
    ) -> Released {
        let raw = fd.as_raw_fd();
        let loan = match fd_table::claim(raw, self.id) {
            Claim::AlreadyPooled => {
                let _ = fd.into_raw_fd(); // the pool's fd already: not ours to close
                return Released::AlreadyPooled;
            }
            Claim::Fresh => None,
            Claim::Lent(loan) => Some(loan),
        };
        // If a bug panics before the fd is stored or closed, unwinding closes it (OwnedFd's
        // drop): forget the claim too, or the number would stay marked as the pool's.
        let unclaim = ForgetOnUnwind(raw);
        let r = if !self.limits.watched {
            self.put_claimed(st, hash, key, fd, ctx, hint_ns, loan, place)
        } else if !self.watch_sets(st, fd.as_fd(), hash, loan) {
            self.put_unwatchable(st, hash, key, fd, ctx, loan)
        } else {
            let r = self.put_claimed(st, hash, key, fd, ctx, hint_ns, loan, place);
            self.stored(st, raw, r)
        };
        std::mem::forget(unclaim);
        r
    }

    /// [`Pool::put`] of the claimed `fd`, once watched if the pool watches.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn put_claimed(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        fd: OwnedFd,
        ctx: usize,
        hint_ns: u64,
        loan: Option<Loan>,
        place: Option<&AtomicUsize>,
    ) -> Released {
        if self.lean.release {
            match self.store_lean(st, hash, key, fd, ctx, hint_ns, loan, place) {
                Ok(r) => r,
                Err(fd) => self.store(st, hash, key, fd, ctx, hint_ns, loan),
            }
        } else {
            self.store(st, hash, key, fd, ctx, hint_ns, loan)
        }
    }

    /// After the store of `fd` (with the idle watcher): the reaper may have been told of
    /// it between its registration and its store, and found nothing then; it looks again.
    #[inline(always)]
    pub(super) fn stored(&self, st: &Generation, fd: RawFd, r: Released) -> Released {
        if r == Released::Pooled {
            if let Some(w) = st.watcher() {
                w.rearm_flagged(fd);
            }
        }
        r
    }

    /// How a connection lent as `loan` stands with the key with hash `hash`. A loan of an
    /// earlier process generation (a fork child's parent) is nobody's here; a loan of
    /// another key (a caller's mix-up) ends there at once, and the connection is new here.
    #[inline]
    fn returning(&self, st: &Generation, hash: u64, loan: Option<Loan>) -> Return {
        let Some(loan) = loan else {
            return Return::Fresh;
        };
        if loan.mark >> 32 != st.process & 0xffff_ffff {
            return Return::Fresh;
        }
        if loan.key != hash {
            let mut closes = self.close_list(st);
            self.shard_of(st, loan.key)
                .lock()
                .end_loan(loan.key, &mut closes);
            return Return::Fresh;
        }
        let pool_drains = st.drains.load(Ordering::Relaxed) as u16;
        Return::Lent {
            key_drains: loan.mark as u16,
            drained: (loan.mark >> 16) as u16 != pool_drains,
        }
    }

    /// The claimed connection `fd`, kept, handed over or closed.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub(super) fn store(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        fd: OwnedFd,
        ctx: usize,
        hint_ns: u64,
        loan: Option<Loan>,
    ) -> Released {
        let ret = self.returning(st, hash, loan);
        let lim = &self.limits;
        let (reading, now) = self.now();
        let born = loan.map_or(reading, |l| l.born);
        let uses = loan.map_or(1, |l| l.uses.saturating_add(1));
        let mut conn = Conn {
            fd,
            ctx,
            deadline: 0,
            released: reading,
            born,
            uses,
            seq: 0,
        };
        let idle_ns = lim.idle_timeout_ns.min(hint_ns);
        conn.deadline = reading
            .saturating_add(idle_ns)
            .min(born.saturating_add(lim.lifetime_ns));
        let shard = self.shard_of(st, hash);
        let max = lim.max_idle_per_key;
        let at = (hash, key, ret, now);
        if lim.max_uses != 0 && uses >= lim.max_uses {
            return self.put_closing(st, at, conn, Some(CloseReason::Retired), false);
        }
        if conn.deadline <= self.exact_near(now, conn.deadline) {
            return self.put_closing(st, at, conn, Some(CloseReason::Expired), false);
        }
        let capped = lim.max_idle_total != 0;
        if capped {
            // At the cap a release evicts to make room; one into a full key keeps nothing,
            // so it must not evict anything: check the key first (and again under the lock).
            if !self.reserve(st, shard, hash, key, now) {
                return self.put_closing(st, at, conn, Some(CloseReason::Full), false);
            }
            conn.seq = st.seq.fetch_add(1, Ordering::Relaxed) + 1;
        }
        let watcher = st.watcher();
        let deadline = conn.deadline;
        let fast = {
            let mut guard = shard.lock();
            inject_panic(key);
            guard.put_fast(hash, key, conn, ret, max, |e| self.exact_near(now, e))
        };
        let released = match fast {
            Ok(()) => Released::Pooled,
            Err(conn) => self.put_closing(st, at, conn, None, capped),
        };
        if let (Some(w), Released::Pooled) = (watcher, released) {
            w.lower_timer(deadline);
        }
        released
    }

    /// A connection the harvest check cannot watch (epoll refuses it: a regular file): it
    /// cannot be kept under that check's guarantee, so it is closed (counted dead).
    #[cold]
    fn put_unwatchable(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        fd: OwnedFd,
        ctx: usize,
        loan: Option<Loan>,
    ) -> Released {
        let ret = self.returning(st, hash, loan);
        let (reading, now) = self.now();
        let conn = Conn {
            fd,
            ctx,
            deadline: NEVER,
            released: reading,
            born: loan.map_or(reading, |l| l.born),
            uses: loan.map_or(1, |l| l.uses.saturating_add(1)),
            seq: 0,
        };
        self.put_closing(
            st,
            (hash, key, ret, now),
            conn,
            Some(CloseReason::Dead),
            false,
        )
    }

    /// Release's full path, with something to close after unlocking (`close`: the
    /// connection itself, for that reason; `placed`: it holds a place under the cap).
    #[cold]
    pub(super) fn put_closing(
        &self,
        st: &Generation,
        (hash, key, ret, now): (u64, &[u8], Return, u64),
        conn: Conn,
        close: Option<CloseReason>,
        placed: bool,
    ) -> Released {
        let max = self.limits.max_idle_per_key;
        let mut closes = self.close_list(st);
        let mut guard = self.shard_of(st, hash).lock();
        inject_panic(key);
        if guard.put(hash, key, conn, ret, max, now, close, placed, &mut closes) {
            Released::Pooled
        } else {
            Released::Closed
        }
    }
}

/// A keep-alive hint in ns ([`NEVER`]: none).
pub(super) fn hint_ns(keepalive: Option<Duration>) -> u64 {
    keepalive.map_or(NEVER, |d| u64::try_from(d.as_nanos()).unwrap_or(NEVER))
}
