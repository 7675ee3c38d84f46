/* What the driver's files (pairs.c, conns.c, scenarios.c, prims.c, memory.c, report.c)
 * share: options, connections and keys, scenarios and their results. */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "contenders.h"

#define DIE(...)                                                                         \
    do {                                                                                 \
        fprintf(stderr, "connpool_bench: " __VA_ARGS__);                                 \
        fputc('\n', stderr);                                                             \
        exit(1);                                                                         \
    } while (0)

struct options {
    int rounds;
    long pairs;     /* per round, per contender (per thread in the 2-thread scenarios) */
    int keys;       /* the many-keys scenario */
    int big_keys;   /* the 1,000,000-key scenario and the memory table */
    int big_rounds; /* rounds of the 1,000,000-key scenario (a sweep each) */
    int quick;
    int callgrind;
    int sharing;
    const char *only;      /* comma-separated contender name prefixes, or NULL: all */
    const char *scenarios; /* comma-separated scenario ids, or NULL: all */
};
extern struct options opt;

uint64_t now_ns(void);
/* Whether word is one of the comma-separated prefixes in list (NULL: everything). */
int listed(const char *list, const char *word);

/* ---- conns.c: connections, fd numbers, keys ---- */
extern int *conn_fds; /* client ends of real loopback TCP connections: the fds pools hold */
extern int nconns;
extern char **keys;   /* max(opt.keys, opt.big_keys) keys, KEY_STRIDE bytes apart */
long raise_fd_limit(void);
void conns_open(int n);
void conns_close(void);
void keys_make(int n);
char **keys_shuffled(int n);
/* n distinct fd numbers for the big scenario: dup()s of a connection when RLIMIT_NOFILE
 * allows, else numbers at or above the hard limit (never open in this process). *how
 * says which. */
int *big_fds_make(int n, const char **how, int *open);
/* Frees the last set made (sets are freed in the reverse order of their making). */
void big_fds_free(int *fds, int n);

/* ---- scenarios.c ---- */
enum { SC_ONE, SC_MANY, SC_BIG, SC_SAME, SC_DIFF, NSCEN };
#define MAX_CONTENDERS 32

struct scenario {
    const char *id;
    const char *title;
    int nkeys;       /* keys that hold idle fds */
    int fds_per_key; /* idle fds per key */
    int threads;     /* 1 or 2 */
    int same_key;    /* threads share key 0; otherwise thread t uses key t */
    long pairs;      /* per round, per thread */
    int *fds;        /* the fds to fill with: nkeys * fds_per_key */
    int *fds_handle; /* non-NULL: those of libconnpool's handle rows (see fds_of) */
    int big;         /* only contenders with .big; filled once, drained once; big_rounds */
    int fds_open;    /* the fds are open files (else numbers never open: see conns.c) */
    char **order;    /* non-NULL: the timed loop visits the keys in this order */
};

struct result {
    int valid;
    double median, p10, p90;
    double vs_lib;      /* median over rounds of (row ns / libconnpool ns); 0: n/a */
    double vs_1thread;  /* threaded: median over rounds of (throughput / 1-thread's) */
    double vs_lib_diff; /* median over rounds of (row ns - libconnpool ns); idle-watcher rows */
    double *ns;         /* this row's ns per pair, one per round (for ratios between rows) */
    int rounds;
};
extern struct result results[NSCEN][MAX_CONTENDERS];
extern const contender *cs;
extern int ncs;

double quantile(const double *v, int n, double q);
double median(const double *v, int n);
int find_contender(enum family f, int handle, int check, int arg);
double round_ratio(int sid, int a, int b);
void run_pairs(const contender *c, void *pool, char **k, int nk, long pairs);
void fill(const contender *c, void *pool, const struct scenario *s);
void drain(const contender *c, void *pool, const struct scenario *s);
int runs_in(const contender *c, const struct scenario *s);
void run_scenario(int sid, const struct scenario *s);

/* ---- prims.c, memory.c, report.c ---- */
void run_primitives(void);
void run_callgrind(const struct scenario *scs, int nsc);
void run_sharing(long pairs);
/* Memory per key with one idle fd under each of opt.big_keys keys. */
void run_memory(void);
struct memory {
    int valid;
    double filled, emptied, freed; /* bytes per key above the baseline */
};
extern struct memory memory[MAX_CONTENDERS];
void print_watch_cost(const struct scenario *scs);
void print_targets(void);

#endif
