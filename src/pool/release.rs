//! Release: the caller gives a connection to the pool, which keeps it or closes it.

use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{inject_panic, ForgetOnUnwind, Generation, Pool, Released};
use crate::clock::Clock;
use crate::conn::{Conn, NEVER};
use crate::fd_table::{self, Claim};
use crate::key::Key;
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
    /// it stays the caller's.
    pub fn release_ctx(
        &self,
        key: Key<'_>,
        fd: OwnedFd,
        ctx: usize,
        keepalive: Option<Duration>,
    ) -> Released {
        let st = self.state();
        let (hash, _) = self.shard(st, key.as_bytes());
        self.put(st, hash, key.as_bytes(), fd, ctx, hint_ns(keepalive))
    }

    /// The release itself, into the key `key` with hash `hash`, with the caller's state
    /// and a keep-alive hint in ns ([`NEVER`]: none).
    #[inline]
    pub(super) fn put(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        fd: OwnedFd,
        ctx: usize,
        hint_ns: u64,
    ) -> Released {
        let raw = fd.as_raw_fd();
        let (born, uses) = match fd_table::claim(raw, self.id) {
            Claim::AlreadyPooled => {
                let _ = fd.into_raw_fd(); // the pool's fd already: not ours to close
                return Released::AlreadyPooled;
            }
            Claim::Fresh => (None, 1),
            Claim::Lent { born, uses } => (Some(born), uses.saturating_add(1)),
        };
        // If a bug panics before the fd is stored or closed, unwinding closes it (OwnedFd's
        // drop): forget the claim too, or the number would stay marked as the pool's.
        let unclaim = ForgetOnUnwind(raw);
        let r = self.store(st, hash, key, fd, ctx, hint_ns, born, uses);
        std::mem::forget(unclaim);
        r
    }

    /// The claimed connection `fd`, kept or closed: `born` is its first release, if it was
    /// lent by this pool.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn store(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        fd: OwnedFd,
        ctx: usize,
        hint_ns: u64,
        born: Option<u64>,
        uses: u32,
    ) -> Released {
        let lent = born.is_some();
        let lim = &self.limits;
        let (reading, now) = self.now();
        let born = born.unwrap_or(reading);
        let mut conn = Conn {
            fd,
            ctx,
            deadline: 0,
            released: reading,
            born,
            uses,
            seq: 0,
        };
        if lim.max_uses != 0 && uses >= lim.max_uses {
            self.close_now(st, conn, CloseReason::Retired);
            return Released::Closed;
        }
        let idle_ns = lim.idle_timeout_ns.min(hint_ns);
        conn.deadline = reading
            .saturating_add(idle_ns)
            .min(born.saturating_add(lim.lifetime_ns));
        if conn.deadline <= self.exact_near(now, conn.deadline) {
            self.close_now(st, conn, CloseReason::Expired);
            return Released::Closed;
        }
        let shard = self.shard_of(st, hash);
        if lim.max_idle_total != 0 {
            // At the cap a release evicts to make room; one into a full key keeps nothing,
            // so it must not evict anything: check the key first (and again under the lock).
            if !self.reserve(st, shard, hash, key, now) {
                self.close_now(st, conn, CloseReason::Full);
                return Released::Closed;
            }
            conn.seq = st.seq.fetch_add(1, Ordering::Relaxed) + 1;
        }
        let watcher = st.watcher();
        if let Some(w) = watcher {
            w.watch(conn.fd.as_fd(), hash, lent); // before it is findable: see crate::watch
        }
        let deadline = conn.deadline;
        let max = lim.max_idle_per_key;
        let fast = {
            let mut guard = shard.lock();
            inject_panic(key);
            guard.put_fast(hash, key, conn, max, |e| self.exact_near(now, e))
        };
        let pooled = match fast {
            Ok(()) => true,
            Err(conn) => {
                // Slow path: expired connections, or a full key, to close after unlocking.
                let mut closes = self.close_list(st);
                let mut guard = shard.lock();
                guard.put(
                    hash,
                    key,
                    conn,
                    max,
                    |e| self.exact_near(now, e),
                    &mut closes,
                )
            }
        };
        if !pooled {
            return Released::Closed;
        }
        if let Some(w) = watcher {
            w.lower_timer(deadline);
        }
        Released::Pooled
    }
}

/// A keep-alive hint in ns ([`NEVER`]: none).
pub(super) fn hint_ns(keepalive: Option<Duration>) -> u64 {
    keepalive.map_or(NEVER, |d| u64::try_from(d.as_nanos()).unwrap_or(NEVER))
}
