/* backend_http.c: the demo backend's HTTP side (see backend.h): a request from a
 * connection's input, its response rendered into the connection's output buffer. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

static char filler[CHUNK]; /* body bytes */
static uint64_t framing_rotation;

static int out_reserve(struct conn *c, size_t more)
{
    if (c->out_len + more <= c->out_cap)
        return 0;
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + more)
        cap *= 2;
    char *p = realloc(c->out, cap);
    if (p == NULL)
        return -1;
    c->out = p;
    c->out_cap = cap;
    return 0;
}

static int out_append(struct conn *c, const void *p, size_t n)
{
    if (out_reserve(c, n) != 0)
        return -1;
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

static int out_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int out_printf(struct conn *c, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= sizeof line ? -1 : out_append(c, line, (size_t)n);
}

static int out_body(struct conn *c, size_t n)
{
    if (filler[0] == 0)
        memset(filler, 'x', sizeof filler);
    for (size_t i = 0; i < n; i += CHUNK)
        if (out_append(c, filler, n - i < CHUNK ? n - i : CHUNK) != 0)
            return -1;
    return 0;
}

/* An error answer; the connection closes after it (we may not know where the request
 * ended). */
static void respond_error(struct conn *c, int status, const char *reason)
{
    c->out_len = c->out_off = 0;
    out_printf(c, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status, reason);
    c->close_after = 1;
}

/* Render the response to the request h into c->out. */
static int respond(struct conn *c, const struct http_head *h)
{
    size_t size = opt.size;
    static const char prefix[] = "/bytes/";
    if (h->target_len > sizeof prefix - 1 && memcmp(h->target, prefix, sizeof prefix - 1) == 0) {
        size = (size_t)strtoul(h->target + sizeof prefix - 1, NULL, 10);
        if (size > MAX_BODY)
            size = MAX_BODY;
    }
    enum framing f = opt.framing == FRAME_MIXED ? (enum framing)(framing_rotation++ % 3) : opt.framing;
    if (f == FRAME_CHUNKED && h->minor_version == 0)
        f = FRAME_CLOSE; /* HTTP/1.0 clients do not know chunked encoding */
    int head_only = h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0;

    c->requests++;
    stats.requests++;
    int last = opt.max_requests && c->requests >= opt.max_requests;
    if (last)
        stats.max_closed++;
    c->close_after = !h->keep_alive || last || f == FRAME_CLOSE;

    c->out_len = c->out_off = 0;
    int rc = out_printf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n");
    if (f == FRAME_LENGTH)
        rc |= out_printf(c, "Content-Length: %zu\r\n", size);
    else if (f == FRAME_CHUNKED)
        rc |= out_printf(c, "Transfer-Encoding: chunked\r\n");
    if (c->close_after) {
        rc |= out_printf(c, "Connection: close\r\n");
    } else {
        if (h->minor_version == 0)
            rc |= out_printf(c, "Connection: keep-alive\r\n");
        if (opt.idle_ms > 0 && opt.keep_alive_header) {
            /* The header counts seconds. Real servers send whole seconds; the demo's
             * sub-second timeouts need a fraction ("timeout=0.300"), which the demo proxy
             * reads to the millisecond. */
            rc |= out_printf(c, "Keep-Alive: timeout=%llu.%03llu", (unsigned long long)(opt.idle_ms / 1000),
                             (unsigned long long)(opt.idle_ms % 1000));
            if (opt.max_requests)
                rc |= out_printf(c, ", max=%u", opt.max_requests - c->requests);
            rc |= out_printf(c, "\r\n");
        }
    }
    rc |= out_printf(c, "\r\n");
    if (head_only || rc != 0)
        return rc;
    if (f != FRAME_CHUNKED)
        return out_body(c, size);
    for (size_t i = 0; i < size; i += CHUNK) {
        size_t n = size - i < CHUNK ? size - i : CHUNK;
        rc |= out_printf(c, "%zx\r\n", n);
        rc |= out_body(c, n);
        rc |= out_printf(c, "\r\n");
    }
    return rc | out_printf(c, "0\r\n\r\n");
}

static void consume_input(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Take one complete request from c->in, if there is one, and render its response.
 * 1: a response is ready; 0: need more input; -1: drop the connection unanswered. */
int next_request(struct conn *c)
{
    if (c->discard > 0) { /* the previous request's body */
        size_t n = c->in_len < c->discard ? c->in_len : (size_t)c->discard;
        consume_input(c, n);
        c->discard -= n;
        if (c->discard > 0)
            return 0;
    }
    size_t head_len = http_head_length(c->in, c->in_len);
    if (head_len == 0) {
        if (c->in_len < sizeof c->in)
            return 0;
        respond_error(c, 431, "Request Header Fields Too Large");
        return 1;
    }
    struct http_head h;
    struct http_body body;
    if (http_parse_request(c->in, head_len, &h) != 0) {
        respond_error(c, 400, "Bad Request");
        return 1;
    }
    if (http_body_for_request(&body, &h) != 0 || body.framing == HTTP_CHUNKED) {
        /* Chunked request bodies are allowed by HTTP/1.1, but this small server (like
         * many) wants a length. */
        respond_error(c, 411, "Length Required");
        return 1;
    }
    if (c->requests > 0 && opt.drop_every > 0 && ++stats.reused_requests % opt.drop_every == 0) {
        stats.dropped++;
        return -1;
    }
    if (respond(c, &h) != 0) {
        respond_error(c, 500, "Internal Server Error");
        return 1;
    }
    c->discard = body.framing == HTTP_LENGTH ? body.left : 0;
    consume_input(c, head_len);
    return 1;
}
