//! What a pool is configured with, as its calls read it ([`Limits`], [`Hooks`]), and what a
//! fork() child replaces ([`Generation`]: the shards, the counters, the epoll sets, the
//! reaper).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::time::Duration;

use super::reaper::Reaper;
use crate::cell::Lock;
use crate::closer::Closing;
use crate::config::{Callback, Check, Config, OnClose};
use crate::conn::NEVER;
use crate::error::Error;
use crate::harvest::Harvest;
use crate::shard::{Shard, SHARDS};
use crate::watch::Watcher;

/// The limits in clock units, as the hot path reads them.
#[derive(Debug)]
pub(super) struct Limits {
    pub(super) max_idle_per_key: usize,
    /// 0: no global cap.
    pub(super) max_idle_total: usize,
    /// [`NEVER`]: none.
    pub(super) idle_timeout_ns: u64,
    /// [`NEVER`]: none.
    pub(super) lifetime_ns: u64,
    /// 0: none.
    pub(super) max_uses: u32,
    pub(super) check_liveness: bool,
    /// With `check_liveness`: check by harvest (`crate::harvest`).
    pub(super) harvest: bool,
    /// With `check_liveness`: connections idle for less are not checked (0: all are).
    pub(super) skip_check_ns: u64,
    pub(super) watch: bool,
    /// `harvest || watch`: connections are watched in epoll sets (`crate::watch_set`).
    pub(super) watched: bool,
    pub(super) reaper_thread: bool,
    /// 0: none.
    pub(super) max_conns_per_key: u32,
}

/// The caller's callbacks.
#[derive(Debug, Clone)]
pub(super) struct Hooks {
    pub(super) on_close: Option<Callback<OnClose>>,
    pub(super) check: Option<Callback<Check>>,
}

impl Limits {
    pub(super) fn new(config: &Config) -> Self {
        Limits {
            max_idle_per_key: config.max_idle_per_key,
            max_idle_total: config.max_idle_total.unwrap_or(0),
            idle_timeout_ns: nanos(config.idle_timeout),
            lifetime_ns: nanos(config.max_lifetime),
            max_uses: config.max_uses.unwrap_or(0),
            check_liveness: config.check_liveness,
            harvest: config.check_liveness && config.harvest,
            skip_check_ns: match config.skip_check_if_idle_under {
                Some(d) if !config.harvest => u64::try_from(d.as_nanos()).unwrap_or(NEVER),
                _ => 0,
            },
            watch: config.watch || config.reaper_thread,
            watched: (config.check_liveness && config.harvest)
                || config.watch
                || config.reaper_thread,
            reaper_thread: config.reaper_thread,
            max_conns_per_key: config.max_conns_per_key.unwrap_or(0),
        }
    }
}

/// Everything a fork() child must replace: the shards (whose locks another parent thread may
/// have held at the fork), the counters, the watcher and the reaper.
#[derive(Debug)]
pub(super) struct Generation {
    /// The process generation (`crate::process`) this state belongs to.
    pub(super) process: u64,
    pub(super) shards: Box<[Shard; SHARDS]>,
    /// How connections are closed; with a global cap, the count of places taken.
    pub(super) closing: Closing,
    /// With a global cap: the next release sequence number.
    pub(super) seq: AtomicU64,
    /// Drains of every key (`Pool::drain(None)`): connections lent before one are closed at
    /// their release.
    pub(super) drains: AtomicU32,
    /// `Pool::shutdown` was called: waits end at once.
    pub(super) shutdown: AtomicBool,
    /// With `watch`: the epoll set and timer.
    pub(super) watcher: Option<Watcher>,
    /// With the harvest check: its epoll set.
    pub(super) harvest: Option<Harvest>,
    /// Why there is no watcher (`Error::NoWatcher` without `watch`; why it could not be
    /// made, e.g. in a fork child out of fds).
    pub(super) no_watcher: Error,
    pub(super) reaper: Lock<Option<Reaper>>,
}

impl Generation {
    pub(super) fn new(process: u64, limits: &Limits, hooks: &Hooks, pool_id: u32) -> Self {
        let watch = if limits.watch {
            Watcher::new(pool_id).map_err(Error::last_os)
        } else {
            Err(Error::NoWatcher)
        };
        let fds = watch.as_ref().ok().map(|w| (w.fd(), w.notice_fd()));
        let mut no_watcher = watch.as_ref().err().copied().unwrap_or(Error::NoWatcher);
        let harvest = if limits.harvest {
            match Harvest::new(pool_id) {
                Ok(h) => Some(h),
                Err(e) => {
                    no_watcher = Error::last_os(e);
                    None
                }
            }
        } else {
            None
        };
        let limit = limits.max_conns_per_key;
        Generation {
            process,
            shards: Box::new(std::array::from_fn(|_| Shard::new(limit))),
            closing: Closing::new(
                fds,
                harvest.as_ref().map(|h| h.set.fd()),
                limits.max_idle_total != 0,
                hooks.on_close.clone(),
            ),
            seq: AtomicU64::new(0),
            drains: AtomicU32::new(0),
            shutdown: AtomicBool::new(false),
            watcher: watch.ok(),
            harvest,
            no_watcher,
            reaper: Lock::new(None),
        }
    }

    #[inline]
    pub(super) fn watcher(&self) -> Option<&Watcher> {
        self.watcher.as_ref()
    }

    #[inline]
    pub(super) fn harvest(&self) -> Option<&Harvest> {
        self.harvest.as_ref()
    }
}

/// A duration in nanoseconds; [`NEVER`] for none (zero means none too).
pub(super) fn nanos(d: Option<Duration>) -> u64 {
    match d {
        Some(d) if !d.is_zero() => u64::try_from(d.as_nanos()).unwrap_or(NEVER),
        _ => NEVER,
    }
}
