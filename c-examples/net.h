/* net.h: small socket helpers shared by the demo's backend, proxy and load generator.
 *
 * Every wait is bounded (a timeout in milliseconds) and can be cut short by a "stop" fd:
 * a pipe that becomes readable when the program is asked to stop. A thread blocked in
 * net_wait() thus notices SIGTERM without signals being delivered to it and without
 * another thread touching its sockets.
 */
#ifndef DEMO_NET_H
#define DEMO_NET_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parse "a.b.c.d:port" (IPv4 literal only). 0, or -1 if malformed. */
int net_parse_addr(const char *s, struct sockaddr_in *out);

/* A listening TCP socket on 127.0.0.1:port (port 0: the kernel picks a free one; read it
 * back with net_local_port). Backlog SOMAXCONN: under a connection storm (the proxy
 * without a pool) a short backlog drops SYNs, which then cost a 1 s retransmission. */
int net_listen_loopback(int port);
int net_local_port(int fd);

/* Connect with a timeout; the returned socket is blocking, close-on-exec, TCP_NODELAY.
 * -1 with errno set on failure. */
int net_connect(const struct sockaddr_in *addr, int timeout_ms);

/* TCP_NODELAY: every message here is written whole, so Nagle's algorithm only adds delay. */
void net_nodelay(int fd);

/* Wait until fd is ready for events (POLLIN/POLLOUT). 1: ready (or error/hang-up, which
 * the next recv/send reports); 0: timeout; -1: stop_fd became readable (stop_fd < 0: none). */
int net_wait(int fd, short events, int timeout_ms, int stop_fd);

/* Send every byte of iov[0..n) (iov is modified), waiting at most timeout_ms for each
 * stall. 0, or -1 on error, timeout or stop (errno ETIMEDOUT / ECANCELED for the last two). */
int net_send_all(int fd, struct iovec *iov, int n, int timeout_ms, int stop_fd);

/* recv() after waiting at most timeout_ms: > 0 bytes, 0 at EOF, -1 on error, timeout
 * (errno ETIMEDOUT) or stop (errno ECANCELED). */
ssize_t net_recv(int fd, void *buf, size_t len, int timeout_ms, int stop_fd);

/* Monotonic clock. */
uint64_t now_ns(void);
static inline uint64_t now_ms(void) { return now_ns() / 1000000u; }

#ifdef __cplusplus
}
#endif

#endif /* DEMO_NET_H */
