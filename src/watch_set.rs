//! An epoll set over a pool generation's connections, each registered once (at its first
//! release into the pool) and never re-registered per acquire or release: the harvest
//! check's set and the idle watcher's are one each.
//!
//! Entries are level-triggered and one-shot (`EPOLLONESHOT`): an armed entry is reported
//! whenever its fd is ready, including for what arrived while a caller held the connection
//! and is still unread at its release, and the kernel disarms it as it reports it, so it
//! is reported once. The report is then flagged in the fd table: an idle connection is the
//! pool's to look at; a lent one (a response not read yet, a server's close) is re-armed by
//! its release (one `EPOLL_CTL_MOD`). A connection read promptly is almost never reported
//! while lent, so pairs pay no system call. An entry left behind by a file the pool no
//! longer knows (a lent fd the caller closed while a fork child keeps the file open) is
//! reported at most once. The flag protocol that keeps entries and flags in agreement is
//! `crate::fd_table::muted`'s.
//!
//! An fd leaves the set before the pool closes it (`crate::closer::Closing::unwatch`). A
//! lent fd the caller `close()`s leaves it by itself (the kernel drops the entry with the
//! file), and a new socket that gets its number looks, at its release, like the lent
//! connection coming back: it is not registered. Hence the harvest check's contract that
//! callers end connections with `connpool_discard()`; for the watcher it only means that
//! connection is not watched.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::closer::close_fd;
use crate::fd_table::{self, Loan, Seen};
use crate::sys;

#[derive(Debug)]
pub struct WatchSet {
    set: Option<OwnedFd>,
    /// What an armed entry asks for (one-shot).
    events: u32,
    /// Its flag in the fd table (`fd_table::MUTED_*`).
    flag: u64,
}

impl WatchSet {
    pub fn new(pool_id: u32, events: u32, flag: u64) -> std::io::Result<Self> {
        let set = sys::epoll_create()?;
        fd_table::claim(set.as_raw_fd(), pool_id); // a fork child closes its copy
        Ok(WatchSet {
            set: Some(set),
            events: events | libc::EPOLLONESHOT as u32,
            flag,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.borrow().as_raw_fd()
    }

    pub fn borrow(&self) -> BorrowedFd<'_> {
        self.set.as_ref().expect("open until drop").as_fd()
    }

    /// Watches `fd`, about to be stored: registered unless this generation lent it (`lent`:
    /// its loan, in this process generation), then it still is, and is re-armed if the set
    /// reported it while lent. False: epoll cannot watch it (a regular file).
    pub fn watch(&self, fd: BorrowedFd<'_>, lent: Option<Loan>) -> bool {
        let raw = fd.as_raw_fd();
        match lent {
            Some(l) => {
                if l.muted & self.flag != 0 {
                    self.rearm(raw);
                }
                true
            }
            None => {
                match sys::epoll_ctl(self.fd(), libc::EPOLL_CTL_ADD, raw, self.events, raw as u64) {
                    Ok(()) => true,
                    // Still registered (released again without having left): re-armed.
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self.rearm(raw),
                    Err(_) => false,
                }
            }
        }
    }

    /// Re-arms `fd`'s entry if `fd` is idle and flagged by this set (the flag cleared
    /// first: a report after the re-arm flags it afresh).
    #[inline]
    pub fn rearm_flagged(&self, fd: RawFd) {
        if fd_table::unflag_pooled(fd, self.flag) {
            self.rearm(fd);
        }
    }

    /// A report whose flag could not be set (the fd was lent or released meanwhile): the
    /// entry is re-armed, and for the harvest an fd idle now is suspect (it was readable
    /// at the report, which an acquire within the window would not see otherwise).
    fn undo(&self, fd: RawFd) {
        self.rearm(fd);
        if self.flag == fd_table::MUTED_HARVEST {
            fd_table::flag_suspect(fd);
        }
    }

    fn rearm(&self, fd: RawFd) -> bool {
        sys::epoll_ctl(self.fd(), libc::EPOLL_CTL_MOD, fd, self.events, fd as u64).is_ok()
    }

    /// The set reported `fd` (its data), disarming its entry: flags it. True if it is idle
    /// in the pool (now flagged): the caller's to look at.
    pub fn reported(&self, fd: RawFd) -> bool {
        match fd_table::seen_readable(fd, self.flag) {
            Seen::Pooled => true,
            Seen::Leave => false,
            Seen::Out(state) => {
                if !fd_table::set_muted(fd, state, self.flag) {
                    self.undo(fd);
                }
                false
            }
            Seen::Undo => {
                self.undo(fd);
                false
            }
        }
    }
}

impl Drop for WatchSet {
    fn drop(&mut self) {
        if let Some(set) = self.set.take() {
            close_fd(set);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd_table::{Claim, MUTED_HARVEST};
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// A harvest report that finds the fd lent, and cannot flag it because its release
    /// came in between, leaves it suspect: it was readable at the report, and an acquire
    /// within the window would not look otherwise.
    #[test]
    fn a_report_that_races_a_release_leaves_the_fd_suspect() {
        const POOL: u32 = 0xfeed;
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        let set = WatchSet::new(POOL, events, MUTED_HARVEST).unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let raw = a.as_raw_fd();
        assert_eq!(fd_table::claim(raw, POOL), Claim::Fresh);
        assert!(set.watch(a.as_fd(), None));
        let loan = Loan {
            born: 1,
            uses: 1,
            key: 5,
            mark: 0,
            muted: 0,
        };
        fd_table::lend(raw, POOL, loan); // acquired
        b.write_all(b"x").unwrap();
        let Seen::Out(state) = fd_table::seen_readable(raw, MUTED_HARVEST) else {
            panic!("lent: reported as out");
        };
        assert!(
            matches!(fd_table::claim(raw, POOL), Claim::Lent(_)),
            "released"
        );
        assert!(
            !fd_table::set_muted(raw, state, MUTED_HARVEST),
            "too late to flag the loan"
        );
        set.undo(raw);
        assert!(fd_table::is_suspect(raw));
        fd_table::forget(raw);
    }
}
