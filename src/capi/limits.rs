//! A key's connection limit: waiting, ending connections, draining, shutting down.

use std::ffi::{c_char, c_int, c_void};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use super::conn::{connpool_conn_info, hand_out, refuse, INFO_FIRST_SIZE};
use super::key::{connpool_key, handle_arg};
use super::sized::size_ok;
use super::{boundary, connpool, key_arg, pool_arg, PANIC_ERRNO};
use crate::pool::Discarded;

/// As connpool_acquire_ctx(), but at the key's connection limit (max_conns_per_key) it
/// waits, up to timeout_ms, for a connection or a slot of the key: a release to the key
/// hands its connection straight to the longest waiter (first come, first served; the
/// release returns CONNPOOL_POOLED; the waiter checks it as any acquire does, and if it is
/// dead closes it and gets its slot: -ENOENT, connect), and any close of a connection
/// of the key (a discard, a release that closes, an expiry...) gives the freed slot to the
/// longest waiter. For thread-per-connection servers; it blocks the calling thread (with
/// no pool lock held, and not as a cancellation point). Without a limit it never waits.
/// Since 0.2.
///
/// Returns an fd >= 0 (with *ctx set when ctx is not NULL), -ENOENT (connect a new one: a
/// connect slot is reserved for it), -EAGAIN (timeout_ms 0 at the limit: as
/// connpool_acquire_ctx()), -ETIMEDOUT (waited timeout_ms in vain; nothing changed hands),
/// -ECANCELED (connpool_shutdown() was called), or -EINVAL (bad pool or key).
#[no_mangle]
pub unsafe extern "C" fn connpool_acquire_wait(
    pool: *mut connpool,
    key: *const c_char,
    ctx: *mut *mut c_void,
    timeout_ms: u64,
) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let (Some(pool), Some(key)) = (pool_arg(pool), key_arg(key)) else {
            return -libc::EINVAL;
        };
        hand_out(
            pool.acquire_wait(key, Duration::from_millis(timeout_ms)),
            ctx,
            std::ptr::null_mut(),
        )
    })
}

/// connpool_acquire_wait() by handle, with *info filled as connpool_key_acquire() does.
/// Same results, and -EINVAL for a NULL k or an info->struct_size below 32. Since 0.2.
#[no_mangle]
pub unsafe extern "C" fn connpool_key_acquire_wait(
    k: *mut connpool_key,
    ctx: *mut *mut c_void,
    info: *mut connpool_conn_info,
    timeout_ms: u64,
) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let Some((k, pool)) = handle_arg(k) else {
            return -libc::EINVAL;
        };
        if !info.is_null() && !size_ok(info, INFO_FIRST_SIZE) {
            return -libc::EINVAL;
        }
        hand_out(
            pool.acquire_by(k, Some(Duration::from_millis(timeout_ms))),
            ctx,
            info,
        )
    })
}

/// The caller ends a connection of key it holds (an I/O error, "Connection: close", a
/// protocol failure): on_close is called (reason CONNPOOL_CLOSE_DISCARDED, with this ctx),
/// the pool closes fd, and the connection slot it held (its loan, or a connect slot of the
/// key) is freed after the close, for the longest waiter. With fd = -1 it gives back a
/// connect slot the caller did not use (its connect failed). Works without a limit too
/// (counted in connpool_stats.discarded). Since 0.2.
///
/// fd is the pool's from the call on, whatever the result, with the exceptions of release:
/// fd < 0 and -EALREADY. Returns:
/// - 0: closed (or, with fd = -1, the slot given back, if one was reserved).
/// - -EALREADY: a pool owns fd (it is idle in a pool): nothing was changed or closed.
/// - -EINVAL: bad pool or key; fd was closed (on_close not called: the pool never took it).
/// - -EBADF: fd < -1; nothing happened.
#[no_mangle]
pub unsafe extern "C" fn connpool_discard(
    pool: *mut connpool,
    key: *const c_char,
    fd: c_int,
    ctx: *mut c_void,
) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let (Some(pool), Some(key)) = (pool_arg(pool), key_arg(key)) else {
            return if fd < 0 { -libc::EINVAL } else { refuse(fd) };
        };
        match fd {
            -1 => {
                pool.discard_slot(key);
                0
            }
            fd if fd < 0 => -libc::EBADF,
            fd => discarded(pool.discard(key, OwnedFd::from_raw_fd(fd), ctx as usize)),
        }
    })
}

/// connpool_discard() by handle: same results (-EINVAL for a NULL k). Since 0.2.
#[no_mangle]
pub unsafe extern "C" fn connpool_key_discard(
    k: *mut connpool_key,
    fd: c_int,
    ctx: *mut c_void,
) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let Some((k, pool)) = handle_arg(k) else {
            return if fd < 0 { -libc::EINVAL } else { refuse(fd) };
        };
        match fd {
            -1 => {
                pool.discard_slot_by(k);
                0
            }
            fd if fd < 0 => -libc::EBADF,
            fd => discarded(pool.discard_by(k, OwnedFd::from_raw_fd(fd), ctx as usize)),
        }
    })
}

fn discarded(d: Discarded) -> c_int {
    match d {
        Discarded::Closed => 0,
        Discarded::AlreadyPooled => -libc::EALREADY,
    }
}

/// As connpool_purge() (the idle connections of key, or of every key when key is NULL, are
/// closed, counted purged), and the connections of that key lent now are closed at their
/// release (which returns CONNPOOL_CLOSED; on_close reason CONNPOOL_CLOSE_PURGED) instead
/// of pooled: a backend that was removed or restarted gets no old connection back.
/// connpool_purge() itself keeps its meaning (idle ones only). Works with and without a
/// limit. Returns how many idle connections it closed; 0 for a bad pool or key. Since 0.2.
#[no_mangle]
pub unsafe extern "C" fn connpool_drain(pool: *mut connpool, key: *const c_char) -> usize {
    boundary!(0, {
        let Some(pool) = pool_arg(pool) else {
            return 0;
        };
        if key.is_null() {
            return pool.drain(None);
        }
        key_arg(key).map_or(0, |key| pool.drain(Some(key)))
    })
}

/// Wakes every thread waiting in connpool_acquire_wait() or connpool_key_acquire_wait()
/// (they return -ECANCELED) and makes every later wait on this pool return -ECANCELED at
/// once instead of waiting (an acquire that needs no wait still succeeds). For shutting a
/// server down: call it, join the threads that may wait, then connpool_free(). Returns how
/// many waiters it woke; 0 for a bad pool. Since 0.2.
#[no_mangle]
pub unsafe extern "C" fn connpool_shutdown(pool: *mut connpool) -> usize {
    boundary!(0, pool_arg(pool).map_or(0, |p| p.shutdown()))
}
