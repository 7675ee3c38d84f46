/* tls_handshake: what one TLS 1.3 handshake costs on loopback, next to what reusing a
 * pooled connection costs (a libconnpool acquire+release pair), in one run.
 *
 *   ./build/bench/tls_handshake [--rounds R] [--handshakes N] [--pairs P] [--quick]
 *
 * Handshakes: a client thread (this one) connects to a server thread in this process and
 * does a full TLS 1.3 handshake (c-examples/tls.c: no session resumption; X25519, the
 * OpenSSL 3 default group), N per round, one at a time; then it sends close_notify and
 * resets the connection (SO_LINGER 0: no TIME_WAIT piles up). Per round: handshakes/s,
 * the client's median wall time from connect() to a finished handshake, and the process's
 * CPU time per handshake (both ends; the fairest figure on a shared machine). For an
 * ECDSA P-256 certificate (the demo's), RSA 2048, and TCP alone (connect, accept, close).
 * Pairs: P acquire+release pairs by key handle on one pooled connection per round: check
 * off, the default recv-peek check, and the TLS check (tls_idle_check: a recv peek;
 * SSL_peek only when bytes wait, which they do not here).
 * Every figure is the median over R rounds. --quick: a smoke run (ctest bench_tls_smoke):
 * tiny counts, timings never judged.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "connpool.h"
#include "net.h"
#include "tls.h"

static int rounds = 11, handshakes = 100, pairs = 100000;
static int listener;
static struct sockaddr_in addr;
static _Atomic(SSL_CTX *) server_ctx; /* the phase's: NULL for TCP alone */
static atomic_int stopping;

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* One connection at a time: accept, handshake (blocking fd), wait for the client's end. */
static void *server(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (atomic_load(&stopping))
                return NULL;
            continue;
        }
        net_nodelay(fd);
        SSL_CTX *ctx = atomic_load(&server_ctx);
        char buf[256];
        if (ctx == NULL) {
            while (recv(fd, buf, sizeof buf, 0) > 0) {
            }
        } else {
            SSL *ssl = SSL_new(ctx);
            int n;
            if (ssl != NULL && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1)
                while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) /* an echo */
                    if (SSL_write(ssl, buf, n) != n)
                        break;
            SSL_free(ssl);
        }
        close(fd);
    }
}

static void reset_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A round of handshakes (ctx NULL: TCP alone); fills per-round figures. */
static void handshake_round(SSL_CTX *sctx, SSL_CTX *cctx, double *per_s, double *wall_us, double *cpu_us)
{
    atomic_store(&server_ctx, sctx);
    double *lat = calloc((size_t)handshakes, sizeof *lat);
    if (lat == NULL)
        exit(1);
    double c0 = cpu_ns();
    uint64_t t0 = now_ns();
    for (int i = 0; i < handshakes; i++) {
        uint64_t s = now_ns();
        int fd = net_connect(&addr, 5000);
        SSL *ssl = fd >= 0 && sctx != NULL ? tls_connect(cctx, fd, 5000, -1) : NULL;
        if (fd < 0 || (sctx != NULL && ssl == NULL)) {
            perror("tls_handshake: connect or handshake");
            exit(1);
        }
        lat[i] = (double)(now_ns() - s) / 1e3;
        tls_close(ssl, 1);
        reset_close(fd);
    }
    double elapsed = (double)(now_ns() - t0);
    *cpu_us = (cpu_ns() - c0) / handshakes / 1e3;
    *per_s = handshakes / (elapsed / 1e9);
    *wall_us = median(lat, handshakes);
    free(lat);
}

static int check_tls(void *arg, int fd, void *ctx)
{
    (void)arg, (void)fd;
    return tls_idle_check(ctx);
}

/* ns per acquire+release pair on one pooled TLS connection, by key handle. */
static double pair_round(int fd, SSL *ssl, uint32_t flags, int tls_check)
{
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.flags = flags;
    cfg.check = tls_check ? check_tls : NULL;
    connpool *pool = connpool_new_with_config(&cfg);
    connpool_key *k = pool ? connpool_key_get(pool, "backend:443") : NULL;
    if (k == NULL || connpool_key_release(k, fd, ssl, CONNPOOL_NO_HINT) != CONNPOOL_POOLED)
        exit(1);
    void *ctx = NULL;
    uint64_t t0 = now_ns();
    for (int i = 0; i < pairs; i++) {
        int got = connpool_key_acquire(k, &ctx, NULL);
        if (got != fd || ctx != ssl) {
            fprintf(stderr, "tls_handshake: the pool lost the connection (%d)\n", got);
            exit(1);
        }
        connpool_key_release(k, got, ctx, CONNPOOL_NO_HINT);
    }
    double ns = (double)(now_ns() - t0) / pairs;
    if (connpool_key_acquire(k, NULL, NULL) != fd) /* back: no on_close, the pool frees none */
        exit(1);
    connpool_free(pool);
    return ns;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"rounds", required_argument, NULL, 'r'},
                                             {"handshakes", required_argument, NULL, 'n'},
                                             {"pairs", required_argument, NULL, 'p'},
                                             {"quick", no_argument, NULL, 'q'},
                                             {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'r': rounds = atoi(optarg); break;
        case 'n': handshakes = atoi(optarg); break;
        case 'p': pairs = atoi(optarg); break;
        case 'q': rounds = 3, handshakes = 5, pairs = 1000; break;
        default:
            fprintf(stderr, "usage: tls_handshake [--rounds R] [--handshakes N] [--pairs P] [--quick]\n");
            return 2;
        }
    }
    if (rounds < 1 || handshakes < 1 || pairs < 1)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    SSL_CTX *ec = tls_server_ctx(0), *rsa = tls_server_ctx(TLS_SERVER_RSA), *cctx = tls_client_ctx();
    listener = net_listen_loopback(0);
    if (ec == NULL || rsa == NULL || cctx == NULL || listener < 0 ||
        net_parse_addr("127.0.0.1:1", &addr) != 0)
        return 1;
    addr.sin_port = htons((uint16_t)net_local_port(listener));
    pthread_t th;
    if (pthread_create(&th, NULL, server, NULL) != 0)
        return 1;

    printf("%s; %d rounds, medians over rounds\n", OpenSSL_version(OPENSSL_VERSION), rounds);
    printf("\n== one TLS 1.3 handshake on loopback: client and server threads in this process, %d per round ==\n",
           handshakes);
    printf("%-26s %13s %14s %19s\n", "server certificate", "handshakes/s", "wall us (p50)", "CPU us (both ends)");
    struct {
        const char *name;
        SSL_CTX *ctx;
    } kinds[] = {{"ECDSA P-256 (the demo's)", ec}, {"RSA 2048", rsa}, {"TCP alone, no TLS", NULL}};
    double per_s[3][64], wall[3][64], cpu[3][64], ec_cpu = 0;
    if (rounds > 64)
        rounds = 64;
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 3; k++) /* interleaved: a busy moment hits every kind alike */
            handshake_round(kinds[k].ctx, cctx, &per_s[k][r], &wall[k][r], &cpu[k][r]);
    for (int k = 0; k < 3; k++) {
        double c = median(cpu[k], rounds);
        if (k == 0)
            ec_cpu = c;
        printf("%-26s %13.0f %14.1f %19.1f\n", kinds[k].name, median(per_s[k], rounds), median(wall[k], rounds), c);
    }

    /* One pooled TLS connection. A byte's echo read back: every session ticket the server
     * sent after the handshake came before it, so all are read now (the recv-peek check
     * would call one stray); the server thread then waits in SSL_read, writing nothing. */
    atomic_store(&server_ctx, ec);
    int fd = net_connect(&addr, 5000);
    SSL *ssl = fd >= 0 ? tls_connect(cctx, fd, 5000, -1) : NULL;
    char echo = 'e';
    struct iovec iov = {&echo, 1};
    if (ssl == NULL || tls_send_all(ssl, &iov, 1, 5000, -1) != 0 || tls_recv(ssl, &echo, 1, 5000, -1) != 1)
        return 1;
    printf("\n== libconnpool acquire+release of one pooled TLS connection, by key handle: %d pairs per round ==\n",
           pairs);
    printf("%-44s %10s\n", "check", "ns/pair");
    const char *names[] = {"off", "recv peek (the default)", "TLS check (tls_idle_check)"};
    double ns[3][64], tls_pair = 0;
    for (int r = 0; r < rounds; r++) {
        ns[0][r] = pair_round(fd, ssl, 0, 0);
        ns[1][r] = pair_round(fd, ssl, CONNPOOL_CHECK_LIVENESS, 0);
        ns[2][r] = pair_round(fd, ssl, CONNPOOL_CHECK_LIVENESS, 1);
    }
    for (int i = 0; i < 3; i++) {
        double m = median(ns[i], rounds);
        if (i == 2)
            tls_pair = m;
        printf("%-44s %10.1f\n", names[i], m);
    }
    printf("\nOne TLS 1.3 handshake (ECDSA P-256, CPU of both ends) = %.0f acquire+release pairs with the TLS check.\n",
           ec_cpu * 1e3 / tls_pair);

    tls_close(ssl, 1);
    reset_close(fd);
    atomic_store(&stopping, 1);
    shutdown(listener, SHUT_RDWR); /* wakes the server's accept() */
    pthread_join(th, NULL);
    close(listener);
    SSL_CTX_free(ec);
    SSL_CTX_free(rsa);
    SSL_CTX_free(cctx);
    return 0;
}
