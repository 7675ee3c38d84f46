/* The connections and keys the scenarios use. The backend ends of the connections live in
 * a child process (pooling 10,000 connections takes 20,000 fds, and RLIMIT_NOFILE is per
 * process), so a liveness check sees live, quiet peers. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

int *conn_fds; /* client ends: the fds the pools hold */
int nconns;
static pid_t peer_pid = -1;
static int peer_ctl = -1; /* closing it tells the child to close its ends and exit */

/* Raises RLIMIT_NOFILE's soft limit to the hard one; returns the fds available. */
long raise_fd_limit(void)
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

void conns_open(int n)
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

void conns_close(void)
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

char **keys;

void keys_make(int n)
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

/* The first n keys in a fixed shuffled order (the same in every run): with 1,000,000 keys,
 * a sweep in key order would let the hardware prefetcher hide the cache misses of a pool
 * whose per-key data lies in key order (a handle array), but not those of a hash table. */
char **keys_shuffled(int n)
{
    char **order = malloc((size_t)n * sizeof *order);
    if (order == NULL)
        DIE("out of memory");
    memcpy(order, keys, (size_t)n * sizeof *order);
    uint64_t x = 0x9e3779b97f4a7c15ull; /* xorshift64, fixed seed */
    for (int i = n - 1; i > 0; i--) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int j = (int)(x % (uint64_t)(i + 1));
        char *t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    return order;
}

/* The 1,000,000-key scenario needs a distinct fd number per key (libconnpool refuses a
 * number it already holds), more than RLIMIT_NOFILE allows on most machines (20,000 here,
 * and only a privileged process may raise the hard limit). The pools of that scenario
 * never touch an idle fd (no check, no watcher: contender.big), so when the limit cannot
 * be raised far enough they get numbers at or above the hard limit: numbers this process
 * can never open, so nothing it owns is ever closed by mistake (a pool that closes one
 * gets EBADF). Otherwise they get dup()s of one connection: real, distinct open files. */
static int big_fds_real;
static long big_fds_next; /* the next never-open number to give out */

int *big_fds_make(int n, const char **how, int *open)
{
    int *fds = malloc((size_t)n * sizeof *fds);
    if (fds == NULL)
        DIE("out of memory");
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        DIE("getrlimit: %s", strerror(errno));
    /* Room for two sets (the big scenario's two) whatever was made before, so that every
     * set alive at once is of one kind. */
    rlim_t need = 2 * (rlim_t)n + (rlim_t)nconns + 256;
    if (rl.rlim_max < need) {
        struct rlimit more = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &more) == 0)
            rl = more;
    } else if (rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    big_fds_real = rl.rlim_cur >= need && nconns > 0;
    if (big_fds_next < (long)rl.rlim_max)
        big_fds_next = (long)rl.rlim_max;
    long first = big_fds_next;
    if (!big_fds_real) {
        if (first + n > INT32_MAX)
            DIE("too many fd numbers");
        big_fds_next += n;
    }
    for (int i = 0; i < n; i++) {
        if (!big_fds_real) {
            fds[i] = (int)(first + i);
        } else if ((fds[i] = fcntl(conn_fds[0], F_DUPFD_CLOEXEC, 0)) < 0) {
            DIE("dup (%d of %d): %s", i + 1, n, strerror(errno));
        }
    }
    static char text[160];
    if (big_fds_real)
        snprintf(text, sizeof text, "dup()s of one loopback connection (RLIMIT_NOFILE %lu)",
                 (unsigned long)rl.rlim_cur);
    else
        snprintf(text, sizeof text,
                 "fd numbers %ld..%ld, never open: RLIMIT_NOFILE's hard limit is %lu", first,
                 first + n - 1, (unsigned long)rl.rlim_max);
    *how = text;
    *open = big_fds_real;
    return fds;
}

/* Frees the last set made (sets are freed in the reverse order of their making). */
void big_fds_free(int *fds, int n)
{
    for (int i = 0; big_fds_real && i < n; i++)
        close(fds[i]);
    if (!big_fds_real)
        big_fds_next -= n;
    free(fds);
}
