/* demo: libconnpool inside a real proxy, measured, in one command.
 *
 *   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2 && ./build/demo
 *
 * Starts backends that close keep-alive connections idle for a few hundred ms (like real
 * servers, only sooner), starts the proxy in front of them, and drives it with loadgen in
 * bursts separated by pauses longer than that idle timeout, so that every pause kills
 * the pooled connections. It does so three times: with the pool; with the pool behind
 * backends that do not announce their timeout (the pool must then detect the closed
 * connections); and with --no-pool. Then it prints one table.
 *
 * Every process it starts is stopped before it exits, also on error and on Ctrl-C. Exits
 * 1 if any request failed or a check failed, 77 if the proxy wrapper reported "skipped",
 * 0 otherwise. Options (for the tests; the defaults are the demo):
 *   --runs pool,pool-silent,no-pool  --seconds S  --connections C  --backends B
 *   --idle-ms N  --max-requests N  --size BYTES  --bursts K  --pause-ms P
 *   --framing length|chunked|close|mixed
 *   --drop-every N           backends drop every Nth request on a used connection unanswered:
 *                            pool runs must then show retries, and still 0 failed requests
 *   --check-max-accepted N   fail if a backend accepted more than N connections in a pool run
 *   --check-hits             fail if a pool run had no pool hit
 *   --proxy-wrapper ARG      prefix the proxy's command line (repeat: valgrind ...)
 *   --client -- CMD [ARGS]   instead: start one backend, run CMD ARGS 127.0.0.1:PORT, stop
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spawn.h"

#define MAX_BACKENDS 8
#define MAX_WRAPPER 16
#define READY_MS 10000          /* a backend or the proxy starting */
#define WRAPPED_READY_MS 120000 /* the proxy starting under valgrind */
#define STOP_MS 30000           /* a process stopping after SIGTERM (valgrind writes its log) */

struct kind {
    const char *name, *label;
    int pool;              /* proxy with the pool */
    int keep_alive_header; /* backends announce their idle timeout */
};

static const struct kind kinds[] = {
    {"pool", "pool", 1, 1},
    {"pool-silent", "pool, timeout not announced", 1, 0},
    {"no-pool", "--no-pool", 0, 1},
};

struct row {
    const struct kind *kind;
    long long requests, errors, p50_us, p99_us, accepted, accepted_max, dropped;
    long long hits, misses, expired, dead, retries;
    double rps;
    char memcheck[160]; /* the proxy wrapper's verdict line, if any */
};

static struct {
    const char *runs;
    double seconds;
    int connections, backends, idle_ms, max_requests, size, bursts, pause_ms;
    const char *framing;
    int drop_every;
    long long check_max_accepted;
    int check_hits;
    char *wrapper[MAX_WRAPPER];
    int nwrapper;
    char **client; /* argv of the --client command, NULL-terminated */
} opt = {"pool,pool-silent,no-pool", 4, 16, 2, 300, 1000, 1024, 4, 400, "length", 0, -1, 0, {0}, 0, NULL};

static char bindir[PATH_MAX];
static struct child backends[MAX_BACKENDS], proxy, loadgen;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    if (spawn_interrupted()) {
        fprintf(stderr, "demo: interrupted: stopping everything it started\n");
    } else {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "demo: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
    spawn_kill_all();
    exit(spawn_interrupted() ? 130 : 1);
}

/* The path of one of the demo's programs; they are built next to this one. */
static char *program(const char *name)
{
    static char paths[4][PATH_MAX + 16];
    static int next;
    char *p = paths[next++ % 4];
    if ((size_t)snprintf(p, sizeof paths[0], "%s/%s", bindir, name) >= sizeof paths[0])
        die("path too long");
    return p;
}

static char *num(long long v)
{
    static char bufs[16][24];
    static int next;
    char *p = bufs[next++ % 16];
    snprintf(p, 24, "%lld", v);
    return p;
}

static void start_backends(int keep_alive_header)
{
    for (int i = 0; i < opt.backends; i++) {
        char *argv[16] = {program("backend"), "--idle-ms", num(opt.idle_ms), "--max-requests",
                          num(opt.max_requests), "--size", num(opt.size), "--framing", (char *)opt.framing};
        int n = 9;
        if (!keep_alive_header)
            argv[n++] = "--no-keep-alive-header";
        if (opt.drop_every > 0) {
            argv[n++] = "--drop-every";
            argv[n++] = num(opt.drop_every);
        }
        if (spawn_start(&backends[i], "backend", argv) != 0 || spawn_wait_ready(&backends[i], READY_MS) != 0)
            die("backend %d did not start", i + 1);
    }
}

static void stop_backends(long long *accepted, long long *accepted_max, long long *dropped)
{
    *accepted = *accepted_max = *dropped = 0;
    for (int i = 0; i < opt.backends; i++) {
        if (spawn_stop(&backends[i], STOP_MS) != 0 || backends[i].status != 0)
            die("backend %d did not exit cleanly", i + 1);
        long long a = spawn_field(&backends[i], "backend:", "accepted");
        *accepted += a;
        if (a > *accepted_max)
            *accepted_max = a;
        *dropped += spawn_field(&backends[i], "backend:", "dropped");
    }
}

/* One line of the table: backends, proxy, loadgen; then stop them all. Returns 77 if
 * the proxy's wrapper skipped (valgrind missing), else 0. */
static int run(const struct kind *k, struct row *row)
{
    memset(row, 0, sizeof *row);
    row->kind = k;
    start_backends(k->keep_alive_header);

    char *argv[MAX_WRAPPER + MAX_BACKENDS + 4];
    int n = 0;
    for (int i = 0; i < opt.nwrapper; i++)
        argv[n++] = opt.wrapper[i];
    argv[n++] = program("proxy");
    if (!k->pool)
        argv[n++] = "--no-pool";
    char addrs[MAX_BACKENDS][32];
    for (int i = 0; i < opt.backends; i++) {
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", backends[i].port);
        argv[n++] = addrs[i];
    }
    argv[n] = NULL;
    if (spawn_start(&proxy, "proxy", argv) != 0)
        die("cannot start the proxy");
    if (spawn_wait_ready(&proxy, opt.nwrapper ? WRAPPED_READY_MS : READY_MS) != 0) {
        if (!proxy.running && proxy.status == 77) { /* e.g. tests/valgrind.sh without valgrind */
            fputs(proxy.output, stdout);
            spawn_kill_all();
            return 77;
        }
        fputs(proxy.output, stderr);
        die("the proxy did not start");
    }

    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", proxy.port);
    char *lg[] = {program("loadgen"), "-c", num(opt.connections), "-d", num((long long)opt.seconds), "--bursts",
                  num(opt.bursts), "--pause-ms", num(opt.pause_ms), "--timeout-ms", "10000", target, NULL};
    char seconds[32];
    snprintf(seconds, sizeof seconds, "%g", opt.seconds);
    lg[4] = seconds;
    if (spawn_start(&loadgen, "loadgen", lg) != 0)
        die("cannot start loadgen");
    if (spawn_wait_exit(&loadgen, (int)(opt.seconds * 1000) + 60000) != 0)
        die("loadgen did not finish");
    if (loadgen.status > 1 || spawn_field(&loadgen, "loadgen:", "requests") < 0) {
        fputs(loadgen.output, stderr);
        die("loadgen failed (exit status %d)", loadgen.status);
    }

    if (spawn_stop(&proxy, STOP_MS) != 0 || proxy.status != 0) {
        fputs(proxy.output, stderr);
        die("the proxy did not exit cleanly (status %d)", proxy.status);
    }
    stop_backends(&row->accepted, &row->accepted_max, &row->dropped);

    row->requests = spawn_field(&loadgen, "loadgen:", "requests");
    row->errors = spawn_field(&loadgen, "loadgen:", "errors");
    row->rps = (double)spawn_field(&loadgen, "loadgen:", "rps");
    row->p50_us = spawn_field(&loadgen, "loadgen:", "p50_us");
    row->p99_us = spawn_field(&loadgen, "loadgen:", "p99_us");
    row->retries = spawn_field(&proxy, "proxy:", "retries");
    row->hits = spawn_field(&proxy, "pool:", "hits");
    row->misses = spawn_field(&proxy, "pool:", "misses");
    row->expired = spawn_field(&proxy, "pool:", "expired");
    row->dead = spawn_field(&proxy, "pool:", "dead");
    const char *mc = strstr(proxy.output, "memcheck:");
    if (mc != NULL)
        snprintf(row->memcheck, sizeof row->memcheck, "%.*s", (int)strcspn(mc, "\n"), mc);
    return 0;
}

/* --client -- CMD...: one backend, CMD... 127.0.0.1:PORT against it; CMD's exit status. */
static int run_client(void)
{
    opt.backends = 1;
    start_backends(1);
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", backends[0].port);
    char *argv[64];
    int n = 0;
    while (opt.client[n] != NULL && n < 62) {
        argv[n] = opt.client[n];
        n++;
    }
    argv[n++] = target;
    argv[n] = NULL;
    struct child *c = &loadgen;
    if (spawn_start(c, "client", argv) != 0 || spawn_wait_exit(c, 120000) != 0)
        die("%s did not finish", argv[0]);
    fputs(c->output, stdout);
    long long accepted, max, dropped;
    stop_backends(&accepted, &max, &dropped);
    printf("demo: %s exited with status %d; the backend accepted %lld connections\n", argv[0], c->status,
           accepted);
    return c->status;
}

static const char *dash_or(long long v, int pool)
{
    return pool ? num(v) : "-";
}

static void print_table(const struct row *rows, int nrows)
{
    printf("\n%-28s %8s %8s %8s %7s %9s %8s %7s %8s %6s %8s\n", "", "req/s", "p50 ms", "p99 ms", "failed",
           "backend", "pool", "misses", "expired", "dead", "retries");
    printf("%-28s %8s %8s %8s %7s %9s %8s\n", "", "", "", "", "", "conns", "hits");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        int pool = r->kind->pool;
        printf("%-28s %8.0f %8.2f %8.2f %7lld %9lld %8s", r->kind->label, r->rps, (double)r->p50_us / 1000.0,
               (double)r->p99_us / 1000.0, r->errors, r->accepted, dash_or(r->hits, pool));
        printf(" %7s", dash_or(r->misses, pool));
        printf(" %8s", dash_or(r->expired, pool));
        printf(" %6s", dash_or(r->dead, pool));
        printf(" %8s\n", dash_or(r->retries, pool));
    }
    for (int i = 0; i < nrows; i++)
        if (rows[i].memcheck[0])
            printf("%s: proxy %s\n", rows[i].kind->label, rows[i].memcheck);
    const struct row *with = NULL, *without = NULL;
    for (int i = 0; i < nrows; i++) {
        if (rows[i].kind->pool && with == NULL)
            with = &rows[i];
        if (!rows[i].kind->pool && without == NULL)
            without = &rows[i];
    }
    if (with && without && without->rps > 0 && with->accepted > 0)
        printf("\nWith the pool: %.1fx the requests/s and %.0fx fewer backend connections than without.\n",
               with->rps / without->rps, (double)without->accepted / (double)with->accepted);
}

static void usage(void)
{
    fprintf(stderr, "usage: demo [--runs pool,pool-silent,no-pool] [--seconds S] [--connections C] [--backends B]\n"
                    "            [--idle-ms N] [--max-requests N] [--size BYTES] [--bursts K] [--pause-ms P]\n"
                    "            [--framing F] [--drop-every N] [--check-max-accepted N] [--check-hits] [--proxy-wrapper ARG]...\n"
                    "            [--client -- CMD [ARGS...]]\n");
    exit(2);
}

static void parse_options(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"runs", required_argument, NULL, 'r'},          {"seconds", required_argument, NULL, 's'},
        {"connections", required_argument, NULL, 'c'},   {"backends", required_argument, NULL, 'b'},
        {"idle-ms", required_argument, NULL, 'i'},       {"max-requests", required_argument, NULL, 'm'},
        {"size", required_argument, NULL, 'z'},          {"bursts", required_argument, NULL, 'k'},
        {"pause-ms", required_argument, NULL, 'p'},      {"framing", required_argument, NULL, 'f'},
        {"drop-every", required_argument, NULL, 'd'},
        {"check-max-accepted", required_argument, NULL, 'a'}, {"check-hits", no_argument, NULL, 'h'},
        {"proxy-wrapper", required_argument, NULL, 'w'}, {"client", no_argument, NULL, 'C'},
        {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'r': opt.runs = optarg; break;
        case 's': opt.seconds = atof(optarg); break;
        case 'c': opt.connections = atoi(optarg); break;
        case 'b': opt.backends = atoi(optarg); break;
        case 'i': opt.idle_ms = atoi(optarg); break;
        case 'm': opt.max_requests = atoi(optarg); break;
        case 'z': opt.size = atoi(optarg); break;
        case 'k': opt.bursts = atoi(optarg); break;
        case 'p': opt.pause_ms = atoi(optarg); break;
        case 'f': opt.framing = optarg; break;
        case 'd': opt.drop_every = atoi(optarg); break;
        case 'a': opt.check_max_accepted = atoll(optarg); break;
        case 'h': opt.check_hits = 1; break;
        case 'w':
            if (opt.nwrapper == MAX_WRAPPER)
                usage();
            opt.wrapper[opt.nwrapper++] = optarg;
            break;
        case 'C': opt.client = argv; break; /* the command follows "--" */
        default: usage();
        }
    }
    if (opt.client != NULL) {
        if (optind >= argc)
            usage();
        opt.client = argv + optind;
    } else if (optind != argc) {
        usage();
    }
    if (opt.backends < 1 || opt.backends > MAX_BACKENDS || opt.seconds <= 0 ||
        opt.connections < 1 || opt.bursts < 1)
        usage();
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    spawn_init();
    /* The other programs are built next to this one. */
    ssize_t len = readlink("/proc/self/exe", bindir, sizeof bindir - 1);
    if (len <= 0)
        die("readlink /proc/self/exe: %s", strerror(errno));
    bindir[len] = '\0';
    *strrchr(bindir, '/') = '\0'; /* /proc/self/exe is an absolute path */

    if (opt.client != NULL)
        return run_client();

    printf("libconnpool demo: %d backend%s closing keep-alive connections after %d ms idle", opt.backends,
           opt.backends > 1 ? "s" : "", opt.idle_ms);
    if (opt.max_requests > 0)
        printf(" and after %d requests", opt.max_requests);
    printf(";\nloadgen: %d connections, %g s per run", opt.connections, opt.seconds);
    if (opt.bursts > 1)
        printf(" in %d bursts with %d ms pauses", opt.bursts, opt.pause_ms);
    printf("; %d-byte responses.\n", opt.size);

    struct row rows[8];
    int nrows = 0;
    char runs[256];
    snprintf(runs, sizeof runs, "%s", opt.runs);
    for (char *save = NULL, *name = strtok_r(runs, ",", &save); name != NULL; name = strtok_r(NULL, ",", &save)) {
        const struct kind *k = NULL;
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
            if (strcmp(kinds[i].name, name) == 0)
                k = &kinds[i];
        if (k == NULL || nrows == 8)
            usage();
        printf("running: %s ...\n", k->label);
        if (run(k, &rows[nrows]) == 77)
            return 77;
        nrows++;
    }
    print_table(rows, nrows);

    int status = 0;
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        if (r->errors != 0) {
            printf("FAIL: %s: %lld failed requests\n", r->kind->label, r->errors);
            status = 1;
        }
        if (r->kind->pool && opt.check_max_accepted >= 0 && r->accepted_max > opt.check_max_accepted) {
            printf("FAIL: %s: a backend accepted %lld connections (limit %lld)\n", r->kind->label, r->accepted_max,
                   opt.check_max_accepted);
            status = 1;
        }
        /* Judged on what the backends really dropped: a slow run (valgrind, a loaded
         * machine) may not reach --drop-every requests on a used connection at all. */
        if (r->kind->pool && opt.drop_every > 0 && r->dropped > 0 && r->retries <= 0) {
            printf("FAIL: %s: backends dropped requests, but the proxy retried none\n", r->kind->label);
            status = 1;
        }
        if (r->kind->pool && opt.check_hits && r->hits <= 0) {
            printf("FAIL: %s: no pool hits\n", r->kind->label);
            status = 1;
        }
    }
    return status;
}
