/* The contenders: libconnpool through its C ABI, the seed's design (bench/seedpool), a
 * hand-written C pool (cpool.c), apr_reslist when apr-util is installed, and the harness
 * alone (no pool), all behind struct contender. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "contenders.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connpool.h"
#include "cpool.h"
#include "seedpool/seedpool.h"

#ifdef BENCH_HAVE_APR
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_pools.h>
#include <apr_reslist.h>
#endif

#define MAX_IDLE_PER_KEY 8
#define IDLE_TIMEOUT_MS 60000

/* ---- the harness alone: the loop and two indirect calls, no pool ---- */

struct none {
    int n;
    int fds[];
};

static void *none_create(int arg, char **keys, int nkeys)
{
    (void)arg;
    (void)keys;
    struct none *p = calloc(1, sizeof *p + (size_t)nkeys * MAX_IDLE_PER_KEY * sizeof(int));
    return p;
}
static void none_destroy(void *p) { free(p); }
static int none_acquire(void *p, const char *key)
{
    (void)key;
    return ((struct none *)p)->fds[0];
}
static int none_release(void *p, const char *key, int fd)
{
    (void)p;
    (void)key;
    (void)fd;
    return 0;
}
static int none_put(void *p, const char *key, int fd)
{
    (void)key;
    struct none *n = p;
    n->fds[n->n++] = fd;
    return 0;
}
static int none_take(void *p, const char *key)
{
    (void)key;
    struct none *n = p;
    return n->n > 0 ? n->fds[--n->n] : -ENOENT;
}

/* ---- libconnpool, through its C ABI ---- */

int contenders_have_lib_check(void)
{
#ifdef CONNPOOL_CHECK_LIVENESS
    return 1;
#else
    return 0;
#endif
}

static void *lib_create(int arg, char **keys, int nkeys)
{
    (void)keys;
#ifdef CONNPOOL_CHECK_LIVENESS
    /* Issue 3's config: "check off" is flags = 0, "check on" the liveness flag alone;
     * the "+watch" rows add CONNPOOL_WATCH (the idle watcher: an epoll set over the idle
     * fds; nobody reaps during the benchmark, and the quiet peers never wake it); the
     * "skip recent" row adds CONNPOOL_CHECK_SKIP_RECENT to the check (no recv for a
     * connection idle under CONNPOOL_SKIP_RECENT_MS: every acquire of the timed loops). */
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.max_idle_per_key = MAX_IDLE_PER_KEY;
    cfg.idle_timeout_ms = IDLE_TIMEOUT_MS;
    cfg.flags = (arg & 1) ? CONNPOOL_CHECK_LIVENESS : 0;
#ifdef CONNPOOL_WATCH
    if (arg & LIB_WATCH)
        cfg.flags |= CONNPOOL_WATCH;
#endif
#ifdef CONNPOOL_CHECK_SKIP_RECENT
    if (arg & LIB_SKIP_RECENT)
        cfg.flags |= CONNPOOL_CHECK_SKIP_RECENT;
#endif
    /* The benchmark holds up to nkeys * 2 idle fds: a global cap must not close them. */
    if (cfg.max_idle_total != 0 && cfg.max_idle_total < (uint32_t)nkeys * 2)
        cfg.max_idle_total = (uint32_t)nkeys * 2;
    return connpool_new_with_config(&cfg);
#else
    (void)arg;
    (void)nkeys;
    return connpool_new(MAX_IDLE_PER_KEY, IDLE_TIMEOUT_MS);
#endif
}
static void lib_destroy(void *p) { connpool_free(p); }
static int lib_acquire(void *p, const char *key) { return connpool_acquire(p, key); }
static int lib_release(void *p, const char *key, int fd) { return connpool_release(p, key, fd); }

/* ---- libconnpool by key handle (connpool_key_get once per key) ---- */

struct lib_keyed {
    connpool *pool;
    const char *base; /* the first key: key i is base + i * KEY_STRIDE */
    connpool_key **handles;
};

static void *libk_create(int arg, char **keys, int nkeys)
{
    struct lib_keyed *k = malloc(sizeof *k);
    if (k == NULL)
        return NULL;
    k->pool = lib_create(arg, keys, nkeys);
    k->base = keys[0];
    k->handles = malloc((size_t)nkeys * sizeof *k->handles);
    if (k->pool == NULL || k->handles == NULL)
        return NULL;
    for (int i = 0; i < nkeys; i++)
        k->handles[i] = connpool_key_get(k->pool, keys[i]);
    return k;
}
static void libk_destroy(void *p)
{
    struct lib_keyed *k = p;
    connpool_free(k->pool);
    free(k->handles);
    free(k);
}
static connpool_key *libk_handle(void *p, const char *key)
{
    struct lib_keyed *k = p;
    return k->handles[(size_t)(key - k->base) / KEY_STRIDE];
}
static int libk_acquire(void *p, const char *key)
{
    return connpool_key_acquire(libk_handle(p, key), NULL, NULL);
}
static int libk_release(void *p, const char *key, int fd)
{
    return connpool_key_release(libk_handle(p, key), fd, NULL, CONNPOOL_NO_HINT);
}

/* ---- the seed's design (Rust staticlib) ---- */

static void *seed_create(int check, char **keys, int nkeys)
{
    (void)keys;
    (void)nkeys;
    return seedpool_new(check);
}
static void seed_destroy(void *p) { seedpool_free(p); }
static int seed_acquire(void *p, const char *key) { return seedpool_acquire(p, key); }
static int seed_release(void *p, const char *key, int fd) { return seedpool_release(p, key, fd); }

/* ---- the hand-written C pool ---- */

static void *c_create(int check, char **keys, int nkeys)
{
    (void)keys;
    (void)nkeys;
    return cpool_new(MAX_IDLE_PER_KEY, IDLE_TIMEOUT_MS, check);
}
static void c_destroy(void *p) { cpool_free(p); }
static int c_acquire(void *p, const char *key) { return cpool_acquire(p, key); }
static int c_release(void *p, const char *key, int fd) { return cpool_release(p, key, fd); }

/* ---- apr_reslist: one list per key, as mod_proxy keeps one per worker ---- */

#ifdef BENCH_HAVE_APR
struct apr_state {
    apr_pool_t *mem;
    apr_reslist_t *single; /* the only list when there is one key: no lookup at all */
    apr_hash_t *lists;     /* key -> list, read-only once built (safe to share) */
    int supply;            /* the fd the constructor hands out next (put), or -1 */
};

/* The constructor "connects" by handing out the fd the harness supplies (put only). */
static apr_status_t apr_con(void **res, void *params, apr_pool_t *pool)
{
    (void)pool;
    struct apr_state *st = params;
    if (st->supply < 0)
        return APR_EGENERAL;
    *res = (void *)(intptr_t)(st->supply + 1); /* +1: fd 0 is not NULL */
    st->supply = -1;
    return APR_SUCCESS;
}

/* The harness owns the fds: the destructor only forgets them. */
static apr_status_t apr_de(void *res, void *params, apr_pool_t *pool)
{
    (void)res;
    (void)params;
    (void)pool;
    return APR_SUCCESS;
}

static void *apr_create(int ttl, char **keys, int nkeys)
{
    struct apr_state *st = calloc(1, sizeof *st);
    if (st == NULL || apr_pool_create(&st->mem, NULL) != APR_SUCCESS)
        return NULL;
    st->supply = -1;
    st->lists = apr_hash_make(st->mem);
    /* min 0, smax = hmax = 8 (mod_proxy's default smax is hmax); ttl in microseconds. */
    apr_interval_time_t ttl_us = ttl ? (apr_interval_time_t)IDLE_TIMEOUT_MS * 1000 : 0;
    for (int i = 0; i < nkeys; i++) {
        apr_reslist_t *rl;
        if (apr_reslist_create(&rl, 0, MAX_IDLE_PER_KEY, MAX_IDLE_PER_KEY, ttl_us, apr_con,
                               apr_de, st, st->mem) != APR_SUCCESS)
            return NULL;
        apr_hash_set(st->lists, keys[i], APR_HASH_KEY_STRING, rl);
        if (nkeys == 1)
            st->single = rl;
    }
    return st;
}
static void apr_destroy(void *p)
{
    struct apr_state *st = p;
    apr_pool_destroy(st->mem);
    free(st);
}
static inline apr_reslist_t *apr_list(struct apr_state *st, const char *key)
{
    return st->single ? st->single : apr_hash_get(st->lists, key, APR_HASH_KEY_STRING);
}
static int apr_acquire(void *p, const char *key)
{
    void *res;
    if (apr_reslist_acquire(apr_list(p, key), &res) != APR_SUCCESS)
        return -ENOENT;
    return (int)(intptr_t)res - 1;
}
static int apr_release(void *p, const char *key, int fd)
{
    apr_reslist_release(apr_list(p, key), (void *)(intptr_t)(fd + 1));
    return 0;
}
static int apr_put(void *p, const char *key, int fd)
{
    struct apr_state *st = p;
    apr_reslist_t *rl = apr_list(st, key);
    /* acquire hands out idle resources before it calls the constructor: hold those until
     * the constructor has taken fd, then give everything back. */
    void *held[MAX_IDLE_PER_KEY + 1];
    int n = 0;
    st->supply = fd;
    while (st->supply >= 0) {
        if (n == MAX_IDLE_PER_KEY + 1 || apr_reslist_acquire(rl, &held[n]) != APR_SUCCESS)
            return -EIO;
        n++;
    }
    while (n > 0)
        apr_reslist_release(rl, held[--n]);
    return 0;
}
static int apr_take(void *p, const char *key)
{
    struct apr_state *st = p;
    apr_reslist_t *rl = apr_list(st, key);
    void *res;
    st->supply = -1; /* an empty list fails in the constructor instead of blocking */
    if (apr_reslist_acquire(rl, &res) != APR_SUCCESS)
        return -ENOENT;
    apr_reslist_invalidate(rl, res); /* forget it: ntotal goes back down */
    return (int)(intptr_t)res - 1;
}
#define APR_SKIP NULL
#else
#define apr_create NULL
#define apr_destroy NULL
#define apr_acquire NULL
#define apr_release NULL
#define apr_put NULL
#define apr_take NULL
#define APR_SKIP "skipped (install libaprutil1-dev and reconfigure)"
#endif

/* ---- another build of libconnpool, loaded with dlopen (CONNPOOL_BENCH_ALT_LIB) ----
 * To measure a candidate change side by side with the current library, in the same run:
 * CONNPOOL_BENCH_ALT_LIB=/path/to/other/libconnpool.so connpool_bench. A path names a
 * different file, so the loader maps a second copy (its own Rust runtime, RTLD_LOCAL);
 * RTLD_DEEPBIND keeps its calls between its own exported functions inside that copy. */

static struct {
    void *(*new_pool)(size_t, uint64_t);
#ifdef CONNPOOL_CHECK_LIVENESS
    void (*config_init)(connpool_config *);
    void *(*new_with_config)(const connpool_config *);
#endif
    void (*free_pool)(void *);
    int (*acquire)(void *, const char *);
    int (*release)(void *, const char *, int);
} alt;

/* arg as lib_create's: bit 0 the check, LIB_SKIP_RECENT (no LIB_WATCH rows here). */
static void *alt_create(int arg, char **keys, int nkeys)
{
    (void)keys;
#ifdef CONNPOOL_CHECK_LIVENESS
    if (alt.new_with_config) {
        connpool_config cfg;
        alt.config_init(&cfg);
        cfg.max_idle_per_key = MAX_IDLE_PER_KEY;
        cfg.idle_timeout_ms = IDLE_TIMEOUT_MS;
        cfg.flags = (arg & 1) ? CONNPOOL_CHECK_LIVENESS : 0;
#ifdef CONNPOOL_CHECK_SKIP_RECENT
        if (arg & LIB_SKIP_RECENT)
            cfg.flags |= CONNPOOL_CHECK_SKIP_RECENT;
#endif
        if (cfg.max_idle_total != 0 && cfg.max_idle_total < (uint32_t)nkeys * 2)
            cfg.max_idle_total = (uint32_t)nkeys * 2;
        return alt.new_with_config(&cfg);
    }
#endif
    (void)arg;
    (void)nkeys;
    return alt.new_pool(MAX_IDLE_PER_KEY, IDLE_TIMEOUT_MS);
}
static void alt_destroy(void *p) { alt.free_pool(p); }
static int alt_acquire(void *p, const char *key) { return alt.acquire(p, key); }
static int alt_release(void *p, const char *key, int fd) { return alt.release(p, key, fd); }

/* Loads CONNPOOL_BENCH_ALT_LIB; returns 0 (not set), 1 (connpool_new only: its defaults),
 * 2 (connpool_new_with_config too: check off and on) or 3 (it also accepts
 * CONNPOOL_CHECK_SKIP_RECENT: check off, on, and on skipping recent connections). */
static int alt_load(void)
{
    const char *path = getenv("CONNPOOL_BENCH_ALT_LIB");
    if (path == NULL || *path == '\0')
        return 0;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (h == NULL) {
        fprintf(stderr, "connpool_bench: CONNPOOL_BENCH_ALT_LIB: %s\n", dlerror());
        exit(1);
    }
    *(void **)&alt.new_pool = dlsym(h, "connpool_new");
    *(void **)&alt.free_pool = dlsym(h, "connpool_free");
    *(void **)&alt.acquire = dlsym(h, "connpool_acquire");
    *(void **)&alt.release = dlsym(h, "connpool_release");
    if (!alt.new_pool || !alt.free_pool || !alt.acquire || !alt.release) {
        fprintf(stderr, "connpool_bench: %s lacks a connpool_* function\n", path);
        exit(1);
    }
#ifdef CONNPOOL_CHECK_LIVENESS
    *(void **)&alt.config_init = dlsym(h, "connpool_config_init");
    *(void **)&alt.new_with_config = dlsym(h, "connpool_new_with_config");
    if (alt.config_init && alt.new_with_config) {
#ifdef CONNPOOL_CHECK_SKIP_RECENT
        /* An older build rejects the unknown flag (EINVAL): no skip-recent row then. */
        void *probe = alt_create(1 | LIB_SKIP_RECENT, NULL, 1);
        if (probe != NULL) {
            alt.free_pool(probe);
            return 3;
        }
#endif
        return 2;
    }
    alt.new_with_config = NULL;
#endif
    return 1;
}

#ifdef CONNPOOL_CHECK_LIVENESS
#define LIB_CHECK_SKIP NULL
#else
#define LIB_CHECK_SKIP "n/a: this header has no CONNPOOL_CHECK_LIVENESS yet (issue 3)"
#endif
#ifdef CONNPOOL_CHECK_SKIP_RECENT
#define LIB_SKIP_RECENT_SKIP NULL
#else
#define LIB_SKIP_RECENT_SKIP "n/a: this header has no CONNPOOL_CHECK_SKIP_RECENT yet"
#endif
#ifdef CONNPOOL_WATCH
#define LIB_WATCH_SKIP NULL
#else
#define LIB_WATCH_SKIP "n/a: this header has no CONNPOOL_WATCH yet (issue 4)"
#endif
/* The idle-watcher rows time 1/5 of the pairs of the others (see contender.pairs_div). */
#define WATCH_PAIRS_DIV 5

static contender all[] = {
    {"harness alone (no pool)", "-", FAM_NONE, 0, 0, NULL, none_create, none_destroy,
     none_acquire, none_release, none_put, none_take, 0},
    {"libconnpool (C ABI)", "check off", FAM_LIB, 0, 0, NULL, lib_create, lib_destroy,
     lib_acquire, lib_release, lib_release, lib_acquire, 0},
    {"libconnpool (C ABI)", "recv peek", FAM_LIB, 1, 1, LIB_CHECK_SKIP, lib_create, lib_destroy,
     lib_acquire, lib_release, lib_release, lib_acquire, 0},
    {"libconnpool (key handle)", "check off", FAM_LIB, 0, 0, NULL, libk_create, libk_destroy,
     libk_acquire, libk_release, libk_release, libk_acquire, 0},
    {"libconnpool (C ABI)", "skip recent", FAM_LIB, 1, 1 | LIB_SKIP_RECENT, LIB_SKIP_RECENT_SKIP,
     lib_create, lib_destroy, lib_acquire, lib_release, lib_release, lib_acquire, 0},
    {"libconnpool (C ABI)", "off+watch", FAM_LIB, 0, LIB_WATCH, LIB_WATCH_SKIP, lib_create,
     lib_destroy, lib_acquire, lib_release, lib_release, lib_acquire, WATCH_PAIRS_DIV},
    {"libconnpool (C ABI)", "peek+watch", FAM_LIB, 1, 1 | LIB_WATCH, LIB_WATCH_SKIP, lib_create,
     lib_destroy, lib_acquire, lib_release, lib_release, lib_acquire, WATCH_PAIRS_DIV},
    {"seed design (Rust)", "check off", FAM_SEED, 0, 0, NULL, seed_create, seed_destroy,
     seed_acquire, seed_release, seed_release, seed_acquire, 0},
    {"seed design (Rust)", "recv peek", FAM_SEED, 1, 1, NULL, seed_create, seed_destroy,
     seed_acquire, seed_release, seed_release, seed_acquire, 0},
    {"hand-written C pool", "check off", FAM_C, 0, 0, NULL, c_create, c_destroy, c_acquire,
     c_release, c_release, c_acquire, 0},
    {"hand-written C pool", "recv peek", FAM_C, 1, 1, NULL, c_create, c_destroy, c_acquire,
     c_release, c_release, c_acquire, 0},
    {"apr_reslist", "ttl 0", FAM_APR, 0, 0, APR_SKIP, apr_create, apr_destroy, apr_acquire,
     apr_release, apr_put, apr_take, 0},
    {"apr_reslist", "ttl 60 s", FAM_APR, 0, 1, APR_SKIP, apr_create, apr_destroy, apr_acquire,
     apr_release, apr_put, apr_take, 0},
    /* Filled in by contenders_init when CONNPOOL_BENCH_ALT_LIB is set. */
    {NULL, NULL, FAM_ALT, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0},
    {NULL, NULL, FAM_ALT, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0},
    {NULL, NULL, FAM_ALT, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0},
};

int contenders_init(const contender **out)
{
#ifdef BENCH_HAVE_APR
    if (apr_initialize() != APR_SUCCESS) {
        fprintf(stderr, "apr_initialize failed\n");
        exit(1);
    }
#endif
    enum { ALT_SLOTS = 3 };
    int n = (int)(sizeof all / sizeof all[0]) - ALT_SLOTS;
    int alt_kind = alt_load();
    if (alt_kind == 1) /* an older build: connpool_new, whatever its defaults check */
        all[n++] = (contender){"libconnpool ALT (dlopen)", "conn_new()", FAM_ALT, 0, 0, NULL,
                               alt_create, alt_destroy, alt_acquire, alt_release, alt_release,
                               alt_acquire, 0};
    /* Each ALT row has the arg of the libconnpool row it is compared with. */
    static const struct {
        const char *variant;
        int check, arg;
    } alt_rows[ALT_SLOTS] = {
        {"check off", 0, 0}, {"recv peek", 1, 1}, {"skip recent", 1, 1 | LIB_SKIP_RECENT}};
    for (int k = 0; alt_kind >= 2 && k < alt_kind; k++)
        all[n++] = (contender){"libconnpool ALT (dlopen)", alt_rows[k].variant, FAM_ALT,
                               alt_rows[k].check, alt_rows[k].arg, NULL, alt_create,
                               alt_destroy, alt_acquire, alt_release, alt_release,
                               alt_acquire, 0};
    *out = all;
    return n;
}

void contenders_fini(void)
{
#ifdef BENCH_HAVE_APR
    apr_terminate();
#endif
}
