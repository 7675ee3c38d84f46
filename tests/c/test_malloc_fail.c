/* Allocation failure inside every call that may allocate.
 *
 * The test executable interposes malloc and friends (forwarding to glibc's __libc_*),
 * armed to fail the k-th allocation made by the calling thread from now on. For each
 * call below and k = 0, 1, 2, ... until the call completes without reaching the armed
 * failure, the call runs in a forked child; the outcome is one of
 *   R  returned normally: its result and fd ownership are checked (an fd given to release
 *      is either pooled or closed, never left open and unowned; an idle fd is never lost)
 *   A  died of SIGABRT (Rust aborts when an allocation fails, unless the code handles it)
 *   X  anything else (another signal, a wrong result): always a failure
 * EXPECT below says which are allowed per call; it prints what it saw, one letter per k.
 * Skipped (77) under AddressSanitizer, whose malloc replaces this one. */
#define _GNU_SOURCE
#include "harness.h"
#include "hostile.h"

#include <stdarg.h>

/* ---- the interposed allocator ---- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static _Thread_local int t_counting; /* only the arming thread's allocations count */
static long g_left = -1;             /* allocations to let through; -1: not armed */
static int g_failed;                 /* the armed failure happened */

static int fail_now(void)
{
    if (!t_counting || g_left < 0)
        return 0;
    if (g_left-- > 0)
        return 0;
    g_left = -1;
    g_failed = 1;
    return 1;
}

void *malloc(size_t n)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    if (n != 0 && fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, n);
}
void free(void *p) { __libc_free(p); }
void *memalign(size_t align, size_t n)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_memalign(align, n);
}
void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }
int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = memalign(align, n);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

#define ARM(k) (g_failed = 0, g_left = (k), t_counting = 1)
#define DISARM() (t_counting = 0, g_left = -1)

/* ---- reporting from the child: one line on a pipe ---- */

static int g_report = -1;
static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
    char buf[200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (write(g_report, buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1)) < 0)
        _exit(2);
    _exit(0);
}

/* A call returned: 'N' if the failure was never reached (k is past the last allocation),
 * else 'R' and what it returned, or 'X' and why that is wrong. */
#define RETURNED(ok, ...)                                                                \
    do {                                                                                 \
        if (!g_failed)                                                                   \
            report("N");                                                                 \
        if (ok)                                                                          \
            report("R " __VA_ARGS__);                                                    \
        report("X " __VA_ARGS__);                                                        \
    } while (0)

#define KEY "10.4.0.1:80"

static int pair(int *peer)
{
    int sv[2];
    CCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    *peer = sv[1];
    return sv[0];
}

/* Where an fd the pool was given ended up: pooled under key, closed, or lost (open, but
 * not idle in the pool and not handed back). */
static const char *fate(connpool *pool, const char *key, int fd)
{
    if (fd_is_closed(fd))
        return "closed";
    if (connpool_idle_count_key(pool, key) > 0)
        return "pooled";
    return fd_is_closed(fd) ? "closed" : "LOST"; /* (counting closed it if it had expired) */
}

/* A pool with the defaults; with a warm-up release, so that the process-wide fd table's
 * first chunk exists (its own allocation is the "first release" row). */
static connpool *warm_pool(uint32_t flags)
{
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.flags |= flags;
    connpool *pool = connpool_new_with_config(&cfg);
    CCHECK(pool != NULL);
    int peer, fd = pair(&peer);
    CCHECK_EQ(connpool_release(pool, "warm:1", fd), CONNPOOL_POOLED);
    CCHECK_EQ(connpool_purge(pool, "warm:1"), 1);
    close(peer);
    return pool;
}

/* ---- the calls, one per row; each runs in a child with the failure armed at k ---- */

static void new_common(long k, int which)
{
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.flags |= which == 3 ? CONNPOOL_WATCH : which == 4 ? CONNPOOL_REAPER_THREAD : 0;
    ARM(k);
    connpool *p = which == 0   ? connpool_new(8, 60000)
                  : which == 1 ? connpool_new_default()
                               : connpool_new_with_config(&cfg);
    int err = errno;
    DISARM();
    if (p == NULL)
        RETURNED(err == ENOMEM || (which == 4 && err == EAGAIN), "NULL, errno %d", err);
    int peer, fd = pair(&peer); /* a pool made despite the failure must work */
    CCHECK_EQ(connpool_release(p, KEY, fd), CONNPOOL_POOLED);
    CCHECK_EQ(connpool_acquire(p, KEY), fd);
    connpool_free(p);
    RETURNED(1, "a working pool");
}
static void row_new(long k) { new_common(k, 0); }
static void row_new_default(long k) { new_common(k, 1); }
static void row_new_config(long k) { new_common(k, 2); }
static void row_new_watch(long k) { new_common(k, 3); }
static void row_new_reaper(long k) { new_common(k, 4); }

static void release_common(long k, int hint, int warm)
{
    connpool *pool = warm ? warm_pool(0) : connpool_new_default();
    CCHECK(pool != NULL);
    int peer, fd = pair(&peer);
    ARM(k);
    int rc = hint ? connpool_release_hint(pool, KEY, fd, 30000) : connpool_release(pool, KEY, fd);
    DISARM();
    const char *f = fate(pool, KEY, fd);
    int ok = (rc == CONNPOOL_POOLED && strcmp(f, "pooled") == 0) ||
             ((rc == CONNPOOL_CLOSED || rc == -ENOMEM) && strcmp(f, "closed") == 0);
    RETURNED(ok, "%d, fd %s", rc, f);
}
static void row_release_first(long k) { release_common(k, 0, 0); }
static void row_release(long k) { release_common(k, 0, 1); }
static void row_release_hint(long k) { release_common(k, 1, 1); }

/* 64 releases into new keys: the tables grow (rehash) on the way. */
static void row_release_many(long k)
{
    enum { M = 64 };
    connpool *pool = warm_pool(0);
    int fd[M], rc[M];
    char key[M][32];
    for (int i = 0; i < M; i++) {
        int peer;
        fd[i] = pair(&peer);
        close(peer); /* (dead: only ownership matters here) */
        make_key(key[i], sizeof key[i], i);
    }
    ARM(k);
    for (int i = 0; i < M; i++)
        rc[i] = connpool_release(pool, key[i], fd[i]);
    DISARM();
    for (int i = 0; i < M; i++) {
        const char *f = fate(pool, key[i], fd[i]);
        if (!((rc[i] == CONNPOOL_POOLED && strcmp(f, "pooled") == 0) ||
              ((rc[i] == CONNPOOL_CLOSED || rc[i] == -ENOMEM) && strcmp(f, "closed") == 0)))
            RETURNED(0, "release #%d: %d, fd %s", i, rc[i], f);
    }
    RETURNED(1, "all owned");
}

/* acquire (a live hit, or a dead one), acquire_info */
static void acquire_common(long k, int dead, int info)
{
    connpool *pool = warm_pool(0);
    int peer, fd = pair(&peer);
    if (dead)
        close(peer);
    CCHECK_EQ(connpool_release(pool, KEY, fd), CONNPOOL_POOLED);
    connpool_conn_info in = {.struct_size = sizeof in};
    ARM(k);
    int rc = info ? connpool_acquire_info(pool, KEY, &in) : connpool_acquire(pool, KEY);
    DISARM();
    if (rc == fd)
        RETURNED(!dead && fd_is_open(fd) && connpool_idle_count_key(pool, KEY) == 0, "the fd");
    const char *f = fate(pool, KEY, fd);
    RETURNED((rc == -ENOENT || rc == -ENOMEM) && strcmp(f, "LOST") != 0, "%d, fd %s", rc, f);
}
static void row_acquire(long k) { acquire_common(k, 0, 0); }
static void row_acquire_dead(long k) { acquire_common(k, 1, 0); }
static void row_acquire_info(long k) { acquire_common(k, 0, 1); }

/* purge, prune, reap, idle_count_key: closes; an fd is closed or still idle, and the count
 * returned is what was closed. */
static void closing_common(long k, int op)
{
    connpool *pool = warm_pool(op == 3 ? CONNPOOL_WATCH : 0);
    enum { M = 4 };
    int fd[M];
    char key[M][32];
    for (int i = 0; i < M; i++) {
        int peer;
        fd[i] = pair(&peer);
        if (op != 2 || i % 2 == 0)
            close(peer); /* dead (prune and reap close those); else leaked on purpose */
        make_key(key[i], sizeof key[i], i);
        if (op == 4) /* expires in 50 ms: then idle_count_key closes it */
            CCHECK_EQ(connpool_release_hint(pool, key[i], fd[i], 50), CONNPOOL_POOLED);
        else
            CCHECK_EQ(connpool_release(pool, key[i], fd[i]), CONNPOOL_POOLED);
    }
    if (op == 3) {
        struct pollfd p = {.fd = connpool_watch_fd(pool), .events = POLLIN};
        CCHECK(poll(&p, 1, 5000) == 1);
    }
    if (op == 4)
        sleep_ms(200); /* the passage of time is the point: past the 50 ms hint */
    long n = 0;
    ARM(k);
    switch (op) {
    case 0: n = (long)connpool_purge(pool, key[0]); break;
    case 1: n = (long)connpool_purge(pool, NULL); break;
    case 2: n = (long)connpool_prune(pool); break;
    case 3: n = (long)connpool_reap(pool); break;
    default: n = (long)connpool_idle_count_key(pool, key[0]); break;
    }
    DISARM();
    long closed = 0;
    for (int i = 0; i < (op == 4 ? 1 : M); i++) { /* (op 4 only touched key[0]) */
        const char *f = fate(pool, key[i], fd[i]);
        if (strcmp(f, "LOST") == 0)
            RETURNED(0, "%ld, fd #%d lost", n, i);
        closed += strcmp(f, "closed") == 0;
    }
    if (op == 4)
        RETURNED(n == 0 && closed == 1, "%ld, %ld closed", n, closed);
    RETURNED(n == closed, "%ld, %ld closed", n, closed);
}
static void row_purge_key(long k) { closing_common(k, 0); }
static void row_purge_all(long k) { closing_common(k, 1); }
static void row_prune(long k) { closing_common(k, 2); }
static void row_reap(long k) { closing_common(k, 3); }
static void row_idle_count_key(long k) { closing_common(k, 4); }

static void row_stats(long k)
{
    connpool *pool = warm_pool(0);
    connpool_stats st = {.struct_size = sizeof st};
    ARM(k);
    int rc = connpool_stats_get(pool, &st);
    DISARM();
    RETURNED(rc == 0 || rc == -ENOMEM, "%d", rc);
}

static void row_free(long k)
{
    connpool *pool = warm_pool(CONNPOOL_REAPER_THREAD);
    int peer, fd = pair(&peer);
    CCHECK_EQ(connpool_release(pool, KEY, fd), CONNPOOL_POOLED);
    ARM(k);
    connpool_free(pool);
    DISARM();
    RETURNED(fd_is_closed(fd), "fd %s", fd_is_closed(fd) ? "closed" : "open");
}

/* ---- the table ---- */

/* What each call may do when an allocation fails. For now aborting is allowed everywhere
 * (Rust's default); a normal return must be correct (checked in the row). Tighten a row
 * to abort = 0 once the call handles the failure. */
static const struct row {
    const char *name;
    void (*run)(long k);
    int abort_ok;
} EXPECT[] = {
    {"connpool_new", row_new, 1},
    {"connpool_new_default", row_new_default, 1},
    {"connpool_new_with_config", row_new_config, 1},
    {"connpool_new_with_config WATCH", row_new_watch, 1},
    {"connpool_new_with_config REAPER_THREAD", row_new_reaper, 1},
    {"connpool_release (first in the process)", row_release_first, 1},
    {"connpool_release (new key)", row_release, 1},
    {"connpool_release (64 new keys)", row_release_many, 1},
    {"connpool_release_hint (new key)", row_release_hint, 1},
    {"connpool_acquire", row_acquire, 1},
    {"connpool_acquire (dead connection)", row_acquire_dead, 1},
    {"connpool_acquire_info", row_acquire_info, 1},
    {"connpool_purge (key)", row_purge_key, 1},
    {"connpool_purge (NULL)", row_purge_all, 1},
    {"connpool_prune", row_prune, 1},
    {"connpool_reap", row_reap, 1},
    {"connpool_idle_count_key (expired)", row_idle_count_key, 1},
    {"connpool_stats_get", row_stats, 1},
    {"connpool_free (reaper thread)", row_free, 1},
};

/* Whether the library's allocations reach this malloc (valgrind, for one, redirects them
 * to its own): the first allocation of connpool_new_default() fails when armed (it aborts
 * or returns; either way the child says whether the failure was reached). */
static void probe(void *unused)
{
    (void)unused;
    ARM(0);
    connpool *p = connpool_new_default();
    DISARM();
    (void)p; /* (not freed: the child ends here) */
    report(g_failed ? "Y" : "N");
}

static int interposed(void)
{
    int fds[2];
    CHECK_SYS(pipe2(fds, O_CLOEXEC) == 0);
    g_report = fds[1];
    struct child_end e = run_in_child(probe, NULL, 10000);
    close(fds[1]);
    char c = 0;
    if (read(fds[0], &c, 1) != 1)
        c = 0;
    close(fds[0]);
    return (e.how == CHILD_SIGNALED && e.code == SIGABRT) || c == 'Y';
}

struct run_arg {
    const struct row *row;
    long k;
};

static void child_main(void *arg)
{
    const struct run_arg *a = arg;
    a->row->run(a->k);
    report("X fell through");
}

int main(void)
{
    if (built_with_asan()) {
        printf("malloc_fail: AddressSanitizer replaces malloc: skipped\n");
        return 77;
    }
    setenv("RUST_BACKTRACE", "0", 1); /* one line per abort, not a backtrace */
    if (!interposed()) {
        printf("malloc_fail: allocations do not reach the interposed malloc%s: skipped\n",
               running_on_valgrind() ? " (valgrind replaces it)" : "");
        return 77;
    }
    enum { MAX_K = 400 };
    int failed = 0;
    for (size_t r = 0; r < sizeof EXPECT / sizeof EXPECT[0]; r++) {
        char seen[MAX_K + 1] = "";
        char last[240] = "";
        long k;
        int done = 0;
        for (k = 0; k < MAX_K && !done; k++) {
            int fds[2];
            CHECK_SYS(pipe2(fds, O_CLOEXEC) == 0);
            g_report = fds[1];
            struct run_arg a = {&EXPECT[r], k};
            struct child_end e = run_in_child(child_main, &a, 10000);
            close(fds[1]);
            char msg[200] = "";
            ssize_t n = read(fds[0], msg, sizeof msg - 1);
            close(fds[0]);
            msg[n > 0 ? n : 0] = '\0';
            char letter = 'X';
            if (e.how == CHILD_SIGNALED && e.code == SIGABRT)
                letter = 'A';
            else if (e.how == CHILD_EXITED && (msg[0] == 'R' || msg[0] == 'N'))
                letter = msg[0];
            if (letter == 'N') {
                done = 1;
                break;
            }
            seen[k] = letter;
            int ok = letter == 'R' || (letter == 'A' && EXPECT[r].abort_ok);
            if (!ok) {
                char buf[64];
                fprintf(stderr, "  %s, failing allocation #%ld: %s (%s)\n", EXPECT[r].name, k, msg,
                        child_describe(e, buf, sizeof buf));
                failed++;
            }
            if (letter == 'R')
                snprintf(last, sizeof last, " (last return: %s)", msg + 2);
        }
        CHECK(done); /* bounded: every call allocates less than MAX_K times */
        printf("malloc_fail: %-42s %3ld allocs: %s%s\n", EXPECT[r].name, k, seen, last);
    }
    CHECK_EQ(failed, 0);
    return 0;
}
