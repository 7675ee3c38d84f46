//! rust-web-server 18.7.0's `proxy::ConnPool` (= `Pool<TcpStream>`): one
//! `Mutex<HashMap<String, VecDeque<{stream, Instant}>>>`, SipHash (std's default hasher),
//! FIFO, `Instant::now()` on acquire and release, 60 s idle timeout, at most max_idle per
//! key (a release into a full key drops, i.e. closes, the stream). No liveness check, no
//! key handles: a string per call.

use std::ffi::{c_char, c_int};
use std::net::TcpStream;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::Duration;

use rust_web_server::proxy::ConnPool;

use crate::key_arg;

/// A pool: max_idle per key, idle_timeout_ms idle timeout.
#[no_mangle]
pub extern "C" fn rws_pool_new(max_idle: usize, idle_timeout_ms: u64) -> *mut ConnPool {
    Box::into_raw(Box::new(ConnPool::new(
        max_idle,
        Duration::from_millis(idle_timeout_ms),
    )))
}

/// Drops the pool (closing its idle streams). NULL is a no-op.
///
/// # Safety
/// pool is NULL or from rws_pool_new, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rws_pool_free(pool: *mut ConnPool) {
    if !pool.is_null() {
        drop(Box::from_raw(pool));
    }
}

/// An idle fd (now the caller's), -ENOENT, or -EINVAL.
///
/// # Safety
/// pool is a live pool; key is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rws_pool_acquire(pool: *const ConnPool, key: *const c_char) -> c_int {
    let (Some(pool), Some(key)) = (pool.as_ref(), key_arg(key)) else {
        return -libc::EINVAL;
    };
    match pool.acquire(key) {
        Some(stream) => stream.into_raw_fd(),
        None => -libc::ENOENT,
    }
}

/// Gives fd to the pool (which owns it from now on): 0, or -EINVAL (fd closed), -EBADF.
/// The crate does not say whether it kept the stream or dropped it (key full).
///
/// # Safety
/// pool is a live pool; key is NULL or a NUL-terminated string; fd is the caller's.
#[no_mangle]
pub unsafe extern "C" fn rws_pool_release(
    pool: *const ConnPool,
    key: *const c_char,
    fd: c_int,
) -> c_int {
    if fd < 0 {
        return -libc::EBADF;
    }
    // SAFETY: the caller gives up fd, a socket it owns.
    let stream = TcpStream::from_raw_fd(fd);
    let (Some(pool), Some(key)) = (pool.as_ref(), key_arg(key)) else {
        return -libc::EINVAL; // stream dropped: fd closed
    };
    pool.release(key, stream);
    0
}
