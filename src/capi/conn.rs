//! Acquire and release: connections in and out of the pool.

use std::ffi::{c_char, c_int, c_void};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

use super::sized::{size_ok, write_sized};
use super::{boundary, connpool, key_arg, pool_arg, PANIC_ERRNO};
use crate::closer::close_fd;
use crate::fd_table;
use crate::key::MAX_KEY_LEN;
use crate::pool::{Outcome, Released};

/// connpool_release*(): the pool kept the fd idle; it owns it.
pub const CONNPOOL_POOLED: c_int = 0;
/// connpool_release*(): the pool did not keep the fd and closed it.
pub const CONNPOOL_CLOSED: c_int = 1;
/// Longest key in bytes, without the terminating NUL.
pub const CONNPOOL_MAX_KEY_LEN: usize = 1024;
/// connpool_release_ctx(), connpool_key_release(): no keep-alive hint.
pub const CONNPOOL_NO_HINT: u64 = u64::MAX;
const _: () = assert!(CONNPOOL_MAX_KEY_LEN == MAX_KEY_LEN);

/// What connpool_acquire_info() reports about the connection it hands out, so that a proxy
/// can tell a reused connection from a fresh one (and retry an idempotent request that
/// failed on a reused connection before any response byte, as nginx, Go and curl do).
/// Set struct_size = sizeof(connpool_conn_info) before the call.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct connpool_conn_info {
    /// The size of the caller's struct, set by the caller.
    pub struct_size: usize,
    /// How long the connection was idle in the pool, in milliseconds. It may be
    /// over-reported by a clock tick, never under-reported.
    pub idle_ms: u64,
    /// How long ago it was first released to the pool, in milliseconds (over-reported the
    /// same way, never under-reported).
    pub age_ms: u64,
    /// Requests it has served: 1 after its first release, one more per acquire and release.
    pub uses: u32,
    /// The ctx it was released with (NULL if none), the caller's again. Since 0.2.
    pub ctx: *mut c_void,
}

/// The size of connpool_conn_info in 0.1, the first release.
pub(super) const INFO_FIRST_SIZE: usize = 32;
const _: () = assert!(std::mem::offset_of!(connpool_conn_info, uses) + 8 == INFO_FIRST_SIZE);

/// Takes an idle connection for key: the most recently released one that has not expired
/// and, with CONNPOOL_CHECK_LIVENESS (the default), passes the liveness check. A candidate
/// that fails the check (its backend closed or reset it, or sent bytes nobody asked for) is
/// closed and the next one is tried. A connection that passed can still be closed by its
/// backend a moment later (a race no check can close): retry an idempotent request that
/// fails on a reused connection before any response byte.
///
/// Returns:
/// - an fd >= 0: the caller owns it, and gives it back with a release, or ends it with
///   connpool_discard() (or, without max_conns_per_key, close()s it).
/// - -ENOENT: no usable idle connection for key: connect a new one. With
///   max_conns_per_key, a connect slot is now reserved for it: release the new connection
///   (or discard it; or connpool_discard() with fd = -1 if the connect failed).
/// - -EAGAIN: with max_conns_per_key, none idle and the key is at its limit; nothing
///   changed (retry later: connpool_acquire_wait() waits; with CONNPOOL_WATCH the watch fd
///   tells when to retry, see connpool_reap()).
/// - -EINVAL: bad pool or key (see the pointer rules).
///
/// On every error no fd changed hands.
#[no_mangle]
pub unsafe extern "C" fn connpool_acquire(pool: *mut connpool, key: *const c_char) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let (Some(pool), Some(key)) = (pool_arg(pool), key_arg(key)) else {
            return -libc::EINVAL;
        };
        match pool.try_acquire_fd(key) {
            Ok((fd, _)) => fd.into_raw_fd(),
            Err(o) => refused(&o),
        }
    })
}

/// As connpool_acquire(), and on success also fills *info (when info is not NULL) with what
/// is known of the connection: how long it was idle, how old it is, how many requests it
/// has served.
///
/// Returns what connpool_acquire() returns, and -EINVAL (nothing acquired) when
/// info->struct_size is smaller than the 0.1 struct (32 bytes). A larger struct_size is
/// accepted: the fields this library knows are filled, nothing beyond. On failure *info is
/// left untouched.
#[no_mangle]
pub unsafe extern "C" fn connpool_acquire_info(
    pool: *mut connpool,
    key: *const c_char,
    info: *mut connpool_conn_info,
) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let (Some(pool), Some(key)) = (pool_arg(pool), key_arg(key)) else {
            return -libc::EINVAL;
        };
        if !info.is_null() && !size_ok(info, INFO_FIRST_SIZE) {
            return -libc::EINVAL;
        }
        hand_out(pool.try_acquire(key), std::ptr::null_mut(), info)
    })
}

/// As connpool_acquire(), and on success also sets *ctx (when ctx is not NULL) to the state
/// the connection was released with (NULL if none): the connection and its state are the
/// caller's again. On failure *ctx is left untouched. Since 0.2.
///
/// Returns what connpool_acquire() returns.
#[no_mangle]
pub unsafe extern "C" fn connpool_acquire_ctx(
    pool: *mut connpool,
    key: *const c_char,
    ctx: *mut *mut c_void,
) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let (Some(pool), Some(key)) = (pool_arg(pool), key_arg(key)) else {
            return -libc::EINVAL;
        };
        fd_ctx(pool.try_acquire_fd(key), ctx)
    })
}

/// The C result of an acquire that found no connection.
pub(super) fn refused(o: &Outcome) -> c_int {
    match o {
        Outcome::Hit(_) | Outcome::Connect => -libc::ENOENT,
        Outcome::AtLimit => -libc::EAGAIN,
        Outcome::TimedOut => -libc::ETIMEDOUT,
        Outcome::Cancelled => -libc::ECANCELED,
    }
}

/// A connection handed out with its state: its fd, with *ctx set when not NULL.
///
/// Safety: ctx is NULL or valid for writes.
pub(super) unsafe fn fd_ctx(
    got: Result<(OwnedFd, usize), Outcome>,
    ctx: *mut *mut c_void,
) -> c_int {
    match got {
        Ok((fd, state)) => {
            if !ctx.is_null() {
                *ctx = state as *mut c_void;
            }
            fd.into_raw_fd()
        }
        Err(o) => refused(&o),
    }
}

/// A connection handed out: its fd, with *ctx and *info filled when not NULL.
///
/// Safety: ctx and info are NULL or valid for writes (info's struct_size checked).
pub(super) unsafe fn hand_out(
    got: Outcome,
    ctx: *mut *mut c_void,
    info: *mut connpool_conn_info,
) -> c_int {
    let a = match got {
        Outcome::Hit(a) => a,
        o => return refused(&o),
    };
    if !ctx.is_null() {
        *ctx = a.ctx as *mut c_void;
    }
    if !info.is_null() {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let c = connpool_conn_info {
            struct_size: size_of::<connpool_conn_info>(),
            idle_ms: ms(a.info.idle),
            age_ms: ms(a.info.age),
            uses: a.info.uses,
            ctx: a.ctx as *mut c_void,
        };
        write_sized(info, INFO_FIRST_SIZE, &c);
    }
    a.fd.into_raw_fd()
}

/// Gives fd back to the pool as an idle connection of key. Release only a connection that
/// is idle and reusable: the response was read completely and the connection is
/// keep-alive. The pool does not probe fd on release (that would cost a system call per
/// release); it is checked when next acquired.
///
/// The fd is the pool's from the moment of the call, whatever the result, with two
/// exceptions (fd < 0, -EALREADY): never use or close it again.
///
/// Returns:
/// - CONNPOOL_POOLED: kept idle; the pool owns it.
/// - CONNPOOL_CLOSED: the pool closed it: the key already held max_idle_per_key idle
///   connections, the connection reached max_uses or max_lifetime_ms, or the global cap
///   could not be kept (every place taken by releases in progress).
/// - -EALREADY: a pool already owns fd (it is idle in this pool or another): a double
///   release, a caller bug. Nothing changed and nothing was closed; fd stays the pool's.
///   Checked first, whatever else is wrong with the call.
/// - -EINVAL: bad pool or key; fd was closed.
/// - -EBADF: fd < 0; nothing happened.
///
/// Lifetime and uses follow a connection from its acquire to its release by fd number.
/// The pool cannot tell that connection from a new socket that got the same number after
/// the caller closed the old one; it then counts the new socket as the old connection
/// (older and more used than it is, so retired early, never kept too long). The history is
/// kept per pool: a connection acquired from one pool and released into another starts
/// afresh there. Releasing an fd number the caller had already closed is a caller bug the
/// pool cannot see: it returns CONNPOOL_POOLED and later closes (or hands out) whatever
/// file has that number then, exactly as a double close() would.
#[no_mangle]
pub unsafe extern "C" fn connpool_release(
    pool: *mut connpool,
    key: *const c_char,
    fd: c_int,
) -> c_int {
    boundary!(-PANIC_ERRNO, release(pool, key, fd, 0, None))
}

/// As connpool_release(), for a connection whose server announced how long it keeps idle
/// connections open (HTTP "Keep-Alive: timeout=N", in milliseconds here): the connection
/// expires after min(keepalive_timeout_ms, idle timeout) idle, so the pool does not hand
/// out a connection the server is about to close. Pass a little less than the server's
/// value to allow for the network delay. 0 means the server will not keep it: the fd is
/// closed and CONNPOOL_CLOSED returned. Same results and ownership as connpool_release().
#[no_mangle]
pub unsafe extern "C" fn connpool_release_hint(
    pool: *mut connpool,
    key: *const c_char,
    fd: c_int,
    keepalive_timeout_ms: u64,
) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let hint = Duration::from_millis(keepalive_timeout_ms);
        release(pool, key, fd, 0, Some(hint))
    })
}

/// As connpool_release_hint(), with the caller's state for the connection (an SSL*, an
/// HTTP/2 session; opaque to the pool, never dereferenced; NULL for none) and
/// keepalive_ms = CONNPOOL_NO_HINT for no hint (0 closes at once, as in
/// connpool_release_hint()). The state travels with the fd: from the call on it is the
/// pool's, whatever the result, until an acquire hands it back with the fd or on_close
/// receives it (for CONNPOOL_CLOSED: at once, before the call returns). With -EINVAL,
/// -EALREADY and -EBADF (the pool never took the fd) ctx stays the caller's. Since 0.2.
#[no_mangle]
pub unsafe extern "C" fn connpool_release_ctx(
    pool: *mut connpool,
    key: *const c_char,
    fd: c_int,
    ctx: *mut c_void,
    keepalive_ms: u64,
) -> c_int {
    boundary!(
        -PANIC_ERRNO,
        release(pool, key, fd, ctx as usize, hint(keepalive_ms))
    )
}

/// A C keep-alive argument: CONNPOOL_NO_HINT is none.
pub(super) fn hint(keepalive_ms: u64) -> Option<Duration> {
    (keepalive_ms != CONNPOOL_NO_HINT).then(|| Duration::from_millis(keepalive_ms))
}

/// Every string-key release form. Safety: the pointer rules.
unsafe fn release(
    pool: *mut connpool,
    key: *const c_char,
    fd: c_int,
    ctx: usize,
    hint: Option<Duration>,
) -> c_int {
    let args = (pool_arg(pool), key_arg(key));
    let (pool, key) = match (args, fd) {
        ((Some(pool), Some(key)), _) => (pool, key),
        (_, fd) => return refuse(fd),
    };
    if fd < 0 {
        return -libc::EBADF;
    }
    released(pool.release_ctx(key, OwnedFd::from_raw_fd(fd), ctx, hint))
}

/// A release with a bad pool, key or handle: -EINVAL, with fd closed, unless a pool owns it
/// already (a double release with a bad key): never close an fd a pool owns, or the
/// caller's next socket would get its number while the pool still lists it.
pub(super) fn refuse(fd: c_int) -> c_int {
    if fd >= 0 {
        if fd_table::is_pooled(fd) {
            return -libc::EALREADY;
        }
        // SAFETY: the caller gave fd to the pool, which closes it on any error.
        close_fd(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    -libc::EINVAL
}

/// The C result of a release.
pub(super) fn released(r: Released) -> c_int {
    match r {
        Released::Pooled => CONNPOOL_POOLED,
        Released::Closed => CONNPOOL_CLOSED,
        Released::AlreadyPooled => -libc::EALREADY,
    }
}
