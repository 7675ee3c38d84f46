/* The contenders other than libconnpool: the two C floors (floors.c), the hand-written C
 * pool (cpool.c), the real rust-web-server and pingora-pool crates (rustpools/, when built
 * with CONNPOOL_BENCH_CRATES) and apr_reslist (when apr-util is installed). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "contenders.h"
#include "cpool.h"
#include "floors.h"

#ifdef BENCH_HAVE_RUSTPOOLS
#include "rustpools/rustpools.h"
#endif
#ifdef BENCH_HAVE_APR
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_pools.h>
#include <apr_reslist.h>
#endif

/* ---- the C floors ---- */

static void *sf_create(int arg, char **keys, int nkeys)
{
    (void)arg;
    (void)keys;
    (void)nkeys;
    return sfloor_new(MAX_IDLE_PER_KEY, IDLE_TIMEOUT_MS);
}
static void sf_destroy(void *p) { sfloor_free(p); }
static int sf_acquire(void *p, const char *key) { return sfloor_acquire(p, key); }
static int sf_release(void *p, const char *key, int fd) { return sfloor_release(p, key, fd); }

struct hf {
    hfloor *pool;
    const char *base;
};
static void *hf_create(int arg, char **keys, int nkeys)
{
    (void)arg;
    struct hf *h = malloc(sizeof *h);
    if (h == NULL || (h->pool = hfloor_new(MAX_IDLE_PER_KEY, IDLE_TIMEOUT_MS, nkeys)) == NULL) {
        free(h);
        return NULL;
    }
    h->base = keys[0];
    return h;
}
static void hf_destroy(void *p)
{
    hfloor_free(((struct hf *)p)->pool);
    free(p);
}
static int hf_acquire(void *p, const char *key)
{
    struct hf *h = p;
    return hfloor_acquire(hfloor_key_at(h->pool, key_index(h->base, key)));
}
static int hf_release(void *p, const char *key, int fd)
{
    struct hf *h = p;
    return hfloor_release(hfloor_key_at(h->pool, key_index(h->base, key)), fd);
}

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

/* ---- the Rust crates ---- */

#ifdef BENCH_HAVE_RUSTPOOLS
static void *rws_create(int arg, char **keys, int nkeys)
{
    (void)arg;
    (void)keys;
    (void)nkeys;
    return rws_pool_new(MAX_IDLE_PER_KEY, IDLE_TIMEOUT_MS);
}
static void rws_destroy(void *p) { rws_pool_free(p); }
static int rws_acquire(void *p, const char *key) { return rws_pool_acquire(p, key); }
static int rws_release(void *p, const char *key, int fd) { return rws_pool_release(p, key, fd); }

/* pingora's size is a global LRU capacity (no per-key cap): room for every fd a scenario
 * holds (at most 2 per key here), so that it never evicts. */
struct pg {
    PingoraPool *pool;
    const char *base;
    uint64_t *groups; /* the handle form: each key's group key, computed once */
};
static void *pg_create(int handle, char **keys, int nkeys)
{
    struct pg *g = calloc(1, sizeof *g);
    if (g == NULL || (g->pool = pingora_pool_new((size_t)nkeys * 2 + 16)) == NULL)
        return NULL;
    g->base = keys[0];
    if (handle) {
        if ((g->groups = malloc((size_t)nkeys * sizeof *g->groups)) == NULL)
            return NULL;
        for (int i = 0; i < nkeys; i++)
            g->groups[i] = pingora_pool_key(keys[i]);
    }
    return g;
}
static void pg_destroy(void *p)
{
    struct pg *g = p;
    pingora_pool_free(g->pool);
    free(g->groups);
    free(g);
}
static int pg_acquire(void *p, const char *key)
{
    return pingora_pool_acquire(((struct pg *)p)->pool, key);
}
static int pg_release(void *p, const char *key, int fd)
{
    return pingora_pool_release(((struct pg *)p)->pool, key, fd);
}
static int pgk_acquire(void *p, const char *key)
{
    struct pg *g = p;
    return pingora_pool_get(g->pool, g->groups[key_index(g->base, key)]);
}
static int pgk_release(void *p, const char *key, int fd)
{
    struct pg *g = p;
    return pingora_pool_put(g->pool, g->groups[key_index(g->base, key)], fd);
}
#define RUST_SKIP NULL
#else
#define rws_create NULL
#define rws_destroy NULL
#define rws_acquire NULL
#define rws_release NULL
#define pg_create NULL
#define pg_destroy NULL
#define pg_acquire NULL
#define pg_release NULL
#define pgk_acquire NULL
#define pgk_release NULL
#define RUST_SKIP "skipped (configure with -DCONNPOOL_BENCH_CRATES=ON)"
#endif

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

void other_init(void)
{
#ifdef BENCH_HAVE_APR
    if (apr_initialize() != APR_SUCCESS) {
        fprintf(stderr, "apr_initialize failed\n");
        exit(1);
    }
#endif
}

void other_fini(void)
{
#ifdef BENCH_HAVE_APR
    apr_terminate();
#endif
}

#define ROW(nm, var, fam, cr, de, acq, rel, pu, ta)                                          \
    (contender)                                                                          \
    {                                                                                    \
        .name = nm, .variant = var, .family = fam, .create = cr, .destroy = de,          \
        .acquire = acq, .release = rel, .put = pu, .take = ta                            \
    }

int other_rows(contender *out)
{
    int n = 0;
    out[n] = ROW("C floor (string key)", "check off", FAM_SFLOOR, sf_create, sf_destroy,
                 sf_acquire, sf_release, sf_release, sf_acquire);
    out[n++].big = 1;
    out[n] = ROW("C floor (key handle)", "check off", FAM_HFLOOR, hf_create, hf_destroy,
                 hf_acquire, hf_release, hf_release, hf_acquire);
    out[n].handle = 1;
    out[n++].big = 1;
    out[n] = ROW("hand-written C pool", "check off", FAM_C, c_create, c_destroy, c_acquire,
                 c_release, c_release, c_acquire);
    out[n++].big = 1;
    out[n] = ROW("hand-written C pool", "recv peek", FAM_C, c_create, c_destroy, c_acquire,
                 c_release, c_release, c_acquire);
    out[n].check = out[n].arg = 1;
    n++;
    out[n] = ROW("rust-web-server ConnPool", "check off", FAM_RWS, rws_create, rws_destroy,
                 rws_acquire, rws_release, rws_release, rws_acquire);
    out[n].skip = RUST_SKIP;
    out[n++].big = 1;
    /* "no timeout": pingora-core's idle timeout is an async task per connection, which
     * this harness does not run (rustpools/src/pingora.rs). */
    out[n] = ROW("pingora-pool (string key)", "no timeout", FAM_PINGORA, pg_create,
                 pg_destroy, pg_acquire, pg_release, pg_release, pg_acquire);
    out[n].skip = RUST_SKIP;
    out[n++].big = 1;
    out[n] = ROW("pingora-pool (u64 key)", "no timeout", FAM_PINGORA, pg_create, pg_destroy,
                 pgk_acquire, pgk_release, pgk_release, pgk_acquire);
    out[n].handle = out[n].arg = 1;
    out[n].skip = RUST_SKIP;
    out[n++].big = 1;
    out[n] = ROW("apr_reslist", "ttl 0", FAM_APR, apr_create, apr_destroy, apr_acquire,
                 apr_release, apr_put, apr_take);
    out[n++].skip = APR_SKIP;
    out[n] = ROW("apr_reslist", "ttl 60 s", FAM_APR, apr_create, apr_destroy, apr_acquire,
                 apr_release, apr_put, apr_take);
    out[n].arg = 1;
    out[n].skip = APR_SKIP;
    out[n++].big = 1;
    return n;
}
