/* The pools the benchmark compares, behind one interface so that every contender runs
 * through the same timed loop (one indirect call per acquire and per release). */
#ifndef BENCH_CONTENDERS_H
#define BENCH_CONTENDERS_H

enum family {
    FAM_NONE,   /* the harness alone */
    FAM_LIB,    /* libconnpool, by string key or by key handle */
    FAM_ALT,    /* another build of libconnpool (CONNPOOL_BENCH_ALT_LIB) */
    FAM_SFLOOR, /* the C floor by string key (floors.c) */
    FAM_HFLOOR, /* the C floor by key handle, with its coarse clock (floors.c) */
    FAM_C,      /* the hand-written C pool (cpool.c) */
    FAM_RWS,    /* rust-web-server's ConnPool, the crate (rustpools/) */
    FAM_PINGORA,/* pingora-pool, the crate (rustpools/) */
    FAM_APR     /* apr_reslist */
};

typedef struct contender {
    const char *name;    /* "libconnpool (C ABI)", ... */
    const char *variant; /* "check off", "recv peek", "skip recent", "ttl 0", "ttl 60 s", "-" */
    enum family family;
    int handle;          /* the key-handle form (resolved once per key, not per call) */
    int check;           /* the variant has the liveness check (recv peek) on: every acquire
                          * is checked, or, with LIB_SKIP_RECENT, those of connections idle
                          * for 100 ms or more (none in the timed loops) */
    int arg;             /* passed to create: check flag (| LIB_WATCH | LIB_SKIP_RECENT | LIB_HARVEST), or
                          * apr ttl on/off */
    const char *skip;    /* non-NULL: not measurable in this build, and why */
    /* A pool for these keys (the keys outlive it); at most 8 idle per key; the idle
     * timeout (60 s) honoured unless the variant says otherwise. */
    void *(*create)(int arg, char **keys, int nkeys);
    void (*destroy)(void *pool);
    /* Timed: an idle fd or a negative errno; 0 when the fd was pooled. */
    int (*acquire)(void *pool, const char *key);
    int (*release)(void *pool, const char *key, int fd);
    /* Untimed, to fill the pool before a round and drain it after (apr_reslist cannot
     * adopt a resource through release, so it has its own). */
    int (*put)(void *pool, const char *key, int fd);
    int (*take)(void *pool, const char *key);
    /* Times 1/pairs_div of the scenario's pairs per round (0 or 1: all of them): the
     * idle-watcher rows cost ~10x a plain pair, and the default run must stay short. */
    int pairs_div;
    /* Never touches an idle fd (no check, no watcher): can hold fd numbers that are not
     * open files, so it runs in the 1,000,000-key scenario and the memory table. */
    int big;
    /* Empties the pool, closing its idle fds; returns how many (libconnpool:
     * connpool_purge(pool, NULL)). The memory table empties a pool with it, and the big
     * scenario drains with it when its fds are not open files; NULL: by taking every fd. */
    unsigned long (*purge)(void *pool);
} contender;

/* Set by a create that declines (returns NULL) for a reason that is not an error: the
 * row is then skipped in that scenario, with this reason. */
extern const char *contender_declined;

/* libconnpool's create arg: bit 0 the liveness check, these bits CONNPOOL_WATCH and
 * CONNPOOL_CHECK_SKIP_RECENT (with bit 0). */
#define LIB_WATCH 2
#define LIB_SKIP_RECENT 4
#define LIB_HARVEST 8 /* CONNPOOL_CHECK_HARVEST: the check by harvest */

/* The keys of a scenario are KEY_STRIDE bytes apart in one buffer (conns.c), so a contender
 * can find its own per-key data from the key pointer (the key-handle rows: a proxy keeps a
 * handle in its backend's struct). */
#define KEY_STRIDE 24

#define MAX_IDLE_PER_KEY 8
#define IDLE_TIMEOUT_MS 60000

/* Fills *out with the contenders of this build; returns how many. Call once. */
int contenders_init(const contender **out);
void contenders_fini(void);

/* Each file's rows, appended at out; each returns how many it wrote. */
int lib_rows(contender *out);
int alt_rows(contender *out);
int other_rows(contender *out);
void other_init(void);
void other_fini(void);

/* Key i's index from its pointer, for the handle rows (base: the first key). */
static inline int key_index(const char *base, const char *key)
{
    return (int)((key - base) / KEY_STRIDE);
}

#endif
