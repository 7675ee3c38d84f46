/* libconnpool's idle watcher in an epoll event loop (CONNPOOL_WATCH).
 *
 * A proxy's event loop already waits on its sockets; add the pool's watch fd to the same
 * epoll set, and call connpool_reap() when it is readable. Idle backend connections are
 * then closed the moment their backend closes them (no CLOSE_WAIT pile-up) or their idle
 * timeout passes, without waiting for the next request to their backend.
 *
 * Here the "backend" is a listening socket in this process. The program parks six idle
 * connections in the pool, the backend then closes two of them (FIN and RST), and the loop
 * reaps those at once and the other four when their 300 ms idle timeout passes.
 *
 * Build: cc -std=c11 event_loop.c -lconnpool
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "connpool.h"

#define KEY "127.0.0.1:backend"
#define N 6

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One loopback connection to `listener`: *client is what a proxy would pool, *server the
 * backend's end. */
static int connect_pair(int listener, int *client, int *server)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(listener, (struct sockaddr *)&a, &len) != 0)
        return -1;
    *client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*client < 0 || connect(*client, (struct sockaddr *)&a, len) != 0)
        return -1;
    *server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    return *server < 0 ? -1 : 0;
}

int main(void)
{
    /* The backend. */
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(listener, 16) != 0) {
        perror("backend");
        return 1;
    }

    /* A pool that watches its idle connections. */
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.idle_timeout_ms = 300;
    cfg.flags |= CONNPOOL_WATCH;
    connpool *pool = connpool_new_with_config(&cfg);
    if (pool == NULL) {
        perror("connpool_new_with_config");
        return 1;
    }

    /* The event loop: here only the watch fd; a proxy has its client and backend sockets
     * in the same set. The watch fd is the pool's: never close or read it. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = connpool_watch_fd(pool)};
    if (ep < 0 || ev.data.fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev) != 0) {
        perror("epoll");
        return 1;
    }

    /* Six requests' worth of keep-alive connections, given back idle. */
    int client[N], server[N];
    for (int i = 0; i < N; i++) {
        if (connect_pair(listener, &client[i], &server[i]) != 0) {
            perror("connect");
            return 1;
        }
        connpool_release(pool, KEY, client[i]); /* the pool owns client[i] now */
    }
    printf("%d idle connections in the pool\n", (int)connpool_idle_count(pool));

    /* The backend closes two of them while they are idle: one FIN, one RST. */
    close(server[0]);
    server[0] = -1;
    struct linger rst = {.l_onoff = 1, .l_linger = 0};
    setsockopt(server[1], SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
    close(server[1]);
    server[1] = -1;

    long long start = now_ms();
    while (connpool_idle_count(pool) > 0 && now_ms() - start < 5000) {
        struct epoll_event got[8];
        int n = epoll_wait(ep, got, 8, 1000);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (got[i].data.fd == connpool_watch_fd(pool)) {
                size_t closed = connpool_reap(pool);
                printf("after %4lld ms: reaped %zu, %zu idle left\n", now_ms() - start, closed,
                       connpool_idle_count(pool));
            }
            /* ... a proxy would handle its own sockets here ... */
        }
    }

    connpool_stats st = {.struct_size = sizeof st};
    connpool_stats_get(pool, &st);
    printf("closed because the backend closed them: %llu; idle timeout: %llu\n",
           (unsigned long long)st.dead, (unsigned long long)st.expired);
    int ok = st.dead == 2 && st.expired == N - 2 && connpool_idle_count(pool) == 0;

    connpool_free(pool);
    close(ep);
    for (int i = 2; i < N; i++)
        close(server[i]);
    close(listener);
    return ok ? 0 : 1;
}
