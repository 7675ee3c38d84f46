//! The epoll sets (the idle watcher's and the harvest check's) and the timerfd.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::io::owned;

fn cvt(rc: libc::c_int) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A new close-on-exec epoll instance.
pub fn epoll_create() -> std::io::Result<OwnedFd> {
    // SAFETY: no pointers.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// Watches `fd` for peer hang-up and errors, and for input if `input` (level-triggered),
/// tagged with `data`. `registered`: `fd` is probably in the set already (disarmed by
/// [`epoll_disarm`]), so one `EPOLL_CTL_MOD` re-arms it; otherwise it is added. Either
/// guess is corrected by the other operation.
pub fn epoll_arm(
    epoll: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    data: u64,
    registered: bool,
    input: bool,
) -> std::io::Result<()> {
    let events = if input {
        libc::EPOLLIN | libc::EPOLLRDHUP
    } else {
        libc::EPOLLRDHUP
    };
    let mut ev = libc::epoll_event {
        events: events as u32,
        u64: data,
    };
    let mut ctl = |op| {
        // SAFETY: `ev` is a valid epoll_event; both fds are open for the call.
        cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) })
    };
    let (first, then, wrong_guess) = if registered {
        (libc::EPOLL_CTL_MOD, libc::EPOLL_CTL_ADD, libc::ENOENT)
    } else {
        (libc::EPOLL_CTL_ADD, libc::EPOLL_CTL_MOD, libc::EEXIST)
    };
    match ctl(first) {
        Err(e) if e.raw_os_error() == Some(wrong_guess) => ctl(then),
        r => r,
    }
}

/// One `epoll_ctl` by fd number: `op` with `events`, tagged with `data`.
pub fn epoll_ctl(
    epoll: RawFd,
    op: libc::c_int,
    fd: RawFd,
    events: u32,
    data: u64,
) -> std::io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is a valid epoll_event; bad fds are error returns.
    cvt(unsafe { libc::epoll_ctl(epoll, op, fd, &mut ev) })
}

/// Stops watching `fd` in the epoll set `epoll` (errors ignored: it may not be watched;
/// raw numbers: the epoll fd is open for as long as anything it watches can be closed).
pub fn epoll_del_raw(epoll: RawFd, fd: RawFd) {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: `ev` is valid (ignored by DEL on modern kernels); a bad fd is an error return.
    unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, &mut ev) };
}

/// The data of up to `max` ready fds, without waiting (raw `epoll_pwait`: not a
/// cancellation point).
pub fn epoll_ready(epoll: BorrowedFd<'_>, out: &mut Vec<u64>, max: usize) {
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; max];
    // SAFETY: `evs` has room for `max` events; a NULL mask makes it epoll_wait.
    let n = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait,
            epoll.as_raw_fd(),
            evs.as_mut_ptr(),
            max as libc::c_int,
            0 as libc::c_int,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    if n > 0 {
        out.extend(evs[..n as usize].iter().map(|e| e.u64));
    }
}

/// A new non-blocking, close-on-exec CLOCK_MONOTONIC timerfd.
pub fn timerfd_create() -> std::io::Result<OwnedFd> {
    // SAFETY: no pointers.
    owned(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    })
}

/// Arms the timer to fire at CLOCK_MONOTONIC time `at_ns`, or disarms it for `None`.
pub fn timerfd_set(timer: BorrowedFd<'_>, at_ns: Option<u64>) {
    let at = at_ns.map_or(0, |t| t.max(1)); // 0 would disarm: a deadline at 0 is "now"
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (at / 1_000_000_000) as libc::time_t,
            tv_nsec: (at % 1_000_000_000) as libc::c_long,
        },
    };
    // SAFETY: `spec` is valid; the old value is not wanted.
    unsafe {
        libc::timerfd_settime(
            timer.as_raw_fd(),
            libc::TFD_TIMER_ABSTIME,
            &spec,
            std::ptr::null_mut(),
        )
    };
}
