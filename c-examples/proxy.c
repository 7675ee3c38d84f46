/* proxy: an HTTP/1.1 reverse proxy in C that reuses backend connections through
 * libconnpool.
 *
 *   proxy [--port N] [--no-pool] [--max-idle-per-key N] [--idle-timeout-ms N]
 *         [--client-timeout-ms N] [--backend-tls [--naive-check]]
 *         [--max-conns-per-backend N [--queue-timeout-ms N]] BACKEND...
 *                                                   (BACKEND: 127.0.0.1:PORT)
 *
 * Listens on 127.0.0.1 (port 0 by default: the kernel picks a free one) and prints
 * "proxy: listening on 127.0.0.1:PORT pid PID" when ready. Each client connection gets a
 * thread (blocking I/O keeps the request logic readable top to bottom); all threads share
 * one pool, which is safe: every libconnpool function may be called concurrently.
 * Requests go to the backends round robin. --no-pool opens a backend connection per
 * request, for comparison.
 *
 * --backend-tls talks TLS 1.3 to the backends; each connection's SSL* is pooled with its
 * fd (proxy_upstream.c). --naive-check keeps the pool's default check (recv peek) instead
 * of the TLS-aware one, to show what it does to TLS connections. The TLS handshakes done
 * are counted and printed.
 *
 * --max-conns-per-backend N sets the pool's max_conns_per_key: never more than N
 * connections to a backend (idle, in use or being connected), however many clients. A
 * request that finds its backend at N waits in the pool (first come, first served) for a
 * connection another thread gives back or a slot a close frees, up to --queue-timeout-ms
 * (default 5000), then gets 503. Every connection then comes back to the pool, released
 * or discarded (proxy_upstream.c); at exit the pool's per-key figures must show none lent
 * or connecting, and the line "limit: ..." prints them with the requests that waited.
 *
 * On SIGINT or SIGTERM it stops accepting, lets the client threads finish (each wait
 * also watches a stop pipe; connpool_shutdown() ends the waits in the pool), prints its
 * counters and the pool's, frees the pool and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "proxy.h"
#include "tls.h"

#define STOP_GRACE_MS 15000 /* how long client threads get to finish at exit */
#define PRUNE_EVERY_MS 1000

static struct proxy px;
static int stop_pipe[2] = {-1, -1};

/* Client threads: how many run, and the finished ones waiting to be joined. */
static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t threads_cond;
static unsigned threads_live;
static struct client_job *threads_finished;

static void on_stop_signal(int sig)
{
    (void)sig;
    int saved = errno;
    /* write() is async-signal-safe; the pipe turns the signal into a readable fd that
     * every thread's waits watch. */
    ssize_t w = write(stop_pipe[1], "x", 1);
    (void)w;
    errno = saved;
}

void proxy_client_done(struct client_job *job)
{
    pthread_mutex_lock(&threads_lock);
    job->next = threads_finished;
    threads_finished = job;
    threads_live--;
    pthread_cond_signal(&threads_cond);
    pthread_mutex_unlock(&threads_lock);
}

/* Join the threads that have finished (joined, not detached: at exit no thread may
 * still be running, or valgrind and the pool's last users would race us). */
static void reap_threads(void)
{
    pthread_mutex_lock(&threads_lock);
    struct client_job *job = threads_finished;
    threads_finished = NULL;
    pthread_mutex_unlock(&threads_lock);
    while (job != NULL) {
        struct client_job *next = job->next;
        pthread_join(job->thread, NULL);
        free(job);
        job = next;
    }
}

static void start_client(int fd)
{
    struct client_job *job = malloc(sizeof *job);
    if (job == NULL) {
        close(fd);
        return;
    }
    *job = (struct client_job){.px = &px, .fd = fd};
    net_nodelay(fd);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024); /* buffers are on the heap */
    pthread_mutex_lock(&threads_lock);
    threads_live++;
    int rc = pthread_create(&job->thread, &attr, proxy_client_thread, job);
    if (rc != 0)
        threads_live--;
    pthread_mutex_unlock(&threads_lock);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        fprintf(stderr, "proxy: pthread_create: %s\n", strerror(rc));
        close(fd);
        free(job);
    }
}

/* Wait (bounded) until every client thread has finished, and join them. 0, or -1 if
 * some are still running after STOP_GRACE_MS. */
static int wait_for_threads(void)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += STOP_GRACE_MS / 1000;
    pthread_mutex_lock(&threads_lock);
    while (threads_live > 0)
        if (pthread_cond_timedwait(&threads_cond, &threads_lock, &deadline) == ETIMEDOUT)
            break;
    unsigned left = threads_live;
    pthread_mutex_unlock(&threads_lock);
    reap_threads();
    return left == 0 ? 0 : -1;
}

static void print_stats(void)
{
    printf("proxy: requests=%llu retries=%llu bad_gateway=%llu aborted=%llu connects=%llu reused=%llu "
           "tls_handshakes=%llu tickets=%llu tickets_in_check=%llu\n",
           (unsigned long long)px.requests, (unsigned long long)px.retries, (unsigned long long)px.bad_gateway,
           (unsigned long long)px.aborted, (unsigned long long)px.connects, (unsigned long long)px.reused,
           (unsigned long long)px.handshakes, tls_tickets_received(), tls_tickets_in_check());
    if (px.pool == NULL) {
        printf("pool: off (--no-pool)\n");
        return;
    }
    connpool_stats st = {.struct_size = sizeof st};
    if (connpool_stats_get(px.pool, &st) != 0) {
        printf("pool: stats unavailable\n");
        return;
    }
    printf("pool: hits=%llu misses=%llu dead=%llu expired=%llu pooled=%llu closed_full=%llu evicted=%llu "
           "retired=%llu purged=%llu idle=%llu\n",
           (unsigned long long)st.hits, (unsigned long long)st.misses, (unsigned long long)st.dead,
           (unsigned long long)st.expired, (unsigned long long)st.pooled, (unsigned long long)st.closed_full,
           (unsigned long long)st.evicted, (unsigned long long)st.retired, (unsigned long long)st.purged,
           (unsigned long long)st.idle);
    if (px.limit == 0)
        return;
    /* Summed over the backends' keys. After every client thread has ended, lent and
     * connecting must be 0: every connection and connect slot came back to the pool. */
    unsigned long long lent = 0, connecting = 0, waiting = 0, discarded = 0;
    for (unsigned i = 0; i < px.nbackends; i++) {
        connpool_stats k = {.struct_size = sizeof k};
        if (connpool_stats_get_key(px.pool, px.backends[i].key, &k) != 0)
            continue;
        lent += k.lent, connecting += k.connecting, waiting += k.waiting, discarded += k.discarded;
    }
    printf("limit: max_conns_per_key=%u queued=%llu unavailable=%llu discarded=%llu lent=%llu connecting=%llu "
           "waiting=%llu\n",
           px.limit, (unsigned long long)px.queued, (unsigned long long)px.unavailable, discarded, lent, connecting,
           waiting);
}

static void usage(void)
{
    fprintf(stderr, "usage: proxy [--port N] [--no-pool] [--max-idle-per-key N] [--idle-timeout-ms N]\n"
                    "             [--client-timeout-ms N] [--backend-tls [--naive-check]] [--harvest]\n"
                    "             [--max-conns-per-backend N [--queue-timeout-ms N]] 127.0.0.1:PORT...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},           {"no-pool", no_argument, NULL, 'n'},
        {"max-idle-per-key", required_argument, NULL, 'm'}, {"idle-timeout-ms", required_argument, NULL, 'i'},
        {"client-timeout-ms", required_argument, NULL, 'c'}, {"backend-tls", no_argument, NULL, 't'},
        {"naive-check", no_argument, NULL, 'k'},           {"max-conns-per-backend", required_argument, NULL, 'l'},
        {"queue-timeout-ms", required_argument, NULL, 'q'}, {"harvest", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int port = 0, use_pool = 1, backend_tls = 0, naive_check = 0;
    connpool_config cfg;
    connpool_config_init(&cfg); /* defaults, and struct_size for this header's version */
    /* Keep as many idle connections per backend as there can be concurrent requests to
     * it, or a burst's connections are closed on release and reopened on the next burst. */
    cfg.max_idle_per_key = 64;
    px.client_idle_ms = 60000;
    px.queue_timeout_ms = PROXY_QUEUE_TIMEOUT_MS;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p': port = atoi(optarg); break;
        case 'n': use_pool = 0; break;
        case 'm': cfg.max_idle_per_key = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'i': cfg.idle_timeout_ms = strtoull(optarg, NULL, 10); break;
        case 'c': px.client_idle_ms = atoi(optarg); break;
        case 't': backend_tls = 1; break;
        case 'k': naive_check = 1; break;
        case 'l': px.limit = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'q': px.queue_timeout_ms = atoi(optarg); break;
        case 'h': cfg.flags |= CONNPOOL_CHECK_HARVEST; break; /* one epoll_wait a ms, no recv */
        default: usage();
        }
    }
    if (optind >= argc || (naive_check && !backend_tls) || (px.limit > 0 && !use_pool) || px.queue_timeout_ms < 0)
        usage();
    cfg.max_conns_per_key = px.limit;
    px.nbackends = (unsigned)(argc - optind);
    px.backends = calloc(px.nbackends, sizeof *px.backends);
    if (px.backends == NULL)
        return 1;
    for (unsigned i = 0; i < px.nbackends; i++) {
        struct backend *be = &px.backends[i];
        if (net_parse_addr(argv[optind + (int)i], &be->addr) != 0 ||
            (size_t)snprintf(be->key, sizeof be->key, "%s", argv[optind + (int)i]) >= sizeof be->key) {
            fprintf(stderr, "proxy: bad backend address %s (want a.b.c.d:port)\n", argv[optind + (int)i]);
            return 2;
        }
    }
    if (backend_tls) {
        if ((px.tls = tls_client_ctx()) == NULL)
            return 1;
        upstream_configure_tls(&cfg, naive_check);
    }
    if (use_pool && (px.pool = connpool_new_with_config(&cfg)) == NULL) {
        perror("proxy: connpool_new_with_config");
        return 1;
    }
    /* A proxy knows its backends: resolve each key once; the calls by handle skip the
     * key's validation and hashing. A handle lives as long as the pool. */
    for (unsigned i = 0; px.pool != NULL && i < px.nbackends; i++)
        if ((px.backends[i].handle = connpool_key_get(px.pool, px.backends[i].key)) == NULL) {
            perror("proxy: connpool_key_get");
            return 1;
        }

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&threads_cond, &ca);
    pthread_condattr_destroy(&ca);

    if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        perror("proxy: pipe2");
        return 1;
    }
    px.stop_fd = stop_pipe[0];
    struct sigaction sa = {.sa_handler = on_stop_signal}; /* no SA_RESTART: poll returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* sends use MSG_NOSIGNAL; this covers everything else */

    int listener = net_listen_loopback(port);
    if (listener < 0 || fcntl(listener, F_SETFL, O_NONBLOCK) != 0) {
        perror("proxy: listen");
        return 1;
    }
    printf("proxy: listening on 127.0.0.1:%d pid %d (%s, %u backends%s%s)\n", net_local_port(listener),
           (int)getpid(), px.pool ? "pool" : "no pool", px.nbackends,
           !px.tls ? "" : naive_check ? ", TLS, recv-peek check" : ", TLS",
           px.limit ? ", limit per backend" : "");
    fflush(stdout);

    uint64_t last_prune = now_ms();
    for (;;) {
        struct pollfd p[2] = {{.fd = listener, .events = POLLIN}, {.fd = px.stop_fd, .events = POLLIN}};
        int r = poll(p, 2, PRUNE_EVERY_MS);
        if (r < 0 && errno != EINTR) {
            perror("proxy: poll");
            break;
        }
        if (p[1].revents)
            break;
        if (p[0].revents) {
            int fd;
            while ((fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) >= 0)
                start_client(fd);
        }
        reap_threads();
        /* Expired idle connections close on the next call for their key; a backend that
         * gets no more requests would keep its fds open until then. A timer fixes that. */
        if (px.pool != NULL && now_ms() - last_prune >= PRUNE_EVERY_MS) {
            connpool_prune(px.pool);
            last_prune = now_ms();
        }
    }

    close(listener);
    /* Threads waiting in the pool for a connection return -ECANCELED now (they answer 503)
     * rather than at their queue timeout. */
    if (px.pool != NULL && px.limit > 0)
        connpool_shutdown(px.pool);
    int status = 0;
    if (wait_for_threads() != 0) {
        /* Never free the pool under a running thread: report and leave it to exit(). */
        fprintf(stderr, "proxy: client threads still running after %d ms\n", STOP_GRACE_MS);
        print_stats();
        fflush(stdout);
        _exit(1);
    }
    print_stats();
    connpool_free(px.pool); /* closes every idle backend connection (on_close frees its SSL) */
    SSL_CTX_free(px.tls);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    free(px.backends);
    pthread_cond_destroy(&threads_cond);
    return status;
}
