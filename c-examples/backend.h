/* backend.h: what the demo backend's two files share.
 *
 *   backend.c       main: options, the epoll loop, connections (accept, read, write, idle
 *                   timers, close), TLS (--tls)
 *   backend_http.c  HTTP: take a request from a connection's input, render its response
 */
#ifndef DEMO_BACKEND_H
#define DEMO_BACKEND_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define MAX_BODY (16u << 20) /* /bytes/N is capped at 16 MiB */
#define CHUNK 4096           /* chunked responses use chunks of this size */

enum framing { FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE, FRAME_MIXED };

extern struct backend_options {
    int port;
    size_t size;
    uint64_t idle_ms; /* 0: never close idle connections */
    uint32_t max_requests; /* 0: no limit */
    enum framing framing;
    int keep_alive_header; /* announce "Keep-Alive: timeout=..." */
    uint64_t drop_every;   /* 0: never drop a request */
    int tls;               /* serve TLS 1.3 */
    int late_ticket;       /* TLS: the session ticket after the first response, not in the handshake */
    int count_conns;       /* count the connections open at once (--count-conns, --max-conns) */
    uint32_t max_conns;    /* 0: no limit; else more open at once fails the run */
} opt;

extern struct backend_stats {
    uint64_t accepted, requests, idle_closed, max_closed, peer_closed, dropped;
    uint64_t reused_requests; /* requests on an already used connection, for --drop-every */
    uint64_t open, open_max;  /* connections open now, and the most at once (when counting) */
    uint64_t over_limit;      /* accepts that found more than --max-conns open */
} stats;

/* One client connection. It sits on the idle list (oldest first) whenever it has no
 * response to write, so the oldest idle connection is always at the head: the idle timer
 * is then O(1) per event and exact, without a periodic scan. */
struct conn {
    int fd;
    SSL *ssl;              /* with --tls */
    int tls_ready;         /* its handshake is done */
    char in[HTTP_MAX_HEAD];
    size_t in_len;
    uint64_t discard;      /* request body bytes still to be skipped */
    char *out;             /* the response being written: out[out_off .. out_len) */
    size_t out_len, out_off, out_cap;
    int close_after;       /* close once out is written */
    uint32_t requests;     /* served on this connection */
    uint64_t last_active;  /* ms: last byte in or response fully out */
    struct list *on_list;  /* idle_list, fresh_list or none */
    struct conn *prev, *next; /* on_list */
    struct conn *all_prev, *all_next; /* every connection, to close them at exit */
};

/* Take one complete request from c->in, if there is one, and render its response into
 * c->out. 1: a response is ready; 0: need more input; -1: drop the connection unanswered. */
int next_request(struct conn *c);

#endif /* DEMO_BACKEND_H */
