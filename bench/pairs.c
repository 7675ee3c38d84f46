/* connpool_bench: ns per acquire+release pair, libconnpool against its baselines, all in
 * one run, rounds interleaved, on real connected loopback TCP sockets (and, for 1,000,000
 * keys, on fd numbers the pools never touch); memory per key; the speed targets judged.
 * See BENCHMARKS.md.
 *
 *   connpool_bench [--rounds R] [--pairs N] [--keys K] [--big-keys K] [--quick] [--callgrind]
 *
 * Every contender runs through the same loop (one indirect call per acquire and per
 * release): scenarios.c. The connections: conns.c; the primitives and the callgrind mode:
 * prims.c; memory per key: memory.c; the watcher table and the targets: report.c. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "connpool.h"

struct options opt = {.rounds = 21, .pairs = 100000, .keys = 10000, .big_keys = 1000000,
                      .big_rounds = 5};

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int listed(const char *list, const char *word)
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
            "usage: connpool_bench [--rounds R] [--pairs N] [--keys K] [--big-keys K]\n"
            "                      [--big-rounds R] [--quick] [--callgrind]\n"
            "                      [--only NAMES] [--scenarios IDS]\n"
            "  --rounds R      timed rounds per scenario (default 21)\n"
            "  --pairs N       acquire+release pairs per round and contender (default 100000)\n"
            "  --keys K        keys of the many-keys scenario (default 10000)\n"
            "  --big-keys K    keys of the big scenario and the memory table (default 1000000)\n"
            "  --big-rounds R  rounds (one sweep over the keys each) of the big scenario (5)\n"
            "  --quick         a smoke run: 3 rounds of 2000 pairs, 1000 and 5000 keys\n"
            "                  (figures meaningless)\n"
            "  --only NAMES    contenders whose name starts with one of these (comma-separated),\n"
            "                  e.g. --only libconnpool,C,rust (the harness row always runs)\n"
            "  --scenarios IDS only these of 1key,manykeys,bigkeys,memory,2thr-same,2thr-diff\n"
            "  --callgrind     no timing: run each contender's loop between callgrind dumps\n"
            "                  (used by bench/callgrind.sh)\n"
            "  --sharing       no timing: two threads' turns on two keys, for\n"
            "                  bench/sharing.sh (valgrind's lackey: cache lines both write)\n"
            "environment: CONNPOOL_BENCH_ALT_LIB=/path/to/libconnpool.so adds that build as\n"
            "  more contenders (dlopen), to compare a candidate change in the same run\n");
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
        int more = i + 1 < argc;
        if (strcmp(a, "--quick") == 0) {
            opt.quick = 1;
            opt.rounds = 3;
            opt.pairs = 2000;
            opt.keys = 1000;
            opt.big_keys = 5000;
            opt.big_rounds = 2;
        } else if (strcmp(a, "--callgrind") == 0) {
            opt.callgrind = 1;
        } else if (strcmp(a, "--sharing") == 0) {
            opt.sharing = 1;
        } else if (strcmp(a, "--only") == 0 && more) {
            opt.only = argv[++i];
        } else if (strcmp(a, "--scenarios") == 0 && more) {
            opt.scenarios = argv[++i];
        } else if (strcmp(a, "--rounds") == 0 && more) {
            opt.rounds = (int)parse_num(argv[++i], 1);
        } else if (strcmp(a, "--pairs") == 0 && more) {
            opt.pairs = parse_num(argv[++i], 1);
        } else if (strcmp(a, "--keys") == 0 && more) {
            opt.keys = (int)parse_num(argv[++i], 2);
        } else if (strcmp(a, "--big-keys") == 0 && more) {
            opt.big_keys = (int)parse_num(argv[++i], 2);
        } else if (strcmp(a, "--big-rounds") == 0 && more) {
            opt.big_rounds = (int)parse_num(argv[++i], 1);
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            usage(stderr);
            exit(2);
        }
    }
    if (opt.rounds > 256 || opt.big_rounds > 256)
        DIE("at most 256 rounds");
    /* Under valgrind, make only the keys and connections these modes use. */
    if (opt.callgrind)
        opt.big_keys = opt.keys;
    if (opt.sharing)
        opt.keys = opt.big_keys = 2;
}

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
    printf("pools: 8 idle per key, 60 s idle timeout honoured (apr: the ttl variant; pingora:\n"
           "none), real loopback TCP connections; %d rounds, contenders interleaved (rotating\n"
           "order).\n",
           opt.rounds);
    printf("columns: median/p10/p90 over rounds of ns per pair; 'vs libcp' = median of the\n"
           "per-round ratio (this row / libconnpool's row of the same key form, string or\n"
           "handle, and check setting): > 1 means libconnpool is faster. Threads: aggregate\n"
           "ns per pair (wall / all pairs); 'vs 1 thr' = throughput / the same pool's\n"
           "1-thread throughput, same round.\n");
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

    keys_make(opt.keys > opt.big_keys ? opt.keys : opt.big_keys);
    conns_open(opt.keys);

    struct scenario scs[NSCEN] = {
        [SC_ONE] = {"1key", "1 key, 1 thread", 1, 1, 1, 1, opt.pairs, conn_fds, NULL, 0},
        [SC_MANY] = {"manykeys", NULL, opt.keys, 1, 1, 0, many_pairs, conn_fds, NULL, 0},
        [SC_BIG] = {"bigkeys", NULL, opt.big_keys, 1, 1, 0, opt.big_keys, NULL, NULL, 1, 0, NULL},
        [SC_SAME] = {"2thr-same", "2 threads, same key", 1, 2, 2, 1, opt.pairs, conn_fds, NULL, 0},
        [SC_DIFF] = {"2thr-diff", "2 threads, different keys", 2, 1, 2, 0, opt.pairs, conn_fds,
                     NULL, 0},
    };
    char many_title[64], big_title[64];
    snprintf(many_title, sizeof many_title, "%d keys (1 idle fd each, cycled), 1 thread",
             opt.keys);
    snprintf(big_title, sizeof big_title, "%d keys (1 idle fd each, cycled), 1 thread",
             opt.big_keys);
    scs[SC_MANY].title = many_title;
    scs[SC_BIG].title = big_title;

    if (opt.callgrind) {
        run_callgrind(scs, 2);
    } else if (opt.sharing) {
        run_sharing(opt.pairs);
    } else {
        print_header();
        run_primitives();
        for (int s = 0; s < NSCEN; s++) {
            if (s == SC_BIG) {
                /* Memory first, in child processes, before this process's library has
                 * seen the big scenario's fd numbers (its fd registry is per process). */
                if (listed(opt.scenarios, "memory"))
                    run_memory();
                if (!listed(opt.scenarios, scs[s].id))
                    continue;
                const char *how;
                scs[s].fds = big_fds_make(opt.big_keys, &how, &scs[s].fds_open);
                printf("\n(%s:\n fds: %s;\n", scs[s].title, how);
                scs[s].fds_handle = big_fds_make(opt.big_keys, &how, &scs[s].fds_open);
                printf(" libconnpool's handle rows: %s)\n", how);
                scs[s].order = keys_shuffled(opt.big_keys);
                run_scenario(s, &scs[s]);
                free(scs[s].order);
                big_fds_free(scs[s].fds_handle, opt.big_keys);
                big_fds_free(scs[s].fds, opt.big_keys);
            } else if (listed(opt.scenarios, scs[s].id)) {
                run_scenario(s, &scs[s]);
            }
        }
        print_watch_cost(scs);
        print_targets();
    }
    conns_close();
    contenders_fini();
    return 0;
}
