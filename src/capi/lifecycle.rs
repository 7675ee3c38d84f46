//! Making and freeing pools.

use std::ffi::c_char;
use std::time::Duration;

use super::config::{config_arg, connpool_config};
use super::{boundary, connpool, set_errno};
use crate::config::Config;
use crate::pool::Pool;

fn new_pool(config: Config) -> *mut connpool {
    #[cfg(feature = "panic-inject")]
    if config.max_idle_per_key == 0xDEAD {
        panic!("injected panic (test feature panic-inject)");
    }
    match Pool::new_shared(config) {
        Ok(pool) => Box::into_raw(Box::new(connpool { pool })),
        Err(e) => {
            set_errno(e.errno());
            std::ptr::null_mut()
        }
    }
}

/// Creates a pool from *cfg (filled by connpool_config_init(), then changed); NULL cfg
/// gives the defaults.
///
/// Returns the pool, or NULL with errno set:
/// - EINVAL: the configuration is invalid: struct_size below the 0.1 size (40), above
///   4096, or larger than this library's struct with non-zero bytes it does not know;
///   max_idle_per_key 0; or an unknown flag. Huge values (UINT32_MAX, UINT64_MAX) are
///   accepted and mean "no practical limit".
/// - EMFILE, ENFILE, ENOMEM: CONNPOOL_WATCH or CONNPOOL_REAPER_THREAD needs fds (an epoll
///   fd, a timerfd, an eventfd) that cannot be had; EAGAIN: the reaper thread cannot be
///   started.
#[no_mangle]
pub unsafe extern "C" fn connpool_new_with_config(cfg: *const connpool_config) -> *mut connpool {
    boundary!(std::ptr::null_mut(), {
        let config = if cfg.is_null() {
            Some(Config::default())
        } else {
            config_arg(cfg)
        };
        match config {
            Some(config) => new_pool(config),
            None => {
                set_errno(libc::EINVAL);
                std::ptr::null_mut()
            }
        }
    })
}

/// Creates a pool with the defaults of connpool_config_init() but for two fields: at most
/// max_idle_per_key idle connections per key, closed after idle_timeout_ms milliseconds
/// idle (0: no idle timeout).
///
/// Returns the pool, or NULL with errno = EINVAL when max_idle_per_key is 0 (a pool that
/// keeps nothing is almost always an unset value). Huge values are accepted.
#[no_mangle]
pub extern "C" fn connpool_new(max_idle_per_key: usize, idle_timeout_ms: u64) -> *mut connpool {
    boundary!(std::ptr::null_mut(), {
        new_pool(Config {
            max_idle_per_key,
            idle_timeout: (idle_timeout_ms != 0).then(|| Duration::from_millis(idle_timeout_ms)),
            ..Config::default()
        })
    })
}

/// Creates a pool with the defaults of connpool_config_init(): 8 idle connections per key,
/// a 60 000 ms idle timeout and the liveness check on. Returns NULL only if a panic (a bug)
/// was caught.
#[no_mangle]
pub extern "C" fn connpool_new_default() -> *mut connpool {
    boundary!(std::ptr::null_mut(), new_pool(Config::default()))
}

/// Destroys the pool: stops and joins its reaper thread, if any, and closes every idle
/// connection (fds the caller holds are not affected). It must be the last call on the
/// pool, made when no other call on it is running. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn connpool_free(pool: *mut connpool) {
    boundary!((), {
        if !pool.is_null() {
            let pool = Box::from_raw(pool);
            pool.pool.stop_reaper(); // joined before the last reference goes
            drop(pool)
        }
    })
}

/// The library version, "MAJOR.MINOR.PATCH": a static string, never freed. Compare it with
/// CONNPOOL_VERSION to detect a header/library mismatch.
#[no_mangle]
pub extern "C" fn connpool_version() -> *const c_char {
    boundary!(
        std::ptr::null(),
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    )
}
