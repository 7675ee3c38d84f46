//! The C ABI: every exported function, and the only `extern "C"` in the crate.
//!
//! Each function checks its arguments (every pointer may be NULL, every key may be huge or
//! invalid UTF-8), then calls the safe core. Each runs inside `catch_panic`, so a panic
//! (a bug) never unwinds into C.
//!
//! Doc comments here are written for C readers (cbindgen copies them into
//! `include/connpool.h`): plain prose, with each function's pointer requirements under
//! "Requires:" rather than rustdoc's "# Safety" heading, hence the allowed lint.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int};
use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::key::{Key, MAX_KEY_LEN};
use crate::pool::{Config, Pool, Released};

/// release kept the fd idle; the pool owns it.
pub const CONNPOOL_POOLED: c_int = 0;
/// release did not keep the fd; the pool closed it.
pub const CONNPOOL_CLOSED: c_int = 1;
/// Longest key in bytes, without the terminating NUL.
pub const CONNPOOL_MAX_KEY_LEN: usize = 1024;
const _: () = assert!(CONNPOOL_MAX_KEY_LEN == MAX_KEY_LEN);

/// A pool of idle connections. Opaque: create it with connpool_new() or
/// connpool_new_default() and destroy it with connpool_free(). Every function taking a
/// pool may be called from any thread, concurrently, except connpool_free(), which must
/// be the last call on that pool.
#[allow(non_camel_case_types)]
pub struct connpool {
    pool: Pool,
}

/// Runs f, turning a panic (an internal bug) into on_panic instead of unwinding into C.
/// The default panic hook has already printed the message to stderr by then.
fn catch_panic<R>(on_panic: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// Returned by int functions if an internal bug panicked: the call had no effect other than
/// closing an fd it was given.
const PANIC_ERRNO: c_int = libc::ENOTRECOVERABLE;

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = e };
}

/// Reads a C key: at most MAX_KEY_LEN + 1 bytes are looked at, so a huge or unterminated
/// key past that length is rejected without being read to its end.
///
/// Requires: key is NULL or points to a NUL-terminated string, or to at least MAX_KEY_LEN + 1
/// readable bytes.
unsafe fn key_arg<'a>(key: *const c_char) -> Option<Key<'a>> {
    if key.is_null() {
        return None;
    }
    let len = libc::strnlen(key, MAX_KEY_LEN + 1);
    Key::new(std::slice::from_raw_parts(key.cast::<u8>(), len)).ok()
}

/// Requires: pool is NULL or a live pool from connpool_new*.
unsafe fn pool_arg<'a>(pool: *const connpool) -> Option<&'a Pool> {
    pool.as_ref().map(|p| &p.pool)
}

fn new_pool(config: Config) -> *mut connpool {
    match Pool::new(config) {
        Ok(pool) => Box::into_raw(Box::new(connpool { pool })),
        Err(_) => {
            set_errno(libc::EINVAL);
            std::ptr::null_mut()
        }
    }
}

/// Creates a pool that keeps at most max_idle_per_key idle connections per key and
/// closes connections idle for idle_timeout_ms milliseconds (0: no idle timeout).
///
/// Time is read from CLOCK_MONOTONIC_COARSE (cheap, but up to one tick of 1 to 4 ms
/// behind), and expiry errs early: a connection may expire up to one tick before its
/// timeout, never after. Timeouts under 16 ticks (64 ms at 250 Hz) read CLOCK_MONOTONIC
/// instead, so even a 1 ms timeout behaves.
///
/// Returns NULL with errno = EINVAL when max_idle_per_key is 0 (a pool that keeps nothing
/// is almost always an unset value). Huge values (SIZE_MAX, UINT64_MAX) are accepted and
/// mean "no practical limit". Out of memory aborts the process, as Rust's allocator does.
#[no_mangle]
pub extern "C" fn connpool_new(max_idle_per_key: usize, idle_timeout_ms: u64) -> *mut connpool {
    catch_panic(std::ptr::null_mut(), || {
        new_pool(Config {
            max_idle_per_key,
            idle_timeout: Some(Duration::from_millis(idle_timeout_ms)),
        })
    })
}

/// Creates a pool with 8 idle connections per key and a 60 000 ms idle timeout.
#[no_mangle]
pub extern "C" fn connpool_new_default() -> *mut connpool {
    catch_panic(std::ptr::null_mut(), || new_pool(Config::default()))
}

/// Destroys the pool and closes every idle fd it holds. NULL is a no-op.
///
/// Fds the caller acquired and still holds stay open and stay the caller's. No other call
/// on this pool may be running or made afterwards (use-after-free).
///
/// Requires: pool is NULL or a live pool not used after this call.
#[no_mangle]
pub unsafe extern "C" fn connpool_free(pool: *mut connpool) {
    if !pool.is_null() {
        let pool = Box::from_raw(pool);
        catch_panic((), move || drop(pool));
    }
}

/// Takes an idle connection for key, the most recently released one first (LIFO).
///
/// Returns:
/// - an fd >= 0: an idle connection for key, now owned by the caller, who must either
///   give it back with connpool_release() or close() it.
/// - -ENOENT: no usable idle connection for key (connect a new one).
/// - -EINVAL: pool or key is NULL, or key is empty or longer than CONNPOOL_MAX_KEY_LEN.
///
/// Every call on a key (acquire, release, idle_count_key, purge) first closes that key's
/// expired connections.
///
/// Requires: pool is NULL or a live pool; key is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn connpool_acquire(pool: *mut connpool, key: *const c_char) -> c_int {
    catch_panic(-PANIC_ERRNO, || {
        let (Some(pool), Some(key)) = (pool_arg(pool), key_arg(key)) else {
            return -libc::EINVAL;
        };
        match pool.acquire(key) {
            Some(fd) => std::os::fd::IntoRawFd::into_raw_fd(fd),
            None => -libc::ENOENT,
        }
    })
}

/// Gives fd back to the pool as an idle connection of key.
///
/// Consumes fd whenever fd >= 0, whatever it returns: after the call the caller no longer
/// owns it and must not use or close it. It is either kept by the pool or closed.
///
/// Returns:
/// - CONNPOOL_POOLED: the fd is idle in the pool, which owns it.
/// - CONNPOOL_CLOSED: the key already held max_idle_per_key idle connections; the pool
///   closed fd.
/// - -EINVAL: pool or key is NULL, or key is invalid (checked first); fd was closed if >= 0.
/// - -EBADF: fd < 0; nothing was closed.
///
/// Only release a connection that is idle and reusable: the response was read completely
/// and the connection is keep-alive. The pool does not probe fd on release (that would
/// cost a system call per release): it must be an fd the caller owns. Releasing an fd
/// number the caller had already closed returns CONNPOOL_POOLED and the stale number is
/// later handed out or closed (close errors are ignored); if the number was meanwhile
/// reused by another open file, the pool will close or hand out that file, exactly as a
/// double close() would.
///
/// Requires: pool is NULL or a live pool; key is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn connpool_release(
    pool: *mut connpool,
    key: *const c_char,
    fd: c_int,
) -> c_int {
    if fd < 0 {
        return if pool.is_null() || key_arg(key).is_none() {
            -libc::EINVAL
        } else {
            -libc::EBADF
        };
    }
    // Owned from here on: every return path closes it or gives it to the pool (an unwinding
    // panic drops it, which closes it too).
    let fd = OwnedFd::from_raw_fd(fd);
    catch_panic(-PANIC_ERRNO, move || {
        let (Some(pool), Some(key)) = (pool_arg(pool), key_arg(key)) else {
            crate::ffi::sys::close(fd);
            return -libc::EINVAL;
        };
        match pool.release(key, fd) {
            Released::Pooled => CONNPOOL_POOLED,
            Released::Closed => CONNPOOL_CLOSED,
        }
    })
}

/// Idle connections held over all keys, expired ones not yet closed included (call
/// connpool_prune() first to close those); 0 for NULL. It sums per-shard counters
/// without locking, so while other threads acquire and release it is approximate (a
/// connection moving between keys may be counted twice or not at all); it is exact when
/// no call is running.
///
/// Requires: pool is NULL or a live pool.
#[no_mangle]
pub unsafe extern "C" fn connpool_idle_count(pool: *const connpool) -> usize {
    catch_panic(0, || pool_arg(pool).map_or(0, Pool::idle_count))
}

/// Idle connections held for key; 0 for a NULL pool or an invalid key. Like every call
/// on a key, it first closes the key's expired connections, so they are not counted.
///
/// Requires: pool is NULL or a live pool; key is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn connpool_idle_count_key(
    pool: *const connpool,
    key: *const c_char,
) -> usize {
    catch_panic(0, || match (pool_arg(pool), key_arg(key)) {
        (Some(pool), Some(key)) => pool.idle_count_key(key),
        _ => 0,
    })
}

/// Closes every idle connection of key, or of every key when key is NULL (e.g. when a
/// backend went down or its address changed). Returns how many were closed; 0 for a NULL
/// pool or an invalid key. Connections the caller holds are not affected.
///
/// Requires: pool is NULL or a live pool; key is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn connpool_purge(pool: *mut connpool, key: *const c_char) -> usize {
    catch_panic(0, || {
        let Some(pool) = pool_arg(pool) else {
            return 0;
        };
        if key.is_null() {
            return pool.purge(None);
        }
        key_arg(key).map_or(0, |key| pool.purge(Some(key)))
    })
}

/// Closes every expired idle connection now, over all keys, and returns how many.
/// Optional: expired connections are also closed by the next call that touches their key.
/// Call it from a timer to release fds of keys that are no longer used. 0 for NULL.
///
/// Requires: pool is NULL or a live pool.
#[no_mangle]
pub unsafe extern "C" fn connpool_prune(pool: *mut connpool) -> usize {
    catch_panic(0, || pool_arg(pool).map_or(0, Pool::prune))
}

/// The library version, "MAJOR.MINOR.PATCH": a static string, never freed.
/// Compare it with CONNPOOL_VERSION to detect a header/library mismatch.
#[no_mangle]
pub extern "C" fn connpool_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
