/* The timed loop and the scenarios: per round and contender, fill the pool (untimed), time
 * N acquire+release pairs, drain it (untimed, and checked: every fd must come back).
 * Contenders take turns in a rotating order within each round, so a slow moment of this
 * shared machine hits all of them alike. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "bench.h"
#include "connpool.h"

const contender *cs;
int ncs;
struct result results[NSCEN][MAX_CONTENDERS];

/* pairs acquire+release pairs, cycling through the nk keys. */
void run_pairs(const contender *c, void *pool, char **k, int nk, long pairs)
{
    int (*acquire)(void *, const char *) = c->acquire;
    int (*release)(void *, const char *, int) = c->release;
    int ki = 0;
    for (long i = 0; i < pairs; i++) {
        const char *key = k[ki];
        int fd = acquire(pool, key);
        if (fd < 0)
            DIE("%s (%s): acquire(%s) returned %d", c->name, c->variant, key, fd);
        int r = release(pool, key, fd);
        if (r != 0)
            DIE("%s (%s): release(%s) returned %d", c->name, c->variant, key, r);
        if (++ki == nk)
            ki = 0;
    }
}

int runs_in(const contender *c, const struct scenario *s)
{
    return !c->skip && (!s->big || c->big);
}

/* Pairs per round (per thread) this contender times in this scenario: the scenario's, or
 * 1/pairs_div of them (the idle-watcher rows), in whole sweeps over the keys. */
static long pairs_of(const contender *c, const struct scenario *s)
{
    long n = s->pairs / (c->pairs_div > 1 ? c->pairs_div : 1);
    if (s->threads == 1 && s->nkeys > 1) {
        n -= n % s->nkeys;
        if (n < s->nkeys)
            n = s->nkeys;
    }
    return n > 0 ? n : 1;
}

/* The fds c holds in s. libconnpool's fd registry is per process (a copy of the library
 * has its own) and refuses a number another pool of it holds: in the big scenario, whose
 * pools stay filled side by side, its handle rows get numbers of their own. */
static int *fds_of(const contender *c, const struct scenario *s)
{
    int lib = c->family == FAM_LIB || c->family == FAM_ALT;
    return s->fds_handle && c->handle && lib ? s->fds_handle : s->fds;
}

/* Puts the scenario's fds into the pool. */
void fill(const contender *c, void *pool, const struct scenario *s)
{
    for (int k = 0; k < s->nkeys; k++)
        for (int j = 0; j < s->fds_per_key; j++) {
            int r = c->put(pool, keys[k], fds_of(c, s)[k * s->fds_per_key + j]);
            if (r != 0)
                DIE("%s (%s): filling %s returned %d", c->name, c->variant, keys[k], r);
        }
}

/* Takes every fd back (each key must return exactly its own), leaving the pool empty. A
 * big scenario's pool that can purge, holding numbers that are not open files, is
 * emptied by its purge instead, which must close exactly the fds it was given: taking
 * 1,000,000 fds back one by one leaves as many empty entries, which libconnpool sweeps
 * over and over when they are key handles' (they stay). */
void drain(const contender *c, void *pool, const struct scenario *s)
{
    if (s->big && !s->fds_open && c->purge) {
        unsigned long n = c->purge(pool);
        if (n != (unsigned long)s->nkeys * (unsigned long)s->fds_per_key)
            DIE("%s (%s): purge closed %lu fds, not %d", c->name, c->variant, n,
                s->nkeys * s->fds_per_key);
        return;
    }
    for (int k = 0; k < s->nkeys; k++) {
        for (int j = 0; j < s->fds_per_key; j++) {
            int fd = c->take(pool, keys[k]);
            if (fd < 0)
                DIE("%s (%s): lost an fd of %s (got %d)", c->name, c->variant, keys[k], fd);
            fds_of(c, s)[k * s->fds_per_key + j] = fd;
        }
        if (c->family != FAM_NONE && c->take(pool, keys[k]) >= 0)
            DIE("%s (%s): %s held more fds than given", c->name, c->variant, keys[k]);
    }
}

struct worker {
    const contender *c;
    void *pool;
    char **keys;
    int nkeys;
    long pairs;
    pthread_barrier_t *go;
    uint64_t t0, t1;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(w->go);
    w->t0 = now_ns();
    run_pairs(w->c, w->pool, w->keys, w->nkeys, w->pairs);
    w->t1 = now_ns();
    return NULL;
}

/* One measurement: ns per pair (aggregate over threads: wall time / all pairs). The big
 * scenario's pools stay filled between rounds (filling 1,000,000 keys takes longer than
 * the sweep it would precede). */
static double measure(const contender *c, void *pool, const struct scenario *s, int threads,
                      long pairs)
{
    if (!s->big)
        fill(c, pool, s);
    double ns;
    if (threads == 1) {
        int nk = s->threads == 1 ? s->nkeys : 1; /* a threaded scenario's thread 0 alone */
        uint64_t t0 = now_ns();
        run_pairs(c, pool, s->order ? s->order : keys, nk, pairs);
        ns = (double)(now_ns() - t0) / (double)pairs;
    } else {
        pthread_t tid[2];
        struct worker w[2];
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, (unsigned)threads);
        for (int t = 0; t < threads; t++) {
            w[t] = (struct worker){c, pool, &keys[s->same_key ? 0 : t], 1, pairs, &go, 0, 0};
            if (pthread_create(&tid[t], NULL, worker_main, &w[t]) != 0)
                DIE("pthread_create failed");
        }
        uint64_t t0 = UINT64_MAX, t1 = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            if (w[t].t0 < t0)
                t0 = w[t].t0;
            if (w[t].t1 > t1)
                t1 = w[t].t1;
        }
        pthread_barrier_destroy(&go);
        ns = (double)(t1 - t0) / (double)(pairs * threads);
    }
    if (!s->big)
        drain(c, pool, s);
    return ns;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (nearest rank) of v[0..n), which it sorts a copy of. */
double quantile(const double *v, int n, double q)
{
    double tmp[n];
    memcpy(tmp, v, sizeof tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return tmp[(int)floor(q * (n - 1) + 0.5)];
}

double median(const double *v, int n)
{
    if (n % 2 == 1)
        return quantile(v, n, 0.5);
    double tmp[n];
    memcpy(tmp, v, sizeof tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

int find_contender(enum family f, int handle, int check, int arg)
{
    for (int i = 0; i < ncs; i++)
        if (cs[i].family == f && cs[i].handle == handle && cs[i].check == check &&
            cs[i].arg == arg)
            return i;
    return -1;
}

/* The libconnpool row a row is compared with: the same key form and check setting ("recv
 * peek" for the skip-recent row and the C pool's checked row, which checks every
 * acquire); an ALT row: the libconnpool row with the same flags. */
static int lib_ref(int i)
{
    if (cs[i].family == FAM_NONE)
        return -1;
    int r = find_contender(FAM_LIB, cs[i].handle, cs[i].check,
                           cs[i].family == FAM_ALT ? cs[i].arg : cs[i].check);
    return r >= 0 && cs[r].skip == NULL ? r : -1;
}

/* Median over rounds of (row a's ns / row b's ns) in scenario sid; 0 when either is not
 * measured. */
double round_ratio(int sid, int a, int b)
{
    if (a < 0 || b < 0 || !results[sid][a].valid || !results[sid][b].valid)
        return 0;
    int rounds = results[sid][a].rounds;
    double ratio[rounds];
    for (int r = 0; r < rounds; r++)
        ratio[r] = results[sid][a].ns[r] / results[sid][b].ns[r];
    return median(ratio, rounds);
}

/* The row's figures from its per-round ns (and, threaded, its 1-thread ns). */
static void compute_row(int sid, int i, const struct scenario *s, double *ns, double *one,
                        int rounds)
{
    struct result *res = &results[sid][i];
    res->valid = 1;
    res->rounds = rounds;
    if ((res->ns = malloc((size_t)rounds * sizeof *res->ns)) == NULL)
        DIE("out of memory");
    memcpy(res->ns, ns, (size_t)rounds * sizeof *res->ns);
    res->median = median(ns, rounds);
    res->p10 = quantile(ns, rounds, 0.1);
    res->p90 = quantile(ns, rounds, 0.9);
    int ref = lib_ref(i);
    double ratio[rounds];
    if (ref >= 0 && ref != i && results[sid][ref].valid) {
        for (int r = 0; r < rounds; r++)
            ratio[r] = ns[r] / results[sid][ref].ns[r];
        res->vs_lib = median(ratio, rounds);
        for (int r = 0; r < rounds; r++)
            ratio[r] = ns[r] - results[sid][ref].ns[r];
        res->vs_lib_diff = median(ratio, rounds);
    }
    if (s->threads > 1) {
        for (int r = 0; r < rounds; r++)
            ratio[r] = one[r] / ns[r];
        res->vs_1thread = median(ratio, rounds);
    }
}

static void print_row(int sid, int i, const struct scenario *s, const char *why)
{
    const struct result *res = &results[sid][i];
    printf("%-26s %-11s ", cs[i].name, cs[i].variant);
    if (!res->valid) {
        printf("%s\n", cs[i].skip ? cs[i].skip : why);
        return;
    }
    printf("%8.1f %8.1f %8.1f  ", res->median, res->p10, res->p90);
    if (res->vs_lib > 0)
        printf("%8.2fx", res->vs_lib);
    else
        printf("%9s", "-");
    if (s->threads > 1)
        printf("  %9.2f %9.2fx", 1000.0 / res->median, res->vs_1thread);
    printf("\n");
}

void run_scenario(int sid, const struct scenario *s)
{
    int rounds = s->big ? opt.big_rounds : opt.rounds;
    void *pools[MAX_CONTENDERS] = {0};
    const char *declined[MAX_CONTENDERS] = {0};
    static double ns[MAX_CONTENDERS][256], one[MAX_CONTENDERS][256];
    if (rounds > 256)
        DIE("at most 256 rounds");
    int threaded = s->threads > 1;

    int divided = 0;
    for (int i = 0; i < ncs; i++)
        if (runs_in(&cs[i], s) && pairs_of(&cs[i], s) != s->pairs)
            divided = i;
    printf("\n== %s: %ld pairs per round%s x %d rounds, ns per acquire+release pair ==\n",
           s->title, s->pairs, threaded ? " per thread" : "", rounds);
    if (divided)
        printf("(rows '+watch': %ld pairs per round%s)\n", pairs_of(&cs[divided], s),
               threaded ? " per thread" : "");
    if (s->big)
        printf("(check-off rows only: pools filled once with one idle fd per key, never\n"
               " touched by them; each round is one sweep over the keys, in a fixed shuffled\n"
               " order)\n");
    else if (!threaded)
        printf("(row 'skip recent': CONNPOOL_CHECK_LIVENESS | CONNPOOL_CHECK_SKIP_RECENT; each\n"
               " fd is re-acquired well under %d ms after its release, so no acquire is\n"
               " checked; its 'vs libcp' is against 'recv peek')\n",
               (int)CONNPOOL_SKIP_RECENT_MS);
    fflush(stdout);
    for (int i = 0; i < ncs; i++) {
        if (!runs_in(&cs[i], s))
            continue;
        contender_declined = NULL;
        pools[i] = cs[i].create(cs[i].arg, keys, s->nkeys);
        if (pools[i] == NULL && (declined[i] = contender_declined) != NULL)
            continue;
        if (pools[i] == NULL)
            DIE("%s (%s): could not create a pool", cs[i].name, cs[i].variant);
        if (!s->big) { /* the first fill allocates, the first loop faults the code in */
            long n = pairs_of(&cs[i], s);
            measure(&cs[i], pools[i], s, 1, n / 10 > 0 ? n / 10 : 1);
        }
    }
    for (int r = 0; r < rounds; r++) {
        for (int j = 0; j < ncs; j++) {
            int i = (j + r) % ncs; /* rotate who goes first */
            if (!runs_in(&cs[i], s) || declined[i])
                continue;
            long n = pairs_of(&cs[i], s);
            /* Filled right before its first sweep, which the fill warms (every key once):
             * filling every pool first would take longer than the idle timeout. */
            if (s->big && r == 0)
                fill(&cs[i], pools[i], s);
            ns[i][r] = measure(&cs[i], pools[i], s, s->threads, n);
            if (threaded) /* paired: the same pool, one thread, right after */
                one[i][r] = measure(&cs[i], pools[i], s, 1, n);
        }
    }
    for (int i = 0; i < ncs; i++)
        if (pools[i]) {
            if (s->big)
                drain(&cs[i], pools[i], s);
            cs[i].destroy(pools[i]);
        }

    printf("%-26s %-11s %8s %8s %8s  %9s", "contender", "variant", "median", "p10", "p90",
           "vs libcp");
    if (threaded)
        printf("  %9s %10s", "Mpairs/s", "vs 1 thr");
    printf("\n");
    /* libconnpool's rows first: the others' ratios refer to them. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < ncs; i++)
            if ((cs[i].family == FAM_LIB) == (pass == 0) && runs_in(&cs[i], s) && !declined[i])
                compute_row(sid, i, s, ns[i], one[i], rounds);
    /* The big scenario leaves out the rows that need open sockets. */
    for (int i = 0; i < ncs; i++)
        if (results[sid][i].valid || declined[i] || (cs[i].skip && (!s->big || cs[i].big)))
            print_row(sid, i, s, declined[i]);
    fflush(stdout);
}
