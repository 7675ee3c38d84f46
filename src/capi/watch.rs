//! The idle watcher: an fd for the caller's event loop, and the reap it calls for.

use std::ffi::c_int;

use super::{boundary, connpool, pool_arg, PANIC_ERRNO};
use crate::pool::Pool;

/// The idle watcher's fd (with CONNPOOL_WATCH or CONNPOOL_REAPER_THREAD), for the caller's
/// event loop (epoll, poll, libevent, libuv...): it becomes readable when at least one idle
/// connection's backend closed or reset it, or when the earliest idle deadline has passed
/// (and, with max_conns_per_key, when a refused key has room); then call connpool_reap().
/// A connection whose backend closes it while the caller holds it makes it readable once
/// (that reap closes nothing). Add it for reading only;
/// it is level-triggered and stays readable until connpool_reap() has done the work.
///
/// Returns the fd (>= 0), owned by the pool and valid until connpool_free(): never close
/// it or read from it. In a child process after fork() the inherited watch fd is closed:
/// call connpool_watch_fd() again there (the child's pool makes its own). Errors:
/// - -EINVAL: bad pool, or a pool made without CONNPOOL_WATCH.
/// - -EMFILE, -ENFILE, -ENOMEM: in a fork child, the child's watcher could not be made
///   (no fd left).
#[no_mangle]
pub unsafe extern "C" fn connpool_watch_fd(pool: *mut connpool) -> c_int {
    boundary!(
        -PANIC_ERRNO,
        match pool_arg(pool) {
            Some(pool) => pool.watch_fd().unwrap_or_else(|e| -e.errno()),
            None => -libc::EINVAL,
        }
    )
}

/// Never blocks: closes every idle connection that the watch fd reported (counted dead in
/// connpool_stats) and, if the earliest deadline passed, every expired one (counted
/// expired), and re-arms the watch fd so it is not readable again until there is new work.
/// Returns how many it closed; 0 for a bad pool or a pool without CONNPOOL_WATCH. Safe at
/// any time, from any thread, concurrently with every other call: an fd is never closed
/// after it was handed to a caller, nor handed out after it was chosen for closing.
#[no_mangle]
pub unsafe extern "C" fn connpool_reap(pool: *mut connpool) -> usize {
    boundary!(0, pool_arg(pool).map_or(0, Pool::reap))
}
