/* connpool_bench: ns per acquire+release pair, libconnpool against its baselines, all in
 * one run, rounds interleaved, on real connected loopback TCP sockets. See BENCHMARKS.md.
 *
 *   connpool_bench [--rounds R] [--pairs N] [--keys K] [--quick] [--callgrind]
 *
 * Every contender runs through the same loop (one indirect call per acquire and per
 * release). Per round and contender: the pool is filled with the scenario's fds (untimed),
 * N acquire+release pairs are timed, the pool is drained (untimed, and checked: every fd
 * must come back). Contenders take turns in a rotating order within each round, so a slow
 * moment of this shared machine hits all of them alike; each row prints the median over the
 * rounds, the p10 and p90, and the median of its per-round ratio to libconnpool.
 *
 * The backend ends of the connections live in a child process (pooling 10,000 connections
 * takes 20,000 fds, and RLIMIT_NOFILE is per process), so a liveness check sees live,
 * quiet peers. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "connpool.h"
#include "contenders.h"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_HAVE_CALLGRIND 1
#endif
#endif

#define DIE(...)                                                                         \
    do {                                                                                 \
        fprintf(stderr, "connpool_bench: " __VA_ARGS__);                                 \
        fputc('\n', stderr);                                                             \
        exit(1);                                                                         \
    } while (0)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------ */
/* Options                                                                                */
/* ------------------------------------------------------------------------------------ */

static struct {
    int rounds;
    long pairs; /* per round, per contender (per thread in the 2-thread scenarios) */
    int keys;   /* the many-keys scenario */
    int quick;
    int callgrind;
    const char *only;      /* comma-separated contender name prefixes, or NULL: all */
    const char *scenarios; /* comma-separated scenario ids, or NULL: all */
} opt = {21, 100000, 10000, 0, 0, NULL, NULL};

/* Whether word is one of the comma-separated prefixes in list (NULL: everything). */
static int listed(const char *list, const char *word)
{
    if (list == NULL)
        return 1;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        if (n > 0 && strncmp(word, p, n) == 0)
            return 1;
        p += n + (p[n] == ',');
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: connpool_bench [--rounds R] [--pairs N] [--keys K] [--quick] [--callgrind]\n"
            "                      [--only NAMES] [--scenarios IDS]\n"
            "  --rounds R   timed rounds per scenario (default 21)\n"
            "  --pairs N    acquire+release pairs per round and contender (default 100000)\n"
            "  --keys K     keys of the many-keys scenario (default 10000)\n"
            "  --quick      a smoke run: 3 rounds of 2000 pairs, 1000 keys (figures meaningless)\n"
            "  --only NAMES contenders whose name starts with one of these (comma-separated),\n"
            "               e.g. --only libconnpool,seed (the harness row always runs)\n"
            "  --scenarios IDS  only these of 1key,manykeys,2thr-same,2thr-diff\n"
            "  --callgrind  no timing: run each contender's loop between callgrind dumps\n"
            "               (used by bench/callgrind.sh)\n"
            "environment: CONNPOOL_BENCH_ALT_LIB=/path/to/libconnpool.so adds that build as\n"
            "  one more contender (dlopen), to compare a candidate change in the same run\n");
}

static long parse_num(const char *s, long min)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min)
        DIE("bad number: %s", s);
    return v;
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0) {
            opt.quick = 1;
            opt.rounds = 3;
            opt.pairs = 2000;
            opt.keys = 1000;
        } else if (strcmp(a, "--callgrind") == 0) {
            opt.callgrind = 1;
        } else if (strcmp(a, "--only") == 0 && i + 1 < argc) {
            opt.only = argv[++i];
        } else if (strcmp(a, "--scenarios") == 0 && i + 1 < argc) {
            opt.scenarios = argv[++i];
        } else if (strcmp(a, "--rounds") == 0 && i + 1 < argc) {
            opt.rounds = (int)parse_num(argv[++i], 1);
        } else if (strcmp(a, "--pairs") == 0 && i + 1 < argc) {
            opt.pairs = parse_num(argv[++i], 1);
        } else if (strcmp(a, "--keys") == 0 && i + 1 < argc) {
            opt.keys = (int)parse_num(argv[++i], 2);
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            usage(stderr);
            exit(2);
        }
    }
}

/* ------------------------------------------------------------------------------------ */
/* Connections: client ends here, backend ends held open by a child process               */
/* ------------------------------------------------------------------------------------ */

static int *conn_fds; /* client ends: the fds the pools hold */
static int nconns;
static pid_t peer_pid = -1;
static int peer_ctl = -1; /* closing it tells the child to close its ends and exit */

/* Raises RLIMIT_NOFILE's soft limit to the hard one; returns the fds available. */
static long raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur;
}

/* The child: accepts every connection and keeps it open, quiet, until peer_ctl closes. */
static void peer_child(int listener, int ctl, int status, int n)
{
    int *fds = malloc((size_t)n * sizeof *fds);
    int count = 0;
    if (fds == NULL)
        _exit(2);
    struct pollfd p[2] = {{.fd = listener, .events = POLLIN}, {.fd = ctl, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(2);
        }
        if (p[1].revents)
            break;
        if (p[0].revents & POLLIN) {
            int fd;
            while (count < n && (fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) >= 0)
                fds[count++] = fd;
            if (write(status, &count, sizeof count) != (ssize_t)sizeof count)
                _exit(2);
        }
    }
    for (int i = 0; i < count; i++)
        close(fds[i]);
    _exit(0);
}

static void conns_open(int n)
{
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listener < 0)
        DIE("socket: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (bind(listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(listener, 4096) != 0 ||
        getsockname(listener, (struct sockaddr *)&a, &alen) != 0)
        DIE("listen on 127.0.0.1: %s", strerror(errno));
    int ctl[2], status[2];
    if (pipe2(ctl, O_CLOEXEC) != 0 || pipe2(status, O_CLOEXEC) != 0)
        DIE("pipe: %s", strerror(errno));
    fflush(stdout);
    peer_pid = fork();
    if (peer_pid < 0)
        DIE("fork: %s", strerror(errno));
    if (peer_pid == 0) {
        close(ctl[1]);
        close(status[0]);
        peer_child(listener, ctl[0], status[1], n);
    }
    close(ctl[0]);
    close(status[1]);
    close(listener);
    peer_ctl = ctl[1];

    conn_fds = malloc((size_t)n * sizeof *conn_fds);
    if (conn_fds == NULL)
        DIE("out of memory");
    int accepted = 0;
    for (int i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0)
            DIE("socket (connection %d of %d): %s", i + 1, n, strerror(errno));
        if (connect(c, (struct sockaddr *)&a, alen) != 0)
            DIE("connect (connection %d of %d): %s", i + 1, n, strerror(errno));
        conn_fds[nconns++] = c;
        /* Every 256 connections, let the child catch up so the backlog never overflows. */
        if ((i + 1) % 256 == 0 || i + 1 == n) {
            while (accepted < i + 1) {
                if (read(status[0], &accepted, sizeof accepted) != (ssize_t)sizeof accepted)
                    DIE("the peer process died");
            }
        }
    }
    close(status[0]);
}

static void conns_close(void)
{
    /* Reset, not FIN: thousands of TIME_WAIT entries would hold ephemeral ports for a
     * minute on a machine shared with other tests. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    for (int i = 0; i < nconns; i++) {
        setsockopt(conn_fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(conn_fds[i]);
    }
    nconns = 0;
    if (peer_ctl >= 0)
        close(peer_ctl);
    if (peer_pid > 0)
        waitpid(peer_pid, NULL, 0);
}

/* ------------------------------------------------------------------------------------ */
/* Keys                                                                                   */
/* ------------------------------------------------------------------------------------ */

static char **keys;

static void keys_make(int n)
{
    keys = malloc((size_t)n * sizeof *keys);
    char *buf = malloc((size_t)n * KEY_STRIDE);
    if (keys == NULL || buf == NULL)
        DIE("out of memory");
    for (int i = 0; i < n; i++) {
        unsigned v = (unsigned)i + 1;
        keys[i] = buf + (size_t)i * KEY_STRIDE;
        snprintf(keys[i], KEY_STRIDE, "10.%u.%u.%u:8080", (v >> 16) & 255, (v >> 8) & 255,
                 v & 255);
    }
}

/* ------------------------------------------------------------------------------------ */
/* The timed loop                                                                         */
/* ------------------------------------------------------------------------------------ */

/* pairs acquire+release pairs, cycling through the nk keys. */
static void run_pairs(const contender *c, void *pool, char **k, int nk, long pairs)
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

struct scenario {
    const char *id;
    const char *title;
    int nkeys;       /* keys that hold idle fds */
    int fds_per_key; /* idle fds per key */
    int threads;     /* 1 or 2 */
    int same_key;    /* threads share key 0; otherwise thread t uses key t */
    long pairs;      /* per round, per thread */
};

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

/* Puts the scenario's fds into the pool. */
static void fill(const contender *c, void *pool, const struct scenario *s)
{
    for (int k = 0; k < s->nkeys; k++)
        for (int j = 0; j < s->fds_per_key; j++) {
            int r = c->put(pool, keys[k], conn_fds[k * s->fds_per_key + j]);
            if (r != 0)
                DIE("%s (%s): filling %s returned %d", c->name, c->variant, keys[k], r);
        }
}

/* Takes every fd back (each key must return exactly its own), leaving the pool empty. */
static void drain(const contender *c, void *pool, const struct scenario *s)
{
    for (int k = 0; k < s->nkeys; k++) {
        for (int j = 0; j < s->fds_per_key; j++) {
            int fd = c->take(pool, keys[k]);
            if (fd < 0)
                DIE("%s (%s): lost an fd of %s (got %d)", c->name, c->variant, keys[k], fd);
            conn_fds[k * s->fds_per_key + j] = fd;
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

/* One measurement: ns per pair (aggregate over threads: wall time / all pairs). */
static double measure(const contender *c, void *pool, const struct scenario *s, int threads,
                      long pairs)
{
    fill(c, pool, s);
    double ns;
    if (threads == 1) {
        int nk = s->threads == 1 ? s->nkeys : 1; /* a threaded scenario's thread 0 alone */
        uint64_t t0 = now_ns();
        run_pairs(c, pool, keys, nk, pairs);
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
    drain(c, pool, s);
    return ns;
}

/* ------------------------------------------------------------------------------------ */
/* Statistics                                                                             */
/* ------------------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (nearest rank) of v[0..n), which it sorts a copy of. */
static double quantile(const double *v, int n, double q)
{
    double tmp[n];
    memcpy(tmp, v, sizeof tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    int i = (int)floor(q * (n - 1) + 0.5);
    return tmp[i];
}

static double median(const double *v, int n)
{
    if (n % 2 == 1)
        return quantile(v, n, 0.5);
    double tmp[n];
    memcpy(tmp, v, sizeof tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* ------------------------------------------------------------------------------------ */
/* Scenarios                                                                              */
/* ------------------------------------------------------------------------------------ */

static const contender *cs;
static int ncs;

#define MAX_CONTENDERS 16
enum { SC_ONE, SC_MANY, SC_SAME, SC_DIFF, NSCEN };

struct result {
    int valid;
    double median, p10, p90;
    double vs_lib;      /* median over rounds of (row ns / libconnpool ns); 0: n/a */
    double vs_1thread;  /* threaded: median over rounds of (throughput / 1-thread's) */
    double vs_lib_diff; /* median over rounds of (row ns - libconnpool ns); idle-watcher rows */
    double *ns;         /* this row's ns per pair, one per round (for ratios between rows) */
};
static struct result results[NSCEN][MAX_CONTENDERS];

static int find_contender(enum family f, int check, int arg)
{
    for (int i = 0; i < ncs; i++)
        if (cs[i].family == f && cs[i].check == check && cs[i].arg == arg)
            return i;
    return -1;
}

/* The libconnpool row a row is compared with: the same check setting ("recv peek" for the
 * skip-recent row, and for the seed's and the C pool's checked rows, which check every
 * acquire); an ALT row: the libconnpool row with the same flags. */
static int lib_ref(int i)
{
    if (cs[i].family == FAM_NONE)
        return -1;
    int r = find_contender(FAM_LIB, cs[i].check,
                           cs[i].family == FAM_ALT ? cs[i].arg : cs[i].check);
    return r >= 0 && cs[r].skip == NULL ? r : -1;
}

/* The libconnpool row with the check on and CONNPOOL_CHECK_SKIP_RECENT, or -1. */
static int lib_skip_recent(void) { return find_contender(FAM_LIB, 1, 1 | LIB_SKIP_RECENT); }

/* Median over rounds of (row a's ns / row b's ns) in scenario sid; 0 when either is not
 * measured. */
static double round_ratio(int sid, int a, int b)
{
    if (a < 0 || b < 0 || !results[sid][a].valid || !results[sid][b].valid)
        return 0;
    int rounds = opt.rounds;
    double ratio[rounds];
    for (int r = 0; r < rounds; r++)
        ratio[r] = results[sid][a].ns[r] / results[sid][b].ns[r];
    return median(ratio, rounds);
}

static const char *variant_label(const contender *c) { return c->variant; }

static void run_scenario(int sid, const struct scenario *s)
{
    int rounds = opt.rounds;
    void *pools[MAX_CONTENDERS] = {0};
    double ns[MAX_CONTENDERS][rounds];
    double one[MAX_CONTENDERS][rounds];
    int threaded = s->threads > 1;

    int divided = 0;
    for (int i = 0; i < ncs; i++)
        if (!cs[i].skip && pairs_of(&cs[i], s) != s->pairs)
            divided = i;
    printf("\n== %s: %ld pairs per round%s x %d rounds, ns per acquire+release pair ==\n",
           s->title, s->pairs, threaded ? " per thread" : "", rounds);
    if (divided)
        printf("(rows '+watch': %ld pairs per round%s)\n", pairs_of(&cs[divided], s),
               threaded ? " per thread" : "");
#ifdef CONNPOOL_CHECK_SKIP_RECENT
    int skip = lib_skip_recent();
    if (skip >= 0 && !cs[skip].skip)
        printf("(row 'skip recent': CONNPOOL_CHECK_LIVENESS | CONNPOOL_CHECK_SKIP_RECENT; each\n"
               " fd is re-acquired well under %d ms after its release, so no acquire is\n"
               " checked; its 'vs libcp' is against 'recv peek')\n",
               (int)CONNPOOL_SKIP_RECENT_MS);
#endif
    fflush(stdout);
    for (int i = 0; i < ncs; i++) {
        if (cs[i].skip)
            continue;
        pools[i] = cs[i].create(cs[i].arg, keys, s->nkeys);
        if (pools[i] == NULL)
            DIE("%s (%s): could not create a pool", cs[i].name, cs[i].variant);
        /* Warm-up: the first fill allocates, the first loop faults the code in. */
        long n = pairs_of(&cs[i], s);
        measure(&cs[i], pools[i], s, 1, n / 10 > 0 ? n / 10 : 1);
    }
    for (int r = 0; r < rounds; r++) {
        for (int j = 0; j < ncs; j++) {
            int i = (j + r) % ncs; /* rotate who goes first */
            if (cs[i].skip)
                continue;
            long n = pairs_of(&cs[i], s);
            ns[i][r] = measure(&cs[i], pools[i], s, s->threads, n);
            if (threaded) /* paired: the same pool, one thread, right after */
                one[i][r] = measure(&cs[i], pools[i], s, 1, n);
        }
    }
    for (int i = 0; i < ncs; i++)
        if (pools[i])
            cs[i].destroy(pools[i]);

    printf("%-26s %-11s %8s %8s %8s  %9s", "contender", "variant", "median", "p10", "p90",
           "vs libcp");
    if (threaded)
        printf("  %9s %10s", "Mpairs/s", "vs 1 thr");
    printf("\n");
    for (int i = 0; i < ncs; i++) {
        struct result *res = &results[sid][i];
        printf("%-26s %-11s ", cs[i].name, variant_label(&cs[i]));
        if (cs[i].skip) {
            printf("%s\n", cs[i].skip);
            continue;
        }
        res->valid = 1;
        res->ns = malloc((size_t)rounds * sizeof *res->ns);
        if (res->ns == NULL)
            DIE("out of memory");
        memcpy(res->ns, ns[i], (size_t)rounds * sizeof *res->ns);
        res->median = median(ns[i], rounds);
        res->p10 = quantile(ns[i], rounds, 0.1);
        res->p90 = quantile(ns[i], rounds, 0.9);
        printf("%8.1f %8.1f %8.1f  ", res->median, res->p10, res->p90);
        int ref = lib_ref(i);
        if (ref >= 0 && ref != i) {
            double ratio[rounds];
            for (int r = 0; r < rounds; r++)
                ratio[r] = ns[i][r] / ns[ref][r];
            res->vs_lib = median(ratio, rounds);
            for (int r = 0; r < rounds; r++)
                ratio[r] = ns[i][r] - ns[ref][r];
            res->vs_lib_diff = median(ratio, rounds);
            printf("%8.2fx", res->vs_lib);
        } else {
            printf("%9s", "-");
        }
        if (threaded) {
            double ratio[rounds];
            for (int r = 0; r < rounds; r++)
                ratio[r] = one[i][r] / ns[i][r];
            res->vs_1thread = median(ratio, rounds);
            printf("  %9.2f %9.2fx", 1000.0 / res->median, res->vs_1thread);
        }
        printf("\n");
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------ */
/* Primitives: what a pool cannot avoid, measured in the same run                        */
/* ------------------------------------------------------------------------------------ */

static pthread_mutex_t prim_mutex = PTHREAD_MUTEX_INITIALIZER;
static volatile uint64_t prim_sink;

static void prim_clock(long n)
{
    struct timespec ts;
    for (long i = 0; i < n; i++) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        prim_sink += (uint64_t)ts.tv_nsec;
    }
}
static void prim_clock_coarse(long n)
{
    struct timespec ts;
    for (long i = 0; i < n; i++) {
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        prim_sink += (uint64_t)ts.tv_nsec;
    }
}
static void prim_mutex_pair(long n)
{
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&prim_mutex);
        prim_sink++;
        pthread_mutex_unlock(&prim_mutex);
    }
}
static void prim_peek(long n)
{
    char b;
    for (long i = 0; i < n; i++)
        if (recv(conn_fds[0], &b, 1, MSG_PEEK | MSG_DONTWAIT) != -1 || errno != EAGAIN)
            DIE("recv peek on an idle connection did not say EAGAIN");
}
/* What the idle watcher adds per pair: the fd leaves the epoll set on acquire and joins it
 * on release (level-triggered EPOLLIN | EPOLLRDHUP, as src/ffi/sys.rs registers it). */
static int prim_epoll = -1;
static void prim_epoll_add_del(long n)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = 1};
    for (long i = 0; i < n; i++)
        if (epoll_ctl(prim_epoll, EPOLL_CTL_ADD, conn_fds[0], &ev) != 0 ||
            epoll_ctl(prim_epoll, EPOLL_CTL_DEL, conn_fds[0], &ev) != 0)
            DIE("epoll_ctl: %s", strerror(errno));
}
/* The cheaper alternative: the fd stays registered (EPOLLONESHOT) and one MOD re-arms it. */
static void prim_epoll_mod(long n)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.u64 = 1};
    if (epoll_ctl(prim_epoll, EPOLL_CTL_ADD, conn_fds[0], &ev) != 0)
        DIE("epoll_ctl: %s", strerror(errno));
    for (long i = 0; i < n; i++)
        if (epoll_ctl(prim_epoll, EPOLL_CTL_MOD, conn_fds[0], &ev) != 0)
            DIE("epoll_ctl: %s", strerror(errno));
    epoll_ctl(prim_epoll, EPOLL_CTL_DEL, conn_fds[0], &ev);
}
static void prim_syscall(long n)
{
    for (long i = 0; i < n; i++)
        prim_sink += (uint64_t)getppid();
}

static void run_primitives(void)
{
    static const struct {
        const char *name;
        void (*fn)(long);
        long scale; /* divides opt.pairs: syscalls are slow */
    } prims[] = {
        {"clock_gettime(CLOCK_MONOTONIC)", prim_clock, 1},
        {"clock_gettime(CLOCK_MONOTONIC_COARSE)", prim_clock_coarse, 1},
        {"pthread_mutex lock+unlock (uncontended)", prim_mutex_pair, 1},
        {"getppid() (any syscall)", prim_syscall, 4},
        {"recv(1, MSG_PEEK|MSG_DONTWAIT), idle TCP", prim_peek, 4},
        {"epoll_ctl ADD + DEL (2 calls), idle TCP", prim_epoll_add_del, 4},
        {"epoll_ctl MOD (EPOLLONESHOT re-arm)", prim_epoll_mod, 4},
    };
    prim_epoll = epoll_create1(EPOLL_CLOEXEC);
    if (prim_epoll < 0)
        DIE("epoll_create1: %s", strerror(errno));
    enum { NP = sizeof prims / sizeof prims[0] };
    int rounds = opt.rounds;
    double ns[NP][rounds];
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j < NP; j++) {
            int i = (j + r) % NP;
            long n = opt.pairs / prims[i].scale;
            if (n < 1)
                n = 1;
            uint64_t t0 = now_ns();
            prims[i].fn(n);
            ns[i][r] = (double)(now_ns() - t0) / (double)n;
        }
    close(prim_epoll);
    printf("\n== primitives, ns per call (same rounds scheme) ==\n");
    printf("%-42s %8s %8s %8s\n", "primitive", "median", "p10", "p90");
    for (int i = 0; i < NP; i++)
        printf("%-42s %8.1f %8.1f %8.1f\n", prims[i].name, median(ns[i], rounds),
               quantile(ns[i], rounds, 0.1), quantile(ns[i], rounds, 0.9));
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------ */
/* The idle watcher's cost (CONNPOOL_WATCH), from the scenarios' figures                  */
/* ------------------------------------------------------------------------------------ */

static void print_watch_cost(const struct scenario *scs)
{
    int off = find_contender(FAM_LIB, 0, 0), on = find_contender(FAM_LIB, 1, 1);
    int woff = find_contender(FAM_LIB, 0, LIB_WATCH);
    int won = find_contender(FAM_LIB, 1, 1 | LIB_WATCH);
    if (woff < 0 || won < 0 || (cs[woff].skip && cs[won].skip))
        return;
    printf("\n== idle watcher (CONNPOOL_WATCH): libconnpool with and without it, ns per pair"
           " ==\n");
    printf("%-46s %-10s %8s %8s %9s %9s\n", "scenario", "check", "without", "with", "added",
           "ratio");
    const int base[2] = {off, on}, with[2] = {woff, won};
    for (int sid = 0; sid < NSCEN; sid++)
        for (int k = 0; k < 2; k++) {
            const struct result *b = &results[sid][base[k]], *w = &results[sid][with[k]];
            if (!b->valid || !w->valid)
                continue;
            printf("%-46s %-10s %8.1f %8.1f %9.1f %8.2fx\n", scs[sid].title,
                   k ? "recv peek" : "off", b->median, w->median, w->vs_lib_diff, w->vs_lib);
        }
    printf("('added', 'ratio': medians of the per-round difference and ratio, same round)\n");
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------ */
/* Targets (issue 6), judged from this run's figures                                      */
/* ------------------------------------------------------------------------------------ */

static void target(const char *what, int have, double value, const char *unit, int met)
{
    if (!have)
        printf("  %-68s %12s  %s\n", what, "-", "n/a (not measured in this run)");
    else
        printf("  %-68s %9.2f %-2s  %s\n", what, value, unit, met ? "MET" : "MISSED");
}

static void print_targets(void)
{
    int lib_off = find_contender(FAM_LIB, 0, 0), lib_on = find_contender(FAM_LIB, 1, 1);
    int seed_off = find_contender(FAM_SEED, 0, 0), seed_on = find_contender(FAM_SEED, 1, 1);
    int apr_ttl = find_contender(FAM_APR, 0, 1);
    struct result *one = results[SC_ONE], *many = results[SC_MANY], *diff = results[SC_DIFF];
    printf("\n== targets (issue 6), from the figures above; ratios are medians of per-round"
           " ratios ==\n");
    target("pair, check off, timeouts honoured <= 40 ns", one[lib_off].valid,
           one[lib_off].median, "ns", one[lib_off].median <= 40);
    target("seed design / libconnpool, check off >= 2.5x", one[seed_off].valid,
           one[seed_off].vs_lib, "x", one[seed_off].vs_lib >= 2.5);
    target("libconnpool / apr_reslist ttl 60 s <= 0.5x", apr_ttl >= 0 && one[apr_ttl].valid,
           apr_ttl >= 0 && one[apr_ttl].vs_lib > 0 ? 1.0 / one[apr_ttl].vs_lib : 0, "x",
           apr_ttl >= 0 && one[apr_ttl].vs_lib >= 2.0);
    target("pair, check on (recv peek, every acquire) <= 160 ns", one[lib_on].valid,
           one[lib_on].median, "ns", one[lib_on].median <= 160);
    target("seed design / libconnpool, check on (both: every acquire) >= 1.5x",
           one[lib_on].valid && one[seed_on].valid, one[seed_on].vs_lib, "x",
           one[seed_on].vs_lib >= 1.5);
    /* The option of CONNPOOL_CHECK_SKIP_RECENT: in these loops every acquire comes well
     * under CONNPOOL_SKIP_RECENT_MS after its release, so none is checked. */
    int lib_skip = lib_skip_recent();
    int have_skip = lib_skip >= 0 && !cs[lib_skip].skip;
    if (have_skip) {
        double r = round_ratio(SC_ONE, seed_on, lib_skip);
        target("pair, check on + skip recent (CONNPOOL_CHECK_SKIP_RECENT) <= 160 ns",
               one[lib_skip].valid, one[lib_skip].median, "ns", one[lib_skip].median <= 160);
        target("seed recv peek (every acquire) / libconnpool skip recent >= 1.5x",
               r > 0, r, "x", r >= 1.5);
    }
    int k = opt.keys;
    char what[128];
    snprintf(what, sizeof what, "%d keys / 1 key, check off <= 1.2x (medians)", k);
    target(what, many[lib_off].valid && one[lib_off].valid,
           many[lib_off].median / one[lib_off].median, "x",
           many[lib_off].median <= 1.2 * one[lib_off].median);
    snprintf(what, sizeof what, "%d keys / 1 key, check on <= 1.2x (medians)", k);
    target(what, many[lib_on].valid && one[lib_on].valid,
           many[lib_on].median / one[lib_on].median, "x",
           many[lib_on].median <= 1.2 * one[lib_on].median);
    if (have_skip) {
        snprintf(what, sizeof what, "%d keys / 1 key, check on + skip recent <= 1.2x (medians)",
                 k);
        target(what, many[lib_skip].valid && one[lib_skip].valid,
               many[lib_skip].median / one[lib_skip].median, "x",
               many[lib_skip].median <= 1.2 * one[lib_skip].median);
    }
    target("2 threads, different keys: throughput / 1 thread's >= 1", diff[lib_off].valid,
           diff[lib_off].vs_1thread, "x", diff[lib_off].vs_1thread >= 1.0);
    printf("  %-68s %12s  %s\n", "end to end (demo proxy): pool on >= 3x pool off", "-",
           "measured by bench/e2e.sh (demo proxy, ~30 s)");
    if (have_skip)
        printf("('skip recent': an explicit, non-default option; in these loops a connection is\n"
               " re-acquired microseconds after its release, so it skips the recv on every\n"
               " acquire: the busy-proxy case it is for, and its best case. The seed design\n"
               " checks every acquire.)\n");
}

/* ------------------------------------------------------------------------------------ */
/* callgrind mode: each contender's loop between two client requests                     */
/* ------------------------------------------------------------------------------------ */

static void run_callgrind(const struct scenario *scs, int nsc)
{
#ifndef BENCH_HAVE_CALLGRIND
    (void)scs;
    (void)nsc;
    DIE("built without <valgrind/callgrind.h>: --callgrind is unavailable");
#else
    if (!RUNNING_ON_VALGRIND)
        fprintf(stderr, "connpool_bench: --callgrind outside valgrind only runs the loops\n");
    for (int si = 0; si < nsc; si++) {
        const struct scenario *s = &scs[si];
        for (int i = 0; i < ncs; i++) {
            if (cs[i].skip)
                continue;
            void *pool = cs[i].create(cs[i].arg, keys, s->nkeys);
            if (pool == NULL)
                DIE("%s (%s): could not create a pool", cs[i].name, cs[i].variant);
            fill(&cs[i], pool, s);
            /* Warm: every key once (first-touch allocations), then count. */
            run_pairs(&cs[i], pool, keys, s->nkeys, s->nkeys > 100 ? s->nkeys : 100);
            char label[160];
            snprintf(label, sizeof label, "bench scenario=%s pairs=%ld contender=%s|%s", s->id,
                     s->pairs, cs[i].name, cs[i].variant);
            uint64_t t0 = now_ns();
            CALLGRIND_ZERO_STATS;
            run_pairs(&cs[i], pool, keys, s->nkeys, s->pairs);
            CALLGRIND_DUMP_STATS_AT(label);
            double ms = (double)(now_ns() - t0) / 1e6;
            drain(&cs[i], pool, s);
            cs[i].destroy(pool);
            printf("callgrind: %s\n", label);
#ifdef CONNPOOL_CHECK_SKIP_RECENT
            /* Under valgrind a pair is far slower: a connection may come back after more than
             * the skip window, and then it is checked, unlike at full speed. */
            double back_ms = ms * (s->nkeys > 1 ? s->nkeys : 1) / (double)s->pairs;
            int skips = (cs[i].family == FAM_LIB || cs[i].family == FAM_ALT) &&
                        (cs[i].arg & LIB_SKIP_RECENT);
            if (skips && back_ms >= CONNPOOL_SKIP_RECENT_MS / 2.0)
                printf("callgrind: note: %s|%s, %s: connections came back after ~%.0f ms\n"
                       "  on average under valgrind (skip window %d ms), so some of its acquires\n"
                       "  may have been checked, unlike at full speed: compare its count with the\n"
                       "  check-off row's (~the same: none was) and the recv-peek row's (all were)\n",
                       cs[i].name, cs[i].variant, s->id, back_ms, (int)CONNPOOL_SKIP_RECENT_MS);
#else
            (void)ms;
#endif
        }
    }
#endif
}

/* ------------------------------------------------------------------------------------ */

static void print_header(void)
{
    struct utsname u;
    uname(&u);
    time_t t = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
    printf("connpool_bench: libconnpool %s (header %s), %s\n", connpool_version(),
           CONNPOOL_VERSION, date);
    printf("machine: %ld online CPUs, %s %s %s\n", sysconf(_SC_NPROCESSORS_ONLN), u.sysname,
           u.release, u.machine);
    printf("pools: 8 idle per key, 60 s idle timeout honoured (apr: the ttl variant), real\n"
           "loopback TCP connections; %d rounds, contenders interleaved (rotating order).\n",
           opt.rounds);
    printf("columns: median/p10/p90 over rounds of ns per pair; 'vs libcp' = median of the\n"
           "per-round ratio (this row / libconnpool with the same check setting): > 1 means\n"
           "libconnpool is faster. Threads: aggregate ns per pair (wall / all pairs);\n"
           "'vs 1 thr' = throughput / the same pool's 1-thread throughput, same round.\n");
    if (opt.quick)
        printf("QUICK RUN (smoke test): the figures are not meaningful.\n");
    for (int i = 0; i < ncs; i++)
        if (cs[i].skip && cs[i].family == FAM_APR) {
            printf("apr_reslist: %s\n", cs[i].skip);
            break;
        }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    const contender *all_cs;
    ncs = contenders_init(&all_cs);
    if (ncs > MAX_CONTENDERS)
        DIE("too many contenders");
    static contender selected[MAX_CONTENDERS];
    for (int i = 0; i < ncs; i++) {
        selected[i] = all_cs[i];
        if (all_cs[i].family != FAM_NONE && !all_cs[i].skip && !listed(opt.only, all_cs[i].name))
            selected[i].skip = "not selected (--only)";
    }
    cs = selected;

    long fds = raise_fd_limit();
    if (opt.keys + 64 > fds) {
        fprintf(stderr, "connpool_bench: RLIMIT_NOFILE is %ld: %d keys instead of %d\n", fds,
                (int)(fds - 64), opt.keys);
        opt.keys = (int)(fds - 64);
    }
    long many_pairs = opt.pairs < 2L * opt.keys ? 2L * opt.keys : opt.pairs;
    many_pairs -= many_pairs % opt.keys; /* whole sweeps over the keys */

    struct scenario scs[NSCEN] = {
        [SC_ONE] = {"1key", "1 key, 1 thread", 1, 1, 1, 1, opt.pairs},
        [SC_MANY] = {"manykeys", NULL, opt.keys, 1, 1, 0, many_pairs},
        [SC_SAME] = {"2thr-same", "2 threads, same key", 1, 2, 2, 1, opt.pairs},
        [SC_DIFF] = {"2thr-diff", "2 threads, different keys", 2, 1, 2, 0, opt.pairs},
    };
    char many_title[64];
    snprintf(many_title, sizeof many_title, "%d keys (1 idle fd each, cycled), 1 thread",
             opt.keys);
    scs[SC_MANY].title = many_title;

    keys_make(opt.keys);
    conns_open(opt.keys);

    if (opt.callgrind) {
        run_callgrind(scs, 2);
    } else {
        print_header();
        run_primitives();
        for (int s = 0; s < NSCEN; s++)
            if (listed(opt.scenarios, scs[s].id))
                run_scenario(s, &scs[s]);
        print_watch_cost(scs);
        print_targets();
    }
    conns_close();
    contenders_fini();
    return 0;
}
