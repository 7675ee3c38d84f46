/* net.c: see net.h. */
#define _GNU_SOURCE
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int net_parse_addr(const char *s, struct sockaddr_in *out)
{
    const char *colon = strrchr(s, ':');
    char host[INET_ADDRSTRLEN];
    if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof host)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 1 || port > 65535)
        return -1;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

int net_listen_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int net_local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    return ntohs(a.sin_port);
}

void net_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int net_connect(const struct sockaddr_in *addr, int timeout_ms)
{
    /* Non-blocking connect, so an unreachable backend costs timeout_ms and not the
     * kernel's SYN retry schedule (over two minutes). */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        int r = net_wait(fd, POLLOUT, timeout_ms, -1);
        if (r == 0)
            errno = ETIMEDOUT;
        if (r != 1)
            goto fail;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            goto fail;
        if (err != 0) {
            errno = err;
            goto fail;
        }
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
        goto fail;
    net_nodelay(fd);
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

int net_wait(int fd, short events, int timeout_ms, int stop_fd)
{
    struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = stop_fd, .events = POLLIN}};
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int64_t left = (int64_t)(deadline - now_ms());
        int r = poll(p, stop_fd >= 0 ? 2 : 1, left > 0 ? (int)left : 0);
        if (r < 0 && errno == EINTR)
            continue; /* a signal: its handler wrote to stop_fd if it means "stop" */
        if (r < 0)
            return -1;
        if (stop_fd >= 0 && p[1].revents)
            return -1;
        if (r > 0)
            return 1;
        return 0;
    }
}

int net_send_all(int fd, struct iovec *iov, int n, int timeout_ms, int stop_fd)
{
    while (n > 0) {
        if (iov->iov_len == 0) {
            iov++, n--;
            continue;
        }
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        /* MSG_DONTWAIT: a peer that stops reading must not block us beyond timeout_ms.
         * MSG_NOSIGNAL: a peer that closed is an error return, not a SIGPIPE. */
        ssize_t w = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            int r = net_wait(fd, POLLOUT, timeout_ms, stop_fd);
            if (r != 1) {
                errno = r == 0 ? ETIMEDOUT : ECANCELED;
                return -1;
            }
            continue;
        }
        size_t done = (size_t)w;
        while (n > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++, n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

ssize_t net_recv(int fd, void *buf, size_t len, int timeout_ms, int stop_fd)
{
    for (;;) {
        int w = net_wait(fd, POLLIN, timeout_ms, stop_fd);
        if (w != 1) {
            errno = w == 0 ? ETIMEDOUT : ECANCELED;
            return -1;
        }
        /* MSG_DONTWAIT: poll can report readiness that recv then does not find. */
        ssize_t r = recv(fd, buf, len, MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
    }
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
