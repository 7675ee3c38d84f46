/* proxy.h: what the demo reverse proxy's files share.
 *
 *   proxy.c          main: options, listener, one thread per client connection, signals,
 *                    the pool's life and its statistics
 *   proxy_client.c   one client connection: read requests, forward them, relay responses
 *   proxy_upstream.c backend connections: from the pool (or connect), back to the pool
 *                    (or close), plain or TLS: everything libconnpool-specific is here
 */
#ifndef DEMO_PROXY_H
#define DEMO_PROXY_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "connpool.h"

struct ssl_st;     /* OpenSSL's SSL */
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/* Time limits (ms). Generous: they only bound how long a broken peer can hold a thread. */
#define PROXY_CONNECT_TIMEOUT_MS 2000  /* connecting to a backend */
#define PROXY_BACKEND_TIMEOUT_MS 10000 /* waiting for a backend's next response byte */
#define PROXY_CLIENT_IO_TIMEOUT_MS 10000 /* a client's next byte within a request, or a send */
#define PROXY_QUEUE_TIMEOUT_MS 5000 /* waiting for a connection at the backend's limit: then 503 */

struct backend {
    struct sockaddr_in addr;
    char key[32]; /* "127.0.0.1:8080": the pool key */
    connpool_key *handle; /* the key's handle in the pool, resolved once at start-up */
};

struct proxy {
    struct backend *backends;
    unsigned nbackends;
    atomic_uint next_backend; /* round robin */
    connpool *pool;          /* NULL with --no-pool: one backend connection per request */
    int stop_fd;             /* readable once SIGINT/SIGTERM arrived: every wait watches it */
    int client_idle_ms;      /* keep-alive timeout towards clients */
    struct ssl_ctx_st *tls;  /* --backend-tls: TLS to the backends, else NULL */
    uint32_t limit;          /* --max-conns-per-backend: the pool's max_conns_per_key, 0: none */
    int queue_timeout_ms;    /* with a limit: how long a request waits for a connection */
    /* Counters, printed at exit. */
    atomic_ullong requests;     /* requests read from clients */
    atomic_ullong retries;      /* requests retried on a fresh connection */
    atomic_ullong bad_gateway;  /* 502/504 answers: no usable response from a backend */
    atomic_ullong aborted;      /* responses cut short after their head was sent */
    atomic_ullong connects;     /* backend connections opened */
    atomic_ullong reused;       /* backend connections taken from the pool */
    atomic_ullong handshakes;   /* TLS handshakes done (SSL_connect) */
    atomic_ullong queued;       /* with a limit: requests that found the backend at it and waited */
    atomic_ullong unavailable;  /* with a limit: 503 answers, no connection within the queue timeout */
};

/* A client connection handed to its thread. The thread owns fd and closes it. */
struct client_job {
    struct proxy *px;
    int fd;
    pthread_t thread;
    struct client_job *next; /* on the list of finished threads, to be joined */
};

/* Thread body: serve job->fd until the client closes, goes idle, or we stop. */
void *proxy_client_thread(void *job);

/* A client thread's last call: queues the job so that proxy.c joins the thread. */
void proxy_client_done(struct client_job *job);

/* A backend connection in use by one request. */
struct upstream {
    const struct backend *be;
    int fd;
    struct ssl_st *ssl; /* with TLS: the connection's SSL, pooled with it as its ctx */
    int reused; /* came from the pool: may have been closed by the backend meanwhile */
    int slot;   /* with a limit: the pool counts this connection (or the connect slot it was
                   made for) until it is released or discarded, never just closed */
};

/* Get a connection to be: an idle one from the pool unless fresh is set, else a new one.
 * With a limit, from the pool in any case (an idle one or a connect slot), waiting at the
 * limit. 0, or -1 with errno: EBUSY (no connection within the queue timeout), ECANCELED
 * (stopping), or connecting failed (ETIMEDOUT, ECONNREFUSED...). */
int upstream_get(struct proxy *px, const struct backend *be, int fresh, struct upstream *up);

/* Done with up->fd after a response. reusable: the response was read completely and both
 * sides keep the connection open; keepalive_timeout_ms: the server's "Keep-Alive:
 * timeout", or -1. The pool gets the fd back, or it is closed (with a limit: discarded). */
void upstream_put(struct proxy *px, struct upstream *up, int reusable, int64_t keepalive_timeout_ms);

/* Close up after a failure (no close_notify: the connection is broken or out of step).
 * With a limit, through connpool_key_discard(), which frees its slot. */
void upstream_close(struct upstream *up);

/* I/O on up, plain or TLS, as net_send_all() and net_recv() (with the backend timeout). */
int upstream_send(struct proxy *px, struct upstream *up, struct iovec *iov, int n);
ssize_t upstream_recv(struct proxy *px, struct upstream *up, void *buf, size_t len);

/* With TLS: set the pool's on_close (frees the SSL) and check (tls_idle_check(), or the
 * pool's default recv peek with naive_check, for comparison). */
void upstream_configure_tls(connpool_config *cfg, int naive_check);

#endif /* DEMO_PROXY_H */
