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

/// Fds to close once the lock is released: closes them all when dropped.
#[derive(Debug, Default)]
pub struct Doomed(Vec<OwnedFd>);

impl Doomed {
    pub fn push(&mut self, fd: OwnedFd) {
        self.0.push(fd);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Extend<OwnedFd> for Doomed {
    fn extend<I: IntoIterator<Item = OwnedFd>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl Drop for Doomed {
    #[inline]
    fn drop(&mut self) {
        // Empty on almost every call: keep that path to one test.
        if !self.0.is_empty() {
            self.close_all();
        }
    }
}

impl Doomed {
    #[cold]
    fn close_all(&mut self) {
        self.0.drain(..).for_each(close);
    }
}
