/* proxy_upstream.c: backend connections of the demo proxy, through libconnpool.
 *
 * The whole pool protocol of a proxy is these two functions, by key handle (a proxy knows
 * its backends: proxy.c resolves each backend's key once with connpool_key_get()):
 *   get: connpool_key_acquire() an idle connection; when there is none (-ENOENT),
 *        connect a new one (and, with TLS, do the handshake). Either way it is now ours.
 *   put: after a complete keep-alive response, connpool_key_release() gives it back (it is
 *        the pool's from then on, whatever the call returns); otherwise close it.
 *
 * With a per-backend limit (--max-conns-per-backend: the pool's max_conns_per_key), the
 * pool counts every connection of a backend, idle, lent or being connected, and never lets
 * them exceed the limit. So:
 *   get: connpool_key_acquire_wait(): an idle connection, or -ENOENT with a connect slot
 *        reserved for us, or, at the limit, a wait (first come, first served) for a
 *        connection another thread releases or a slot a close frees; -ETIMEDOUT after the
 *        queue timeout (the client gets 503).
 *   put: a release as above; every other end goes through connpool_key_discard(), never
 *        close(): a failed connect gives its slot back with fd -1, a broken or finished
 *        connection is closed by the pool, which frees its slot for the next waiter. A
 *        connection we close() ourselves would hold its slot for ever.
 *
 * With TLS the connection is the fd and its SSL*: the SSL* travels with the fd as its ctx,
 * out of the pool with the acquire and into it with the release. When the pool closes a
 * connection (expired, full, dead, purged, freed), it calls on_close with the SSL* first,
 * and on_close frees it. The pool's check is TLS-aware (tls_idle_check()): a session ticket
 * that arrived while the connection was idle is not a sign of death.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "proxy.h"
#include "tls.h"

/* The pool's check, for a TLS connection: 0 healthy, else dead. It runs on the thread of
 * the acquire (or of connpool_prune()), under no pool lock, on a connection nobody else
 * holds: the SSL is ours to use for that moment. */
static int check_tls(void *arg, int fd, void *ctx)
{
    (void)arg, (void)fd;
    return tls_idle_check(ctx);
}

/* The pool is closing a TLS connection: free its SSL (close_notify first, unless the
 * check found it dead). Never close the fd: the pool does, right after. */
static void on_close_tls(void *arg, int fd, void *ctx, int reason)
{
    (void)arg, (void)fd;
    tls_close(ctx, reason != CONNPOOL_CLOSE_DEAD);
}

void upstream_configure_tls(connpool_config *cfg, int naive_check)
{
    cfg->on_close = on_close_tls;
    /* NULL: the pool's recv(MSG_PEEK) check, which calls any unread byte (a ticket too)
     * a desynchronised stream. */
    cfg->check = naive_check ? NULL : check_tls;
}

/* Close fd (ours, or -1 for a connect slot we did not use) through the pool, which frees
 * its slot with a limit and forgets the number (so that a new connection that gets it is
 * watched like any other: the harvest check and the idle watcher need that); the SSL, if
 * any, is already freed. Without a pool (--no-pool), close() it. */
static void end_fd(struct upstream *up, int fd)
{
    if (up->be->handle != NULL && (up->slot || fd >= 0)) {
        /* 0 (-EALREADY cannot happen: the fd is ours, not idle in a pool). The pool calls
         * on_close with a NULL ctx: nothing left to free. */
        connpool_key_discard(up->be->handle, fd, NULL);
        up->slot = 0;
    } else if (fd >= 0) {
        close(fd);
    }
}

/* With a limit: an idle connection (1), a connect slot (0), or -1 with errno EBUSY (none
 * within the queue timeout) or ECANCELED (stopping: connpool_shutdown()). There is no way
 * around the pool here, so a retry (fresh) takes an idle connection too, checked like any
 * other: the limit counts them all. */
static int acquire_limited(struct proxy *px, struct upstream *up)
{
    connpool_key *k = up->be->handle;
    void *ctx = NULL;
    /* Without waiting first, only to count the requests that had to queue. */
    int fd = connpool_key_acquire_wait(k, &ctx, NULL, 0);
    if (fd == -EAGAIN) {
        atomic_fetch_add(&px->queued, 1);
        fd = connpool_key_acquire_wait(k, &ctx, NULL, (uint64_t)px->queue_timeout_ms);
    }
    if (fd >= 0 || fd == -ENOENT)
        up->slot = 1;
    if (fd >= 0) {
        up->fd = fd;
        up->ssl = ctx;
        return 1;
    }
    if (fd == -ENOENT)
        return 0;
    if (fd != -ETIMEDOUT && fd != -ECANCELED) /* -EINVAL: a bug of ours (no handle) */
        fprintf(stderr, "proxy: connpool_key_acquire_wait(%s): %s\n", up->be->key, strerror(-fd));
    errno = fd == -ECANCELED ? ECANCELED : EBUSY;
    return -1;
}

int upstream_get(struct proxy *px, const struct backend *be, int fresh, struct upstream *up)
{
    up->be = be;
    up->fd = -1;
    up->reused = 0;
    up->ssl = NULL;
    up->slot = 0;
    if (px->pool != NULL && px->limit > 0) {
        int got = acquire_limited(px, up);
        if (got < 0)
            return -1;
        if (got > 0) {
            up->reused = 1;
            atomic_fetch_add(&px->reused, 1);
            return 0;
        }
    } else if (px->pool != NULL && !fresh) {
        /* The pool has already checked the connection: it was not closed by the backend,
         * reset, or sent bytes nobody asked for. The backend can still close it a moment
         * later; the caller retries then (see proxy_client.c). */
        void *ctx = NULL;
        int fd = connpool_key_acquire(be->handle, &ctx, NULL);
        if (fd >= 0) {
            up->fd = fd;
            up->ssl = ctx; /* NULL for a plain connection */
            up->reused = 1;
            atomic_fetch_add(&px->reused, 1);
            return 0;
        }
        if (fd != -ENOENT) /* -EINVAL: a bug of ours (no handle) */
            fprintf(stderr, "proxy: connpool_key_acquire(%s): %s\n", be->key, strerror(-fd));
    }
    up->fd = net_connect(&be->addr, PROXY_CONNECT_TIMEOUT_MS);
    if (up->fd < 0) {
        int e = errno;
        end_fd(up, -1); /* with a limit: the connect slot back */
        errno = e;
        return -1;
    }
    atomic_fetch_add(&px->connects, 1);
    if (px->tls != NULL) {
        up->ssl = tls_connect(px->tls, up->fd, PROXY_CONNECT_TIMEOUT_MS, px->stop_fd);
        if (up->ssl == NULL) {
            int e = errno;
            end_fd(up, up->fd);
            up->fd = -1;
            errno = e;
            return -1;
        }
        atomic_fetch_add(&px->handshakes, 1);
    }
    return 0;
}

void upstream_put(struct proxy *px, struct upstream *up, int reusable, int64_t keepalive_timeout_ms)
{
    int fd = up->fd;
    up->fd = -1;
    if (px->pool != NULL && reusable) {
        /* The server closes idle connections after keepalive_timeout_ms. Expire ours a
         * quarter earlier: a request sent just before the server's timer fires would cross
         * its close on the wire. (0 means "I won't keep it": the pool closes it.) */
        uint64_t hint = CONNPOOL_NO_HINT;
        if (keepalive_timeout_ms >= 0)
            hint = (uint64_t)keepalive_timeout_ms - (uint64_t)keepalive_timeout_ms / 4;
        connpool_key_release(up->be->handle, fd, up->ssl, hint);
        /* Whatever the result (kept, handed to a waiting thread, or closed because the key
         * was full), fd, its SSL and its slot are no longer ours: never touch them again. */
        up->ssl = NULL;
        up->slot = 0;
        return;
    }
    tls_close(up->ssl, 1); /* a clean end: close_notify */
    up->ssl = NULL;
    end_fd(up, fd);
}

void upstream_close(struct upstream *up)
{
    tls_close(up->ssl, 0);
    up->ssl = NULL;
    end_fd(up, up->fd);
    up->fd = -1;
}

int upstream_send(struct proxy *px, struct upstream *up, struct iovec *iov, int n)
{
    if (up->ssl != NULL)
        return tls_send_all(up->ssl, iov, n, PROXY_BACKEND_TIMEOUT_MS, px->stop_fd);
    return net_send_all(up->fd, iov, n, PROXY_BACKEND_TIMEOUT_MS, px->stop_fd);
}

ssize_t upstream_recv(struct proxy *px, struct upstream *up, void *buf, size_t len)
{
    if (up->ssl != NULL)
        return tls_recv(up->ssl, buf, len, PROXY_BACKEND_TIMEOUT_MS, px->stop_fd);
    return net_recv(up->fd, buf, len, PROXY_BACKEND_TIMEOUT_MS, px->stop_fd);
}
