//! The idle watcher (`Config::watch`): one epoll set over the pool's idle fds plus one
//! timerfd armed at the earliest idle deadline, so a caller's event loop (or the pool's
//! reaper thread) learns the moment a backend closes an idle connection or a deadline passes.
//!
//! Rules that keep ownership exact (see `Pool::reap`):
//! - An fd is armed in the set before it is stored in the pool, and disarmed before it is
//!   handed out: it stays registered while a caller holds it, so that its next release
//!   re-arms it with one `EPOLL_CTL_MOD` instead of an `ADD` (and acquire pays a `MOD`
//!   instead of a `DEL`): about half the system-call time per acquire and release. A
//!   disarmed entry asks for no events; only the hang-up and error events the kernel always
//!   reports can fire, at most once (`EPOLLONESHOT`), carrying the [`LENT`] token, which
//!   matches nothing and is dropped by [`Watcher::ready_batch`].
//! - An fd the pool closes is removed from the set first, never left to `close()`: the kernel
//!   keeps a closed fd in an epoll set while another process (a fork child) still holds the
//!   same open file, and an armed stale entry could keep the watch fd readable for good. A
//!   lent fd that the caller closes while a fork child holds its file leaves its disarmed
//!   entry behind until the child closes it too: harmless (at most one wake-up, with
//!   [`LENT`]); a new fd that reuses the number is a different file, so it gets an entry
//!   of its own (the `MOD` that re-arms by number finds no entry for it and `ADD`s).
//! - An event only says "look": the reaper closes an fd only after finding it in a shard
//!   and taking it out under that shard's lock, exactly as acquire does. An fd already
//!   handed out is not there any more; one being released is not there yet (the set is
//!   level-triggered, so its event comes back once it is).
//! - The timer: `armed` is the deadline the timerfd is set to. Releases lower it; a reap
//!   that fired resets it to "none" before it rescans and then arms the smaller of what the
//!   scan found and what releases set meanwhile, so no deadline is missed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::cell::Lock;
use crate::closer::close_fd;
use crate::conn::NEVER;
use crate::fd_table;
use crate::sys;

/// The epoll data of the timerfd; idle fds carry a token (see [`Watcher::watch`]).
const TIMER: u64 = u64::MAX;
/// The epoll data of a disarmed (lent) fd's entry; never a token (their high bits count
/// from 1).
const LENT: u64 = 0;
/// Low bits of a token: the shard the fd is stored in.
const SHARD_BITS: u32 = 6;
/// Events read per `epoll_wait`.
const BATCH: usize = 64;

/// What became ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// The earliest deadline has passed.
    Timer,
    /// The idle fd registered with `token` (stored in shard `shard`) has input, a hang-up or
    /// an error.
    Fd { token: u64, shard: usize },
}

#[derive(Debug)]
pub struct Watcher {
    epoll: Option<OwnedFd>,
    timer: Option<OwnedFd>,
    /// The deadline the timer is armed for ([`NEVER`]: disarmed).
    armed: Lock<u64>,
    /// Registrations made so far (the high bits of tokens).
    registrations: std::sync::atomic::AtomicU64,
}

impl Watcher {
    pub fn new(pool_id: u32) -> std::io::Result<Self> {
        let epoll = sys::epoll_create()?;
        let timer = sys::timerfd_create()?;
        sys::epoll_arm(epoll.as_fd(), timer.as_fd(), TIMER, false)?;
        // The pool owns both: a fork child closes its copies like those of idle fds.
        fd_table::claim(epoll.as_raw_fd(), pool_id);
        fd_table::claim(timer.as_raw_fd(), pool_id);
        Ok(Watcher {
            epoll: Some(epoll),
            timer: Some(timer),
            armed: Lock::new(NEVER),
            registrations: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn epoll(&self) -> BorrowedFd<'_> {
        self.epoll.as_ref().expect("open until drop").as_fd()
    }

    fn timer(&self) -> BorrowedFd<'_> {
        self.timer.as_ref().expect("open until drop").as_fd()
    }

    /// The fd a caller polls: readable when there is something to reap.
    pub fn fd(&self) -> RawFd {
        self.epoll().as_raw_fd()
    }

    /// Starts watching an fd that is about to be stored in `shard`; returns the token its
    /// events will carry, to be stored with it. Events are read in batches, so by the time
    /// one is handled its fd number may have been closed and reused by another connection:
    /// the token, unique per registration, tells them apart (the number cannot).
    /// `lent`: this pool handed the fd out, so it is probably still registered, disarmed.
    /// A failure (an fd epoll cannot watch, like a regular file) only means no early close.
    pub fn watch(&self, fd: BorrowedFd<'_>, shard: usize, lent: bool) -> u64 {
        let n = self
            .registrations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = (n + 1) << SHARD_BITS | shard as u64;
        let _ = sys::epoll_arm(self.epoll(), fd, token, lent);
        token
    }

    /// Stops watching an fd that is handed out (it stays registered, disarmed).
    pub fn disarm(&self, fd: RawFd) {
        sys::epoll_disarm(self.epoll(), fd, LENT);
    }

    /// Up to [`BATCH`] ready events, without waiting. The set is level-triggered: an event
    /// is reported again until its fd leaves the set, so the caller handles one batch (which
    /// removes the fds it closes) before asking for the next; asking again at once would
    /// return the same events.
    pub fn ready_batch(&self) -> Vec<Ready> {
        let mut data = Vec::with_capacity(BATCH);
        sys::epoll_ready(self.epoll(), &mut data, BATCH);
        data.into_iter()
            .filter(|&d| d != LENT)
            .map(|d| match d {
                TIMER => Ready::Timer,
                token => Ready::Fd {
                    token,
                    shard: (token & ((1 << SHARD_BITS) - 1)) as usize,
                },
            })
            .collect()
    }

    /// Events per [`Watcher::ready_batch`].
    pub const BATCH: usize = BATCH;

    /// A release stored a connection expiring at `deadline`: fire no later than that.
    #[inline]
    pub fn lower_timer(&self, deadline: u64) {
        if deadline == NEVER {
            return;
        }
        let mut armed = self.armed.lock();
        if deadline < *armed {
            sys::timerfd_set(self.timer(), Some(deadline));
            *armed = deadline;
        }
    }

    /// The timer fired: consume it and forget the armed deadline; then rescan.
    pub fn begin_rescan(&self) {
        sys::drain_counter(self.timer());
        *self.armed.lock() = NEVER;
    }

    /// After a rescan that found `next` as the earliest remaining deadline.
    pub fn finish_rescan(&self, next: u64) {
        let mut armed = self.armed.lock();
        let at = next.min(*armed);
        sys::timerfd_set(self.timer(), (at != NEVER).then_some(at));
        *armed = at;
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Through close_fd, which forgets them in the fd table.
        for fd in [self.epoll.take(), self.timer.take()].into_iter().flatten() {
            close_fd(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable_within(fd: RawFd, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        #[allow(unsafe_code)]
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        n == 1
    }

    /// A release that lowers the timer while a rescan runs (after the rescan passed its
    /// shard) must not be overwritten by the rescan's own result, even "nothing due".
    #[test]
    fn a_deadline_set_during_a_rescan_is_kept() {
        let w = Watcher::new(u32::MAX).unwrap();
        let now = sys::precise_now_ns();
        w.begin_rescan();
        w.lower_timer(now + 30_000_000); // a release during the rescan
        w.finish_rescan(NEVER); // the rescan found nothing
        assert!(!readable_within(w.fd(), 0), "not due yet");
        assert!(readable_within(w.fd(), 5_000), "the deadline was lost");
        let batch = w.ready_batch();
        assert_eq!(batch, vec![Ready::Timer]);
    }
}
