//! Maintenance: purge and prune.

use std::ffi::c_char;

use super::{boundary, connpool, key_arg, pool_arg};
use crate::pool::Pool;

/// Closes every idle connection of key, or of every key when key is NULL (e.g. when a
/// backend went down or its address changed). Returns how many were closed; 0 for a bad
/// pool or an invalid key. Connections the caller holds are not affected.
#[no_mangle]
pub unsafe extern "C" fn connpool_purge(pool: *mut connpool, key: *const c_char) -> usize {
    boundary!(0, {
        let Some(pool) = pool_arg(pool) else {
            return 0;
        };
        if key.is_null() {
            return pool.purge(None);
        }
        key_arg(key).map_or(0, |key| pool.purge(Some(key)))
    })
}

/// Closes every expired idle connection now, over all keys, and, with
/// CONNPOOL_CHECK_LIVENESS, every idle connection that fails the liveness check; returns
/// how many were closed (0 for a bad pool). Optional: both are also closed by the next
/// acquire of their key. Call it from a timer to give back the fds of keys no longer used
/// and of backends that closed their end. It costs one non-blocking recv() per idle
/// connection, made under the key's internal lock, one key at a time.
#[no_mangle]
pub unsafe extern "C" fn connpool_prune(pool: *mut connpool) -> usize {
    boundary!(0, pool_arg(pool).map_or(0, Pool::prune))
}
