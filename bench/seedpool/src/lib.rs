//! The seed's connection-pool design, re-implemented faithfully as a benchmark baseline:
//!
//! - one `std::sync::Mutex` around a `HashMap<String, VecDeque<(RawFd, Instant)>>`
//!   (std's default hasher, SipHash-1-3, randomly keyed);
//! - FIFO: `push_back` on release, `pop_front` on acquire (the oldest connection first);
//! - `Instant::now()` on release (the idle stamp) and on acquire (the expiry check);
//! - idle timeout honoured (60 s by default), at most 8 idle connections per key (a release
//!   into a full key closes the fd);
//! - optionally a liveness check on acquire: `recv(1, MSG_PEEK | MSG_DONTWAIT)` must say
//!   EAGAIN (no data, no EOF), done inside the pop loop, under the lock, as the simple
//!   design does; a dead or expired connection is closed and the next one tried.
//!
//! Key entries are kept when they empty (no String allocation when a key comes back), which
//! is the seed's best case. The C functions below are the only entry points; the FFI call
//! costs the same as libconnpool's. A panic in an `extern "C"` function aborts (Rust 1.81+),
//! so there is no catch_unwind here: that is libconnpool's price for returning an error
//! instead (measured by the callgrind helper).

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_int, CStr};
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct SeedPool {
    idle: Mutex<HashMap<String, VecDeque<(RawFd, Instant)>>>,
    max_idle_per_key: usize,
    idle_timeout: Duration,
    check: bool,
}

impl SeedPool {
    fn new(max_idle_per_key: usize, idle_timeout: Duration, check: bool) -> Self {
        SeedPool {
            idle: Mutex::new(HashMap::new()),
            max_idle_per_key,
            idle_timeout,
            check,
        }
    }

    fn acquire(&self, key: &str) -> Option<RawFd> {
        let mut map = self.idle.lock().unwrap();
        let queue = map.get_mut(key)?;
        while let Some((fd, since)) = queue.pop_front() {
            if since.elapsed() < self.idle_timeout && (!self.check || alive(fd)) {
                return Some(fd);
            }
            close(fd);
        }
        None
    }

    /// true: pooled; false: the key was full and fd was closed.
    fn release(&self, key: &str, fd: RawFd) -> bool {
        let now = Instant::now();
        let mut map = self.idle.lock().unwrap();
        let queue = match map.get_mut(key) {
            Some(q) => q,
            None => map.entry(key.to_owned()).or_default(),
        };
        if queue.len() >= self.max_idle_per_key {
            drop(map);
            close(fd);
            return false;
        }
        queue.push_back((fd, now));
        true
    }
}

impl Drop for SeedPool {
    fn drop(&mut self) {
        let map = self.idle.get_mut().unwrap_or_else(|e| e.into_inner());
        for (fd, _) in map.drain().flat_map(|(_, q)| q) {
            close(fd);
        }
    }
}

fn alive(fd: RawFd) -> bool {
    let mut b = 0u8;
    // SAFETY: b is a valid 1-byte buffer; fd is an fd this pool owns.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && {
        let e = std::io::Error::last_os_error().raw_os_error();
        e == Some(libc::EAGAIN) || e == Some(libc::EWOULDBLOCK)
    }
}

fn close(fd: RawFd) {
    // SAFETY: the pool owns fd and forgets it here.
    unsafe { libc::close(fd) };
}

/// Requires: key is NULL or a NUL-terminated string.
unsafe fn key_arg<'a>(key: *const c_char) -> Option<&'a str> {
    if key.is_null() {
        return None;
    }
    CStr::from_ptr(key).to_str().ok().filter(|k| !k.is_empty())
}

/// A pool: 8 idle per key, 60 s idle timeout; check != 0 enables the recv peek check.
#[no_mangle]
pub extern "C" fn seedpool_new(check: c_int) -> *mut SeedPool {
    Box::into_raw(Box::new(SeedPool::new(
        8,
        Duration::from_secs(60),
        check != 0,
    )))
}

/// Closes every idle fd. NULL is a no-op.
///
/// # Safety
/// pool is NULL or from seedpool_new, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn seedpool_free(pool: *mut SeedPool) {
    if !pool.is_null() {
        drop(Box::from_raw(pool));
    }
}

/// An idle fd (now the caller's), -ENOENT, or -EINVAL.
///
/// # Safety
/// pool is a live pool; key is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn seedpool_acquire(pool: *const SeedPool, key: *const c_char) -> c_int {
    let (Some(pool), Some(key)) = (pool.as_ref(), key_arg(key)) else {
        return -libc::EINVAL;
    };
    pool.acquire(key).unwrap_or(-libc::ENOENT)
}

/// 0: pooled; 1: the key was full, fd closed; -EINVAL (fd closed); -EBADF (fd < 0).
///
/// # Safety
/// pool is a live pool; key is NULL or a NUL-terminated string; fd is the caller's.
#[no_mangle]
pub unsafe extern "C" fn seedpool_release(
    pool: *const SeedPool,
    key: *const c_char,
    fd: c_int,
) -> c_int {
    if fd < 0 {
        return -libc::EBADF;
    }
    let (Some(pool), Some(key)) = (pool.as_ref(), key_arg(key)) else {
        close(fd);
        return -libc::EINVAL;
    };
    if pool.release(key, fd) {
        0
    } else {
        1
    }
}
