//! Acquire: the hot path that hands an idle connection to the caller.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use super::{inject_panic, ConnInfo, Generation, Pool};
use crate::clock::Clock;
use crate::conn::Conn;
use crate::fd_table;
use crate::key::Key;
use crate::shard::Shard;
use crate::stats::CloseReason;

/// A connection handed out with its state ([`Pool::acquire_ctx`], [`Pool::acquire_by`]).
#[derive(Debug)]
pub struct Acquired {
    /// The connection, now the caller's.
    pub fd: OwnedFd,
    /// The caller's state released with it (0: none): the caller's again.
    pub ctx: usize,
    /// What is known of the connection.
    pub info: ConnInfo,
}

impl<C: Clock> Pool<C> {
    /// Takes the most recently released live connection of `key`, now owned by the caller.
    pub fn acquire(&self, key: Key<'_>) -> Option<OwnedFd> {
        let st = self.state();
        let (hash, _) = self.shard(st, key.as_bytes());
        self.take(st, hash, key.as_bytes()).map(|(c, _)| c.fd)
    }

    /// As [`Pool::acquire`], with what is known of the connection. The key's expired
    /// connections are closed first; with the liveness check on, each candidate is checked
    /// (outside the lock) and closed if dead, and the next one is tried.
    pub fn acquire_info(&self, key: Key<'_>) -> Option<(OwnedFd, ConnInfo)> {
        self.acquire_ctx(key).map(|a| (a.fd, a.info))
    }

    /// As [`Pool::acquire_info`], with the caller's state released with the connection.
    pub fn acquire_ctx(&self, key: Key<'_>) -> Option<Acquired> {
        let st = self.state();
        let (hash, _) = self.shard(st, key.as_bytes());
        self.take(st, hash, key.as_bytes())
            .map(|(c, reading)| self.acquired(c, reading))
    }

    /// As [`Pool::acquire`], with the caller's state released with the connection (0: none),
    /// without the figures of [`Pool::acquire_ctx`] (which cost a precise clock read).
    pub fn acquire_fd_ctx(&self, key: Key<'_>) -> Option<(OwnedFd, usize)> {
        let st = self.state();
        let (hash, _) = self.shard(st, key.as_bytes());
        self.take(st, hash, key.as_bytes())
            .map(|(c, _)| (c.fd, c.ctx))
    }

    /// The connection handed out, with what is known of it.
    pub(super) fn acquired(&self, c: Conn, reading: u64) -> Acquired {
        // The exact time (a coarse reading may lag, see `Pool::exact_near`); the stamps may
        // lag too, which can only make a connection look idler and older, never fresher.
        let reading = reading.max(self.clock.precise_now_ns());
        let info = ConnInfo {
            idle: Duration::from_nanos(reading.saturating_sub(c.released)),
            age: Duration::from_nanos(reading.saturating_sub(c.born)),
            uses: c.uses,
        };
        Acquired {
            fd: c.fd,
            ctx: c.ctx,
            info,
        }
    }

    /// The acquire itself, for the key `key` with hash `hash`: the connection handed out
    /// (now the caller's) and the clock reading it was taken at.
    #[inline]
    pub(super) fn take(&self, st: &Generation, hash: u64, key: &[u8]) -> Option<(Conn, u64)> {
        let (reading, now) = self.now();
        let shard = self.shard_of(st, hash);
        loop {
            // A hit is counted once the connection is known to be handed out: at once if it
            // is not checked, after the check otherwise (so hits never go down).
            let will_check = |c: &Conn| self.must_check(c, reading);
            let fast = {
                let mut guard = shard.lock();
                inject_panic(key);
                guard.take_fast(hash, key, |e| self.exact_near(now, e), will_check)
            };
            let got = match fast {
                Some(got) => {
                    if got.is_some() {
                        st.closing.give_back(1);
                    }
                    got
                }
                None => self.take_closing(st, shard, hash, key, now, reading),
            };
            let (c, checked) = got?;
            // Disarmed first: a dead one would keep the watch fd readable while nothing
            // in the pool can be reaped for it.
            if let Some(w) = st.watcher() {
                w.disarm(c.fd.as_raw_fd());
            }
            if !checked || self.healthy(&c) {
                if checked {
                    shard.count_checked_hit();
                }
                fd_table::lend(c.fd.as_raw_fd(), self.id, c.born, c.uses);
                return Some((c, reading));
            }
            // Dead: close it and try the next one.
            self.close_now(st, c, CloseReason::Dead);
        }
    }

    /// Acquire's slow path: the key may hold expired connections, to be closed after
    /// unlocking.
    #[cold]
    fn take_closing(
        &self,
        st: &Generation,
        shard: &Shard,
        hash: u64,
        key: &[u8],
        now: u64,
        reading: u64,
    ) -> Option<(Conn, bool)> {
        let mut closes = self.close_list(st);
        let mut guard = shard.lock();
        let got = guard.take(hash, key, |e| self.exact_near(now, e), &mut closes);
        let checked = got.as_ref().is_some_and(|c| self.must_check(c, reading));
        if got.is_some() && !checked {
            guard.count_hit();
        }
        got.map(|c| (c, checked))
        // the guard unlocks, then the close list closes
    }

    /// Whether acquire checks `c` before handing it out: with the check on, unless the
    /// skip window is set and `c` was certainly idle for less (its idle time read from a
    /// coarse clock may be up to one tick short).
    #[inline]
    fn must_check(&self, c: &Conn, reading: u64) -> bool {
        self.limits.check_liveness
            && reading
                .saturating_sub(c.released)
                .saturating_add(self.lag_ns)
                >= self.limits.skip_check_ns
    }
}
