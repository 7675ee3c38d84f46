/* proxy_upstream.c: backend connections of the demo proxy, through libconnpool.
 *
 * The whole pool protocol of a proxy is these two functions:
 *   get: connpool_acquire_info() an idle connection for the backend's key; when there is
 *        none (-ENOENT), connect a new one. Either way the fd is now ours.
 *   put: after a complete keep-alive response, connpool_release_hint() gives the fd back
 *        (it is the pool's from then on, whatever the call returns); otherwise close it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "proxy.h"

int upstream_get(struct proxy *px, const struct backend *be, int fresh, struct upstream *up)
{
    up->be = be;
    up->reused = 0;
    if (px->pool != NULL && !fresh) {
        /* The pool has already checked the connection (one recv(MSG_PEEK)): it was not
         * closed by the backend, reset, or sent bytes nobody asked for. The backend can
         * still close it a moment later; the caller retries then (see proxy_client.c). */
        connpool_conn_info info = {.struct_size = sizeof info};
        int fd = connpool_acquire_info(px->pool, be->key, &info);
        if (fd >= 0) {
            up->fd = fd;
            up->reused = 1;
            atomic_fetch_add(&px->reused, 1);
            return 0;
        }
        if (fd != -ENOENT) /* -EINVAL: a bug of ours (bad key) */
            fprintf(stderr, "proxy: connpool_acquire_info(%s): %s\n", be->key, strerror(-fd));
    }
    up->fd = net_connect(&be->addr, PROXY_CONNECT_TIMEOUT_MS);
    if (up->fd < 0)
        return -1;
    atomic_fetch_add(&px->connects, 1);
    return 0;
}

void upstream_put(struct proxy *px, struct upstream *up, int reusable, int64_t keepalive_timeout_ms)
{
    int fd = up->fd;
    up->fd = -1;
    if (px->pool != NULL && reusable) {
        if (keepalive_timeout_ms >= 0) {
            /* The server closes idle connections after keepalive_timeout_ms. Expire ours
             * a quarter earlier: a request sent just before the server's timer fires would
             * cross its close on the wire. (0 means "I won't keep it": the pool closes it.) */
            uint64_t hint = (uint64_t)keepalive_timeout_ms - (uint64_t)keepalive_timeout_ms / 4;
            connpool_release_hint(px->pool, up->be->key, fd, hint);
        } else {
            connpool_release(px->pool, up->be->key, fd);
        }
        /* Whatever the result (kept, or closed because the key was full), fd is no
         * longer ours: never touch it again. */
        return;
    }
    close(fd);
}
