//! Key handles: a key resolved once, then used by handle.

use std::ffi::{c_char, c_int, c_void};
use std::os::fd::{FromRawFd, OwnedFd};

use super::conn::{connpool_conn_info, fd_ctx, hand_out, hint, refuse, released, INFO_FIRST_SIZE};
use super::sized::size_ok;
use super::{boundary, connpool, key_arg, pool_arg, set_errno, PANIC_ERRNO};
use crate::pool::{KeyHandle, Pool};

/// A key of one pool, resolved once with connpool_key_get(): the calls by handle skip the
/// key's validation and hashing. Opaque; owned by the pool, valid until connpool_free()
/// (it survives purge, prune, fork and the key having no idle connection); never free it.
/// Since 0.2.
#[allow(non_camel_case_types)]
pub struct connpool_key {
    _opaque: [u8; 0],
}

/// The handle of key in pool: the same handle for the same bytes, from any thread. The
/// string calls and the handle calls on the same key see one idle set. Each handle lives
/// until connpool_free(): make them for the keys you know (your backends), not for keys
/// that come from the network. Since 0.2.
///
/// Returns the handle, or NULL with errno EINVAL (bad pool or key).
#[no_mangle]
pub unsafe extern "C" fn connpool_key_get(
    pool: *mut connpool,
    key: *const c_char,
) -> *mut connpool_key {
    boundary!(std::ptr::null_mut(), {
        let (Some(pool), Some(key)) = (pool_arg(pool), key_arg(key)) else {
            set_errno(libc::EINVAL);
            return std::ptr::null_mut();
        };
        (pool.key(key) as *const KeyHandle).cast_mut().cast()
    })
}

/// The handle and its pool. Safety: k is NULL or a handle from connpool_key_get() whose
/// pool is live.
pub(super) unsafe fn handle_arg<'a>(k: *mut connpool_key) -> Option<(&'a KeyHandle, &'a Pool)> {
    let k = k.cast::<KeyHandle>().as_ref()?;
    Some((k, &*(k.owner() as *const Pool)))
}

/// connpool_acquire_ctx() and connpool_acquire_info() in one, by handle: an idle
/// connection of the handle's key; on success *ctx (when ctx is not NULL) is its state and
/// *info (when info is not NULL) what is known of it (info->struct_size set by the caller;
/// filling it costs a precise clock read, so pass NULL when not needed). Since 0.2.
///
/// Returns what connpool_acquire() returns (an fd >= 0, -ENOENT, -EAGAIN), or -EINVAL (k
/// is NULL, or info->struct_size is below the 0.1 struct's 32 bytes; nothing acquired).
#[no_mangle]
pub unsafe extern "C" fn connpool_key_acquire(
    k: *mut connpool_key,
    ctx: *mut *mut c_void,
    info: *mut connpool_conn_info,
) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let Some((k, pool)) = handle_arg(k) else {
            return -libc::EINVAL;
        };
        if info.is_null() {
            return fd_ctx(pool.acquire_fd_by(k), ctx);
        }
        if !size_ok(info, INFO_FIRST_SIZE) {
            return -libc::EINVAL;
        }
        hand_out(pool.acquire_by(k, None), ctx, info)
    })
}

/// connpool_release_ctx() by handle: same results and ownership of fd and ctx (-EINVAL for
/// a NULL k, with fd closed unless a pool owns it: then -EALREADY). Since 0.2.
#[no_mangle]
pub unsafe extern "C" fn connpool_key_release(
    k: *mut connpool_key,
    fd: c_int,
    ctx: *mut c_void,
    keepalive_ms: u64,
) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let Some((k, pool)) = handle_arg(k) else {
            return refuse(fd);
        };
        if fd < 0 {
            return -libc::EBADF;
        }
        released(pool.release_by(
            k,
            OwnedFd::from_raw_fd(fd),
            ctx as usize,
            hint(keepalive_ms),
        ))
    })
}
