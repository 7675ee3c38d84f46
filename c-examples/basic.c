/* libconnpool in a (toy) proxy: reuse idle backend connections across requests.
 *
 * A tiny line-echo "backend" runs in a thread on 127.0.0.1. The "proxy" sends five
 * requests; each one takes an idle connection from the pool or connects a new one, and
 * gives it back after a complete answer. Request 4 asks the backend to close the
 * connection (like "Connection: close"), so it is not given back and request 5 connects
 * anew.
 *
 * Build: cc -std=c11 basic.c -lconnpool -lpthread
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connpool.h"

/* ---------- the backend: echoes each line; "close" lines are answered, then closed ---------- */

#define MAX_CONNS 16

struct backend {
    int listener;
    int stop_pipe[2]; /* main writes one byte to stop the thread */
};

static void *backend_main(void *arg)
{
    struct backend *b = arg;
    struct pollfd fds[2 + MAX_CONNS];
    int n = 2;
    fds[0] = (struct pollfd){.fd = b->stop_pipe[0], .events = POLLIN};
    fds[1] = (struct pollfd){.fd = b->listener, .events = POLLIN};
    for (;;) {
        if (poll(fds, (nfds_t)n, -1) < 0 && errno != EINTR)
            break;
        if (fds[0].revents)
            break;
        if ((fds[1].revents & POLLIN) && n < 2 + MAX_CONNS) {
            int c = accept4(b->listener, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0)
                fds[n++] = (struct pollfd){.fd = c, .events = POLLIN};
        }
        for (int i = 2; i < n; i++) {
            if (!fds[i].revents)
                continue;
            char buf[256];
            ssize_t r = recv(fds[i].fd, buf, sizeof buf, 0);
            int done = r <= 0;
            if (r > 0) {
                send(fds[i].fd, buf, (size_t)r, MSG_NOSIGNAL);
                done = r >= 5 && memcmp(buf, "close", 5) == 0;
            }
            if (done) { /* peer closed, error, or "close" request */
                close(fds[i].fd);
                fds[i--] = fds[--n];
            }
        }
    }
    for (int i = 2; i < n; i++)
        close(fds[i].fd);
    return NULL;
}

/* ---------- the proxy side ---------- */

static int connect_backend(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Send one line and read the one-line answer. Returns 0 on success. */
static int exchange(int fd, const char *line, char *answer, size_t cap)
{
    size_t len = strlen(line), got = 0;
    if (send(fd, line, len, MSG_NOSIGNAL) != (ssize_t)len)
        return -1;
    while (got < cap - 1) {
        ssize_t r = recv(fd, answer + got, cap - 1 - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        if (answer[got - 1] == '\n')
            break;
    }
    answer[got] = '\0';
    return 0;
}

int main(void)
{
    /* Start the backend on an ephemeral loopback port. */
    struct backend b;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    b.listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (b.listener < 0 || bind(b.listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(b.listener, 16) != 0 || getsockname(b.listener, (struct sockaddr *)&addr, &alen) != 0 ||
        pipe2(b.stop_pipe, O_CLOEXEC) != 0) {
        perror("backend setup");
        return 1;
    }
    pthread_t backend_thread;
    if (pthread_create(&backend_thread, NULL, backend_main, &b) != 0)
        return 1;

    /* The pool key names the backend; conventionally "host:port". */
    char key[64];
    snprintf(key, sizeof key, "127.0.0.1:%d", ntohs(addr.sin_port));

    connpool *pool = connpool_new(8, 60000); /* 8 idle per backend, 60 s idle timeout */
    if (pool == NULL) {
        perror("connpool_new");
        return 1;
    }
    printf("libconnpool %s, backend %s\n", connpool_version(), key);

    int status = 0;
    for (int i = 1; i <= 5; i++) {
        int fd = connpool_acquire(pool, key);
        /* fd >= 0: an idle connection, now OURS: we must release or close it. */
        int reused = fd >= 0;
        if (fd == -ENOENT) {
            /* Nothing idle: connect a new one (also ours). */
            fd = connect_backend(&addr);
            if (fd < 0) {
                perror("connect");
                status = 1;
                break;
            }
        } else if (fd < 0) {
            fprintf(stderr, "connpool_acquire: %s\n", strerror(-fd));
            status = 1;
            break;
        }
        printf("request %d: %s fd %d\n", i, reused ? "reused" : "new connection", fd);

        int keep_alive = i != 4; /* request 4 plays "Connection: close" */
        char line[64], answer[64];
        snprintf(line, sizeof line, "%s request %d\n", keep_alive ? "hello" : "close", i);
        if (exchange(fd, line, answer, sizeof answer) != 0) {
            /* A failed exchange leaves the connection in an unknown state: never pool it. */
            fprintf(stderr, "request %d failed\n", i);
            close(fd);
            status = 1;
            continue;
        }
        printf("  answer: %s", answer);

        if (keep_alive) {
            /* From this call on the fd is the POOL's, whatever the result:
             * POOLED = kept idle, CLOSED = pool was full and closed it. Never touch fd again. */
            int rc = connpool_release(pool, key, fd);
            printf("  released: %s\n", rc == CONNPOOL_POOLED ? "pooled" : rc == CONNPOOL_CLOSED ? "closed (pool full)" : "error");
        } else {
            /* Not reusable: we still own it, so we close it ourselves. */
            close(fd);
            printf("  not reusable: closed by us\n");
        }
    }

    printf("idle connections: %zu (for %s: %zu)\n", connpool_idle_count(pool), key,
           connpool_idle_count_key(pool, key));

    /* Frees the pool and closes every idle fd it still owns. */
    connpool_free(pool);

    /* Stop the backend. */
    if (write(b.stop_pipe[1], "x", 1) != 1)
        status = 1;
    pthread_join(backend_thread, NULL);
    close(b.stop_pipe[0]);
    close(b.stop_pipe[1]);
    close(b.listener);
    return status;
}
