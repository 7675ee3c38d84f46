//! Pool limits and checks.

use std::os::fd::BorrowedFd;
use std::panic::RefUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::stats::CloseReason;

/// The close callback's signature: the fd (still open: the pool closes it right after), the
/// caller's state released with it, and why. (RefUnwindSafe, so that a pool stays so.)
pub type OnClose = dyn Fn(BorrowedFd<'_>, usize, CloseReason) + Send + Sync + RefUnwindSafe;
/// The health check's signature: the idle fd and the caller's state; true for healthy.
pub type Check = dyn Fn(BorrowedFd<'_>, usize) -> bool + Send + Sync + RefUnwindSafe;

/// A callback in a [`Config`]: shared, compared by identity.
pub struct Callback<F: ?Sized>(pub Arc<F>);

impl<F: ?Sized> Clone for Callback<F> {
    fn clone(&self) -> Self {
        Callback(self.0.clone())
    }
}

impl<F: ?Sized> PartialEq for Callback<F> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<F: ?Sized> Eq for Callback<F> {}

impl<F: ?Sized> std::fmt::Debug for Callback<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Callback")
    }
}

impl<F: ?Sized> std::ops::Deref for Callback<F> {
    type Target = F;
    fn deref(&self) -> &F {
        &self.0
    }
}

/// Pool limits and checks. `Config::default()` is 8 idle connections per key, a 60 s idle
/// timeout, the liveness check on and no other limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Idle connections kept per key; a release into a full key closes the fd. At least 1.
    pub max_idle_per_key: usize,
    /// Idle connections kept over all keys; a release that would exceed it closes the least
    /// recently released idle connection of any key. `None`: no global cap. At least 1.
    pub max_idle_total: Option<usize>,
    /// A connection idle this long is never handed out; `None` keeps idle connections forever.
    pub idle_timeout: Option<Duration>,
    /// A connection is never handed out nor kept once this long has passed since it was first
    /// released to the pool. `None`: no limit.
    pub max_lifetime: Option<Duration>,
    /// The release that brings a connection to this many uses (requests served: 1 at its
    /// first release, +1 per acquire and release) closes it. `None`: no limit. At least 1.
    pub max_uses: Option<u32>,
    /// Check each idle connection with a non-blocking `recv(MSG_PEEK)` before handing it out,
    /// and close it if the peer closed it, reset it or sent stray bytes.
    pub check_liveness: bool,
    /// With `check_liveness`: skip the check for a connection idle for less than this (judged
    /// conservatively: a coarse clock's tick counts as idle time), trading the check's
    /// guarantee for a short window, as curl does (it checks a connection at most once a
    /// second). A backend that closes a connection within that window of its release (a
    /// restart, a crash) gets it handed out dead: the caller's retry on a reused connection
    /// must cover that. `None` (the default): every idle connection is checked.
    pub skip_check_if_idle_under: Option<Duration>,
    /// With `check_liveness`: check by harvest instead of one `recv(MSG_PEEK)` per acquire
    /// (see `crate::harvest`): connections are registered once in an epoll set, and an
    /// acquire reads it (one `epoll_wait(0)`) when the last read is older than 1 ms; only
    /// the connections it found readable are checked (closed; or given to `check`). Only a
    /// connection that became readable within that window is handed out dead. Callers end
    /// connections with `Pool::discard`, never by closing them themselves. Takes precedence
    /// over `skip_check_if_idle_under`.
    pub harvest: bool,
    /// Watch idle connections (an epoll set plus a timerfd, see `Pool::watch_fd` and
    /// `Pool::reap`), so they can be closed the moment their backend closes them or their
    /// deadline passes, without waiting for an acquire. Each connection is registered once
    /// (at its first release); acquires and releases make no system call for it.
    pub watch: bool,
    /// Run a background thread that reaps whenever the watch fd is readable (implies
    /// `watch`). Only for pools made by `Pool::new_shared`.
    pub reaper_thread: bool,
    /// Connections per key (idle, lent and being connected) at most: an acquire at the limit
    /// finds no connection and no connect slot (`Outcome::AtLimit`), or waits
    /// (`Pool::acquire_wait`). `None`: no limit. At least 1.
    pub max_conns_per_key: Option<u32>,
    /// Called exactly once for every connection the pool owned and closes, with the fd still
    /// open, the state it was released with and the reason; never under a pool lock, from
    /// the thread whose call closed it (or the reaper thread). It may call the pool (but not
    /// drop it). Not called in a fork child for the parent's connections.
    pub on_close: Option<Callback<OnClose>>,
    /// Replaces the `recv(MSG_PEEK)` liveness check wherever the pool checks (acquire, prune,
    /// the watcher's reap), with `check_liveness` on; runs outside every pool lock. With it,
    /// the watcher watches idle connections for hang-ups and errors only: unread bytes are
    /// the protocol's business (a TLS session ticket, an HTTP/2 PING).
    pub check: Option<Callback<Check>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_idle_per_key: 8,
            max_idle_total: None,
            idle_timeout: Some(Duration::from_secs(60)),
            max_lifetime: None,
            max_uses: None,
            check_liveness: true,
            skip_check_if_idle_under: None,
            harvest: false,
            watch: false,
            reaper_thread: false,
            max_conns_per_key: None,
            on_close: None,
            check: None,
        }
    }
}

impl Config {
    /// Why this configuration cannot make a pool ([`Error::InvalidConfig`]), if it cannot.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |why| Err(Error::InvalidConfig(why));
        if self.max_idle_per_key == 0 {
            return invalid("max_idle_per_key must be at least 1");
        }
        if self.max_idle_total == Some(0) {
            return invalid("max_idle_total must be at least 1 (or None)");
        }
        if self.max_uses == Some(0) {
            return invalid("max_uses must be at least 1 (or None)");
        }
        if self.max_conns_per_key == Some(0) {
            return invalid("max_conns_per_key must be at least 1 (or None)");
        }
        Ok(())
    }
}
