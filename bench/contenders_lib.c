/* libconnpool through its C ABI: by string key, by key handle, and another build of it
 * loaded with dlopen (CONNPOOL_BENCH_ALT_LIB) to compare two builds in one run. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "connpool.h"
#include "contenders.h"

/* ---- libconnpool, by string key ---- */

/* arg: bit 0 the check, LIB_WATCH, LIB_SKIP_RECENT, LIB_HARVEST. "check off" is flags = 0,
 * "recv peek" the liveness flag alone; "+watch" adds the idle watcher (nobody reaps during
 * the benchmark, and the quiet peers never wake it); "skip recent" adds
 * CONNPOOL_CHECK_SKIP_RECENT (no recv for a connection idle under
 * CONNPOOL_SKIP_RECENT_MS: every acquire of the timed loops); "harvest" adds
 * CONNPOOL_CHECK_HARVEST (one epoll_wait per millisecond instead of a recv per acquire:
 * the loops' quiet peers are never found readable, as a healthy pool's are not). */
static void lib_config(void (*init)(connpool_config *), connpool_config *cfg, int arg,
                       int nkeys)
{
    init(cfg);
    cfg->max_idle_per_key = MAX_IDLE_PER_KEY;
    cfg->idle_timeout_ms = IDLE_TIMEOUT_MS;
    cfg->flags = (arg & 1) ? CONNPOOL_CHECK_LIVENESS : 0;
    if (arg & LIB_WATCH)
        cfg->flags |= CONNPOOL_WATCH;
    if (arg & LIB_SKIP_RECENT)
        cfg->flags |= CONNPOOL_CHECK_SKIP_RECENT;
#ifdef CONNPOOL_CHECK_HARVEST
    if (arg & LIB_HARVEST)
        cfg->flags |= CONNPOOL_CHECK_HARVEST;
#endif
    /* The benchmark holds up to nkeys * 2 idle fds: a global cap must not close them. */
    if (cfg->max_idle_total != 0 && cfg->max_idle_total < (uint64_t)nkeys * 2)
        cfg->max_idle_total = (uint32_t)nkeys * 2;
}

static void lib_init_cfg(connpool_config *cfg) { connpool_config_init(cfg); }

static void *lib_create(int arg, char **keys, int nkeys)
{
    (void)keys;
    connpool_config cfg;
    lib_config(lib_init_cfg, &cfg, arg, nkeys);
    return connpool_new_with_config(&cfg);
}
static void lib_destroy(void *p) { connpool_free(p); }
static int lib_acquire(void *p, const char *key) { return connpool_acquire(p, key); }
static int lib_release(void *p, const char *key, int fd) { return connpool_release(p, key, fd); }
static unsigned long lib_purge(void *p) { return connpool_purge(p, NULL); }

/* ---- libconnpool by key handle (connpool_key_get once per key) ---- */

struct keyed {
    void *pool;
    const char *base; /* the first key: key i is base + i * KEY_STRIDE */
    void **handles;
    /* The functions of the build in use (this one, or the ALT one). */
    void (*free_pool)(void *);
    int (*acquire)(void *, void **, void *);
    int (*release)(void *, int, void *, uint64_t);
    size_t (*purge)(void *, const char *);
};

static void keyed_destroy(void *p)
{
    struct keyed *k = p;
    k->free_pool(k->pool);
    free(k->handles);
    free(k);
}
/* Making a handle per key is cheap in the library's design, but when K handles projected
 * from the first ones would take over HANDLES_BUDGET_S (connpool_key_get slows down as
 * handles accumulate), the row declines, with the figures, instead of stalling the run
 * (and letting the idle timeout expire the connections of the pools filled before it). */
#define HANDLES_BUDGET_S 15.0

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *keyed_make(void *pool, char **keys, int nkeys, void *(*key_get)(void *, const char *),
                        void (*free_pool)(void *))
{
    struct keyed *k = calloc(1, sizeof *k);
    if (k == NULL || pool == NULL)
        return NULL;
    k->pool = pool;
    k->free_pool = free_pool;
    k->base = keys[0];
    k->handles = malloc((size_t)nkeys * sizeof *k->handles);
    if (k->handles == NULL)
        return NULL;
    uint64_t t0 = mono_ns();
    for (int i = 0; i < nkeys; i++) {
        if ((k->handles[i] = key_get(pool, keys[i])) == NULL)
            return NULL;
        double s = (double)(mono_ns() - t0) / 1e9;
        if ((i + 1) % 16384 == 0 && s * nkeys / (i + 1) > HANDLES_BUDGET_S) {
            static char why[200];
            snprintf(why, sizeof why,
                     "declined: connpool_key_get took %.1f s for the first %d handles (%.1f us"
                     " each on average, growing); %d would take over %.0f s",
                     s, i + 1, s * 1e6 / (i + 1), nkeys, HANDLES_BUDGET_S);
            contender_declined = why;
            keyed_destroy(k);
            return NULL;
        }
    }
    return k;
}

static int keyed_acquire(void *p, const char *key)
{
    struct keyed *k = p;
    return k->acquire(k->handles[key_index(k->base, key)], NULL, NULL);
}
static int keyed_release(void *p, const char *key, int fd)
{
    struct keyed *k = p;
    return k->release(k->handles[key_index(k->base, key)], fd, NULL, CONNPOOL_NO_HINT);
}
static unsigned long keyed_purge(void *p)
{
    struct keyed *k = p;
    return k->purge(k->pool, NULL);
}

/* This build's handle calls, made directly (as the C floors' are): the keyed_* calls go
 * through function pointers, for the ALT build. */
static int libk_acquire(void *p, const char *key)
{
    struct keyed *k = p;
    return connpool_key_acquire(k->handles[key_index(k->base, key)], NULL, NULL);
}
static int libk_release(void *p, const char *key, int fd)
{
    struct keyed *k = p;
    return connpool_key_release(k->handles[key_index(k->base, key)], fd, NULL,
                                CONNPOOL_NO_HINT);
}

static void *lib_key_get(void *pool, const char *key) { return connpool_key_get(pool, key); }
static void lib_free_pool(void *p) { connpool_free(p); }
static size_t lib_purge_key(void *p, const char *key) { return connpool_purge(p, key); }

static void *libk_create(int arg, char **keys, int nkeys)
{
    struct keyed *k =
        keyed_make(lib_create(arg, keys, nkeys), keys, nkeys, lib_key_get, lib_free_pool);
    if (k)
        k->purge = lib_purge_key;
    return k;
}

/* The idle-watcher rows time 1/5 of the pairs of the others (see contender.pairs_div). */
#define WATCH_PAIRS_DIV 5

int lib_rows(contender *out)
{
    const contender s = {.name = "libconnpool (C ABI)", .family = FAM_LIB,
                         .create = lib_create, .destroy = lib_destroy,
                         .acquire = lib_acquire, .release = lib_release,
                         .put = lib_release, .take = lib_acquire};
    int n = 0;
    out[n] = s;
    out[n].variant = "check off";
    out[n].big = 1;
    out[n++].purge = lib_purge;
    out[n] = s;
    out[n].variant = "recv peek";
    out[n].check = out[n].arg = 1;
    n++;
    out[n++] = (contender){.name = "libconnpool (key handle)", .variant = "check off",
                           .family = FAM_LIB, .handle = 1, .create = libk_create,
                           .destroy = keyed_destroy, .acquire = libk_acquire,
                           .release = libk_release, .put = libk_release,
                           .take = libk_acquire, .big = 1, .purge = keyed_purge};
    out[n] = s;
    out[n].variant = "skip recent";
    out[n].check = 1;
    out[n++].arg = 1 | LIB_SKIP_RECENT;
    out[n] = s;
    out[n].variant = "harvest";
    out[n].check = 1;
    out[n++].arg = 1 | LIB_HARVEST;
    out[n] = s;
    out[n].variant = "off+watch";
    out[n].arg = LIB_WATCH;
    out[n++].pairs_div = WATCH_PAIRS_DIV;
    out[n] = s;
    out[n].variant = "peek+watch";
    out[n].check = 1;
    out[n].arg = 1 | LIB_WATCH;
    out[n++].pairs_div = WATCH_PAIRS_DIV;
    return n;
}

/* ---- another build of libconnpool, loaded with dlopen (CONNPOOL_BENCH_ALT_LIB) ----
 * To measure a candidate change side by side with the current library, in the same run:
 * CONNPOOL_BENCH_ALT_LIB=/path/to/other/libconnpool.so connpool_bench. A path names a
 * different file, so the loader maps a second copy (its own Rust runtime, RTLD_LOCAL);
 * RTLD_DEEPBIND keeps its calls between its own exported functions inside that copy. */

static struct {
    void *(*new_pool)(size_t, uint64_t);
    void (*config_init)(connpool_config *);
    void *(*new_with_config)(const connpool_config *);
    void (*free_pool)(void *);
    int (*acquire)(void *, const char *);
    int (*release)(void *, const char *, int);
    size_t (*purge)(void *, const char *);
    void *(*key_get)(void *, const char *);
    int (*key_acquire)(void *, void **, void *);
    int (*key_release)(void *, int, void *, uint64_t);
} alt;

/* arg as lib_create's (no LIB_WATCH rows here). connpool_config_init's exported symbol
 * fills the 0.1 struct: later fields keep their defaults, which this config leaves. */
static void *alt_create(int arg, char **keys, int nkeys)
{
    (void)keys;
    if (alt.new_with_config) {
        connpool_config cfg;
        lib_config(alt.config_init, &cfg, arg, nkeys);
        return alt.new_with_config(&cfg);
    }
    return alt.new_pool(MAX_IDLE_PER_KEY, IDLE_TIMEOUT_MS);
}
static void alt_destroy(void *p) { alt.free_pool(p); }
static int alt_acquire(void *p, const char *key) { return alt.acquire(p, key); }
static int alt_release(void *p, const char *key, int fd) { return alt.release(p, key, fd); }
static unsigned long alt_purge(void *p) { return alt.purge(p, NULL); }

static void *altk_create(int arg, char **keys, int nkeys)
{
    struct keyed *k =
        keyed_make(alt_create(arg, keys, nkeys), keys, nkeys, alt.key_get, alt.free_pool);
    if (k) {
        k->acquire = alt.key_acquire;
        k->release = alt.key_release;
        k->purge = alt.purge;
    }
    return k;
}

#define ALT_SYM(field, name) (*(void **)&alt.field = dlsym(h, name))

int alt_rows(contender *out)
{
    const char *path = getenv("CONNPOOL_BENCH_ALT_LIB");
    if (path == NULL || *path == '\0')
        return 0;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (h == NULL) {
        fprintf(stderr, "connpool_bench: CONNPOOL_BENCH_ALT_LIB: %s\n", dlerror());
        exit(1);
    }
    if (!ALT_SYM(new_pool, "connpool_new") || !ALT_SYM(free_pool, "connpool_free") ||
        !ALT_SYM(acquire, "connpool_acquire") || !ALT_SYM(release, "connpool_release") ||
        !ALT_SYM(purge, "connpool_purge")) {
        fprintf(stderr, "connpool_bench: %s lacks a connpool_* function\n", path);
        exit(1);
    }
    const contender s = {.name = "libconnpool ALT (dlopen)", .family = FAM_ALT,
                         .create = alt_create, .destroy = alt_destroy,
                         .acquire = alt_acquire, .release = alt_release,
                         .put = alt_release, .take = alt_acquire};
    int n = 0;
    if (!ALT_SYM(config_init, "connpool_config_init") ||
        !ALT_SYM(new_with_config, "connpool_new_with_config")) {
        alt.new_with_config = NULL; /* an older build: connpool_new, its defaults */
        out[n] = s;
        out[n++].variant = "conn_new()";
        return n;
    }
    /* Each ALT row has the arg of the libconnpool row it is compared with. */
    out[n] = s;
    out[n].variant = "check off";
    out[n].big = 1;
    out[n++].purge = alt_purge;
    out[n] = s;
    out[n].variant = "recv peek";
    out[n].check = out[n].arg = 1;
    n++;
    /* An older build rejects the unknown flag (EINVAL): no skip-recent row then. */
    void *probe = alt_create(1 | LIB_SKIP_RECENT, NULL, 1);
    if (probe != NULL) {
        alt.free_pool(probe);
        out[n] = s;
        out[n].variant = "skip recent";
        out[n].check = 1;
        out[n++].arg = 1 | LIB_SKIP_RECENT;
    }
    if (ALT_SYM(key_get, "connpool_key_get") && ALT_SYM(key_acquire, "connpool_key_acquire") &&
        ALT_SYM(key_release, "connpool_key_release"))
        out[n++] = (contender){.name = "libconnpool ALT (handle)", .variant = "check off",
                               .family = FAM_ALT, .handle = 1, .create = altk_create,
                               .destroy = keyed_destroy, .acquire = keyed_acquire,
                               .release = keyed_release, .put = keyed_release,
                               .take = keyed_acquire, .big = 1, .purge = keyed_purge};
    return n;
}
