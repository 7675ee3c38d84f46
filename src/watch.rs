//! The idle watcher (`Config::watch`): one epoll set over the pool's idle fds plus one
//! timerfd armed at the earliest idle deadline, so a caller's event loop (or the pool's
//! reaper thread) learns the moment a backend closes an idle connection or a deadline passes.
//!
//! Rules that keep ownership exact (see `Pool::reap`):
//! - An fd is armed in the set before it is stored in the pool, and disarmed before it is
//!   handed out: it stays registered while a caller holds it, so that its next release
//!   re-arms it with one `EPOLL_CTL_MOD` instead of an `ADD` (and acquire pays a `MOD`
//!   instead of a `DEL`). A disarmed entry asks for no events; only the hang-up and error
//!   events the kernel always reports can fire, at most once (`EPOLLONESHOT`), carrying the
//!   [`LENT`] tag, which matches nothing and is dropped by [`Watcher::ready_batch`].
//! - An fd is tagged with its key's hash: an event says "look at this key", and the reaper
//!   checks that key's idle connections (the liveness check, or the caller's check) exactly
//!   as prune does, closing only those that fail. So an event read in a batch whose fd was
//!   handed out or closed since, and its number reused, closes nothing that is healthy; and
//!   finding a key costs one table probe, not a scan.
//! - Without a caller's check, input counts (bytes nobody asked for mean a desynchronised
//!   stream). With one, only hang-ups and errors are watched: unread bytes are the
//!   protocol's business (a TLS session ticket, an HTTP/2 PING), and a readable but healthy
//!   connection would otherwise keep the watch fd readable for ever.
//! - An fd the pool closes is removed from the set first, never left to `close()`: the kernel
//!   keeps a closed fd in an epoll set while another process (a fork child) still holds the
//!   same open file, and an armed stale entry could keep the watch fd readable for good. A
//!   lent fd that the caller closes while a fork child holds its file leaves its disarmed
//!   entry behind until the child closes it too: harmless (at most one wake-up, with
//!   [`LENT`]); a new fd that reuses the number is a different file, so it gets an entry
//!   of its own (the `MOD` that re-arms by number finds no entry for it and `ADD`s).
//! - The timer: `armed` is the deadline the timerfd is set to. Releases lower it; a reap
//!   that fired resets it to "none" before it rescans and then arms the smaller of what the
//!   scan found and what releases set meanwhile, so no deadline is missed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::cell::Lock;
use crate::closer::close_fd;
use crate::conn::NEVER;
use crate::fd_table;
use crate::sys;

/// The epoll data of the timerfd; idle fds carry their key's hash (a key whose hash is
/// this, [`NOTICE`] or [`LENT`], three in 2^64, is only never reaped early: its acquires
/// still check).
const TIMER: u64 = u64::MAX;
/// The epoll data of a disarmed (lent) fd's entry.
const LENT: u64 = 0;
/// The epoll data of the notice eventfd: a key that refused an acquire (-EAGAIN, at its
/// limit) has a slot or an idle connection now.
const NOTICE: u64 = u64::MAX - 1;
/// Events read per `epoll_wait`.
const BATCH: usize = 64;

/// What became ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// The earliest deadline has passed.
    Timer,
    /// An idle fd of the key with this hash has input, a hang-up or an error.
    Key { hash: u64 },
    /// A key that refused an acquire has room now (the notice is consumed).
    Notice,
}

#[derive(Debug)]
pub struct Watcher {
    epoll: Option<OwnedFd>,
    timer: Option<OwnedFd>,
    notice: Option<OwnedFd>,
    /// The deadline the timer is armed for ([`NEVER`]: disarmed).
    armed: Lock<u64>,
    /// Whether input counts (no caller's check): see the module's rules.
    input: bool,
}

impl Watcher {
    pub fn new(pool_id: u32, input: bool) -> std::io::Result<Self> {
        let epoll = sys::epoll_create()?;
        let timer = sys::timerfd_create()?;
        let notice = sys::eventfd_create()?;
        sys::epoll_arm(epoll.as_fd(), timer.as_fd(), TIMER, false, true)?;
        sys::epoll_arm(epoll.as_fd(), notice.as_fd(), NOTICE, false, true)?;
        // The pool owns them: a fork child closes its copies like those of idle fds.
        for fd in [&epoll, &timer, &notice] {
            fd_table::claim(fd.as_raw_fd(), pool_id);
        }
        Ok(Watcher {
            epoll: Some(epoll),
            timer: Some(timer),
            notice: Some(notice),
            armed: Lock::new(NEVER),
            input,
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

    /// The notice eventfd (written by `Closing::notify_event_loop`).
    pub fn notice_fd(&self) -> RawFd {
        self.notice.as_ref().expect("open until drop").as_raw_fd()
    }

    /// Starts watching an fd that is about to be stored under the key with hash `hash`.
    /// `lent`: this pool handed the fd out, so it is probably still registered, disarmed.
    /// A failure (an fd epoll cannot watch, like a regular file) only means no early close.
    pub fn watch(&self, fd: BorrowedFd<'_>, hash: u64, lent: bool) {
        let _ = sys::epoll_arm(self.epoll(), fd, hash, lent, self.input);
    }

    /// Stops watching an fd that is handed out (it stays registered, disarmed).
    pub fn disarm(&self, fd: RawFd) {
        sys::epoll_disarm(self.epoll(), fd, LENT);
    }

    /// Up to [`BATCH`] ready events, without waiting. The set is level-triggered: an event
    /// is reported again until its fd leaves the set, so the caller handles one batch (which
    /// removes the fds it closes) before asking for the next; asking again at once would
    /// return the same events.
    /// Also returns whether the batch was full (more may be ready).
    pub fn ready_batch(&self) -> (Vec<Ready>, bool) {
        let mut data = Vec::with_capacity(BATCH);
        sys::epoll_ready(self.epoll(), &mut data, BATCH);
        let full = data.len() == BATCH;
        data.sort_unstable();
        data.dedup(); // one look per key
        let ready = data
            .into_iter()
            .filter(|&d| d != LENT)
            .map(|d| match d {
                TIMER => Ready::Timer,
                NOTICE => {
                    sys::drain_counter(self.notice.as_ref().expect("open until drop").as_fd());
                    Ready::Notice
                }
                hash => Ready::Key { hash },
            })
            .collect();
        (ready, full)
    }

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
        for fd in [self.epoll.take(), self.timer.take(), self.notice.take()]
            .into_iter()
            .flatten()
        {
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
        let w = Watcher::new(u32::MAX, true).unwrap();
        let now = sys::precise_now_ns();
        w.begin_rescan();
        w.lower_timer(now + 30_000_000); // a release during the rescan
        w.finish_rescan(NEVER); // the rescan found nothing
        assert!(!readable_within(w.fd(), 0), "not due yet");
        assert!(readable_within(w.fd(), 5_000), "the deadline was lost");
        let (batch, _) = w.ready_batch();
        assert_eq!(batch, vec![Ready::Timer]);
    }
}
