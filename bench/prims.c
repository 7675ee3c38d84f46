/* What a pool cannot avoid, timed in the same run (the same rounds scheme), and the
 * --callgrind mode: each contender's loop between two callgrind client requests. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "connpool.h"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_HAVE_CALLGRIND 1
#endif
#endif

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

void run_primitives(void)
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

/* ---- callgrind mode ---- */

void run_callgrind(const struct scenario *scs, int nsc)
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
            if (!runs_in(&cs[i], s))
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
