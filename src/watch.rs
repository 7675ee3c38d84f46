//! The idle watcher (`Config::watch`): the pool's connections in an epoll set
//! (`crate::watch_set`: registered once, level-triggered and one-shot) watched for hang-ups and errors,
//! plus one timerfd armed at the earliest idle deadline and one eventfd for notices, so a
//! caller's event loop (or the pool's reaper thread) learns the moment a backend closes an
//! idle connection or a deadline passes. Acquires and releases make no system call for it
//! (but a release that lowers the earliest deadline re-arms the timer).
//!
//! Rules that keep ownership exact (see `Pool::reap`):
//! - A reported entry is disarmed and flagged (`crate::watch_set`): an idle fd's key is looked
//!   up (recorded at its release, `fd_table::note_key`) and the reaper checks that key's
//!   idle connections (the liveness check, or the caller's check) exactly as prune does,
//!   closing only those that fail. So an event for an fd handed out or closed since, its
//!   number reused, closes nothing that is healthy. A lent fd's entry (its server closed
//!   while the caller holds it) stays disarmed until its release.
//! - Hang-ups only, not input: bytes a server sends unasked on an idle connection are found
//!   by the acquire's check, and a response arriving on a lent connection must not wake the
//!   event loop.
//! - The timer: `armed` is the deadline the timerfd is set to. Releases lower it; a reap
//!   that fired resets it to "none" before it rescans and then arms the smaller of what the
//!   scan found and what releases set meanwhile, so no deadline is missed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cell::Lock;
use crate::closer::close_fd;
use crate::conn::NEVER;
use crate::fd_table::{self, Loan};
use crate::sys;
use crate::watch_set::WatchSet;

/// The epoll data of the timerfd and of the notice eventfd (a key that refused an acquire,
/// -EAGAIN at its limit, has a slot or an idle connection now); connections carry their fd
/// number, which is below 2^31.
const TIMER: u64 = u64::MAX;
const NOTICE: u64 = u64::MAX - 1;
/// Events read per `epoll_wait`.
const BATCH: usize = 64;

/// What became ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// The earliest deadline has passed.
    Timer,
    /// An idle fd of the key with this hash had a hang-up or an error.
    Key { hash: u64 },
    /// A key that refused an acquire has room now (the notice is consumed).
    Notice,
}

#[derive(Debug)]
pub struct Watcher {
    set: WatchSet,
    timer: Option<OwnedFd>,
    notice: Option<OwnedFd>,
    /// The deadline the timer is armed for ([`NEVER`]: disarmed); changed under `arming`,
    /// read without it by releases that have nothing earlier.
    armed: AtomicU64,
    arming: Lock<()>,
    /// Idle fds a reap was told of and has not found yet (another check has them out): the
    /// check that puts one back re-arms it (see [`Watcher::rearm_missed`]). At most
    /// [`MISSED_MAX`]: one that is never found (a fd moved to another pool) is dropped.
    missed: Lock<Vec<RawFd>>,
}

const MISSED_MAX: usize = 1024;

impl Watcher {
    pub fn new(pool_id: u32) -> std::io::Result<Self> {
        let set = WatchSet::new(pool_id, libc::EPOLLRDHUP as u32, fd_table::MUTED_WATCH)?;
        let timer = sys::timerfd_create()?;
        let notice = sys::eventfd_create()?;
        sys::epoll_arm(set.borrow(), timer.as_fd(), TIMER, false, true)?;
        sys::epoll_arm(set.borrow(), notice.as_fd(), NOTICE, false, true)?;
        // The pool owns them: a fork child closes its copies like those of idle fds.
        for fd in [&timer, &notice] {
            fd_table::claim(fd.as_raw_fd(), pool_id);
        }
        Ok(Watcher {
            set,
            timer: Some(timer),
            notice: Some(notice),
            armed: AtomicU64::new(NEVER),
            arming: Lock::new(()),
            missed: Lock::new(Vec::new()),
        })
    }

    fn timer(&self) -> BorrowedFd<'_> {
        self.timer.as_ref().expect("open until drop").as_fd()
    }

    /// The fd a caller polls: readable when there is something to reap.
    pub fn fd(&self) -> RawFd {
        self.set.fd()
    }

    /// The notice eventfd (written by `Closing::notify_event_loop`).
    pub fn notice_fd(&self) -> RawFd {
        self.notice.as_ref().expect("open until drop").as_raw_fd()
    }

    /// Watches an fd about to be stored (`lent`: this generation lent it, so it is
    /// registered). A failure (an fd epoll cannot watch) only means no early close.
    pub fn watch(&self, fd: BorrowedFd<'_>, lent: Option<Loan>) {
        self.set.watch(fd, lent);
    }

    /// Up to [`BATCH`] ready events, without waiting; reported connections are disarmed, so
    /// the next batch holds new ones. Also returns the idle fds reported (now flagged) and
    /// whether the batch was full (more may be ready).
    pub fn ready_batch(&self) -> (Vec<Ready>, Vec<RawFd>, bool) {
        let mut data = Vec::with_capacity(BATCH);
        sys::epoll_ready(self.set.borrow(), &mut data, BATCH);
        let full = data.len() == BATCH;
        let mut fds = Vec::new();
        let mut ready: Vec<Ready> = data
            .into_iter()
            .filter_map(|d| match d {
                TIMER => Some(Ready::Timer),
                NOTICE => {
                    sys::drain_counter(self.notice.as_ref().expect("open until drop").as_fd());
                    Some(Ready::Notice)
                }
                fd => self.set.reported(fd as RawFd).then(|| {
                    fds.push(fd as RawFd);
                    Ready::Key {
                        hash: fd_table::key_of(fd as RawFd),
                    }
                }),
            })
            .collect();
        ready.sort_unstable_by_key(|r| match r {
            Ready::Timer => (0, 0),
            Ready::Notice => (1, 0),
            Ready::Key { hash } => (2, *hash),
        });
        ready.dedup(); // one look per key
        (ready, fds, full)
    }

    /// `fd`, just stored by a release, may have been reported between its registration and
    /// its store, when the reaper could not find it: if it was (flagged), it is unflagged
    /// and re-armed, so that the reaper looks again. Nothing if it was lent or closed
    /// meanwhile (a loan carries the flag; its release re-arms).
    #[inline]
    pub fn rearm_flagged(&self, fd: RawFd) {
        self.set.rearm_flagged(fd);
    }

    /// A reap was told of `fds` and is about to check their keys: missed until a check
    /// takes them out ([`Watcher::found`]). Noted before its checks look, so that a check
    /// that had them out already sees them when it puts them back.
    /// Entries settled meanwhile (lent: the loan carries the flag; re-armed by a release;
    /// closed) leave the list here, so that it holds only what a check has out.
    pub fn note_missed(&self, fds: &[RawFd]) {
        if fds.is_empty() {
            return;
        }
        let mut missed = self.missed.lock();
        missed.retain(|&m| fd_table::is_flagged_idle(m, fd_table::MUTED_WATCH));
        for &fd in fds {
            if !missed.contains(&fd) {
                missed.push(fd);
            }
        }
        let over = missed.len().saturating_sub(MISSED_MAX);
        missed.drain(..over);
    }

    /// A check took `fds` out: whatever it finds is their verdict (a report before now
    /// came before the check looks).
    pub fn found(&self, fds: &[RawFd]) {
        let mut missed = self.missed.lock();
        if !missed.is_empty() {
            missed.retain(|m| !fds.contains(m));
        }
    }

    /// A check that had `taken` out put `kept` back (the rest it closed): those a reap was
    /// told of meanwhile, and could not find, leave the list, and the kept ones are
    /// re-armed, so that the next reap looks at them. Each report is re-armed at most once,
    /// and a reap's own check never re-arms what it was told of: no spin.
    pub fn rearm_missed(&self, taken: &[RawFd], kept: &[RawFd]) {
        let again: Vec<RawFd> = {
            let mut missed = self.missed.lock();
            if missed.is_empty() {
                return;
            }
            let again = missed
                .iter()
                .copied()
                .filter(|m| kept.contains(m))
                .collect();
            missed.retain(|m| !taken.contains(m));
            again
        };
        again.into_iter().for_each(|fd| self.set.rearm_flagged(fd));
    }

    /// A release stored a connection expiring at `deadline`: fire no later than that.
    #[inline]
    pub fn lower_timer(&self, deadline: u64) {
        if deadline >= self.armed.load(Ordering::Acquire) {
            return; // the usual case: an earlier deadline is armed already
        }
        let _arming = self.arming.lock();
        if deadline < self.armed.load(Ordering::Acquire) {
            sys::timerfd_set(self.timer(), Some(deadline));
            self.armed.store(deadline, Ordering::Release);
        }
    }

    /// The timer fired: consume it and forget the armed deadline; then rescan.
    pub fn begin_rescan(&self) {
        sys::drain_counter(self.timer());
        let _arming = self.arming.lock();
        self.armed.store(NEVER, Ordering::Release);
    }

    /// After a rescan that found `next` as the earliest remaining deadline.
    pub fn finish_rescan(&self, next: u64) {
        let _arming = self.arming.lock();
        let at = next.min(self.armed.load(Ordering::Acquire));
        sys::timerfd_set(self.timer(), (at != NEVER).then_some(at));
        self.armed.store(at, Ordering::Release);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Through close_fd, which forgets them in the fd table (the set closes itself).
        for fd in [self.timer.take(), self.notice.take()]
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

    /// The list of reports a reap could not find holds only what a check still has out:
    /// an entry settled since (here: a number no pool holds) leaves it at the next note,
    /// and a check that took an fd out removes it, kept or closed.
    #[test]
    fn missed_reports_leave_the_list_once_settled() {
        let w = Watcher::new(0xbeef).unwrap();
        let (a, b) = (MAX_TEST_FD - 1, MAX_TEST_FD - 2);
        w.note_missed(&[a]);
        assert_eq!(w.missed.lock().as_slice(), &[a]);
        w.note_missed(&[b, b]);
        assert_eq!(w.missed.lock().as_slice(), &[b], "a settled: gone; b once");
        w.rearm_missed(&[b], &[]);
        assert!(w.missed.lock().is_empty(), "taken out and closed: gone");
    }

    const MAX_TEST_FD: RawFd = 1 << 30;

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
        let (batch, _, _) = w.ready_batch();
        assert_eq!(batch, vec![Ready::Timer]);
    }
}
