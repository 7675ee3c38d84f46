/*
 * libconnpool: a pool of idle backend connections (socket fds) keyed by a string such as
 * "host:port", for C and C++ servers. A proxy takes an idle connection for a backend with
 * connpool_acquire(), connects a new one when there is none (-ENOENT), and gives it back
 * with connpool_release() after a complete keep-alive response.
 *
 * FUNCTIONS (in the order of this header)
 *   make, destroy   connpool_new_with_config, connpool_new, connpool_new_default,
 *                   connpool_free, connpool_version
 *   connections     connpool_acquire, connpool_acquire_info, connpool_acquire_ctx,
 *                   connpool_release, connpool_release_hint, connpool_release_ctx
 *   key handles     connpool_key_get, connpool_key_acquire, connpool_key_release
 *   limits          connpool_acquire_wait, connpool_key_acquire_wait, connpool_discard,
 *                   connpool_key_discard, connpool_drain, connpool_shutdown
 *   configuration   connpool_config_init (a macro, see the end), connpool_config_init_sized
 *   figures         connpool_stats_get, connpool_stats_get_key, connpool_idle_count,
 *                   connpool_idle_count_key
 *   maintenance     connpool_purge, connpool_prune
 *   idle watcher    connpool_watch_fd, connpool_reap
 *
 * FD OWNERSHIP (the whole contract, in one place)
 *   Every fd is owned by exactly one side at any time; the pool never closes an fd it does
 *   not own and never leaks one it owns.
 *   - An acquire that returns an fd >= 0: the fd is the caller's, who gives it back with a
 *     release or close()s it. An acquire that returns < 0: no fd changed hands.
 *   - A release or a discard with fd >= 0: the fd is the pool's from the moment of the
 *     call, WHATEVER the result: CONNPOOL_POOLED (kept idle, or handed to a waiter),
 *     CONNPOOL_CLOSED or 0 from a discard (closed), or an error for bad arguments (-EINVAL:
 *     closed). Never use or close it again. Two exceptions: fd < 0 (-EBADF) changes
 *     nothing, and -EALREADY means a pool already owned that fd (a double release): nothing
 *     was changed or closed.
 *   - With max_conns_per_key, every fd an acquire handed out and every connect slot an
 *     acquire reserved (its -ENOENT) must come back to the pool: through a release or
 *     connpool_discard() (fd = -1 for a slot whose connect failed). A caller that close()s
 *     such an fd itself leaks its slot, and the key has one connection less for good.
 *     Without a limit, the caller may close() an fd it acquired, as in 0.1.
 *   - connpool_purge(), connpool_prune(), connpool_reap(), connpool_free() and the pool's
 *     own checks close idle fds the pool owns; fds the caller holds are never touched.
 *   - The fds a pool makes for itself (the watch fd) are the pool's until connpool_free().
 *   - The caller's state for a connection (ctx: an SSL*, a session; opaque, never
 *     dereferenced) follows its fd. Given with a release, it is the pool's until an acquire
 *     hands it back with the fd or the on_close callback receives it (the caller frees it
 *     there); a release the pool refuses (-EINVAL, -EALREADY, -EBADF) leaves it the
 *     caller's. on_close is called exactly once for every connection the pool owned and
 *     closes, never for one the caller holds.
 *
 * POINTERS AND KEYS (every function)
 *   Every pointer argument may be NULL. A NULL or invalid pool or key makes an int function
 *   return -EINVAL, a size_t function 0, a constructor NULL with errno EINVAL, and has no
 *   other effect (but a release closes the fd it was given, as above). A non-NULL pool must
 *   be a live pool from a connpool_new*() function; a non-NULL key must point to a
 *   NUL-terminated string or to at least CONNPOOL_MAX_KEY_LEN + 1 readable bytes. A key is
 *   1 to CONNPOOL_MAX_KEY_LEN bytes, any bytes but NUL (UTF-8 is not required); a longer
 *   one is rejected without being read to its end. Keys may come from the network (a Host
 *   header, an SNI): they are hashed with a per-pool secret, so no choice of keys can make
 *   them collide. A struct pointer must point to at least its struct_size bytes.
 *
 * STRUCTS grow only at the end, and struct_size says how large the caller's is: any
 *   struct_size from the 0.1 size of the struct on is accepted. An input struct
 *   (connpool_config) is read up to min(struct_size, sizeof), later fields taking their
 *   defaults; an output struct (connpool_conn_info, connpool_stats) is written up to
 *   min(struct_size, sizeof) and no further. So a program built against an older header
 *   keeps working with a newer library.
 *
 * ERRORS are negative errno values (from <errno.h>), each listed with its function. If an
 *   internal bug ever panics, the panic is stopped at the library boundary (it never
 *   unwinds into C): int functions return -ENOTRECOVERABLE, size_t functions 0,
 *   constructors NULL; an fd given to a release is closed, as on any other error.
 *
 * MEMORY: an allocation failure aborts the process (as in Rust's standard library). The
 *   calls that may allocate: connpool_new*(), connpool_key_get(), connpool_free(), the
 *   releases and discards (a key's first connection, a growing table, the fd table's
 *   first use of a range of 4096 fd numbers), connpool_stats_get*(), connpool_purge(),
 *   connpool_drain(), connpool_prune(), connpool_reap(), connpool_shutdown(), the waits,
 *   an acquire that closes connections (expired or dead ones) or reserves a connect slot
 *   for a new key, and any call that is the first on a pool in a fork child. The others
 *   never allocate: connpool_acquire*() that close nothing, connpool_idle_count*(),
 *   connpool_watch_fd(), connpool_config_init*(), connpool_version().
 *
 * THREADS: every function may be called concurrently on the same pool, except
 *   connpool_free(), which must be the last call on it. No lock is ever held across a
 *   blocking system call: close() and acquire's liveness check run outside them. No
 *   function is a thread cancellation point: a pthread_cancel() aimed at a thread inside a
 *   call takes effect at the thread's next cancellation point after the call returns.
 *
 * FORK: in a child process an inherited pool never hands out the parent's connections. At
 *   the child's first call (or at fork(), through an atfork handler) the child's copies of
 *   the idle fds are closed (close(), never shutdown(), so the parent's streams are
 *   unaffected) and the child's pool starts empty and works normally: nothing in the child
 *   waits for a lock another parent thread held at the fork. This holds however the child
 *   was made (fork(), _Fork(), a raw clone()) where the kernel supports MADV_WIPEONFORK
 *   (Linux 4.14+), and for fork() everywhere. No system call is added to any call for this.
 *
 * More: docs/design.md (behaviour, clock, locking), docs/health.md, docs/watcher.md.
 */

#ifndef CONNPOOL_H
#define CONNPOOL_H

/* Generated by cbindgen from src/capi/ (see build.rs). Do not edit by hand. */

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/* The version of this header; connpool_version() gives the library's. */
#define CONNPOOL_VERSION "0.1.0"
#define CONNPOOL_VERSION_MAJOR 0
#define CONNPOOL_VERSION_MINOR 1
#define CONNPOOL_VERSION_PATCH 0

/**
 * connpool_release*(): the pool kept the fd idle; it owns it.
 */
#define CONNPOOL_POOLED 0

/**
 * connpool_release*(): the pool did not keep the fd and closed it.
 */
#define CONNPOOL_CLOSED 1

/**
 * Longest key in bytes, without the terminating NUL.
 */
#define CONNPOOL_MAX_KEY_LEN 1024

/**
 * connpool_release_ctx(), connpool_key_release(): no keep-alive hint.
 */
#define CONNPOOL_NO_HINT UINT64_MAX

/**
 * connpool_config.flags: before handing out an idle connection, check it with one
 * non-blocking recv(MSG_PEEK) and close it instead if the peer closed or reset it or sent
 * bytes nobody asked for. On by default; costs one system call per acquire of an idle
 * connection.
 */
#define CONNPOOL_CHECK_LIVENESS (1 << 0)

/**
 * connpool_config.flags: watch idle connections, so that they can be closed the moment
 * the backend closes them or their deadline passes, without waiting for an acquire of their
 * key: connpool_watch_fd() gives an fd for the caller's event loop, connpool_reap() does
 * the closing. Off by default. Each connection is registered once, at its first release
 * (since 0.2: acquires and releases make no system call for it; 0.1 made one epoll_ctl()
 * per acquire and per release). End connections you do not release with
 * connpool_discard(): a new socket that gets the number of one you close() yourself is not
 * watched (the acquire's check still finds it dead).
 */
#define CONNPOOL_WATCH (1 << 1)

/**
 * connpool_config.flags: run one background thread that waits on the watch fd and reaps
 * (implies CONNPOOL_WATCH). connpool_free() stops and joins it.
 */
#define CONNPOOL_REAPER_THREAD (1 << 2)

/**
 * connpool_config.flags, with CONNPOOL_CHECK_LIVENESS (no effect without it): skip the
 * check for a connection idle for less than CONNPOOL_SKIP_RECENT_MS, as curl does (it
 * checks a connection at most once a second). Off by default. It saves the check's system
 * call where a busy proxy makes it most often (connections reused within milliseconds), at
 * the price of a window: a backend that closes a connection within CONNPOOL_SKIP_RECENT_MS
 * of its release (a restart, a crash; not an idle timeout) gets it handed out dead. Use it
 * only if your proxy retries an idempotent request that fails on a reused connection
 * before any response byte (see connpool_acquire_info()).
 */
#define CONNPOOL_CHECK_SKIP_RECENT (1 << 3)

/**
 * connpool_config.flags, with CONNPOOL_CHECK_LIVENESS (no effect without it): check by
 * harvest instead of one recv(MSG_PEEK) per acquire. Each connection is registered once
 * (at its first release) in an epoll set of the pool; an acquire reads that set with one
 * epoll_wait(0) when the last read is older than CONNPOOL_HARVEST_WINDOW_MS, and only the
 * connections it found readable (bytes, EOF, reset: what the recv check calls dead) are
 * closed, or given to your check. The guarantee: a connection is handed out dead only if
 * it became readable within CONNPOOL_HARVEST_WINDOW_MS before the acquire (the recv check's
 * own race, stretched by the window). A connection found readable while you hold it (a
 * response you have not read yet) costs two epoll_ctl() calls (muted, then unmuted at its
 * release); one read promptly costs none. With this flag, end a connection you will not
 * release with connpool_discard(), never close(): a new socket that gets the closed
 * number would not be watched. Takes precedence over CONNPOOL_CHECK_SKIP_RECENT. Since
 * 0.2.
 */
#define CONNPOOL_CHECK_HARVEST (1 << 4)

/**
 * The window of CONNPOOL_CHECK_HARVEST, in milliseconds.
 */
#define CONNPOOL_HARVEST_WINDOW_MS 1

/**
 * The window of CONNPOOL_CHECK_SKIP_RECENT, in milliseconds. It is judged conservatively:
 * a connection is checked unless it was certainly idle for less.
 */
#define CONNPOOL_SKIP_RECENT_MS 100

/**
 * on_close reason: released into a key that already held max_idle_per_key connections (or
 * no place under max_idle_total could be made).
 */
#define CONNPOOL_CLOSE_FULL 1

/**
 * on_close reason: idle, closed to keep max_idle_total (or max_idle_per_key, when releases
 * filled its key while it was out for a check by prune or the watcher).
 */
#define CONNPOOL_CLOSE_EVICTED 2

/**
 * on_close reason: its idle timeout, keep-alive hint or lifetime passed (idle, or at its
 * release).
 */
#define CONNPOOL_CLOSE_EXPIRED 3

/**
 * on_close reason: the check found it closed, reset or desynchronised by its backend.
 */
#define CONNPOOL_CLOSE_DEAD 4

/**
 * on_close reason: released at max_uses.
 */
#define CONNPOOL_CLOSE_RETIRED 5

/**
 * on_close reason: idle, closed by connpool_purge(), connpool_drain() or connpool_free(); or
 * lent before a connpool_drain() of its key, closed at its release.
 */
#define CONNPOOL_CLOSE_PURGED 6

/**
 * on_close reason: ended by the caller with connpool_discard() (the ctx passed there).
 */
#define CONNPOOL_CLOSE_DISCARDED 7

/**
 * A pool of idle connections. Opaque: create it with connpool_new_with_config(),
 * connpool_new() or connpool_new_default() and destroy it with connpool_free().
 */
typedef struct connpool connpool;

/**
 * A key of one pool, resolved once with connpool_key_get(): the calls by handle skip the
 * key's validation and hashing. Opaque; owned by the pool, valid until connpool_free()
 * (it survives purge, prune, fork and the key having no idle connection); never free it.
 * Since 0.2.
 */
typedef struct connpool_key connpool_key;

/**
 * Pool configuration. Fill it with connpool_config_init() (which sets struct_size and
 * every default), change the fields you need, and pass it to connpool_new_with_config().
 * The struct may grow at the end in later versions (struct_size tells them apart): never
 * fill it field by field without connpool_config_init().
 */
typedef struct connpool_config {
  /**
   * The size of the caller's struct, set by connpool_config_init().
   */
  size_t struct_size;
  /**
   * Idle connections kept per key (default 8); a release into a full key closes the
   * released fd. Must be at least 1.
   */
  uint32_t max_idle_per_key;
  /**
   * Idle connections kept over all keys (default 0: no global cap). A release that would
   * exceed it closes the least recently released idle connection of any key and keeps the
   * new one. The cap is never exceeded, also under concurrent releases.
   */
  uint32_t max_idle_total;
  /**
   * Idle connections older than this are closed, never handed out (default 60000;
   * 0: no idle timeout). Expiry errs early, never late: see docs/design.md.
   */
  uint64_t idle_timeout_ms;
  /**
   * A connection is never handed out nor kept once this long has passed since its first
   * release to the pool (default 0: no limit).
   */
  uint64_t max_lifetime_ms;
  /**
   * The release that brings a connection to this many uses closes it and returns
   * CONNPOOL_CLOSED (default 0: no limit). A connection has served 1 request at its first
   * release and one more per acquire and release: with 3, its third release closes it.
   */
  uint32_t max_uses;
  /**
   * A combination of CONNPOOL_CHECK_LIVENESS, CONNPOOL_CHECK_SKIP_RECENT,
   * CONNPOOL_CHECK_HARVEST, CONNPOOL_WATCH and CONNPOOL_REAPER_THREAD (default
   * CONNPOOL_CHECK_LIVENESS alone). Unknown bits make
   * connpool_new_with_config() fail with EINVAL.
   */
  uint32_t flags;
  /**
   * Called exactly once for every connection the pool owned and closes (default NULL:
   * none), with the fd still open, the ctx it was released with (NULL for
   * connpool_release()) and one of the CONNPOOL_CLOSE_* reasons, so the caller can free
   * its state (SSL_free()) first. It must not close the fd (the pool does, right after)
   * nor throw. Never called for a connection the caller holds, nor for an fd the pool
   * refused (a release's -EINVAL, -EALREADY, -EBADF). It runs under no pool lock, on the
   * thread whose call closed the connection (or the reaper thread), with thread
   * cancellation disabled, and may call any function of this pool but connpool_free().
   * In a fork child the parent's connections are closed without it: they and their state
   * are the parent's (an SSL_free() in the child could send a close_notify on the
   * parent's stream). Since 0.2.
   */
  void (*on_close)(void *arg, int fd, void *ctx, int reason);
  /**
   * With CONNPOOL_CHECK_LIVENESS: replaces the recv(MSG_PEEK) check wherever the pool
   * checks an idle connection (acquire, within CONNPOOL_CHECK_SKIP_RECENT's rule;
   * connpool_prune(); connpool_reap()). It returns 0 for healthy, anything else for dead
   * (then the connection is closed, reason CONNPOOL_CLOSE_DEAD, and acquire tries the
   * next). Use it where unread bytes are normal: a TLS 1.3 server's session tickets, an
   * HTTP/2 server's PING or SETTINGS (read them, e.g. with a non-blocking SSL_read(), and
   * call only close_notify, EOF or an error dead). With it, the idle watcher watches for
   * hang-ups and errors only, not input. It runs under no pool lock, with thread
   * cancellation disabled, must not close the fd and may call the pool (but not
   * connpool_free()). Default NULL. Since 0.2.
   */
  int (*check)(void *arg, int fd, void *ctx);
  /**
   * Passed to on_close and check. Default NULL. Since 0.2.
   */
  void *arg;
  /**
   * Connections per key at most: idle, lent (handed out, not yet given back with a
   * release or connpool_discard()) and being connected (a connect slot reserved by an
   * acquire that returned -ENOENT). Default 0: no limit. With a limit, every connection an
   * acquire handed out and every connect slot must come back through a release or
   * connpool_discard() (a caller that close()s one itself leaks its slot). Since 0.2.
   */
  uint32_t max_conns_per_key;
} connpool_config;

/**
 * What connpool_acquire_info() reports about the connection it hands out, so that a proxy
 * can tell a reused connection from a fresh one (and retry an idempotent request that
 * failed on a reused connection before any response byte, as nginx, Go and curl do).
 * Set struct_size = sizeof(connpool_conn_info) before the call.
 */
typedef struct connpool_conn_info {
  /**
   * The size of the caller's struct, set by the caller.
   */
  size_t struct_size;
  /**
   * How long the connection was idle in the pool, in milliseconds. It may be
   * over-reported by a clock tick, never under-reported.
   */
  uint64_t idle_ms;
  /**
   * How long ago it was first released to the pool, in milliseconds (over-reported the
   * same way, never under-reported).
   */
  uint64_t age_ms;
  /**
   * Requests it has served: 1 after its first release, one more per acquire and release.
   */
  uint32_t uses;
  /**
   * The ctx it was released with (NULL if none), the caller's again. Since 0.2.
   */
  void *ctx;
} connpool_conn_info;

/**
 * A pool's gauges and counters, filled by connpool_stats_get(). Counters only grow; each
 * connection the pool closes is counted under exactly one reason. Set struct_size =
 * sizeof(connpool_stats) before the call.
 */
typedef struct connpool_stats {
  /**
   * The size of the caller's struct, set by the caller.
   */
  size_t struct_size;
  /**
   * Idle connections held now (expired ones not yet closed, and ones out for a check by
   * connpool_prune() or the watcher, included).
   */
  uint64_t idle;
  /**
   * Keys with at least one idle connection now.
   */
  uint64_t keys;
  /**
   * Acquires that returned a connection.
   */
  uint64_t hits;
  /**
   * Acquires that found no usable connection (-ENOENT).
   */
  uint64_t misses;
  /**
   * Releases that kept the connection (CONNPOOL_POOLED).
   */
  uint64_t pooled;
  /**
   * Releases closed because the key already held max_idle_per_key connections (or,
   * rarely, because no place under max_idle_total could be made: every place was taken
   * by releases in progress on other threads).
   */
  uint64_t closed_full;
  /**
   * Idle connections closed to keep max_idle_total (or max_idle_per_key, when releases
   * filled their key while they were out for a check by prune or the watcher).
   */
  uint64_t evicted;
  /**
   * Connections closed for the idle timeout, max_lifetime_ms or a keep-alive hint: idle
   * ones, and releases closed at once (past max_lifetime_ms, or a hint of 0), which were
   * never counted in pooled.
   */
  uint64_t expired;
  /**
   * Idle connections found closed, reset or desynchronised by their backend: by the
   * liveness check (on acquire or prune) or by the idle watcher (connpool_reap).
   */
  uint64_t dead;
  /**
   * Connections closed by their release at max_uses.
   */
  uint64_t retired;
  /**
   * Idle connections closed by connpool_purge(), connpool_drain() or connpool_free(), and
   * connections lent before a connpool_drain() of their key, closed at their release.
   */
  uint64_t purged;
  /**
   * Connections handed out and not yet given back (release or connpool_discard()), now.
   * A connection the caller closes itself stays counted. Since 0.2.
   */
  uint64_t lent;
  /**
   * Connect slots reserved now (with max_conns_per_key). Since 0.2.
   */
  uint64_t connecting;
  /**
   * Threads waiting in connpool_acquire_wait() now. Since 0.2.
   */
  uint64_t waiting;
  /**
   * Connections ended by connpool_discard() (not the slots returned with fd = -1). Since
   * 0.2.
   */
  uint64_t discarded;
} connpool_stats;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * Creates a pool from *cfg (filled by connpool_config_init(), then changed); NULL cfg
 * gives the defaults.
 *
 * Returns the pool, or NULL with errno set:
 * - EINVAL: the configuration is invalid: struct_size below the 0.1 size (40), above
 *   4096, or larger than this library's struct with non-zero bytes it does not know;
 *   max_idle_per_key 0; or an unknown flag. Huge values (UINT32_MAX, UINT64_MAX) are
 *   accepted and mean "no practical limit".
 * - EMFILE, ENFILE, ENOMEM: CONNPOOL_WATCH or CONNPOOL_REAPER_THREAD needs fds (an epoll
 *   fd, a timerfd, an eventfd) that cannot be had; EAGAIN: the reaper thread cannot be
 *   started.
 */
struct connpool *connpool_new_with_config(const struct connpool_config *cfg);

/**
 * Creates a pool with the defaults of connpool_config_init() but for two fields: at most
 * max_idle_per_key idle connections per key, closed after idle_timeout_ms milliseconds
 * idle (0: no idle timeout).
 *
 * Returns the pool, or NULL with errno = EINVAL when max_idle_per_key is 0 (a pool that
 * keeps nothing is almost always an unset value). Huge values are accepted.
 */
struct connpool *connpool_new(size_t max_idle_per_key, uint64_t idle_timeout_ms);

/**
 * Creates a pool with the defaults of connpool_config_init(): 8 idle connections per key,
 * a 60 000 ms idle timeout and the liveness check on. Returns NULL only if a panic (a bug)
 * was caught.
 */
struct connpool *connpool_new_default(void);

/**
 * Destroys the pool: stops and joins its reaper thread, if any, and closes every idle
 * connection (fds the caller holds are not affected). It must be the last call on the
 * pool, made when no other call on it is running. NULL is a no-op.
 */
void connpool_free(struct connpool *pool);

/**
 * The library version, "MAJOR.MINOR.PATCH": a static string, never freed. Compare it with
 * CONNPOOL_VERSION to detect a header/library mismatch.
 */
const char *connpool_version(void);

/**
 * Takes an idle connection for key: the most recently released one that has not expired
 * and, with CONNPOOL_CHECK_LIVENESS (the default), passes the liveness check. A candidate
 * that fails the check (its backend closed or reset it, or sent bytes nobody asked for) is
 * closed and the next one is tried. A connection that passed can still be closed by its
 * backend a moment later (a race no check can close): retry an idempotent request that
 * fails on a reused connection before any response byte.
 *
 * Returns:
 * - an fd >= 0: the caller owns it, and gives it back with a release, or ends it with
 *   connpool_discard() (or, without max_conns_per_key, close()s it).
 * - -ENOENT: no usable idle connection for key: connect a new one. With
 *   max_conns_per_key, a connect slot is now reserved for it: release the new connection
 *   (or discard it; or connpool_discard() with fd = -1 if the connect failed).
 * - -EAGAIN: with max_conns_per_key, none idle and the key is at its limit; nothing
 *   changed (retry later: connpool_acquire_wait() waits; with CONNPOOL_WATCH the watch fd
 *   tells when to retry, see connpool_reap()).
 * - -EINVAL: bad pool or key (see the pointer rules).
 *
 * On every error no fd changed hands.
 */
int connpool_acquire(struct connpool *pool, const char *key);

/**
 * As connpool_acquire(), and on success also fills *info (when info is not NULL) with what
 * is known of the connection: how long it was idle, how old it is, how many requests it
 * has served.
 *
 * Returns what connpool_acquire() returns, and -EINVAL (nothing acquired) when
 * info->struct_size is smaller than the 0.1 struct (32 bytes). A larger struct_size is
 * accepted: the fields this library knows are filled, nothing beyond. On failure *info is
 * left untouched.
 */
int connpool_acquire_info(struct connpool *pool, const char *key, struct connpool_conn_info *info);

/**
 * As connpool_acquire(), and on success also sets *ctx (when ctx is not NULL) to the state
 * the connection was released with (NULL if none): the connection and its state are the
 * caller's again. On failure *ctx is left untouched. Since 0.2.
 *
 * Returns what connpool_acquire() returns.
 */
int connpool_acquire_ctx(struct connpool *pool, const char *key, void **ctx);

/**
 * Gives fd back to the pool as an idle connection of key. Release only a connection that
 * is idle and reusable: the response was read completely and the connection is
 * keep-alive. The pool does not probe fd on release (that would cost a system call per
 * release); it is checked when next acquired.
 *
 * The fd is the pool's from the moment of the call, whatever the result, with two
 * exceptions (fd < 0, -EALREADY): never use or close it again.
 *
 * Returns:
 * - CONNPOOL_POOLED: kept idle; the pool owns it.
 * - CONNPOOL_CLOSED: the pool closed it: the key already held max_idle_per_key idle
 *   connections, the connection reached max_uses or max_lifetime_ms, or the global cap
 *   could not be kept (every place taken by releases in progress).
 * - -EALREADY: a pool already owns fd (it is idle in this pool or another): a double
 *   release, a caller bug. Nothing changed and nothing was closed; fd stays the pool's.
 *   Checked first, whatever else is wrong with the call.
 * - -EINVAL: bad pool or key; fd was closed.
 * - -EBADF: fd < 0; nothing happened.
 *
 * Lifetime and uses follow a connection from its acquire to its release by fd number.
 * The pool cannot tell that connection from a new socket that got the same number after
 * the caller closed the old one; it then counts the new socket as the old connection
 * (older and more used than it is, so retired early, never kept too long). The history is
 * kept per pool: a connection acquired from one pool and released into another starts
 * afresh there. Releasing an fd number the caller had already closed is a caller bug the
 * pool cannot see: it returns CONNPOOL_POOLED and later closes (or hands out) whatever
 * file has that number then, exactly as a double close() would.
 */
int connpool_release(struct connpool *pool, const char *key, int fd);

/**
 * As connpool_release(), for a connection whose server announced how long it keeps idle
 * connections open (HTTP "Keep-Alive: timeout=N", in milliseconds here): the connection
 * expires after min(keepalive_timeout_ms, idle timeout) idle, so the pool does not hand
 * out a connection the server is about to close. Pass a little less than the server's
 * value to allow for the network delay. 0 means the server will not keep it: the fd is
 * closed and CONNPOOL_CLOSED returned. Same results and ownership as connpool_release().
 */
int connpool_release_hint(struct connpool *pool,
                          const char *key,
                          int fd,
                          uint64_t keepalive_timeout_ms);

/**
 * As connpool_release_hint(), with the caller's state for the connection (an SSL*, an
 * HTTP/2 session; opaque to the pool, never dereferenced; NULL for none) and
 * keepalive_ms = CONNPOOL_NO_HINT for no hint (0 closes at once, as in
 * connpool_release_hint()). The state travels with the fd: from the call on it is the
 * pool's, whatever the result, until an acquire hands it back with the fd or on_close
 * receives it (for CONNPOOL_CLOSED: at once, before the call returns). With -EINVAL,
 * -EALREADY and -EBADF (the pool never took the fd) ctx stays the caller's. Since 0.2.
 */
int connpool_release_ctx(struct connpool *pool,
                         const char *key,
                         int fd,
                         void *ctx,
                         uint64_t keepalive_ms);

/**
 * The handle of key in pool: the same handle for the same bytes, from any thread. The
 * string calls and the handle calls on the same key see one idle set. Each handle lives
 * until connpool_free(): make them for the keys you know (your backends), not for keys
 * that come from the network. Since 0.2.
 *
 * Returns the handle, or NULL with errno EINVAL (bad pool or key).
 */
struct connpool_key *connpool_key_get(struct connpool *pool, const char *key);

/**
 * connpool_acquire_ctx() and connpool_acquire_info() in one, by handle: an idle
 * connection of the handle's key; on success *ctx (when ctx is not NULL) is its state and
 * *info (when info is not NULL) what is known of it (info->struct_size set by the caller;
 * filling it costs a precise clock read, so pass NULL when not needed). Since 0.2.
 *
 * Returns what connpool_acquire() returns (an fd >= 0, -ENOENT, -EAGAIN), or -EINVAL (k
 * is NULL, or info->struct_size is below the 0.1 struct's 32 bytes; nothing acquired).
 */
int connpool_key_acquire(struct connpool_key *k, void **ctx, struct connpool_conn_info *info);

/**
 * connpool_release_ctx() by handle: same results and ownership of fd and ctx (-EINVAL for
 * a NULL k, with fd closed unless a pool owns it: then -EALREADY). Since 0.2.
 */
int connpool_key_release(struct connpool_key *k, int fd, void *ctx, uint64_t keepalive_ms);

/**
 * As connpool_acquire_ctx(), but at the key's connection limit (max_conns_per_key) it
 * waits, up to timeout_ms, for a connection or a slot of the key: a release to the key
 * hands its connection straight to the longest waiter (first come, first served; the
 * release returns CONNPOOL_POOLED; the waiter checks it as any acquire does, and if it is
 * dead closes it and gets its slot: -ENOENT, connect), and any close of a connection
 * of the key (a discard, a release that closes, an expiry...) gives the freed slot to the
 * longest waiter. For thread-per-connection servers; it blocks the calling thread (with
 * no pool lock held, and not as a cancellation point). Without a limit it never waits.
 * Since 0.2.
 *
 * Returns an fd >= 0 (with *ctx set when ctx is not NULL), -ENOENT (connect a new one: a
 * connect slot is reserved for it), -EAGAIN (timeout_ms 0 at the limit: as
 * connpool_acquire_ctx()), -ETIMEDOUT (waited timeout_ms in vain; nothing changed hands),
 * -ECANCELED (connpool_shutdown() was called), or -EINVAL (bad pool or key).
 */
int connpool_acquire_wait(struct connpool *pool, const char *key, void **ctx, uint64_t timeout_ms);

/**
 * connpool_acquire_wait() by handle, with *info filled as connpool_key_acquire() does.
 * Same results, and -EINVAL for a NULL k or an info->struct_size below 32. Since 0.2.
 */
int connpool_key_acquire_wait(struct connpool_key *k,
                              void **ctx,
                              struct connpool_conn_info *info,
                              uint64_t timeout_ms);

/**
 * The caller ends a connection of key it holds (an I/O error, "Connection: close", a
 * protocol failure): on_close is called (reason CONNPOOL_CLOSE_DISCARDED, with this ctx),
 * the pool closes fd, and the connection slot it held (its loan, or a connect slot of the
 * key) is freed after the close, for the longest waiter. With fd = -1 it gives back a
 * connect slot the caller did not use (its connect failed). Works without a limit too
 * (counted in connpool_stats.discarded). Since 0.2.
 *
 * fd is the pool's from the call on, whatever the result, with the exceptions of release:
 * fd < 0 and -EALREADY. Returns:
 * - 0: closed (or, with fd = -1, the slot given back, if one was reserved).
 * - -EALREADY: a pool owns fd (it is idle in a pool): nothing was changed or closed.
 * - -EINVAL: bad pool or key; fd was closed (on_close not called: the pool never took it).
 * - -EBADF: fd < -1; nothing happened.
 */
int connpool_discard(struct connpool *pool, const char *key, int fd, void *ctx);

/**
 * connpool_discard() by handle: same results (-EINVAL for a NULL k). Since 0.2.
 */
int connpool_key_discard(struct connpool_key *k, int fd, void *ctx);

/**
 * As connpool_purge() (the idle connections of key, or of every key when key is NULL, are
 * closed, counted purged), and the connections of that key lent now are closed at their
 * release (which returns CONNPOOL_CLOSED; on_close reason CONNPOOL_CLOSE_PURGED) instead
 * of pooled: a backend that was removed or restarted gets no old connection back.
 * connpool_purge() itself keeps its meaning (idle ones only). Works with and without a
 * limit. Returns how many idle connections it closed; 0 for a bad pool or key. Since 0.2.
 */
size_t connpool_drain(struct connpool *pool, const char *key);

/**
 * Wakes every thread waiting in connpool_acquire_wait() or connpool_key_acquire_wait()
 * (they return -ECANCELED) and makes every later wait on this pool return -ECANCELED at
 * once instead of waiting (an acquire that needs no wait still succeeds). For shutting a
 * server down: call it, join the threads that may wait, then connpool_free(). Returns how
 * many waiters it woke; 0 for a bad pool. Since 0.2.
 */
size_t connpool_shutdown(struct connpool *pool);

/**
 * Fills *cfg with the defaults: max_idle_per_key 8, max_idle_total 0 (no cap),
 * idle_timeout_ms 60000, max_lifetime_ms 0 (none), max_uses 0 (none), flags
 * CONNPOOL_CHECK_LIVENESS, and struct_size. NULL is a no-op.
 *
 * In C and C++ this name is a macro (defined at the end of this header) that calls
 * connpool_config_init_sized(cfg, sizeof *cfg), so that a program built against this
 * header fills exactly its own struct. The exported function of this name (for dlsym()
 * and for programs built against 0.1) writes the 0.1 layout of the struct only (40 bytes,
 * struct_size = 40); later fields then take their defaults.
 */
void connpool_config_init(struct connpool_config *cfg);

/**
 * Fills the caller's struct of `size` bytes (pass sizeof *cfg) with the defaults and sets
 * struct_size = size. Bytes beyond the fields this library knows (a caller built against a
 * newer header) are zeroed, which connpool_new_with_config() accepts.
 *
 * Returns 0, or -EINVAL (nothing written) when cfg is NULL or size is smaller than the
 * first released struct (40 bytes).
 */
int connpool_config_init_sized(struct connpool_config *cfg, size_t size);

/**
 * Fills *out with the pool's gauges and counters, read under every internal lock at once,
 * so the gauges and the counters of everything done under those locks agree (call it from
 * a timer or on demand, not per request). Counters are exact once calls have returned;
 * while acquires run, their outcome (hit, or dead by the liveness check, which runs
 * outside the locks) is counted a moment after the connection left `idle`.
 *
 * Returns 0, or -EINVAL (nothing written) for a bad pool, a NULL out or an
 * out->struct_size below the 0.1 struct (96 bytes). A larger struct_size is accepted: the
 * fields this library knows are filled, nothing beyond.
 */
int connpool_stats_get(const struct connpool *pool, struct connpool_stats *out);

/**
 * Idle connections held over all keys, expired ones not yet closed included (call
 * connpool_prune() first to close those); 0 for a bad pool. It sums per-shard counters
 * without locking, so while other threads acquire and release it is approximate (never
 * above max_idle_total); it is exact when no call is running. connpool_stats_get() gives
 * an exact snapshot at a higher cost.
 */
size_t connpool_idle_count(const struct connpool *pool);

/**
 * Idle connections held for key that have not expired; 0 for a bad pool or key. Expired
 * ones are not counted (nor closed: the next acquire, release or prune closes them).
 */
size_t connpool_idle_count_key(const struct connpool *pool, const char *key);

/**
 * Fills *out with the figures of one key: the connpool_stats fields counted for it (keys is
 * 1 if it holds an idle connection) and its gauges (idle, lent, connecting, waiting).
 * Counters are kept while the key has an entry in the pool: from its first connection,
 * connect slot or key handle until it holds nothing (no idle, lent or connecting
 * connection, no waiter, no handle) and is swept; they then start again from zero. Exact
 * once calls have returned. Since 0.2.
 *
 * Returns 0 (all zeros for a key the pool knows nothing of), or -EINVAL (nothing written)
 * for a bad pool or key, a NULL out or an out->struct_size below the 0.1 struct (96 bytes).
 */
int connpool_stats_get_key(const struct connpool *pool,
                           const char *key,
                           struct connpool_stats *out);

/**
 * Closes every idle connection of key, or of every key when key is NULL (e.g. when a
 * backend went down or its address changed). Returns how many were closed; 0 for a bad
 * pool or an invalid key. Connections the caller holds are not affected.
 */
size_t connpool_purge(struct connpool *pool, const char *key);

/**
 * Closes every expired idle connection now, over all keys, and, with
 * CONNPOOL_CHECK_LIVENESS, every idle connection that fails the liveness check; returns
 * how many were closed (0 for a bad pool). Optional: both are also closed by the next
 * acquire of their key. Call it from a timer to give back the fds of keys no longer used
 * and of backends that closed their end. It costs one non-blocking recv() per idle
 * connection, made under the key's internal lock, one key at a time.
 */
size_t connpool_prune(struct connpool *pool);

/**
 * The idle watcher's fd (with CONNPOOL_WATCH or CONNPOOL_REAPER_THREAD), for the caller's
 * event loop (epoll, poll, libevent, libuv...): it becomes readable when at least one idle
 * connection's backend closed or reset it, or when the earliest idle deadline has passed
 * (and, with max_conns_per_key, when a refused key has room); then call connpool_reap().
 * A connection whose backend closes it while the caller holds it makes it readable once
 * (that reap closes nothing). Add it for reading only;
 * it is level-triggered and stays readable until connpool_reap() has done the work.
 *
 * Returns the fd (>= 0), owned by the pool and valid until connpool_free(): never close
 * it or read from it. In a child process after fork() the inherited watch fd is closed:
 * call connpool_watch_fd() again there (the child's pool makes its own). Errors:
 * - -EINVAL: bad pool, or a pool made without CONNPOOL_WATCH.
 * - -EMFILE, -ENFILE, -ENOMEM: in a fork child, the child's watcher could not be made
 *   (no fd left).
 */
int connpool_watch_fd(struct connpool *pool);

/**
 * Never blocks: closes every idle connection that the watch fd reported (counted dead in
 * connpool_stats) and, if the earliest deadline passed, every expired one (counted
 * expired), and re-arms the watch fd so it is not readable again until there is new work.
 * Returns how many it closed; 0 for a bad pool or a pool without CONNPOOL_WATCH. Safe at
 * any time, from any thread, concurrently with every other call: an fd is never closed
 * after it was handed to a caller, nor handed out after it was chosen for closing.
 */
size_t connpool_reap(struct connpool *pool);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* CONNPOOL_H */

/* connpool_config_init(cfg) fills exactly the caller's struct, whatever this header's
 * version: the exported function of that name writes the 0.1 layout only (for dlsym() and
 * for programs built against 0.1). Call (connpool_config_init)(cfg) to reach it directly. */
#ifndef connpool_config_init
#define connpool_config_init(cfg) connpool_config_init_sized((cfg), sizeof *(cfg))
#endif
