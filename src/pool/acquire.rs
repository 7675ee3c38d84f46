//! Acquire: the hot path that hands an idle connection to the caller, and its forms.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{inject_panic, ConnInfo, Generation, Pool};
use crate::cell::Shared;
use crate::clock::Clock;
use crate::conn::Conn;
use crate::key::Key;
use crate::shard::Took;
use crate::wait::{Served, Waiter};

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

/// What an acquire that tells everything found ([`Pool::try_acquire`]).
#[derive(Debug)]
pub enum Outcome {
    /// An idle connection, now the caller's.
    Hit(Acquired),
    /// None idle: connect a new one. With `Config::max_conns_per_key`, a connect slot is
    /// reserved for it: release the new connection (or discard it, or `discard_slot` if the
    /// connect failed).
    Connect,
    /// None idle and the key is at its connection limit: nothing changed.
    AtLimit,
    /// The wait timed out ([`Pool::acquire_wait`]).
    TimedOut,
    /// The pool is shutting down ([`Pool::shutdown`]).
    Cancelled,
}

/// The acquire itself, before the caller's form is made of it.
pub(super) enum Taken {
    Hit(Conn, u64),
    Connect,
    AtLimit,
    TimedOut,
    Cancelled,
}

impl<C: Clock> Pool<C> {
    /// Takes the most recently released live connection of `key`, now owned by the caller.
    /// `None`: connect a new one (with a limit, see [`Pool::try_acquire`]: `None` then also
    /// means the key is at its limit).
    pub fn acquire(&self, key: Key<'_>) -> Option<OwnedFd> {
        self.acquire_fd_ctx(key).map(|(fd, _)| fd)
    }

    /// As [`Pool::acquire`], with what is known of the connection. The key's expired
    /// connections are closed first; with the liveness check on, each candidate is checked
    /// (outside the lock) and closed if dead, and the next one is tried.
    pub fn acquire_info(&self, key: Key<'_>) -> Option<(OwnedFd, ConnInfo)> {
        self.acquire_ctx(key).map(|a| (a.fd, a.info))
    }

    /// As [`Pool::acquire_info`], with the caller's state released with the connection.
    pub fn acquire_ctx(&self, key: Key<'_>) -> Option<Acquired> {
        match self.try_acquire(key) {
            Outcome::Hit(a) => Some(a),
            _ => None,
        }
    }

    /// As [`Pool::acquire`], with the caller's state released with the connection (0: none),
    /// without the figures of [`Pool::acquire_ctx`] (which cost a precise clock read).
    pub fn acquire_fd_ctx(&self, key: Key<'_>) -> Option<(OwnedFd, usize)> {
        self.try_acquire_fd(key).ok()
    }

    /// [`Pool::acquire_fd_ctx`] that tells why there is none. Inlined always: a call
    /// returning this result through memory cost more than the fork check.
    #[inline(always)]
    pub fn try_acquire_fd(&self, key: Key<'_>) -> Result<(OwnedFd, usize), Outcome> {
        let st = self.state();
        let hash = self.hasher.hash_key(key.as_bytes());
        self.take_fd(st, hash, key.as_bytes(), None)
    }

    /// An acquire that tells what it found: a connection, a connect slot, or the limit.
    pub fn try_acquire(&self, key: Key<'_>) -> Outcome {
        let st = self.state();
        let taken = self.take(
            st,
            self.hasher.hash_key(key.as_bytes()),
            key.as_bytes(),
            None,
        );
        self.outcome(taken)
    }

    /// As [`Pool::try_acquire`], but at the key's limit it waits, up to `timeout`, for a
    /// release of the key (whose connection is handed straight to the longest waiter) or a
    /// close (whose slot goes to the longest waiter): FIFO, no thundering herd. A zero
    /// timeout never waits. Blocks the calling thread: for thread-per-connection servers.
    pub fn acquire_wait(&self, key: Key<'_>, timeout: Duration) -> Outcome {
        let st = self.state();
        let hash = self.hasher.hash_key(key.as_bytes());
        let taken = self.take(st, hash, key.as_bytes(), Some(timeout));
        self.outcome(taken)
    }

    pub(super) fn outcome(&self, taken: Taken) -> Outcome {
        match taken {
            Taken::Hit(c, reading) => Outcome::Hit(self.acquired(c, reading)),
            Taken::Connect => Outcome::Connect,
            Taken::AtLimit => Outcome::AtLimit,
            Taken::TimedOut => Outcome::TimedOut,
            Taken::Cancelled => Outcome::Cancelled,
        }
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
    /// (now the caller's) and the clock reading it was taken at, or why there is none.
    /// `wait`: at the key's limit, wait this long (zero or `None`: not at all). Inlined
    /// always, so that the callers that never wait (`None`) lose that code.
    #[inline(always)]
    pub(super) fn take(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        wait: Option<Duration>,
    ) -> Taken {
        let waits = wait.is_some_and(|w| !w.is_zero());
        if self.lean.acquire && !waits {
            let reading = self.now().0;
            match self.take_lean(st, hash, key, None, |c| c) {
                Some(Ok(c)) => return Taken::Hit(c, reading),
                Some(Err(_)) => return Taken::Connect,
                None => {}
            }
        }
        self.harvest_due(st);
        let (reading, now) = self.now();
        let shard = self.shard_of(st, hash);
        let will_check = |c: &Conn| self.must_check(c, reading);
        loop {
            let fast = {
                let mut guard = shard.lock();
                inject_panic(key);
                guard.take_fast(hash, key, |e| self.exact_near(now, e), will_check)
            };
            let took = match fast {
                Some(Took::AtLimit) if waits => None, // queued on the full path
                Some(took) => {
                    if let Took::Conn(..) = took {
                        st.closing.give_back(1);
                    }
                    Some(took)
                }
                None => None,
            };
            let took = match took {
                Some(took) => took,
                None => {
                    let mut closes = self.close_list(st);
                    let mut guard = shard.lock();
                    if !waits {
                        guard.take(
                            hash,
                            key,
                            |e| self.exact_near(now, e),
                            will_check,
                            &mut closes,
                        )
                    } else {
                        if st.shutdown.load(Ordering::Acquire) {
                            return Taken::Cancelled; // checked under the lock: see shutdown
                        }
                        let w = Waiter::new();
                        let nowf = |e| self.exact_near(now, e);
                        match guard.take_or_queue(hash, key, nowf, will_check, &w, &mut closes) {
                            Took::AtLimit => {
                                drop(guard);
                                drop(closes);
                                return self.sleep_on(st, hash, key, &w, wait.unwrap_or_default());
                            }
                            took => took,
                        }
                    }
                    // the guard unlocks, then the close list closes
                }
            };
            let (c, checked, drains) = match took {
                Took::Conn(c, checked, drains) => (c, checked, drains),
                Took::Retry => continue, // the close list has closed them now
                Took::Miss | Took::Slot => return Taken::Connect,
                Took::AtLimit => return Taken::AtLimit,
            };
            let c = if checked {
                // A hit is counted once the check passed (so hits never go down).
                let healthy = self.healthy(&c);
                let mut closes = self.close_list(st);
                // Bound, not matched in place: the guard must unlock before `closes` acts.
                let kept = shard.lock().checked(hash, key, c, healthy, &mut closes);
                match kept {
                    Some(c) => c,
                    None => continue, // dead: closed; try the next one
                }
            } else {
                c
            };
            let muted = if checked && self.limits.harvest {
                crate::fd_table::MUTED_HARVEST // a harvest flagged it; the check passed it
            } else {
                0
            };
            self.lend(st, &c, hash, drains, muted);
            return Taken::Hit(c, reading);
        }
    }

    /// Queued as `w` at the key's limit: sleeps up to `timeout` to be served a connection
    /// (handed over by a release, lent already) or a slot.
    #[cold]
    fn sleep_on(
        &self,
        st: &Generation,
        hash: u64,
        key: &[u8],
        w: &Shared<Waiter>,
        timeout: Duration,
    ) -> Taken {
        let deadline = crate::sys::precise_now_ns()
            .saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
        let shard = self.shard_of(st, hash);
        let served = if w.sleep(deadline) {
            w.take()
        } else if shard.lock().dequeue(hash, key, w) {
            return Taken::TimedOut;
        } else {
            w.take() // served as it gave up: the result is there
        };
        match served {
            Some(Served::Conn(c, drains)) => {
                // Checked as any acquire checks (a release may leave bytes unread).
                let reading = self.now().0;
                let checked = self.must_check(&c, reading);
                let healthy = !checked || self.healthy(&c);
                let mut closes = self.close_list(st);
                let kept = shard
                    .lock()
                    .checked_handoff(hash, key, c, healthy, &mut closes);
                drop(closes); // closed before the caller may connect in its slot
                let Some(c) = kept else {
                    return Taken::Connect; // dead: its slot is this waiter's now
                };
                let muted = if checked && self.limits.harvest {
                    crate::fd_table::MUTED_HARVEST // as in `take`: its release re-arms it
                } else {
                    0
                };
                self.lend(st, &c, hash, drains, muted);
                Taken::Hit(c, reading)
            }
            Some(Served::Slot) => Taken::Connect,
            Some(Served::Cancelled) | None => Taken::Cancelled,
        }
    }

    /// Whether acquire checks `c` before handing it out: with the check on, unless the
    /// skip window is set and `c` was certainly idle for less (its idle time read from a
    /// coarse clock may be up to one tick short).
    #[inline]
    pub(super) fn must_check(&self, c: &Conn, reading: u64) -> bool {
        if self.limits.harvest {
            return crate::fd_table::is_suspect(c.fd.as_raw_fd());
        }
        self.limits.check_liveness
            && reading
                .saturating_sub(c.released)
                .saturating_add(self.lag_ns)
                >= self.limits.skip_check_ns
    }
}
