/* backend_count_test: the demo backend's --max-conns count is exact, the count the demo's
 * limit runs are judged by.
 *
 * 1. Churn: a client holds N connections and, thousands of times, closes one and at once
 *    connects a new one (half the closes with a FIN, half with a reset), as a pool at its
 *    limit does when it closes a connection and gives the slot to the next thread. The
 *    connect returns as soon as the kernel has completed the handshake, long before the
 *    backend's loop has seen the close: without the backend's sweep for pending ends its
 *    count runs to thousands. It must report max_open=N and exit 0.
 * 2. Over: N + 1 connections open at once, each served a request (so the backend has
 *    accepted them all): it must report max_open=N+1 and exit 3. The client closes them
 *    all (with the response's unread bytes: resets) as soon as the last response starts
 *    arriving, so a backend that answered requests before counting (under load it accepts
 *    a connection only after its request is there) would see them closed and count less.
 *
 *   backend_count_test        (finds backend next to itself, as the demo does)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "spawn.h"

#define N 4
#define CYCLES 3000
#define WAIT_MS 10000

static char backend_path[PATH_MAX + 16];
static int failures;

static void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok" : "FAIL", what);
    failures += !ok;
}

static void start(struct child *b, struct sockaddr_in *addr)
{
    char n[16];
    snprintf(n, sizeof n, "%d", N);
    char *argv[] = {backend_path, "--max-conns", n, "--idle-ms", "0", NULL};
    if (spawn_start(b, "backend", argv) != 0 || spawn_wait_ready(b, WAIT_MS) != 0) {
        fprintf(stderr, "backend_count_test: the backend did not start\n");
        spawn_kill_all();
        exit(1);
    }
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", b->port);
    net_parse_addr(target, addr);
}

static int connect_or_die(const struct sockaddr_in *addr)
{
    int fd = net_connect(addr, WAIT_MS);
    if (fd < 0) {
        perror("backend_count_test: connect");
        spawn_kill_all();
        exit(1);
    }
    return fd;
}

/* A reset instead of a FIN: close() with SO_LINGER 0. */
static void close_with_reset(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

/* One request, and the first bytes of its response: the backend has accepted fd. */
static int served(int fd)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    struct iovec iov = {(char *)req, sizeof req - 1};
    char buf[256];
    return net_send_all(fd, &iov, 1, WAIT_MS, -1) == 0 && net_recv(fd, buf, sizeof buf, WAIT_MS, -1) > 0;
}

int main(void)
{
    spawn_init();
    setvbuf(stdout, NULL, _IOLBF, 0); /* in order with the backend's stderr */
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return 1;
    self[len] = '\0';
    *strrchr(self, '/') = '\0';
    snprintf(backend_path, sizeof backend_path, "%s/backend", self);

    struct child b;
    struct sockaddr_in addr;
    start(&b, &addr);
    int fds[N + 1];
    for (int i = 0; i < N; i++)
        fds[i] = connect_or_die(&addr);
    for (int i = 0; i < CYCLES; i++) {
        if (i % 2)
            close_with_reset(fds[i % N]);
        else
            close(fds[i % N]);
        fds[i % N] = connect_or_die(&addr);
    }
    int all = 1;
    for (int i = 0; i < N; i++)
        all &= served(fds[i]);
    check(all, "churn: the last N connections are served");
    for (int i = 0; i < N; i++)
        close(fds[i]);
    check(spawn_stop(&b, WAIT_MS) == 0 && b.status == 0, "churn: the backend exits 0");
    check(spawn_field(&b, "backend:", "accepted") == N + CYCLES, "churn: it accepted every connection");
    long long most = spawn_field(&b, "backend:", "max_open");
    printf("churn: max_open=%lld (N = %d)\n", most, N);
    check(most == N, "churn: it counted at most N open at once");

    printf("over: the backend's message \"over --max-conns\" is expected\n");
    start(&b, &addr);
    for (int i = 0; i < N + 1; i++)
        fds[i] = connect_or_die(&addr);
    all = 1;
    for (int i = 0; i < N + 1; i++)
        all &= served(fds[i]);
    check(all, "over: N + 1 connections served");
    for (int i = 0; i < N + 1; i++)
        close(fds[i]);
    int stopped = spawn_stop(&b, WAIT_MS) == 0;
    most = spawn_field(&b, "backend:", "max_open");
    printf("over: max_open=%lld (N + 1 = %d), exit status %d\n", most, N + 1, b.status);
    check(stopped && b.status == 3, "over: the backend exits 3");
    check(most == N + 1, "over: it counted N + 1 open at once");
    return failures ? 1 : 0;
}
