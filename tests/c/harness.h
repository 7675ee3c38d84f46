/* Header-only helpers shared by the C tests of libconnpool.
 *
 * Include this first in every test (it needs _GNU_SOURCE before any system header).
 * Everything is static inline so each test stays a single translation unit. */
#ifndef CONNPOOL_TEST_HARNESS_H
#define CONNPOOL_TEST_HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "connpool.h"

/* ---- assertions: print file:line and the failing expression, exit 1 ---- */

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

/* Compare two integer expressions and print both values on failure. */
#define CHECK_EQ(a, b)                                                                   \
    do {                                                                                 \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                  \
        if (check_a_ != check_b_) {                                                      \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n",         \
                    __FILE__, __LINE__, #a, #b, check_a_, check_b_);                     \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

/* For setup syscalls: fail with errno text. */
#define CHECK_SYS(cond)                                                                  \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #cond,         \
                    strerror(errno));                                                    \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

/* ---- fd state ---- */

static inline int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

/* Closed means exactly EBADF, not some other fcntl failure. */
static inline int fd_is_closed(int fd) { return fcntl(fd, F_GETFD) == -1 && errno == EBADF; }

#define CHECK_OPEN(fd)   CHECK(fd_is_open(fd))
#define CHECK_CLOSED(fd) CHECK(fd_is_closed(fd))

/* Number of open fds in this process. Valgrind and the runtime open fds of their own, so
 * only compare against a baseline taken earlier in the same process. */
static inline int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK_SYS(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

/* ---- loopback TCP fixture ---- */

/* A listening socket on 127.0.0.1 with an ephemeral port. */
static inline int listener_open(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    CHECK_SYS(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK_SYS(listen(fd, SOMAXCONN) == 0);
    return fd;
}

/* Local port of a socket (network order converted to host order). */
static inline int sock_local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    CHECK_SYS(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    return ntohs(a.sin_port);
}

static inline int sock_peer_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    CHECK_SYS(getpeername(fd, (struct sockaddr *)&a, &len) == 0);
    return ntohs(a.sin_port);
}

/* A real connected pair: client connects to the listener, server side is accepted.
 * Loopback connect completes against the backlog, so connect then accept cannot block. */
static inline void tcp_connect_pair(int listener, int *client_fd, int *server_fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    CHECK_SYS(getsockname(listener, (struct sockaddr *)&a, &len) == 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(c >= 0);
    CHECK_SYS(connect(c, (struct sockaddr *)&a, len) == 0);
    int s = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    CHECK_SYS(s >= 0);
    /* The accepted socket must be the peer of this client (nobody else connects). */
    CHECK_EQ(sock_local_port(c), sock_peer_port(s));
    *client_fd = c;
    *server_fd = s;
}

/* n connected pairs: c[i] is the client side, s[i] the accepted backend side. */
static inline void tcp_connect_pairs(int listener, int n, int *c, int *s)
{
    for (int i = 0; i < n; i++)
        tcp_connect_pair(listener, &c[i], &s[i]);
}

/* Wait (bounded, 5 s) until fd is readable, then read exactly one byte. */
static inline int read_byte_timeout(int fd, unsigned char *out)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, 5000);
    if (r != 1)
        return -1;
    return recv(fd, out, 1, 0) == 1 ? 0 : -1;
}

/* Prove that client and server are the two ends of one working connection: one byte each
 * way. Leaves no unread data behind (a pool may peek at idle sockets). */
static inline int tcp_roundtrip(int client, int server, unsigned char byte)
{
    unsigned char got = 0;
    if (send(client, &byte, 1, MSG_NOSIGNAL) != 1 || read_byte_timeout(server, &got) != 0 || got != byte)
        return -1;
    byte = (unsigned char)~byte;
    if (send(server, &byte, 1, MSG_NOSIGNAL) != 1 || read_byte_timeout(client, &got) != 0 || got != byte)
        return -1;
    return 0;
}

/* ---- environment ---- */

/* Under valgrind (its preload library is in LD_PRELOAD): loops run ~50x slower. */
static inline int running_on_valgrind(void)
{
    const char *preload = getenv("LD_PRELOAD");
    return preload != NULL && strstr(preload, "vgpreload") != NULL;
}

/* Built with AddressSanitizer (gcc defines this with -fsanitize=address). */
static inline int built_with_asan(void)
{
#ifdef __SANITIZE_ADDRESS__
    return 1;
#else
    return 0;
#endif
}

/* Operations per thread for a stress test: `native`, or `under_valgrind` there;
 * CONNPOOL_STRESS_OPS=<n> overrides both. */
static inline long stress_ops(long native, long under_valgrind)
{
    const char *env = getenv("CONNPOOL_STRESS_OPS");
    if (env != NULL && atol(env) > 0)
        return atol(env);
    return running_on_valgrind() ? under_valgrind : native;
}

/* xorshift64: a per-thread random stream with no shared state. */
static inline uint32_t xorshift(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (uint32_t)(*state >> 32);
}

/* ---- time ---- */

/* Only for tests of the passage of time (idle timeouts), never as synchronisation. */
static inline void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Milliseconds of CLOCK_MONOTONIC. */
static inline long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait (bounded, 5 s) until one of `events` (or POLLERR/POLLHUP) is reported on fd. For
 * waiting until a peer's FIN, RST or bytes have reached a socket: poll a dup() of a pooled
 * fd, since the pooled fd itself is the pool's. */
static inline int wait_event(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    return poll(&p, 1, 5000) == 1 ? 0 : -1;
}

/* Small helper to build keys like "10.0.0.1:8080". */
static inline void make_key(char *buf, size_t len, int i)
{
    snprintf(buf, len, "10.0.0.%d:%d", i % 250 + 1, 8000 + i);
}

/* ---- fork children: how one ended ---- */

/* Under valgrind a child's exit status says little: valgrind.sh's --error-exitcode (99)
 * replaces whatever code a child exits with once it leaks, and every child that inherited a
 * pool leaks on purpose (it cannot free the parent's shards, whose locks another parent
 * thread may have held at the fork; valgrind counts their interior pointers as "possibly
 * lost"). A failed check's exit code would read as 99 too. So a child says it passed by
 * writing one byte on a pipe just before _exit(0) (child_pass), and the parent reads it. */
static int child_pass_wr = -1; /* the child's end; -1 in the parent */
/* (One per test program: a test is one source file. A child that forks in turn must close
 * child_pass_wr in its own child and set it to -1, or the grandchild could pass for it.) */

/* In the child: report success and exit. */
static inline void child_pass(void)
{
    char p = 'P';
    if (child_pass_wr >= 0 && write(child_pass_wr, &p, 1) != 1)
        _exit(3);
    _exit(0);
}

/* Before a fork: the pipe; returns the parent's end. After the fork, the parent calls
 * pass_pipe_parent() and the child closes the returned end. */
static inline int pass_pipe(void)
{
    int fds[2];
    CHECK_SYS(pipe2(fds, O_CLOEXEC) == 0);
    child_pass_wr = fds[1];
    return fds[0];
}

static inline void pass_pipe_parent(void)
{
    close(child_pass_wr);
    child_pass_wr = -1;
}

/* fork() with a pass pipe: in the parent *pass_rd is its end, for child_succeeded(). */
static inline pid_t fork_passing(int *pass_rd)
{
    *pass_rd = pass_pipe();
    pid_t pid = fork();
    CHECK_SYS(pid >= 0);
    if (pid == 0) {
        close(*pass_rd);
        *pass_rd = -1;
    } else {
        pass_pipe_parent();
    }
    return pid;
}

/* After waitpid(): whether the child exited 0 (99 under valgrind: see above) and said it
 * passed. Closes pass_rd. */
static inline int child_succeeded(int status, int pass_rd)
{
    char p = 0;
    int said = read(pass_rd, &p, 1) == 1 && p == 'P';
    close(pass_rd);
    if (!WIFEXITED(status) || !said)
        return 0;
    return WEXITSTATUS(status) == 0 || (WEXITSTATUS(status) == 99 && running_on_valgrind());
}

/* ---- pool helpers ---- */
/* The pool's stats; fails the test if the call fails. */
static inline connpool_stats stats_of(const connpool *pool)
{
    connpool_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    CHECK_EQ(connpool_stats_get(pool, &s), 0);
    return s;
}

/* A pool from the defaults with a few fields changed. */
static inline connpool *pool_new(uint32_t per_key, uint32_t total, uint64_t idle_ms,
                                 uint64_t lifetime_ms, uint32_t uses, uint32_t flags)
{
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.max_idle_per_key = per_key;
    cfg.max_idle_total = total;
    cfg.idle_timeout_ms = idle_ms;
    cfg.max_lifetime_ms = lifetime_ms;
    cfg.max_uses = uses;
    cfg.flags = flags;
    connpool *pool = connpool_new_with_config(&cfg);
    CHECK(pool != NULL);
    return pool;
}

#endif /* CONNPOOL_TEST_HARNESS_H */
