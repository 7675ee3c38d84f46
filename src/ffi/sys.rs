//! The libc calls the core needs, wrapped in safe functions, so that `unsafe` stays out of
//! the core.

use std::os::fd::{IntoRawFd, OwnedFd};

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
pub fn close(fd: OwnedFd) {
    crate::lock::assert_unlocked();
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` came from an OwnedFd we owned and gave up above; nobody else closes it.
    unsafe { libc::close(raw) };
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
