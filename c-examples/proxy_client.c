/* proxy_client.c: one client connection of the demo proxy, served by its own thread.
 *
 * For each request: read it whole (head and body, so it can be sent twice), pick a
 * backend (round robin), send it on a backend connection (upstream_get: pooled or new),
 * relay the response as it arrives, and hand the backend connection back
 * (upstream_put) only if the response ended cleanly on a keep-alive connection.
 *
 * Knowing where a response ends is what makes reuse safe: Content-Length, chunked
 * encoding, or the backend's close (then the connection cannot be reused). A connection
 * given back before its response was fully read would hand the next request the rest of
 * this one's body.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "http.h"
#include "net.h"
#include "proxy.h"

#define MAX_REQUEST_BODY (1u << 20) /* larger bodies get 413: we buffer them to retry */
#define RESPONSE_BUF 65536
#define HEAD_SLACK 128 /* room for the headers we add to a rewritten head */
#define MAX_IOV 64

struct client {
    struct proxy *px;
    int fd;
    char *in; /* bytes from the client: the current request (head, body), maybe more */
    size_t in_len, in_cap;
    char up_head[HTTP_MAX_HEAD + HEAD_SLACK];   /* request head as sent to the backend */
    char down_head[HTTP_MAX_HEAD + HEAD_SLACK]; /* response head as sent to the client */
    char resp[RESPONSE_BUF];                    /* bytes from the backend */
};

struct request {
    struct http_head h; /* points into c->in */
    size_t head_len, body_len;
};

/* A bounded string builder for heads. */
struct builder {
    char *p;
    size_t len, cap;
    int overflow;
};

static void put(struct builder *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(struct builder *b, const char *s) { put(b, s, strlen(s)); }

/* A response the proxy makes itself (errors, 100 Continue). 0, or -1 if the client is gone. */
static int send_simple(struct client *c, int status, const char *reason, int keep, int minor)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n%s\r\n", status, reason,
                     !keep ? "Connection: close\r\n" : minor == 0 ? "Connection: keep-alive\r\n" : "");
    struct iovec iov = {buf, (size_t)n};
    return net_send_all(c->fd, &iov, 1, PROXY_CLIENT_IO_TIMEOUT_MS, c->px->stop_fd);
}

/* Read the next request whole. 1: got one; 0: the client closed, went idle, or we stop
 * (close quietly); -1: a bad request was answered (close). */
static int read_request(struct client *c, struct request *rq)
{
    size_t head_len;
    while ((head_len = http_head_length(c->in, c->in_len)) == 0) {
        if (c->in_len >= HTTP_MAX_HEAD) {
            send_simple(c, 431, "Request Header Fields Too Large", 0, 1);
            return -1;
        }
        /* Between requests the keep-alive timeout applies; within one, the I/O timeout. */
        int timeout = c->in_len == 0 ? c->px->client_idle_ms : PROXY_CLIENT_IO_TIMEOUT_MS;
        ssize_t r = net_recv(c->fd, c->in + c->in_len, HTTP_MAX_HEAD - c->in_len, timeout, c->px->stop_fd);
        if (r <= 0)
            return 0;
        c->in_len += (size_t)r;
    }
    if (head_len > HTTP_MAX_HEAD) {
        send_simple(c, 431, "Request Header Fields Too Large", 0, 1);
        return -1;
    }
    struct http_body body;
    if (http_parse_request(c->in, head_len, &rq->h) != 0) {
        send_simple(c, 400, "Bad Request", 0, 1);
        return -1;
    }
    int minor = rq->h.minor_version;
    if (http_body_for_request(&body, &rq->h) != 0) {
        send_simple(c, 501, "Not Implemented", 0, minor);
        return -1;
    }
    if (body.framing == HTTP_CHUNKED) {
        /* Allowed by HTTP/1.1, but we would have to buffer an unknown length: like many
         * servers, ask for a Content-Length. */
        send_simple(c, 411, "Length Required", 0, minor);
        return -1;
    }
    if (body.framing == HTTP_LENGTH && body.left > MAX_REQUEST_BODY) {
        send_simple(c, 413, "Content Too Large", 0, minor);
        return -1;
    }
    size_t need = head_len + (body.framing == HTTP_LENGTH ? (size_t)body.left : 0);
    if (need > c->in_cap) {
        char *p = realloc(c->in, need);
        if (p == NULL) {
            send_simple(c, 500, "Internal Server Error", 0, minor);
            return -1;
        }
        c->in = p;
        c->in_cap = need;
    }
    /* A client that sent "Expect: 100-continue" waits for this before sending the body. */
    if (rq->h.expect_continue && c->in_len < need && minor >= 1) {
        struct iovec iov = {(char *)"HTTP/1.1 100 Continue\r\n\r\n", 25};
        if (net_send_all(c->fd, &iov, 1, PROXY_CLIENT_IO_TIMEOUT_MS, c->px->stop_fd) != 0)
            return 0;
    }
    while (c->in_len < need) {
        ssize_t r = net_recv(c->fd, c->in + c->in_len, need - c->in_len, PROXY_CLIENT_IO_TIMEOUT_MS,
                             c->px->stop_fd);
        if (r <= 0)
            return 0;
        c->in_len += (size_t)r;
    }
    http_parse_request(c->in, head_len, &rq->h); /* again: realloc may have moved c->in */
    rq->head_len = head_len;
    rq->body_len = need - head_len;
    return 1;
}

/* The request head for the backend: same request, HTTP/1.1, without hop-by-hop headers.
 * Without a pool, "Connection: close" makes the backend close first, so the TIME_WAIT
 * state stays on its side rather than using up the proxy's ephemeral ports. */
static size_t upstream_head(struct client *c, const struct request *rq)
{
    struct builder b = {c->up_head, 0, sizeof c->up_head, 0};
    put(&b, rq->h.method, rq->h.method_len);
    puts_(&b, " ");
    put(&b, rq->h.target, rq->h.target_len);
    puts_(&b, " HTTP/1.1\r\n");
    size_t cursor = 0;
    struct http_header hdr;
    while (http_next_header(&rq->h, &cursor, &hdr))
        if (!http_is_hop_by_hop(&rq->h, &hdr) && !http_header_is(&hdr, "Expect"))
            put(&b, hdr.line, hdr.line_len);
    if (c->px->pool == NULL)
        puts_(&b, "Connection: close\r\n");
    puts_(&b, "\r\n");
    return b.overflow ? 0 : b.len;
}

/* The response head for the client: the backend's status and end-to-end headers, our
 * own connection management. */
static size_t downstream_head(struct client *c, const struct http_head *h, int pass_chunked,
                              int keep, int client_minor)
{
    struct builder b = {c->down_head, 0, sizeof c->down_head, 0};
    puts_(&b, "HTTP/1.1");
    put(&b, c->resp + 8, (size_t)(h->headers - 2 - (c->resp + 8))); /* " 200 OK": to the CRLF */
    puts_(&b, "\r\n");
    size_t cursor = 0;
    struct http_header hdr;
    while (http_next_header(h, &cursor, &hdr)) {
        int keep_te = http_header_is(&hdr, "Transfer-Encoding") && h->other_encoding;
        int drop_length = http_header_is(&hdr, "Content-Length") && h->chunked;
        if ((!http_is_hop_by_hop(h, &hdr) || keep_te) && !drop_length)
            put(&b, hdr.line, hdr.line_len);
    }
    if (pass_chunked)
        puts_(&b, "Transfer-Encoding: chunked\r\n");
    if (!keep)
        puts_(&b, "Connection: close\r\n");
    else if (client_minor == 0)
        puts_(&b, "Connection: keep-alive\r\n");
    puts_(&b, "\r\n");
    return b.overflow ? 0 : b.len;
}

/* No usable response: answer 502 (or 504 after a timeout) ourselves. Returns whether the
 * client connection stays open. */
static int bad_gateway(struct client *c, const struct request *rq, int timed_out)
{
    atomic_fetch_add(&c->px->bad_gateway, 1);
    int keep = rq->h.keep_alive;
    if (send_simple(c, timed_out ? 504 : 502, timed_out ? "Gateway Timeout" : "Bad Gateway", keep,
                    rq->h.minor_version) != 0)
        return 0;
    return keep;
}

/* With a limit: no backend connection within the queue timeout, or we are stopping: 503,
 * as a proxy whose backend is at capacity answers. Returns whether the client connection
 * stays open. */
static int unavailable(struct client *c, const struct request *rq, int stopping)
{
    atomic_fetch_add(&c->px->unavailable, 1);
    int keep = rq->h.keep_alive && !stopping;
    return send_simple(c, 503, "Service Unavailable", keep, rq->h.minor_version) == 0 && keep;
}

/* Relay the response whose head (head_len bytes) and first got bytes are in c->resp,
 * then give the backend connection back or close it. Returns whether the client
 * connection stays open. */
static int relay(struct client *c, const struct request *rq, struct upstream *up, const struct http_head *h,
                 size_t head_len, size_t got)
{
    struct proxy *px = c->px;
    int head_request = rq->h.method_len == 4 && memcmp(rq->h.method, "HEAD", 4) == 0;
    struct http_body body;
    http_body_for_response(&body, h, head_request);
    /* HTTP/1.0 clients know no chunked encoding: strip it and end the body by closing.
     * (A HEAD response keeps the header, as the GET response would have it.) */
    int pass_chunked = h->chunked && rq->h.minor_version >= 1;
    int dechunk = body.framing == HTTP_CHUNKED && !pass_chunked;
    int keep = rq->h.keep_alive && body.framing != HTTP_UNTIL_CLOSE && !dechunk;
    size_t down_len = downstream_head(c, h, pass_chunked, keep, rq->h.minor_version);
    if (down_len == 0) {
        upstream_close(up);
        return bad_gateway(c, rq, 0);
    }

    struct iovec iov[MAX_IOV];
    int n = 0, failed = 0;
    size_t off = head_len; /* c->resp[off .. got): received, not yet relayed */
    iov[n++] = (struct iovec){c->down_head, down_len};
    for (;;) {
        while (off < got && !body.done && n < MAX_IOV) {
            size_t pay_off, pay_len;
            ssize_t k = http_body_next(&body, c->resp + off, got - off, &pay_off, &pay_len);
            if (k < 0) { /* malformed chunked framing */
                failed = 1;
                break;
            }
            if (dechunk && pay_len > 0)
                iov[n++] = (struct iovec){c->resp + off + pay_off, pay_len};
            else if (!dechunk && n > 1 && (char *)iov[n - 1].iov_base + iov[n - 1].iov_len == c->resp + off)
                iov[n - 1].iov_len += (size_t)k; /* contiguous with the previous span */
            else if (!dechunk)
                iov[n++] = (struct iovec){c->resp + off, (size_t)k};
            off += (size_t)k;
        }
        if (n > 0 && net_send_all(c->fd, iov, n, PROXY_CLIENT_IO_TIMEOUT_MS, px->stop_fd) != 0)
            failed = 1; /* the client went away: the response is not needed any more */
        n = 0;
        if (failed || body.done)
            break;
        if (off < got)
            continue; /* iov was full */
        off = got = 0;
        ssize_t r = upstream_recv(px, up, c->resp, sizeof c->resp);
        if (r == 0 && body.framing == HTTP_UNTIL_CLOSE) {
            body.done = 1; /* the close is the end of this body */
            break;
        }
        if (r <= 0) { /* the backend closed or failed mid-body */
            failed = 1;
            break;
        }
        got = (size_t)r;
    }
    if (failed) {
        /* The head is out: the client can only learn of the failure by the close. */
        atomic_fetch_add(&px->aborted, 1);
        upstream_close(up);
        return 0;
    }
    /* Reusable only if the response ended exactly where its framing says, on a keep-alive
     * connection. Bytes after it (off < got) mean the backend and we disagree on where it
     * ended; a response with both Content-Length and chunked is a smuggling attempt. */
    int reusable = h->keep_alive && body.framing != HTTP_UNTIL_CLOSE && off == got &&
                   !(h->chunked && h->content_length >= 0);
    upstream_put(px, up, reusable, h->keepalive_timeout_ms);
    return keep;
}

/* Forward one request and relay its response. Returns whether the client connection
 * stays open. */
static int forward(struct client *c, const struct request *rq)
{
    struct proxy *px = c->px;
    const struct backend *be = &px->backends[atomic_fetch_add(&px->next_backend, 1) % px->nbackends];
    size_t up_len = upstream_head(c, rq);
    if (up_len == 0) {
        send_simple(c, 431, "Request Header Fields Too Large", 0, rq->h.minor_version);
        return 0;
    }
    int idempotent = http_method_idempotent(rq->h.method, rq->h.method_len);
    int max_retries = px->limit > 0 ? (int)px->limit : 1; /* see below */
    struct upstream up;
    size_t got = 0;
    for (int attempt = 0;; attempt++) {
        if (upstream_get(px, be, attempt > 0, &up) != 0) {
            if (errno == EBUSY || (errno == ECANCELED && px->limit > 0))
                return unavailable(c, rq, errno == ECANCELED);
            return bad_gateway(c, rq, errno == ETIMEDOUT);
        }
        struct iovec iov[2] = {{c->up_head, up_len}, {c->in + rq->head_len, rq->body_len}};
        int err = 0;
        if (upstream_send(px, &up, iov, 2) != 0) {
            err = errno;
        } else {
            ssize_t r = upstream_recv(px, &up, c->resp, sizeof c->resp);
            if (r > 0)
                got = (size_t)r;
            err = r > 0 ? 0 : r == 0 ? ECONNRESET : errno;
        }
        if (err == 0)
            break;
        upstream_close(&up);
        /* A reused connection that fails before any response byte was, almost always,
         * closed by the backend's idle timer as our request crossed its close: the
         * request was not processed. Retry once on a new connection (not another pooled
         * one), as nginx and Go do, but only an idempotent request: a POST may have been
         * processed before the connection broke. With a limit a retry cannot bypass the
         * pool and may get another idle one: up to limit retries, ending at a new one. */
        if (up.reused && attempt < max_retries && idempotent && err != ETIMEDOUT && err != ECANCELED) {
            atomic_fetch_add(&px->retries, 1);
            continue;
        }
        return bad_gateway(c, rq, err == ETIMEDOUT);
    }

    /* The rest of the head; interim (1xx) responses are passed on and skipped. */
    for (;;) {
        size_t head_len;
        while ((head_len = http_head_length(c->resp, got)) == 0) {
            ssize_t r = got < HTTP_MAX_HEAD
                            ? upstream_recv(px, &up, c->resp + got, sizeof c->resp - got)
                            : -1; /* head too large */
            if (r <= 0) {
                int timed_out = r < 0 && errno == ETIMEDOUT;
                upstream_close(&up);
                return bad_gateway(c, rq, timed_out);
            }
            got += (size_t)r;
        }
        struct http_head h;
        if (http_parse_response(c->resp, head_len, &h) != 0 || h.status == 101) { /* no upgrades */
            upstream_close(&up);
            return bad_gateway(c, rq, 0);
        }
        if (h.status >= 200)
            return relay(c, rq, &up, &h, head_len, got);
        if (rq->h.minor_version >= 1) { /* HTTP/1.0 clients know no 1xx */
            struct iovec iov = {c->resp, head_len};
            if (net_send_all(c->fd, &iov, 1, PROXY_CLIENT_IO_TIMEOUT_MS, px->stop_fd) != 0) {
                upstream_close(&up);
                return 0;
            }
        }
        memmove(c->resp, c->resp + head_len, got - head_len);
        got -= head_len;
    }
}

void *proxy_client_thread(void *arg)
{
    struct client_job *job = arg;
    struct client *c = malloc(sizeof *c);
    char *in = malloc(HTTP_MAX_HEAD);
    if (c != NULL && in != NULL) {
        c->px = job->px;
        c->fd = job->fd;
        c->in = in;
        c->in_len = 0;
        c->in_cap = HTTP_MAX_HEAD;
        struct request rq;
        while (read_request(c, &rq) == 1) {
            atomic_fetch_add(&c->px->requests, 1);
            int keep = forward(c, &rq);
            /* Drop this request; a pipelined next one may follow in the buffer. */
            size_t used = rq.head_len + rq.body_len;
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= used;
            if (!keep)
                break;
        }
        in = c->in;
    }
    close(job->fd);
    free(in);
    free(c);
    proxy_client_done(job);
    return NULL;
}
