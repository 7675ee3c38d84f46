/* The pools the benchmark compares, behind one interface so that every contender runs
 * through the same timed loop (one indirect call per acquire and per release). */
#ifndef BENCH_CONTENDERS_H
#define BENCH_CONTENDERS_H

enum family { FAM_NONE, FAM_LIB, FAM_SEED, FAM_C, FAM_APR, FAM_ALT };

typedef struct contender {
    const char *name;    /* "libconnpool (C ABI)", ... */
    const char *variant; /* "check off", "recv peek", "skip recent", "ttl 0", "ttl 60 s", "-" */
    enum family family;
    int check;           /* the variant has the liveness check (recv peek) on: every acquire
                          * is checked, or, with LIB_SKIP_RECENT, those of connections idle
                          * for 100 ms or more (none in the timed loops) */
    int arg;             /* passed to create: check flag (| LIB_WATCH | LIB_SKIP_RECENT), or
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
} contender;

/* libconnpool's create arg: bit 0 the liveness check, these bits CONNPOOL_WATCH and
 * CONNPOOL_CHECK_SKIP_RECENT (with bit 0). */
#define LIB_WATCH 2
#define LIB_SKIP_RECENT 4

/* The keys of a scenario are KEY_STRIDE bytes apart in one buffer (pairs.c), so a contender
 * can find its own per-key data from the key pointer (the key-handle rows: a proxy keeps a
 * handle in its backend's struct). */
#define KEY_STRIDE 24

/* Fills *out with the contenders of this build; returns how many. Call once. */
int contenders_init(const contender **out);
void contenders_fini(void);

/* Whether the libconnpool liveness-check variant exists in this header (issue 3). */
int contenders_have_lib_check(void);

#endif
