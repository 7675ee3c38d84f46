/* demo: libconnpool inside a real proxy, measured, in one command.
 *
 *   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2 && ./build/demo
 *
 * Starts backends that close keep-alive connections idle for a few hundred ms (like real
 * servers, only sooner), starts the proxy in front of them, and drives it with loadgen in
 * bursts separated by pauses longer than that idle timeout, so that every pause kills
 * the pooled connections. It does so three times: with the pool; with the pool behind
 * backends that do not announce their timeout (the pool must then detect the closed
 * connections); and with --no-pool. Then three TLS runs (see kinds[] below): TLS 1.3 to
 * the backends with the pool, with the pool but its default check, and without the pool,
 * counting the proxy's TLS handshakes. Then two runs against one backend that counts its
 * connections open at once: the proxy with max_conns_per_key = --limit N (the backend has
 * --max-conns N: more open at once fails), and without, to show what the backend would
 * have had. It prints a table for each kind of run (about 32 s).
 *
 * Every process it starts is stopped before it exits, also on error and on Ctrl-C. Exits
 * 1 if any request failed or a check failed, 77 if the proxy wrapper reported "skipped",
 * 0 otherwise. Options (for the tests; the defaults are the demo):
 *   --runs pool,pool-silent,harvest,no-pool,tls,tls-naive,tls-no-pool,limit,no-limit
 *   --seconds S  --connections C  --backends B (not the limit runs': one)  --limit N
 *   --idle-ms N  --max-requests N  --size BYTES  --bursts K  --pause-ms P
 *   --framing length|chunked|close|mixed
 *   --drop-every N           backends drop every Nth request on a used connection unanswered:
 *                            pool runs must then show retries, and still 0 failed requests
 *   --check-max-accepted N   fail if a backend accepted more than N connections in a pool run
 *   --check-hits             fail if a pool run had no pool hit
 * Always judged (demo_report.c): no failed request; TLS with the pool: handshakes <= backend
 * connections (and < requests / 10 when responses keep their connections), no connection
 * called dead, tickets read by the check; with the recv-peek check: connections called
 * dead; TLS without the pool: one handshake per request; with the limit: the backend never
 * had more than N connections open, and the proxy gave every connection and slot back.
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

#include "demo.h"
#include "spawn.h"

#define MAX_BACKENDS 8
#define MAX_WRAPPER 16
#define READY_MS 10000          /* a backend or the proxy starting */
#define WRAPPED_READY_MS 120000 /* the proxy starting under valgrind */
#define STOP_MS 30000           /* a process stopping after SIGTERM (valgrind writes its log) */

/* The TLS runs: the backends serve TLS 1.3 (--tls), send their session ticket after a
 * connection's first response (--late-ticket: so that it arrives while the connection is
 * idle in the proxy's pool) and keep idle connections open (--idle-ms 0: then every
 * connection the pool calls dead was healthy). The proxy talks TLS to them
 * (--backend-tls), with the TLS-aware check or (--naive-check) the pool's default one. */
static const struct kind kinds[] = {
    {"pool", "pool", 1, 1, 0, 0, 0, 0, 0},
    {"pool-silent", "pool, timeout not announced", 1, 0, 0, 0, 0, 0, 0},
    {"harvest", "  the same, harvest check", 1, 0, 0, 0, 0, 0, 1},
    {"no-pool", "--no-pool", 0, 1, 0, 0, 0, 0, 0},
    {"tls", "TLS, pool", 1, 1, 1, 0, 0, 0, 0},
    {"tls-naive", "TLS, pool, recv-peek check", 1, 1, 1, 1, 0, 0, 0},
    {"tls-no-pool", "TLS, --no-pool", 0, 1, 1, 0, 0, 0, 0},
    {"limit", "pool, limit per backend", 1, 1, 0, 0, 1, 1, 0},
    {"no-limit", "pool, no limit", 1, 1, 0, 0, 1, 0, 0},
};
#define MAX_ROWS 16

static struct {
    const char *runs;
    double seconds;
    int connections, backends, idle_ms, max_requests, size, bursts, pause_ms;
    const char *framing;
    int drop_every;
    long long check_max_accepted;
    int check_hits;
    int limit;
    char *wrapper[MAX_WRAPPER];
    int nwrapper;
    char **client; /* argv of the --client command, NULL-terminated */
} opt = {"pool,pool-silent,harvest,no-pool,tls,tls-naive,tls-no-pool,limit,no-limit", 4, 16, 2, 300, 1000, 1024, 4, 400, "length",
         0, -1, 0, 4, {0}, 0, NULL};

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

/* Start nb backends; k NULL: plain, announcing their timeout. */
static void start_backends(int nb, const struct kind *k)
{
    int keep_alive_header = k == NULL || k->keep_alive_header, tls = k != NULL && k->tls;
    for (int i = 0; i < nb; i++) {
        char *argv[20] = {program("backend"), "--idle-ms", num(tls ? 0 : opt.idle_ms), "--max-requests",
                          num(opt.max_requests), "--size", num(opt.size), "--framing", (char *)opt.framing};
        int n = 9;
        if (!keep_alive_header)
            argv[n++] = "--no-keep-alive-header";
        if (tls) {
            argv[n++] = "--tls";
            argv[n++] = "--late-ticket";
        }
        if (opt.drop_every > 0) {
            argv[n++] = "--drop-every";
            argv[n++] = num(opt.drop_every);
        }
        if (k != NULL && k->counted) /* the limit runs: --max-conns N, or count only */
            argv[n++] = k->limit ? "--max-conns" : "--count-conns";
        if (k != NULL && k->limit)
            argv[n++] = num(opt.limit);
        if (spawn_start(&backends[i], "backend", argv) != 0 || spawn_wait_ready(&backends[i], READY_MS) != 0)
            die("backend %d did not start", i + 1);
    }
}

/* Stop nb backends and fill row's backend figures. */
static void stop_backends(int nb, struct row *row)
{
    row->accepted = row->accepted_max = row->dropped = 0;
    row->open_max = -1;
    for (int i = 0; i < nb; i++) {
        /* 3: a backend with --max-conns had more open at once: a verdict, not a crash. */
        int stopped = spawn_stop(&backends[i], STOP_MS) == 0, status = backends[i].status;
        int over = stopped && row->kind != NULL && row->kind->limit && status == 3;
        if (!stopped || (status != 0 && !over))
            die("backend %d did not exit cleanly", i + 1);
        row->over_limit |= over;
        long long a = spawn_field(&backends[i], "backend:", "accepted");
        long long m = spawn_field(&backends[i], "backend:", "max_open");
        row->accepted += a;
        row->accepted_max = a > row->accepted_max ? a : row->accepted_max;
        row->open_max = m > row->open_max ? m : row->open_max;
        row->dropped += spawn_field(&backends[i], "backend:", "dropped");
    }
}

/* One line of the table: backends, proxy, loadgen; then stop them all. Returns 77 if
 * the proxy's wrapper skipped (valgrind missing), else 0. */
static int run(const struct kind *k, struct row *row)
{
    memset(row, 0, sizeof *row);
    row->kind = k;
    int nb = k->counted ? 1 : opt.backends; /* limit runs: all clients compete for one backend */
    start_backends(nb, k);

    char *argv[MAX_WRAPPER + MAX_BACKENDS + 8];
    int n = 0;
    for (int i = 0; i < opt.nwrapper; i++)
        argv[n++] = opt.wrapper[i];
    argv[n++] = program("proxy");
    if (!k->pool)
        argv[n++] = "--no-pool";
    if (k->tls)
        argv[n++] = "--backend-tls";
    if (k->naive_check)
        argv[n++] = "--naive-check";
    if (k->harvest)
        argv[n++] = "--harvest";
    if (k->limit) {
        argv[n++] = "--max-conns-per-backend";
        argv[n++] = num(opt.limit);
    }
    char addrs[MAX_BACKENDS][32];
    for (int i = 0; i < nb; i++) {
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
    stop_backends(nb, row);

    row->requests = spawn_field(&loadgen, "loadgen:", "requests");
    row->errors = spawn_field(&loadgen, "loadgen:", "errors");
    row->rps = (double)spawn_field(&loadgen, "loadgen:", "rps");
    row->p50_us = spawn_field(&loadgen, "loadgen:", "p50_us");
    row->p99_us = spawn_field(&loadgen, "loadgen:", "p99_us");
    row->retries = spawn_field(&proxy, "proxy:", "retries");
    row->proxy_requests = spawn_field(&proxy, "proxy:", "requests");
    row->handshakes = spawn_field(&proxy, "proxy:", "tls_handshakes");
    row->tickets_in_check = spawn_field(&proxy, "proxy:", "tickets_in_check");
    row->hits = spawn_field(&proxy, "pool:", "hits");
    row->misses = spawn_field(&proxy, "pool:", "misses");
    row->expired = spawn_field(&proxy, "pool:", "expired");
    row->dead = spawn_field(&proxy, "pool:", "dead");
    if (k->limit) {
        row->queued = spawn_field(&proxy, "limit:", "queued");
        row->unavailable = spawn_field(&proxy, "limit:", "unavailable");
        row->held = spawn_field(&proxy, "limit:", "lent") + spawn_field(&proxy, "limit:", "connecting") +
                    spawn_field(&proxy, "limit:", "waiting"); /* < 0: a figure missing */
    }
    const char *mc = strstr(proxy.output, "memcheck:");
    if (mc != NULL)
        snprintf(row->memcheck, sizeof row->memcheck, "%.*s", (int)strcspn(mc, "\n"), mc);
    return 0;
}

/* --client -- CMD...: one backend, CMD... 127.0.0.1:PORT against it; CMD's exit status. */
static int run_client(void)
{
    opt.backends = 1;
    start_backends(1, NULL);
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
    struct row row = {0};
    stop_backends(1, &row);
    printf("demo: %s exited with status %d; the backend accepted %lld connections\n", argv[0], c->status,
           row.accepted);
    return c->status;
}

static void usage(void)
{
    fprintf(stderr, "usage: demo [--runs pool,pool-silent,harvest,no-pool,tls,tls-naive,tls-no-pool,limit,no-limit] [--seconds S]\n"
                    "            [--connections C] [--backends B] [--limit N]\n"
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
        {"limit", required_argument, NULL, 'l'},         {NULL, 0, NULL, 0}};
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
        case 'l': opt.limit = atoi(optarg); break;
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
        opt.connections < 1 || opt.bursts < 1 || opt.limit < 1)
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
    if (strstr(opt.runs, "tls") != NULL)
        printf("TLS runs: the same, but TLS 1.3 to backends that keep idle connections open.\n");
    if (strstr(opt.runs, "limit") != NULL)
        printf("Limit runs: the same against one backend, with and without a limit of %d connections.\n", opt.limit);

    struct row rows[MAX_ROWS];
    int nrows = 0;
    char runs[256];
    snprintf(runs, sizeof runs, "%s", opt.runs);
    for (char *save = NULL, *name = strtok_r(runs, ",", &save); name != NULL; name = strtok_r(NULL, ",", &save)) {
        const struct kind *k = NULL;
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
            if (strcmp(kinds[i].name, name) == 0)
                k = &kinds[i];
        if (k == NULL || nrows == MAX_ROWS)
            usage();
        printf("running: %s ...\n", k->label);
        if (run(k, &rows[nrows]) == 77)
            return 77;
        nrows++;
    }
    report_tables(rows, nrows, opt.limit, opt.connections);
    int keeps = (strcmp(opt.framing, "length") == 0 || strcmp(opt.framing, "chunked") == 0) &&
                (opt.max_requests == 0 || opt.max_requests >= 100) && (opt.drop_every == 0 || opt.drop_every >= 100);
    struct checks chk = {opt.check_max_accepted, opt.check_hits, opt.drop_every, keeps, opt.limit,
                         2LL * opt.connections};
    return report_verdicts(rows, nrows, &chk);
}
