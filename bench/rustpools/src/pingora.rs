//! pingora-pool 0.9.1's `ConnectionPool<S>`: a `DashMap<u64, Arc<PoolNode>>` of nodes
//! (a 16-entry lock-free hot queue, then a `Mutex<HashMap<fd, conn>>`), and a global LRU
//! (16 parking_lot-locked shards) that evicts the least recently released connection
//! when the pool holds more than its size. Keys are u64 group keys that the caller
//! computes (pingora-core: an ahash of its peer). `put` returns a `Notify` and a oneshot
//! receiver for the idle task pingora-core spawns per pooled connection (idle timeout and
//! close detection on tokio); this synchronous harness drops both, so no idle timeout is
//! honoured here and no task is spawned: its rows cost less than pingora-core pays.

use std::ffi::{c_char, c_int};
use std::hash::{Hash, Hasher};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use pingora_pool::{ConnectionMeta, ConnectionPool};

use crate::key_arg;

type Pool = ConnectionPool<OwnedFd>;

/// The group key of a string, as pingora-core derives one from its peer.
fn group_key(key: &str) -> u64 {
    let mut h = ahash::AHasher::default();
    key.hash(&mut h);
    h.finish()
}

/// A pool that keeps at most size idle connections in all (the LRU's size).
#[no_mangle]
pub extern "C" fn pingora_pool_new(size: usize) -> *mut Pool {
    Box::into_raw(Box::new(Pool::new(size)))
}

/// Drops the pool (closing its idle fds). NULL is a no-op.
///
/// # Safety
/// pool is NULL or from pingora_pool_new, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn pingora_pool_free(pool: *mut Pool) {
    if !pool.is_null() {
        drop(Box::from_raw(pool));
    }
}

/// The group key of key (the "handle" of the key-handle rows: computed once), or 0 for a
/// bad key.
///
/// # Safety
/// key is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn pingora_pool_key(key: *const c_char) -> u64 {
    key_arg(key).map_or(0, group_key)
}

/// An idle fd of the group key (now the caller's), or -ENOENT.
///
/// # Safety
/// pool is a live pool.
#[no_mangle]
pub unsafe extern "C" fn pingora_pool_get(pool: *const Pool, group: u64) -> c_int {
    match pool.as_ref().and_then(|p| p.get(&group)) {
        Some(fd) => fd.into_raw_fd(),
        None => -libc::ENOENT,
    }
}

/// Gives fd to the pool under the group key (the pool owns it from now on): 0, or -EINVAL
/// (fd closed), -EBADF. The connection's id is its fd number, as pingora-core's.
///
/// # Safety
/// pool is a live pool; fd is the caller's.
#[no_mangle]
pub unsafe extern "C" fn pingora_pool_put(pool: *const Pool, group: u64, fd: c_int) -> c_int {
    if fd < 0 {
        return -libc::EBADF;
    }
    // SAFETY: the caller gives up fd, which it owns.
    let conn = OwnedFd::from_raw_fd(fd);
    let Some(pool) = pool.as_ref() else {
        return -libc::EINVAL;
    };
    // The idle task's two handles, dropped: see the module comment.
    let _ = pool.put(&ConnectionMeta::new(group, fd), conn);
    0
}

/// The string form: the group key computed from key on every call, then get.
///
/// # Safety
/// pool is a live pool; key is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn pingora_pool_acquire(pool: *const Pool, key: *const c_char) -> c_int {
    match key_arg(key) {
        Some(k) => pingora_pool_get(pool, group_key(k)),
        None => -libc::EINVAL,
    }
}

/// The string form of put.
///
/// # Safety
/// pool is a live pool; key is NULL or a NUL-terminated string; fd is the caller's.
#[no_mangle]
pub unsafe extern "C" fn pingora_pool_release(
    pool: *const Pool,
    key: *const c_char,
    fd: c_int,
) -> c_int {
    match key_arg(key) {
        Some(k) => pingora_pool_put(pool, group_key(k), fd),
        None => {
            if fd >= 0 {
                drop(OwnedFd::from_raw_fd(fd));
            }
            -libc::EINVAL
        }
    }
}
