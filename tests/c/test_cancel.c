/* pthread_cancel of a thread inside a pool call.
 *
 * No libconnpool function is a cancellation point: a cancellation request made while a
 * thread is inside a pool call stays pending until the thread's next cancellation point
 * outside the library; the call completes normally, with no lock held and nothing lost.
 *
 * Made deterministic: the worker spins on an atomic flag (no cancellation point), the main
 * thread cancels it (deferred, the default: the request is now pending), then lets it make
 * the call. The worker records the result and calls pthread_testcancel(), where it must
 * exit with PTHREAD_CANCELED. Each case runs in a forked child under a watchdog, so an
 * abort or a hang is reported with its signal and the other cases still run.
 *
 * Before the fix the calls that reach a cancellation point (recv, close, epoll_wait,
 * pthread_join) abort the process: glibc's forced unwind is caught by the library's panic
 * boundary ("FATAL: exception not rethrown", SIGABRT). */
#define _GNU_SOURCE
#include "harness.h"
#include "hostile.h"

#include <pthread.h>
#include <stdatomic.h>

#define KEY "127.0.0.1:8080"

struct call {
    long (*fn)(struct call *);
    connpool *pool;
    int fd;
    atomic_int go;
    long result;
    atomic_int returned;  /* the call came back */
    atomic_int survived;  /* pthread_testcancel() did not act: the request was lost */
};

static void *worker(void *arg)
{
    struct call *c = arg;
    while (!atomic_load(&c->go)) {
    }
    c->result = c->fn(c);
    atomic_store(&c->returned, 1);
    pthread_testcancel();
    atomic_store(&c->survived, 1);
    return NULL;
}

/* Runs c->fn on a thread that has a cancellation request pending; returns its result. */
static long call_cancelled(struct call *c)
{
    pthread_t t;
    CCHECK(pthread_create(&t, NULL, worker, c) == 0);
    CCHECK(pthread_cancel(t) == 0);
    atomic_store(&c->go, 1);
    void *ret = NULL;
    CCHECK(pthread_join(t, &ret) == 0);
    CCHECK(atomic_load(&c->returned)); /* the call returned (not unwound) */
    CCHECK(!atomic_load(&c->survived));
    CCHECK(ret == PTHREAD_CANCELED); /* the request was still pending afterwards */
    return c->result;
}

/* A connection whose peer stays open; *peer is its other end. */
static int live_pair(int *peer)
{
    int sv[2];
    CCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    *peer = sv[1];
    return sv[0];
}

/* A connection whose peer is gone (the liveness check finds it dead). */
static int dead_fd(void)
{
    int peer, fd = live_pair(&peer);
    close(peer);
    return fd;
}

/* The pool still works afterwards from this thread, on every shard (a lock left held
 * would hang stats or an acquire: the watchdog reports it). */
static void pool_still_works(connpool *pool)
{
    connpool_stats st = {.struct_size = sizeof st};
    CCHECK_EQ(connpool_stats_get(pool, &st), 0);
    for (int i = 0; i < 64; i++) {
        char key[32];
        make_key(key, sizeof key, i);
        int peer, fd = live_pair(&peer);
        CCHECK_EQ(connpool_release(pool, key, fd), CONNPOOL_POOLED);
        CCHECK_EQ(connpool_acquire(pool, key), fd);
        CCHECK(tcp_roundtrip(fd, peer, (unsigned char)i) == 0);
        close(fd);
        close(peer);
    }
}

static connpool *pool_with(uint32_t per_key, uint32_t flags)
{
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.max_idle_per_key = per_key;
    cfg.flags = flags;
    connpool *pool = connpool_new_with_config(&cfg);
    CCHECK(pool != NULL);
    return pool;
}

/* ---- the calls ---- */
static long do_acquire(struct call *c) { return connpool_acquire(c->pool, KEY); }
static long do_acquire_info(struct call *c)
{
    connpool_conn_info in = {.struct_size = sizeof in};
    return connpool_acquire_info(c->pool, KEY, &in);
}
static long do_release(struct call *c) { return connpool_release(c->pool, KEY, c->fd); }
static long do_release_hint0(struct call *c) { return connpool_release_hint(c->pool, KEY, c->fd, 0); }
static long do_release_badkey(struct call *c) { return connpool_release(c->pool, "", c->fd); }
static long do_prune(struct call *c) { return (long)connpool_prune(c->pool); }
static long do_purge(struct call *c) { return (long)connpool_purge(c->pool, NULL); }
static long do_reap(struct call *c) { return (long)connpool_reap(c->pool); }
static long do_free(struct call *c) { connpool_free(c->pool); return 0; }
static long do_new_default(struct call *c)
{
    (void)c;
    return (long)(intptr_t)connpool_new_default();
}
static long do_new_reaper(struct call *c)
{
    (void)c;
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.flags |= CONNPOOL_REAPER_THREAD;
    return (long)(intptr_t)connpool_new_with_config(&cfg);
}

/* ---- the cases (each in its own child; arg: its cancel_case) ---- */

struct cancel_case {
    const char *name;
    void (*run)(void *);
    long (*fn)(struct call *);
};

/* acquire: the liveness check's recv (outside the lock). */
static void acquire_live(void *arg)
{
    long (*fn)(struct call *) = ((const struct cancel_case *)arg)->fn;
    connpool *pool = pool_with(8, CONNPOOL_CHECK_LIVENESS);
    int peer, fd = live_pair(&peer);
    CCHECK_EQ(connpool_release(pool, KEY, fd), CONNPOOL_POOLED);
    struct call c = {.fn = fn, .pool = pool};
    CCHECK_EQ(call_cancelled(&c), fd); /* handed out, and it is that connection */
    CCHECK(tcp_roundtrip(fd, peer, 1) == 0);
    CCHECK_EQ(connpool_release(pool, KEY, fd), CONNPOOL_POOLED);
    CCHECK_EQ(connpool_acquire(pool, KEY), fd);
    CCHECK_EQ(stats_of(pool).hits, 2);
    close(fd);
    pool_still_works(pool);
    connpool_free(pool);
    close(peer);
}

/* acquire of a dead connection: recv, then close. */
static void acquire_dead(void *unused)
{
    (void)unused;
    connpool *pool = pool_with(8, CONNPOOL_CHECK_LIVENESS);
    int fd = dead_fd();
    CCHECK_EQ(connpool_release(pool, KEY, fd), CONNPOOL_POOLED);
    struct call c = {.fn = do_acquire, .pool = pool};
    CCHECK_EQ(call_cancelled(&c), -ENOENT);
    CCHECK(fd_is_closed(fd));
    connpool_stats st = stats_of(pool);
    CCHECK_EQ(st.dead, 1);
    CCHECK_EQ(st.idle, 0);
    pool_still_works(pool);
    connpool_free(pool);
}

/* release that closes the fd: key full, hint 0, bad key. */
static void release_closing(void *arg)
{
    long (*fn)(struct call *) = ((const struct cancel_case *)arg)->fn;
    connpool *pool = pool_with(1, CONNPOOL_CHECK_LIVENESS);
    int p1, first = live_pair(&p1);
    CCHECK_EQ(connpool_release(pool, KEY, first), CONNPOOL_POOLED);
    int p2, fd = live_pair(&p2);
    struct call c = {.fn = fn, .pool = pool, .fd = fd};
    long expect = fn == do_release_badkey ? -EINVAL : CONNPOOL_CLOSED;
    CCHECK_EQ(call_cancelled(&c), expect);
    CCHECK(fd_is_closed(fd));
    CCHECK_EQ(connpool_idle_count_key(pool, KEY), 1); /* the first one is untouched */
    CCHECK_EQ(connpool_acquire(pool, KEY), first);
    CCHECK(tcp_roundtrip(first, p1, 2) == 0);
    close(first);
    pool_still_works(pool);
    connpool_free(pool);
    close(p1);
    close(p2);
}

/* prune: recv under each key's lock, then close of the dead one; purge: close. */
static void prune_or_purge(void *arg)
{
    long (*fn)(struct call *) = ((const struct cancel_case *)arg)->fn;
    connpool *pool = pool_with(8, CONNPOOL_CHECK_LIVENESS);
    int peer, live = live_pair(&peer);
    int dead = dead_fd();
    CCHECK_EQ(connpool_release(pool, KEY, live), CONNPOOL_POOLED);
    CCHECK_EQ(connpool_release(pool, "10.0.0.9:9", dead), CONNPOOL_POOLED);
    struct call c = {.fn = fn, .pool = pool};
    if (fn == do_prune) {
        CCHECK_EQ(call_cancelled(&c), 1);
        CCHECK(fd_is_closed(dead));
        CCHECK_EQ(connpool_acquire(pool, KEY), live);
        CCHECK(tcp_roundtrip(live, peer, 3) == 0);
        close(live);
    } else {
        CCHECK_EQ(call_cancelled(&c), 2);
        CCHECK(fd_is_closed(dead) && fd_is_closed(live));
    }
    CCHECK_EQ(stats_of(pool).idle, 0);
    pool_still_works(pool);
    connpool_free(pool);
    close(peer);
}

/* reap: epoll_wait (with no timeout, but a cancellation point all the same), then close. */
static void reap(void *unused)
{
    (void)unused;
    connpool *pool = pool_with(8, CONNPOOL_CHECK_LIVENESS | CONNPOOL_WATCH);
    int wfd = connpool_watch_fd(pool);
    CCHECK(wfd >= 0);
    int fd = dead_fd();
    CCHECK_EQ(connpool_release(pool, KEY, fd), CONNPOOL_POOLED);
    struct pollfd p = {.fd = wfd, .events = POLLIN};
    CCHECK(poll(&p, 1, 5000) == 1);
    struct call c = {.fn = do_reap, .pool = pool};
    CCHECK_EQ(call_cancelled(&c), 1);
    CCHECK(fd_is_closed(fd));
    CCHECK_EQ(stats_of(pool).dead, 1);
    pool_still_works(pool);
    connpool_free(pool);
}

/* free of a pool with a reaper thread: pthread_join, and closes. */
static void free_reaper(void *unused)
{
    (void)unused;
    int threads = threads_now();
    connpool *pool = pool_with(8, CONNPOOL_CHECK_LIVENESS | CONNPOOL_REAPER_THREAD);
    int peer, fd = live_pair(&peer);
    CCHECK_EQ(connpool_release(pool, KEY, fd), CONNPOOL_POOLED);
    struct call c = {.fn = do_free, .pool = pool};
    CCHECK_EQ(call_cancelled(&c), 0);
    CCHECK(fd_is_closed(fd));
    /* The reaper was joined: the thread count comes back (the kernel may list an exited
     * thread for a moment after its join: bounded wait). */
    long long deadline = now_ms() + watchdog_ms(5000);
    while (threads_now() != threads && now_ms() < deadline)
        sleep_ms(1);
    CCHECK_EQ(threads_now(), threads);
    close(peer);
}

/* new: the hash seed's getrandom() (the first pool of each thread), and with a reaper,
 * thread creation. */
static void new_pool(void *arg)
{
    struct call c = {.fn = ((const struct cancel_case *)arg)->fn};
    connpool *pool = (connpool *)(intptr_t)call_cancelled(&c);
    CCHECK(pool != NULL);
    pool_still_works(pool);
    connpool_free(pool);
}

int main(void)
{
    const struct cancel_case cases[] = {
        {"acquire (liveness recv)", acquire_live, do_acquire},
        {"acquire_info (liveness recv)", acquire_live, do_acquire_info},
        {"acquire of a dead connection (recv, close)", acquire_dead, NULL},
        {"release into a full key (close)", release_closing, do_release},
        {"release_hint 0 (close)", release_closing, do_release_hint0},
        {"release with a bad key (close)", release_closing, do_release_badkey},
        {"prune (recv under the lock, close)", prune_or_purge, do_prune},
        {"purge (close)", prune_or_purge, do_purge},
        {"reap (epoll_wait, close)", reap, NULL},
        {"free with a reaper thread (join)", free_reaper, NULL},
        {"new_default (getrandom)", new_pool, do_new_default},
        {"new_with_config with a reaper (getrandom, spawn)", new_pool, do_new_reaper},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct child_end e = run_in_child(cases[i].run, (void *)&cases[i], 10000);
        char buf[64];
        printf("cancel: %-50s %s\n", cases[i].name,
               child_ok(e) ? "ok" : child_describe(e, buf, sizeof buf));
        failed += !child_ok(e);
    }
    CHECK_EQ(failed, 0);
    return 0;
}
