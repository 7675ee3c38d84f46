/* loadgen: a closed-loop HTTP/1.1 load generator.
 *
 *   loadgen [-c CONNECTIONS] [-n REQUESTS | -d SECONDS] [--bursts K --pause-ms P]
 *           [--path /PATH] [--timeout-ms N] 127.0.0.1:PORT
 *
 * C keep-alive connections, one thread each; each sends a request, reads the whole
 * response, and sends the next at once (closed loop: the offered load adapts to the
 * server's speed, so latency is not inflated by a queue the generator built itself).
 * The run ends after N requests in total or after T seconds. With --bursts K, the T
 * seconds are K bursts separated by P ms of silence, during which connections stay open
 * and idle: that is when servers close idle keep-alive connections.
 *
 * A request fails on a connection error, a timeout, a truncated or malformed response,
 * or a status other than 2xx. A server that closes after a "Connection: close" response
 * is not an error: loadgen reconnects. Prints one line:
 *   loadgen: requests=N errors=N seconds=S rps=R p50_us=N p99_us=N max_us=N ...
 * and exits 0 if no request failed, 1 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "net.h"

#define MAX_CONNECTIONS 1024
#define MAX_CONSECUTIVE_ERRORS 100 /* a worker gives up: the server is gone */

static struct {
    int connections;
    long requests; /* 0: run for seconds */
    double seconds;
    int bursts;
    int pause_ms;
    const char *path;
    int timeout_ms;
    struct sockaddr_in addr;
} opt = {8, 0, 0, 1, 0, "/", 5000, {0}};

static char request[1024];
static size_t request_len;
static uint64_t start_ns, burst_ns, pause_ns;
static atomic_long issued;      /* -n mode: requests handed out */
static atomic_int errors_shown; /* print the first few failures */
static pthread_barrier_t connected, started;

struct worker {
    pthread_t thread;
    int fd;
    uint32_t *lat; /* latency of each successful request, in microseconds */
    size_t nlat, cap;
    unsigned long long errors, reconnects;
    char buf[65536];
};

static void fail(struct worker *w, const char *what)
{
    w->errors++;
    if (atomic_fetch_add(&errors_shown, 1) < 5)
        fprintf(stderr, "loadgen: request failed: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}

/* May this worker start another request? Sleeps through pauses between bursts. */
static int may_send(void)
{
    if (opt.requests > 0)
        return atomic_fetch_add(&issued, 1) < opt.requests;
    for (;;) {
        uint64_t t = now_ns() - start_ns, period = burst_ns + pause_ns;
        uint64_t k = t / period;
        if (k >= (uint64_t)opt.bursts)
            return 0;
        if (t - k * period < burst_ns)
            return 1;
        if (k + 1 >= (uint64_t)opt.bursts)
            return 0; /* the last pause is not part of the run */
        /* The schedule, not a synchronisation: the load is meant to stop for a while. */
        uint64_t until = start_ns + (k + 1) * period;
        struct timespec ts = {(time_t)(until / 1000000000u), (long)(until % 1000000000u)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
}

/* One request on w->fd; 0 on success (w->fd closed if the server closes it). */
static int one_request(struct worker *w)
{
    struct iovec iov = {request, request_len};
    errno = 0;
    if (net_send_all(w->fd, &iov, 1, opt.timeout_ms, -1) != 0) {
        fail(w, "send");
        return -1;
    }
    size_t got = 0, head_len;
    while ((head_len = http_head_length(w->buf, got)) == 0) {
        ssize_t r = got < HTTP_MAX_HEAD ? net_recv(w->fd, w->buf + got, sizeof w->buf - got, opt.timeout_ms, -1) : 0;
        if (r <= 0) {
            fail(w, r == 0 ? "connection closed before the response" : "recv");
            return -1;
        }
        got += (size_t)r;
    }
    struct http_head h;
    struct http_body body;
    if (http_parse_response(w->buf, head_len, &h) != 0) {
        fail(w, "malformed response head");
        return -1;
    }
    http_body_for_response(&body, &h, 0);
    size_t off = head_len;
    for (;;) {
        ssize_t k = http_body_scan(&body, w->buf + off, got - off);
        if (k < 0) {
            fail(w, "malformed chunked body");
            return -1;
        }
        off += (size_t)k;
        if (body.done)
            break;
        ssize_t r = net_recv(w->fd, w->buf, sizeof w->buf, opt.timeout_ms, -1);
        if (r == 0 && body.framing == HTTP_UNTIL_CLOSE)
            break;
        if (r <= 0) {
            fail(w, r == 0 ? "response truncated" : "recv");
            return -1;
        }
        off = 0;
        got = (size_t)r;
    }
    if (off != got) {
        fail(w, "bytes after the response");
        return -1;
    }
    if (h.status < 200 || h.status > 299) {
        char what[64];
        snprintf(what, sizeof what, "status %d", h.status);
        errno = 0;
        fail(w, what);
        return -1;
    }
    if (!h.keep_alive || body.framing == HTTP_UNTIL_CLOSE) {
        close(w->fd); /* the server closes this connection: not an error */
        w->fd = -1;
    }
    return 0;
}

static int record(struct worker *w, uint64_t ns)
{
    if (w->nlat == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4096;
        uint32_t *p = realloc(w->lat, cap * sizeof *p);
        if (p == NULL)
            return -1;
        w->lat = p;
        w->cap = cap;
    }
    uint64_t us = ns / 1000;
    w->lat[w->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    /* Connect before the clock starts: the run measures requests, not handshakes. */
    w->fd = net_connect(&opt.addr, opt.timeout_ms);
    pthread_barrier_wait(&connected);
    pthread_barrier_wait(&started);
    int consecutive = 0;
    while (consecutive < MAX_CONSECUTIVE_ERRORS && may_send()) {
        if (w->fd < 0) {
            errno = 0;
            w->fd = net_connect(&opt.addr, opt.timeout_ms);
            if (w->fd < 0) {
                fail(w, "connect");
                consecutive++;
                continue;
            }
            w->reconnects++;
        }
        uint64_t t0 = now_ns();
        if (one_request(w) != 0) {
            consecutive++;
            continue;
        }
        consecutive = 0;
        if (record(w, now_ns() - t0) != 0) {
            fail(w, "out of memory");
            break;
        }
    }
    if (w->fd >= 0)
        close(w->fd);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen [-c CONNECTIONS] [-n REQUESTS | -d SECONDS] [--bursts K --pause-ms P]\n"
                    "               [--path /PATH] [--timeout-ms N] 127.0.0.1:PORT\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"connections", required_argument, NULL, 'c'}, {"requests", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},    {"bursts", required_argument, NULL, 'b'},
        {"pause-ms", required_argument, NULL, 'p'},    {"path", required_argument, NULL, 'P'},
        {"timeout-ms", required_argument, NULL, 't'},  {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "c:n:d:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': opt.connections = atoi(optarg); break;
        case 'n': opt.requests = atol(optarg); break;
        case 'd': opt.seconds = atof(optarg); break;
        case 'b': opt.bursts = atoi(optarg); break;
        case 'p': opt.pause_ms = atoi(optarg); break;
        case 'P': opt.path = optarg; break;
        case 't': opt.timeout_ms = atoi(optarg); break;
        default: usage();
        }
    }
    if (optind != argc - 1 || net_parse_addr(argv[optind], &opt.addr) != 0 || opt.connections < 1 ||
        opt.connections > MAX_CONNECTIONS || (opt.requests > 0) == (opt.seconds > 0) || opt.bursts < 1 ||
        opt.pause_ms < 0 || (opt.requests > 0 && opt.bursts > 1))
        usage();
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: loadgen\r\n\r\n", opt.path,
                     argv[optind]);
    if (n < 0 || (size_t)n >= sizeof request)
        usage();
    request_len = (size_t)n;
    pause_ns = (uint64_t)opt.pause_ms * 1000000u;
    uint64_t total_ns = (uint64_t)(opt.seconds * 1e9);
    if (opt.seconds > 0 && total_ns <= (uint64_t)(opt.bursts - 1) * pause_ns) {
        fprintf(stderr, "loadgen: the pauses leave no time for the bursts\n");
        return 2;
    }
    burst_ns = opt.seconds > 0 ? (total_ns - (uint64_t)(opt.bursts - 1) * pause_ns) / (uint64_t)opt.bursts : 0;
    signal(SIGPIPE, SIG_IGN);

    struct worker *w = calloc((size_t)opt.connections, sizeof *w);
    if (w == NULL)
        return 1;
    pthread_barrier_init(&connected, NULL, (unsigned)opt.connections + 1);
    pthread_barrier_init(&started, NULL, (unsigned)opt.connections + 1);
    for (int i = 0; i < opt.connections; i++) {
        int rc = pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
        if (rc != 0) {
            fprintf(stderr, "loadgen: pthread_create: %s\n", strerror(rc));
            return 1; /* the barrier can no longer complete: exit with the threads */
        }
    }
    pthread_barrier_wait(&connected);
    start_ns = now_ns();
    pthread_barrier_wait(&started);

    unsigned long long ok = 0, errors = 0, reconnects = 0;
    for (int i = 0; i < opt.connections; i++) {
        pthread_join(w[i].thread, NULL);
        ok += w[i].nlat;
        errors += w[i].errors;
        reconnects += w[i].reconnects;
    }
    double seconds = (double)(now_ns() - start_ns) / 1e9;
    double active = seconds - (double)(opt.bursts - 1) * opt.pause_ms / 1000.0; /* without the pauses */

    uint32_t *all = malloc((ok ? ok : 1) * sizeof *all);
    if (all == NULL)
        return 1;
    size_t k = 0;
    for (int i = 0; i < opt.connections; i++) {
        memcpy(all + k, w[i].lat, w[i].nlat * sizeof *all);
        k += w[i].nlat;
        free(w[i].lat);
    }
    qsort(all, k, sizeof *all, cmp_u32);
    uint32_t p50 = k ? all[k / 2] : 0, p99 = k ? all[k * 99 / 100] : 0, max = k ? all[k - 1] : 0;
    printf("loadgen: requests=%llu errors=%llu seconds=%.2f rps=%.0f p50_us=%u p99_us=%u max_us=%u "
           "connections=%d reconnects=%llu\n",
           ok, errors, seconds, active > 0 ? (double)ok / active : 0.0, p50, p99, max, opt.connections, reconnects);
    free(all);
    free(w);
    pthread_barrier_destroy(&connected);
    pthread_barrier_destroy(&started);
    return errors == 0 ? 0 : 1;
}
