//! Configuration: connpool_config, its defaults and the flags.

use std::ffi::{c_int, c_void};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use super::boundary;
use super::sized::{read_sized, write_sized};
use crate::config::{Callback, Check, Config, OnClose};
use crate::stats::CloseReason;

/// connpool_config.flags: before handing out an idle connection, check it with one
/// non-blocking recv(MSG_PEEK) and close it instead if the peer closed or reset it or sent
/// bytes nobody asked for. On by default; costs one system call per acquire of an idle
/// connection.
pub const CONNPOOL_CHECK_LIVENESS: u32 = 1 << 0;
/// connpool_config.flags: watch idle connections, so that they can be closed the moment
/// the backend closes them or their deadline passes, without waiting for an acquire of their
/// key: connpool_watch_fd() gives an fd for the caller's event loop, connpool_reap() does
/// the closing. Off by default. Each connection is registered once, at its first release
/// (since 0.2: acquires and releases make no system call for it; 0.1 made one epoll_ctl()
/// per acquire and per release). End connections you do not release with
/// connpool_discard(): a new socket that gets the number of one you close() yourself is not
/// watched (the acquire's check still finds it dead).
pub const CONNPOOL_WATCH: u32 = 1 << 1;
/// connpool_config.flags: run one background thread that waits on the watch fd and reaps
/// (implies CONNPOOL_WATCH). connpool_free() stops and joins it.
pub const CONNPOOL_REAPER_THREAD: u32 = 1 << 2;
/// connpool_config.flags, with CONNPOOL_CHECK_LIVENESS (no effect without it): skip the
/// check for a connection idle for less than CONNPOOL_SKIP_RECENT_MS, as curl does (it
/// checks a connection at most once a second). Off by default. It saves the check's system
/// call where a busy proxy makes it most often (connections reused within milliseconds), at
/// the price of a window: a backend that closes a connection within CONNPOOL_SKIP_RECENT_MS
/// of its release (a restart, a crash; not an idle timeout) gets it handed out dead. Use it
/// only if your proxy retries an idempotent request that fails on a reused connection
/// before any response byte (see connpool_acquire_info()).
pub const CONNPOOL_CHECK_SKIP_RECENT: u32 = 1 << 3;
/// connpool_config.flags, with CONNPOOL_CHECK_LIVENESS (no effect without it): check by
/// harvest instead of one recv(MSG_PEEK) per acquire. Each connection is registered once
/// (at its first release) in an epoll set of the pool; an acquire reads that set with one
/// epoll_wait(0) when the last read is older than CONNPOOL_HARVEST_WINDOW_MS, and only the
/// connections it found readable (bytes, EOF, reset: what the recv check calls dead) are
/// closed, or given to your check. The guarantee: a connection is handed out dead only if
/// it became readable within CONNPOOL_HARVEST_WINDOW_MS before the acquire (the recv check's
/// own race, stretched by the window). A connection found readable while you hold it (a
/// response you have not read yet) costs two epoll_ctl() calls (muted, then unmuted at its
/// release); one read promptly costs none. With this flag, end a connection you will not
/// release with connpool_discard(), never close(): a new socket that gets the closed
/// number would not be watched. Takes precedence over CONNPOOL_CHECK_SKIP_RECENT. Since
/// 0.2.
pub const CONNPOOL_CHECK_HARVEST: u32 = 1 << 4;
/// The window of CONNPOOL_CHECK_HARVEST, in milliseconds.
pub const CONNPOOL_HARVEST_WINDOW_MS: u64 = 1;
const _: () = assert!(CONNPOOL_HARVEST_WINDOW_MS * 1_000_000 == crate::harvest::WINDOW_NS);
/// The window of CONNPOOL_CHECK_SKIP_RECENT, in milliseconds. It is judged conservatively:
/// a connection is checked unless it was certainly idle for less.
pub const CONNPOOL_SKIP_RECENT_MS: u64 = 100;
/// on_close reason: released into a key that already held max_idle_per_key connections (or
/// no place under max_idle_total could be made).
pub const CONNPOOL_CLOSE_FULL: c_int = 1;
/// on_close reason: idle, closed to keep max_idle_total (or max_idle_per_key, when releases
/// filled its key while it was out for a check by prune or the watcher).
pub const CONNPOOL_CLOSE_EVICTED: c_int = 2;
/// on_close reason: its idle timeout, keep-alive hint or lifetime passed (idle, or at its
/// release).
pub const CONNPOOL_CLOSE_EXPIRED: c_int = 3;
/// on_close reason: the check found it closed, reset or desynchronised by its backend.
pub const CONNPOOL_CLOSE_DEAD: c_int = 4;
/// on_close reason: released at max_uses.
pub const CONNPOOL_CLOSE_RETIRED: c_int = 5;
/// on_close reason: idle, closed by connpool_purge(), connpool_drain() or connpool_free(); or
/// lent before a connpool_drain() of its key, closed at its release.
pub const CONNPOOL_CLOSE_PURGED: c_int = 6;
/// on_close reason: ended by the caller with connpool_discard() (the ctx passed there).
pub const CONNPOOL_CLOSE_DISCARDED: c_int = 7;

/// The reason code of a close.
fn reason_code(why: CloseReason) -> c_int {
    match why {
        CloseReason::Full => CONNPOOL_CLOSE_FULL,
        CloseReason::Evicted => CONNPOOL_CLOSE_EVICTED,
        CloseReason::Expired => CONNPOOL_CLOSE_EXPIRED,
        CloseReason::Dead => CONNPOOL_CLOSE_DEAD,
        CloseReason::Retired => CONNPOOL_CLOSE_RETIRED,
        CloseReason::Purged => CONNPOOL_CLOSE_PURGED,
        CloseReason::Discarded => CONNPOOL_CLOSE_DISCARDED,
    }
}

const KNOWN_FLAGS: u32 = CONNPOOL_CHECK_LIVENESS
    | CONNPOOL_WATCH
    | CONNPOOL_REAPER_THREAD
    | CONNPOOL_CHECK_SKIP_RECENT
    | CONNPOOL_CHECK_HARVEST;

/// Pool configuration. Fill it with connpool_config_init() (which sets struct_size and
/// every default), change the fields you need, and pass it to connpool_new_with_config().
/// The struct may grow at the end in later versions (struct_size tells them apart): never
/// fill it field by field without connpool_config_init().
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct connpool_config {
    /// The size of the caller's struct, set by connpool_config_init().
    pub struct_size: usize,
    /// Idle connections kept per key (default 8); a release into a full key closes the
    /// released fd. Must be at least 1.
    pub max_idle_per_key: u32,
    /// Idle connections kept over all keys (default 0: no global cap). A release that would
    /// exceed it closes the least recently released idle connection of any key and keeps the
    /// new one. The cap is never exceeded, also under concurrent releases.
    pub max_idle_total: u32,
    /// Idle connections older than this are closed, never handed out (default 60000;
    /// 0: no idle timeout). Expiry errs early, never late: see docs/design.md.
    pub idle_timeout_ms: u64,
    /// A connection is never handed out nor kept once this long has passed since its first
    /// release to the pool (default 0: no limit).
    pub max_lifetime_ms: u64,
    /// The release that brings a connection to this many uses closes it and returns
    /// CONNPOOL_CLOSED (default 0: no limit). A connection has served 1 request at its first
    /// release and one more per acquire and release: with 3, its third release closes it.
    pub max_uses: u32,
    /// A combination of CONNPOOL_CHECK_LIVENESS, CONNPOOL_CHECK_SKIP_RECENT,
    /// CONNPOOL_CHECK_HARVEST, CONNPOOL_WATCH and CONNPOOL_REAPER_THREAD (default
    /// CONNPOOL_CHECK_LIVENESS alone). Unknown bits make
    /// connpool_new_with_config() fail with EINVAL.
    pub flags: u32,
    /// Called exactly once for every connection the pool owned and closes (default NULL:
    /// none), with the fd still open, the ctx it was released with (NULL for
    /// connpool_release()) and one of the CONNPOOL_CLOSE_* reasons, so the caller can free
    /// its state (SSL_free()) first. It must not close the fd (the pool does, right after)
    /// nor throw. Never called for a connection the caller holds, nor for an fd the pool
    /// refused (a release's -EINVAL, -EALREADY, -EBADF). It runs under no pool lock, on the
    /// thread whose call closed the connection (or the reaper thread), with thread
    /// cancellation disabled, and may call any function of this pool but connpool_free().
    /// In a fork child the parent's connections are closed without it: they and their state
    /// are the parent's (an SSL_free() in the child could send a close_notify on the
    /// parent's stream). Since 0.2.
    pub on_close:
        Option<unsafe extern "C" fn(arg: *mut c_void, fd: c_int, ctx: *mut c_void, reason: c_int)>,
    /// With CONNPOOL_CHECK_LIVENESS: replaces the recv(MSG_PEEK) check wherever the pool
    /// checks an idle connection (acquire, within CONNPOOL_CHECK_SKIP_RECENT's rule;
    /// connpool_prune(); connpool_reap()). It returns 0 for healthy, anything else for dead
    /// (then the connection is closed, reason CONNPOOL_CLOSE_DEAD, and acquire tries the
    /// next). Use it where unread bytes are normal: a TLS 1.3 server's session tickets, an
    /// HTTP/2 server's PING or SETTINGS (read them, e.g. with a non-blocking SSL_read(), and
    /// call only close_notify, EOF or an error dead). With it, the idle watcher watches for
    /// hang-ups and errors only, not input. It runs under no pool lock, with thread
    /// cancellation disabled, must not close the fd and may call the pool (but not
    /// connpool_free()). Default NULL. Since 0.2.
    pub check: Option<unsafe extern "C" fn(arg: *mut c_void, fd: c_int, ctx: *mut c_void) -> c_int>,
    /// Passed to on_close and check. Default NULL. Since 0.2.
    pub arg: *mut c_void,
    /// Connections per key at most: idle, lent (handed out, not yet given back with a
    /// release or connpool_discard()) and being connected (a connect slot reserved by an
    /// acquire that returned -ENOENT). Default 0: no limit. With a limit, every connection an
    /// acquire handed out and every connect slot must come back through a release or
    /// connpool_discard() (a caller that close()s one itself leaks its slot). Since 0.2.
    pub max_conns_per_key: u32,
}

/// The size of connpool_config in 0.1, the first release: the smallest struct_size accepted.
pub(super) const CONFIG_FIRST_SIZE: usize = 40;
const _: () = assert!(std::mem::offset_of!(connpool_config, flags) + 4 == CONFIG_FIRST_SIZE);

/// The defaults, with struct_size = sizeof.
fn defaults() -> connpool_config {
    let d = Config::default();
    connpool_config {
        struct_size: size_of::<connpool_config>(),
        max_idle_per_key: d.max_idle_per_key as u32,
        max_idle_total: 0,
        idle_timeout_ms: d.idle_timeout.map_or(0, |t| t.as_millis() as u64),
        max_lifetime_ms: 0,
        max_uses: 0,
        flags: CONNPOOL_CHECK_LIVENESS,
        on_close: None,
        check: None,
        arg: std::ptr::null_mut(),
        max_conns_per_key: 0,
    }
}

/// The caller's callback argument, moved into the callbacks (the caller answers for its
/// use from several threads, as documented).
#[derive(Clone, Copy)]
struct Arg(*mut c_void);
// SAFETY: opaque to the pool, only passed back to the caller's callbacks.
unsafe impl Send for Arg {}
unsafe impl Sync for Arg {}

impl Arg {
    fn get(self) -> *mut c_void {
        self.0
    }
}

type COnClose = unsafe extern "C" fn(*mut c_void, c_int, *mut c_void, c_int);
type CCheck = unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> c_int;

fn on_close_of(f: COnClose, arg: Arg) -> Callback<OnClose> {
    Callback(Arc::new(move |fd: BorrowedFd<'_>, ctx: usize, why| {
        // SAFETY: the caller's function, with the documented arguments.
        unsafe {
            f(
                arg.get(),
                fd.as_raw_fd(),
                ctx as *mut c_void,
                reason_code(why),
            )
        }
    }))
}

fn check_of(f: CCheck, arg: Arg) -> Callback<Check> {
    Callback(Arc::new(move |fd: BorrowedFd<'_>, ctx: usize| {
        // SAFETY: as above.
        unsafe { f(arg.get(), fd.as_raw_fd(), ctx as *mut c_void) == 0 }
    }))
}

/// The caller's configuration as a Rust one; None if it is invalid (struct_size, flags,
/// values).
///
/// Safety: `cfg` is valid for reads of its struct_size bytes.
pub(super) unsafe fn config_arg(cfg: *const connpool_config) -> Option<Config> {
    let c = read_sized(cfg, CONFIG_FIRST_SIZE, defaults())?;
    if c.flags & !KNOWN_FLAGS != 0 {
        return None;
    }
    let millis = |ms: u64| (ms != 0).then(|| Duration::from_millis(ms));
    let config = Config {
        max_idle_per_key: c.max_idle_per_key as usize,
        max_idle_total: (c.max_idle_total != 0).then_some(c.max_idle_total as usize),
        idle_timeout: millis(c.idle_timeout_ms),
        max_lifetime: millis(c.max_lifetime_ms),
        max_uses: (c.max_uses != 0).then_some(c.max_uses),
        check_liveness: c.flags & CONNPOOL_CHECK_LIVENESS != 0,
        skip_check_if_idle_under: (c.flags & CONNPOOL_CHECK_SKIP_RECENT != 0)
            .then(|| Duration::from_millis(CONNPOOL_SKIP_RECENT_MS)),
        harvest: c.flags & CONNPOOL_CHECK_HARVEST != 0,
        watch: c.flags & CONNPOOL_WATCH != 0,
        reaper_thread: c.flags & CONNPOOL_REAPER_THREAD != 0,
        max_conns_per_key: (c.max_conns_per_key != 0).then_some(c.max_conns_per_key),
        on_close: c.on_close.map(|f| on_close_of(f, Arg(c.arg))),
        check: c.check.map(|f| check_of(f, Arg(c.arg))),
    };
    config.validate().ok().map(|()| config)
}

/// Fills *cfg with the defaults: max_idle_per_key 8, max_idle_total 0 (no cap),
/// idle_timeout_ms 60000, max_lifetime_ms 0 (none), max_uses 0 (none), flags
/// CONNPOOL_CHECK_LIVENESS, and struct_size. NULL is a no-op.
///
/// In C and C++ this name is a macro (defined at the end of this header) that calls
/// connpool_config_init_sized(cfg, sizeof *cfg), so that a program built against this
/// header fills exactly its own struct. The exported function of this name (for dlsym()
/// and for programs built against 0.1) writes the 0.1 layout of the struct only (40 bytes,
/// struct_size = 40); later fields then take their defaults.
#[no_mangle]
pub unsafe extern "C" fn connpool_config_init(cfg: *mut connpool_config) {
    boundary!((), {
        if !cfg.is_null() {
            let d = defaults();
            std::ptr::copy_nonoverlapping(
                (&d as *const connpool_config).cast::<u8>(),
                cfg.cast::<u8>(),
                CONFIG_FIRST_SIZE,
            );
            (*cfg).struct_size = CONFIG_FIRST_SIZE;
        }
    })
}

/// Fills the caller's struct of `size` bytes (pass sizeof *cfg) with the defaults and sets
/// struct_size = size. Bytes beyond the fields this library knows (a caller built against a
/// newer header) are zeroed, which connpool_new_with_config() accepts.
///
/// Returns 0, or -EINVAL (nothing written) when cfg is NULL or size is smaller than the
/// first released struct (40 bytes).
#[no_mangle]
pub unsafe extern "C" fn connpool_config_init_sized(
    cfg: *mut connpool_config,
    size: usize,
) -> c_int {
    boundary!(-super::PANIC_ERRNO, {
        if cfg.is_null() || size < CONFIG_FIRST_SIZE {
            return -libc::EINVAL;
        }
        let known = size_of::<connpool_config>();
        if size > known {
            std::ptr::write_bytes(cfg.cast::<u8>().add(known), 0, size - known);
        }
        (*cfg).struct_size = size;
        write_sized(cfg, CONFIG_FIRST_SIZE, &defaults());
        0
    })
}
