//! The libc calls the core needs, wrapped in safe functions, so that `unsafe` stays out of
//! the core.

use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: read from the vDSO, ~6 ns against ~18 ns for the
/// precise clock, at the price of a tick of resolution (see [`coarse_resolution_ns`]).
pub fn coarse_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// `CLOCK_MONOTONIC` in nanoseconds (~18 ns a read, nanosecond resolution).
pub fn precise_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clock ids exist on every Linux since
    // 2.6.32.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The tick of `CLOCK_MONOTONIC_COARSE` (typically 1 to 4 ms, set by the kernel's HZ).
pub fn coarse_resolution_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return 10_000_000; // unknown: assume a slow 100 Hz tick, erring early
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Closes `fd`, ignoring errors. Not `drop(fd)`: std aborts debug builds when an `OwnedFd`
/// turns out to be closed already (EBADF), and a C caller that releases an fd number it
/// had already closed must get a documented answer, not a crash of its process. On Linux
/// `close` releases the fd even when it fails (EINTR included), so it is never retried.
///
/// Every fd the pool closes goes through here: it also clears the fd's entry in
/// `crate::fds`, before the number can be reused.
pub fn close(fd: OwnedFd) {
    crate::lock::assert_unlocked();
    let raw = fd.into_raw_fd();
    crate::fds::forget(raw);
    // SAFETY: `raw` came from an OwnedFd we owned and gave up above; nobody else closes it.
    unsafe { libc::close(raw) };
}

/// The liveness check: one non-blocking `recv(MSG_PEEK)` of a byte. An idle keep-alive
/// connection has nothing to read (EAGAIN: alive). End of file (the peer closed), an error
/// (reset, not a socket, not an fd) or bytes nobody asked for (a desynchronised stream)
/// mean it cannot carry a new request.
pub fn is_alive(fd: BorrowedFd<'_>) -> bool {
    let mut byte = 0u8;
    loop {
        // SAFETY: `byte` is one writable byte; `fd` is borrowed, so open for the call.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return false;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(e) => return e == libc::EAGAIN || e == libc::EWOULDBLOCK,
            None => return false,
        }
    }
}

/// Fds to close once the lock is released: closes them all when dropped. With the idle
/// watcher on, it first removes each from the watcher's epoll set (see `crate::watch`).
#[derive(Debug, Default)]
pub struct Doomed<'a> {
    fds: Vec<OwnedFd>,
    epoll: Option<BorrowedFd<'a>>,
}

impl<'a> Doomed<'a> {
    pub fn new(epoll: Option<BorrowedFd<'a>>) -> Self {
        Doomed {
            fds: Vec::new(),
            epoll,
        }
    }
    pub fn push(&mut self, fd: OwnedFd) {
        self.fds.push(fd);
    }
    pub fn len(&self) -> usize {
        self.fds.len()
    }
}

impl Extend<OwnedFd> for Doomed<'_> {
    fn extend<I: IntoIterator<Item = OwnedFd>>(&mut self, iter: I) {
        self.fds.extend(iter);
    }
}

impl Drop for Doomed<'_> {
    #[inline]
    fn drop(&mut self) {
        // Empty on almost every call: keep that path to one test.
        if !self.fds.is_empty() {
            self.close_all();
        }
    }
}

impl Doomed<'_> {
    #[cold]
    fn close_all(&mut self) {
        for fd in self.fds.drain(..) {
            if let Some(epoll) = self.epoll {
                epoll_del(epoll, fd.as_raw_fd());
            }
            close(fd);
        }
    }
}

/// Blocks every signal in the calling thread (the reaper), so that process-directed
/// signals are delivered to the application's own threads.
pub fn block_all_signals() {
    // SAFETY: `set` is initialised by sigfillset before use.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits until `a` or `b` (raw fds the caller keeps open for the call) is readable, with no
/// timeout; returns which: (a, b). (false, false) after a signal: the caller loops.
pub fn wait_readable_raw(a: std::os::fd::RawFd, b: std::os::fd::RawFd) -> (bool, bool) {
    let mut p = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: two valid pollfds; bad fds are reported in revents, not UB.
    let n = unsafe { libc::poll(p.as_mut_ptr(), 2, -1) };
    if n <= 0 {
        return (false, false);
    }
    (p[0].revents != 0, p[1].revents != 0)
}

// ---- the idle watcher's system calls (crate::watch) ----

fn cvt(rc: libc::c_int) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Takes ownership of a new fd returned by a syscall.
fn owned(rc: libc::c_int) -> std::io::Result<OwnedFd> {
    let fd = cvt(rc)?;
    // SAFETY: a new fd just returned by the kernel, owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// A new close-on-exec epoll instance.
pub fn epoll_create() -> std::io::Result<OwnedFd> {
    // SAFETY: no pointers.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// Watches `fd` for input, peer hang-up and errors (level-triggered), tagged with `data`.
/// `registered`: `fd` is probably in the set already (disarmed by [`epoll_disarm`]), so
/// one `EPOLL_CTL_MOD` re-arms it; otherwise it is added. Either guess is corrected by
/// the other operation.
pub fn epoll_arm(
    epoll: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    data: u64,
    registered: bool,
) -> std::io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
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
        Err(e) if e.raw_os_error() == Some(wrong_guess) => ctl(then).map(drop),
        r => r.map(drop),
    }
}

/// Disarms a watched `fd` without removing it (one `EPOLL_CTL_MOD`, much cheaper than a
/// `DEL` now and an `ADD` at its next arming): no events are asked for, and the hang-up
/// and error events the kernel always adds can fire at most once (`EPOLLONESHOT`), tagged
/// with `data`. Errors ignored: it may not be watched.
pub fn epoll_disarm(epoll: BorrowedFd<'_>, fd: std::os::fd::RawFd, data: u64) {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLONESHOT as u32,
        u64: data,
    };
    // SAFETY: `ev` is a valid epoll_event; a bad fd is an error return.
    unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_MOD, fd, &mut ev) };
}

/// Stops watching `fd` (errors ignored: it may not be watched).
pub fn epoll_del(epoll: BorrowedFd<'_>, fd: std::os::fd::RawFd) {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: `ev` is valid (ignored by DEL on modern kernels); a bad fd is an error return.
    unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
}

/// The data of up to `max` ready fds, without waiting.
pub fn epoll_ready(epoll: BorrowedFd<'_>, out: &mut Vec<u64>, max: usize) {
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; max];
    // SAFETY: `evs` has room for `max` events.
    let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), evs.as_mut_ptr(), max as i32, 0) };
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

/// Reads an 8-byte counter (timerfd expirations, eventfd) without blocking, so the fd
/// stops being readable; the value is not needed.
pub fn drain_counter(fd: BorrowedFd<'_>) {
    let mut buf = 0u64;
    // SAFETY: 8 writable bytes.
    unsafe { libc::read(fd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
}

/// A new non-blocking, close-on-exec eventfd.
pub fn eventfd_create() -> std::io::Result<OwnedFd> {
    // SAFETY: no pointers.
    owned(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
}

/// Makes an eventfd readable.
pub fn eventfd_signal(fd: BorrowedFd<'_>) {
    let one = 1u64;
    // SAFETY: 8 readable bytes.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}
