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

use crate::config::Config;
use crate::key::{Key, MAX_KEY_LEN};
use crate::pool::{ConnInfo, Pool, Released};
use crate::stats::Stats;

/// release kept the fd idle; the pool owns it.
pub const CONNPOOL_POOLED: c_int = 0;
/// release did not keep the fd; the pool closed it.
pub const CONNPOOL_CLOSED: c_int = 1;
/// Longest key in bytes, without the terminating NUL.
pub const CONNPOOL_MAX_KEY_LEN: usize = 1024;
const _: () = assert!(CONNPOOL_MAX_KEY_LEN == MAX_KEY_LEN);

/// connpool_config.flags: before handing out an idle connection, check it with one
/// non-blocking recv(MSG_PEEK) and close it instead if the peer closed or reset it or sent
/// bytes nobody asked for. On by default (connpool_config_init, connpool_new,
/// connpool_new_default); costs one system call per acquire of an idle connection.
pub const CONNPOOL_CHECK_LIVENESS: u32 = 1 << 0;
/// connpool_config.flags: watch idle connections, so that they can be closed the moment
/// the backend closes them or their deadline passes, without waiting for an acquire of their
/// key: connpool_watch_fd() gives an fd for the caller's event loop, connpool_reap() does
/// the closing. Off by default: it adds two epoll_ctl() calls to each acquire and release
/// pair (EPOLL_CTL_MOD: a handed-out fd stays in the set, disarmed, until its release).
pub const CONNPOOL_WATCH: u32 = 1 << 1;
/// connpool_config.flags: run one background thread that waits on the watch fd and reaps
/// (implies CONNPOOL_WATCH). connpool_free() stops and joins it.
pub const CONNPOOL_REAPER_THREAD: u32 = 1 << 2;
/// connpool_config.flags, with CONNPOOL_CHECK_LIVENESS (no effect without it): skip the
/// check for a connection idle for less than CONNPOOL_SKIP_RECENT_MS, as curl does (it
/// checks a connection at most once a second). Off by default. It saves the check's system
/// call exactly where a busy proxy makes it most often (connections reused within
/// milliseconds) at the price of a window: a backend that closes a connection within
/// CONNPOOL_SKIP_RECENT_MS of its release (a restart, a crash; not an idle timeout, which
/// closes connections idle for much longer) gets it handed out dead. Use it only if
/// your proxy retries an idempotent request that fails on a reused connection before any
/// response byte (see connpool_acquire_info()).
pub const CONNPOOL_CHECK_SKIP_RECENT: u32 = 1 << 3;
/// The window of CONNPOOL_CHECK_SKIP_RECENT, in milliseconds. It is judged conservatively:
/// a connection is checked unless it was certainly idle for less.
pub const CONNPOOL_SKIP_RECENT_MS: u64 = 100;
const KNOWN_FLAGS: u32 =
    CONNPOOL_CHECK_LIVENESS | CONNPOOL_WATCH | CONNPOOL_REAPER_THREAD | CONNPOOL_CHECK_SKIP_RECENT;

/// A pool of idle connections. Opaque: create it with connpool_new_with_config(),
/// connpool_new() or connpool_new_default() and destroy it with connpool_free(). Every
/// function taking a pool may be called from any thread, concurrently, except
/// connpool_free(), which must be the last call on that pool.
#[allow(non_camel_case_types)]
pub struct connpool {
    /// Shared with the reaper thread (weakly), if there is one.
    pool: std::sync::Arc<Pool>,
}

/// Pool configuration. Fill it with connpool_config_init() (which sets struct_size and
/// every default), change the fields you need, and pass it to connpool_new_with_config().
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct connpool_config {
    /// sizeof(connpool_config), set by connpool_config_init(): lets the struct grow in
    /// later versions without breaking callers built against this one.
    pub struct_size: usize,
    /// Idle connections kept per key (default 8); a release into a full key closes the
    /// released fd. Must be at least 1.
    pub max_idle_per_key: u32,
    /// Idle connections kept over all keys (default 0: no global cap). A release that would
    /// exceed it closes the least recently released idle connection of any key and keeps the
    /// new one. The cap is never exceeded, also under concurrent releases.
    pub max_idle_total: u32,
    /// Idle connections older than this are closed, never handed out (default 60000;
    /// 0: no idle timeout).
    pub idle_timeout_ms: u64,
    /// A connection is never handed out nor kept once this long has passed since its first
    /// release to the pool (default 0: no limit).
    pub max_lifetime_ms: u64,
    /// The release that brings a connection to this many uses closes it and returns
    /// CONNPOOL_CLOSED (default 0: no limit). A connection has served 1 request at its first
    /// release and one more per acquire and release: with 3, its third release closes it.
    pub max_uses: u32,
    /// A combination of CONNPOOL_CHECK_LIVENESS, CONNPOOL_CHECK_SKIP_RECENT, CONNPOOL_WATCH
    /// and CONNPOOL_REAPER_THREAD (default CONNPOOL_CHECK_LIVENESS alone). Unknown bits make
    /// connpool_new_with_config() fail with EINVAL.
    pub flags: u32,
}

/// What connpool_acquire_info() reports about the connection it hands out, so that a proxy
/// can tell a reused connection from a fresh one (and retry an idempotent request that
/// failed on a reused connection before any response byte, as nginx, Go and curl do).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct connpool_conn_info {
    /// Set to sizeof(connpool_conn_info) before the call.
    pub struct_size: usize,
    /// How long the connection was idle in the pool, in milliseconds. Stamped with a coarse
    /// clock: it may be over-reported by a tick (more on a loaded VM), never under-reported.
    pub idle_ms: u64,
    /// How long ago it was first released to the pool, in milliseconds (over-reported the
    /// same way, never under-reported).
    pub age_ms: u64,
    /// Requests it has served: 1 after its first release, one more per acquire and release.
    pub uses: u32,
}

/// A pool's gauges and counters, filled by connpool_stats_get(). Counters only grow; each
/// connection the pool closes is counted under exactly one reason.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct connpool_stats {
    /// Set to sizeof(connpool_stats) before the call.
    pub struct_size: usize,
    /// Idle connections held now (expired ones not yet closed included).
    pub idle: u64,
    /// Keys with at least one idle connection now.
    pub keys: u64,
    /// Acquires that returned a connection.
    pub hits: u64,
    /// Acquires that found no usable connection (-ENOENT).
    pub misses: u64,
    /// Releases that kept the connection (CONNPOOL_POOLED).
    pub pooled: u64,
    /// Releases closed because the key already held max_idle_per_key connections (or,
    /// rarely, because no place under max_idle_total could be made: every place was taken
    /// by releases in progress on other threads).
    pub closed_full: u64,
    /// Idle connections closed to keep max_idle_total.
    pub evicted: u64,
    /// Connections closed for the idle timeout, max_lifetime_ms or a keep-alive hint: idle
    /// ones, and releases closed at once (past max_lifetime_ms, or a hint of 0), which were
    /// never counted in pooled.
    pub expired: u64,
    /// Idle connections found closed, reset or desynchronised by their backend: by the
    /// liveness check (on acquire or prune) or by the idle watcher (connpool_reap).
    pub dead: u64,
    /// Connections closed by their release at max_uses.
    pub retired: u64,
    /// Idle connections closed by connpool_purge() (or connpool_free()).
    pub purged: u64,
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
    pool.as_ref().map(|p| &*p.pool)
}

fn new_pool(config: Config) -> *mut connpool {
    #[cfg(feature = "panic-inject")]
    if config.max_idle_per_key == 0xDEAD {
        panic!("injected panic (test feature panic-inject)");
    }
    match Pool::new_shared(config) {
        Ok(pool) => Box::into_raw(Box::new(connpool { pool })),
        Err(e) => {
            set_errno(e);
            std::ptr::null_mut()
        }
    }
}

/// Milliseconds as an optional duration: 0 is none.
fn millis(ms: u64) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(ms))
}

fn nonzero<T: Default + PartialEq>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

/// The C configuration as a Rust one; None if it is invalid.
fn config_from_c(c: &connpool_config) -> Option<Config> {
    if c.flags & !KNOWN_FLAGS != 0 {
        return None;
    }
    let config = Config {
        max_idle_per_key: c.max_idle_per_key as usize,
        max_idle_total: nonzero(c.max_idle_total).map(|n| n as usize),
        idle_timeout: millis(c.idle_timeout_ms),
        max_lifetime: millis(c.max_lifetime_ms),
        max_uses: nonzero(c.max_uses),
        check_liveness: c.flags & CONNPOOL_CHECK_LIVENESS != 0,
        skip_check_if_idle_under: (c.flags & CONNPOOL_CHECK_SKIP_RECENT != 0)
            .then(|| Duration::from_millis(CONNPOOL_SKIP_RECENT_MS)),
        watch: c.flags & CONNPOOL_WATCH != 0,
        reaper_thread: c.flags & CONNPOOL_REAPER_THREAD != 0,
    };
    config.validate().ok().map(|()| config)
}

/// Fills cfg with the defaults: struct_size = sizeof(connpool_config),
/// max_idle_per_key 8, max_idle_total 0 (no cap), idle_timeout_ms 60000,
/// max_lifetime_ms 0 (none), max_uses 0 (none), flags CONNPOOL_CHECK_LIVENESS.
/// NULL is a no-op.
///
/// Requires: cfg is NULL or points to a writable connpool_config.
#[no_mangle]
pub unsafe extern "C" fn connpool_config_init(cfg: *mut connpool_config) {
    if let Some(cfg) = cfg.as_mut() {
        let d = Config::default();
        *cfg = connpool_config {
            struct_size: size_of::<connpool_config>(),
            max_idle_per_key: d.max_idle_per_key as u32,
            max_idle_total: 0,
            idle_timeout_ms: d.idle_timeout.map_or(0, |t| t.as_millis() as u64),
            max_lifetime_ms: 0,
            max_uses: 0,
            flags: CONNPOOL_CHECK_LIVENESS,
        };
    }
}

/// Creates a pool from cfg; NULL cfg gives the defaults (see connpool_config_init()).
///
/// Returns NULL with errno set when the pool cannot be made: EMFILE, ENFILE or ENOMEM when
/// CONNPOOL_WATCH or CONNPOOL_REAPER_THREAD needs fds (an epoll fd, a timerfd, an eventfd)
/// or a thread that cannot be had (EAGAIN), and EINVAL when the configuration is invalid:
/// - struct_size is not sizeof(connpool_config) as this header declares it (a caller built
///   against a newer header whose struct is larger gets EINVAL from an older library,
///   rather than settings silently ignored);
/// - max_idle_per_key is 0;
/// - flags has a bit this library does not know.
///
/// Huge values (UINT32_MAX, UINT64_MAX) are accepted and mean "no practical limit".
///
/// Time is read from CLOCK_MONOTONIC_COARSE (cheap, but up to one tick of 1 to 4 ms
/// behind), and expiry errs early: a connection may expire up to one tick before its
/// timeout, never after (within 250 ms of a deadline CLOCK_MONOTONIC is read as well, since
/// a loaded VM may update the coarse clock late; then a deadline stamped by a late reading
/// falls that much early). When the shorter of idle_timeout_ms and
/// max_lifetime_ms is under 16 ticks (64 ms at 250 Hz), CLOCK_MONOTONIC is read throughout.
///
/// Requires: cfg is NULL or points to a readable connpool_config (at least struct_size
/// readable bytes).
#[no_mangle]
pub unsafe extern "C" fn connpool_new_with_config(cfg: *const connpool_config) -> *mut connpool {
    catch_panic(std::ptr::null_mut(), || {
        let config = if cfg.is_null() {
            Some(Config::default())
        } else if std::ptr::read(cfg.cast::<usize>()) != size_of::<connpool_config>() {
            None // read struct_size alone first: the rest may not be there
        } else {
            config_from_c(&*cfg)
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

/// Creates a pool that keeps at most max_idle_per_key idle connections per key and
/// closes connections idle for idle_timeout_ms milliseconds (0: no idle timeout), with the
/// liveness check on. The same as connpool_new_with_config() with those two fields set and
/// the other defaults.
///
/// Returns NULL with errno = EINVAL when max_idle_per_key is 0 (a pool that keeps nothing
/// is almost always an unset value). Huge values (SIZE_MAX, UINT64_MAX) are accepted and
/// mean "no practical limit". Out of memory aborts the process, as Rust's allocator does.
#[no_mangle]
pub extern "C" fn connpool_new(max_idle_per_key: usize, idle_timeout_ms: u64) -> *mut connpool {
    catch_panic(std::ptr::null_mut(), || {
        new_pool(Config {
            max_idle_per_key,
            idle_timeout: millis(idle_timeout_ms),
            ..Config::default()
        })
    })
}

/// Creates a pool with the defaults of connpool_config_init(): 8 idle connections per key,
/// a 60 000 ms idle timeout and the liveness check on.
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
        catch_panic((), move || {
            pool.pool.stop_reaper(); // joined before the last reference goes
            drop(pool)
        });
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
/// expired connections. With CONNPOOL_CHECK_LIVENESS (the default), each candidate is
/// checked with one non-blocking recv(MSG_PEEK) before it is handed out, outside any lock:
/// a connection whose peer closed it (FIN), reset it (RST) or wrote bytes nobody asked for,
/// or whose fd is not a usable socket, is closed and the next one for key is tried. A
/// connection that passed can still be closed by the server a moment later (a race no
/// check can close): a proxy should retry an idempotent request that fails on a reused
/// connection before any response byte (connpool_acquire_info() tells reused from fresh).
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

/// As connpool_acquire(), and on success also fills *info (when info is not NULL) with what
/// is known of the connection: how long it was idle, how old it is and how many requests
/// it has served.
///
/// Returns what connpool_acquire() returns, and -EINVAL, with nothing acquired, when
/// info->struct_size is smaller than sizeof(connpool_conn_info). A larger struct_size (a
/// caller built against a newer header) is accepted: the fields this library knows are
/// filled, the rest left untouched. On failure *info is left untouched.
///
/// Requires: pool is NULL or a live pool; key is NULL or a NUL-terminated string; info is
/// NULL or points to a writable connpool_conn_info.
#[no_mangle]
pub unsafe extern "C" fn connpool_acquire_info(
    pool: *mut connpool,
    key: *const c_char,
    info: *mut connpool_conn_info,
) -> c_int {
    catch_panic(-PANIC_ERRNO, || {
        let (Some(pool), Some(key)) = (pool_arg(pool), key_arg(key)) else {
            return -libc::EINVAL;
        };
        // struct_size alone first: a smaller (older) struct must not be referenced whole.
        if !info.is_null() && std::ptr::read(info.cast::<usize>()) < size_of::<connpool_conn_info>()
        {
            return -libc::EINVAL;
        }
        let info = info.as_mut();
        match pool.acquire_info(key) {
            Some((fd, got)) => {
                if let Some(info) = info {
                    fill_info(info, &got);
                }
                std::os::fd::IntoRawFd::into_raw_fd(fd)
            }
            None => -libc::ENOENT,
        }
    })
}

fn fill_info(info: &mut connpool_conn_info, got: &ConnInfo) {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    info.idle_ms = ms(got.idle);
    info.age_ms = ms(got.age);
    info.uses = got.uses;
}

/// Gives fd back to the pool as an idle connection of key.
///
/// Consumes fd whenever fd >= 0, whatever it returns (with one exception, -EALREADY, where
/// the pool owned fd already): after the call the caller no longer owns it and must not use
/// or close it. It is either kept by the pool or closed.
///
/// Returns:
/// - CONNPOOL_POOLED: the fd is idle in the pool, which owns it.
/// - CONNPOOL_CLOSED: the pool closed fd: the key already held max_idle_per_key idle
///   connections, or the connection reached max_uses or max_lifetime_ms, or the global cap
///   could not be kept (every place taken by releases in progress).
/// - -EALREADY: fd is already idle in a pool (this one or another): a double release, a
///   caller bug. Nothing changed and nothing was closed; the fd stays the pool's.
/// - -EINVAL: pool or key is NULL, or key is invalid (checked first); fd was closed if >= 0.
/// - -EBADF: fd < 0; nothing was closed.
///
/// Only release a connection that is idle and reusable: the response was read completely
/// and the connection is keep-alive. The pool does not probe fd on release (that would
/// cost a system call per release); it is checked when next acquired. So any fd is
/// accepted: a pipe, a regular file or a listening socket fails the liveness check at the
/// next acquire of its key and is closed (with CONNPOOL_CHECK_LIVENESS off it is handed
/// back as given); a UDP socket has nothing to read, passes the check and is handed back. Releasing an fd
/// number the caller had already closed returns CONNPOOL_POOLED and the stale number is
/// later closed (close errors are ignored) or, without the liveness check, handed out;
/// if the number was meanwhile reused by another open file, the pool will close or hand
/// out that file, exactly as a double close() would.
///
/// Lifetime and uses follow a connection from its acquire to its release by fd number.
/// The pool cannot tell that connection from a new socket that got the same number after
/// the caller closed the old one; it then counts the new socket as the old connection
/// (older and more used than it is, so retired early, never kept too long). The history is
/// kept per pool: a connection acquired from one pool and released into another starts
/// afresh there (so a fresh pool is never affected by another pool's past).
///
/// Requires: pool is NULL or a live pool; key is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn connpool_release(
    pool: *mut connpool,
    key: *const c_char,
    fd: c_int,
) -> c_int {
    release(pool, key, fd, None)
}

/// As connpool_release(), for a connection whose server announced how long it keeps idle
/// connections open (HTTP "Keep-Alive: timeout=N", in milliseconds here): the connection
/// expires after min(keepalive_timeout_ms, idle timeout) idle, so the pool does not hand
/// out a connection the server is about to close. Pass a little less than the server's
/// value to allow for the network delay. 0 means the server will not keep it: the fd is
/// closed and CONNPOOL_CLOSED returned. Same ownership rules and return codes as
/// connpool_release().
///
/// Requires: pool is NULL or a live pool; key is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn connpool_release_hint(
    pool: *mut connpool,
    key: *const c_char,
    fd: c_int,
    keepalive_timeout_ms: u64,
) -> c_int {
    release(
        pool,
        key,
        fd,
        Some(Duration::from_millis(keepalive_timeout_ms)),
    )
}

unsafe fn release(
    pool: *mut connpool,
    key: *const c_char,
    fd: c_int,
    hint: Option<Duration>,
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
        let released = match hint {
            None => pool.release(key, fd),
            Some(hint) => pool.release_hint(key, fd, hint),
        };
        match released {
            Released::Pooled => CONNPOOL_POOLED,
            Released::Closed => CONNPOOL_CLOSED,
            Released::AlreadyPooled => -libc::EALREADY,
        }
    })
}

/// Fills *out with the pool's gauges and counters (see connpool_stats), read under every
/// internal lock at once, so the gauges and the counters of everything done under those
/// locks agree (call it from a timer or on demand, not per request). Counters are exact once
/// calls have returned; while acquires run, their outcome (hit, or dead by the liveness
/// check, which runs outside the locks) is counted a moment after the connection left
/// `idle`.
///
/// Returns 0, or -EINVAL when pool or out is NULL or out->struct_size is smaller than
/// sizeof(connpool_stats) (then *out is untouched). A larger struct_size is accepted: the
/// fields this library knows are filled, the rest left untouched.
///
/// Requires: pool is NULL or a live pool; out is NULL or points to a writable
/// connpool_stats.
#[no_mangle]
pub unsafe extern "C" fn connpool_stats_get(
    pool: *const connpool,
    out: *mut connpool_stats,
) -> c_int {
    catch_panic(-PANIC_ERRNO, || {
        let Some(pool) = pool_arg(pool) else {
            return -libc::EINVAL;
        };
        // struct_size alone first: a smaller (older) struct must not be referenced whole.
        if out.is_null() || std::ptr::read(out.cast::<usize>()) < size_of::<connpool_stats>() {
            return -libc::EINVAL;
        }
        let out = &mut *out;
        let Stats {
            idle,
            keys,
            hits,
            misses,
            pooled,
            closed_full,
            evicted,
            expired,
            dead,
            retired,
            purged,
        } = pool.stats();
        *out = connpool_stats {
            struct_size: out.struct_size,
            idle,
            keys,
            hits,
            misses,
            pooled,
            closed_full,
            evicted,
            expired,
            dead,
            retired,
            purged,
        };
        0
    })
}

/// Idle connections held over all keys, expired ones not yet closed included (call
/// connpool_prune() first to close those); 0 for NULL. It sums per-shard counters
/// without locking, so while other threads acquire and release it is approximate (a
/// connection moving between keys may be counted twice or not at all), though never above
/// max_idle_total; it is exact when no call is running. connpool_stats_get() gives an
/// exact snapshot at a higher cost.
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

/// Closes every expired idle connection now, over all keys, and, with
/// CONNPOOL_CHECK_LIVENESS, every idle connection that fails the liveness check (peer
/// closed, reset, stray bytes); returns how many were closed. Optional: both are also
/// closed by the next acquire of their key. Call it from a timer to release fds of keys
/// that are no longer used and of backends that closed their end. It costs one
/// non-blocking recv() per idle connection (made under the key's internal lock, one key at a
/// time, so calls on other keys are not held up). 0 for NULL.
///
/// Requires: pool is NULL or a live pool.
#[no_mangle]
pub unsafe extern "C" fn connpool_prune(pool: *mut connpool) -> usize {
    catch_panic(0, || pool_arg(pool).map_or(0, Pool::prune))
}

/// The idle watcher's fd, for the caller's event loop (epoll, poll, libevent, libuv...):
/// it becomes readable when at least one idle connection has an event (the backend closed
/// or reset it, or sent bytes) or when the earliest idle deadline (idle timeout, lifetime,
/// keep-alive hint) has passed. Then call connpool_reap(). Add it for reading only; it is
/// level-triggered and stays readable until connpool_reap() has done the work.
///
/// Returns the fd (>= 0), owned by the pool and valid until connpool_free(): never close it
/// or read from it. In a child process after fork() the inherited watch fd is closed: call
/// connpool_watch_fd() again there (the child's pool makes its own, and its own reaper
/// thread with CONNPOOL_REAPER_THREAD). -EINVAL when pool is NULL or was made without CONNPOOL_WATCH (or
/// CONNPOOL_REAPER_THREAD, which uses it itself: reaping from both is harmless but
/// pointless).
///
/// Requires: pool is NULL or a live pool.
#[no_mangle]
pub unsafe extern "C" fn connpool_watch_fd(pool: *mut connpool) -> c_int {
    catch_panic(-PANIC_ERRNO, || match pool_arg(pool) {
        Some(pool) => pool.watch_fd().unwrap_or_else(|e| -e),
        None => -libc::EINVAL,
    })
}

/// Never blocks: closes every idle connection that the watch fd reported (counted as dead
/// in connpool_stats) and, if the earliest deadline passed, every expired one (counted as
/// expired), and re-arms the watch fd so it is not readable again until there is new work.
/// Returns how many it closed; 0 for NULL or a pool without CONNPOOL_WATCH. Safe to call
/// at any time and from any thread, concurrently with every other call: an fd is never
/// closed after it was handed to a caller, and never handed out after it was chosen for
/// closing.
///
/// Requires: pool is NULL or a live pool.
#[no_mangle]
pub unsafe extern "C" fn connpool_reap(pool: *mut connpool) -> usize {
    catch_panic(0, || pool_arg(pool).map_or(0, Pool::reap))
}

/// The library version, "MAJOR.MINOR.PATCH": a static string, never freed.
/// Compare it with CONNPOOL_VERSION to detect a header/library mismatch.
#[no_mangle]
pub extern "C" fn connpool_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
