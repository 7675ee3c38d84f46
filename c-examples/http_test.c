/* http_test: unit tests of http.c, the parsing and body framing the proxy relies on to
 * know where a response ends (and so whether its connection may be reused). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static int parse_req(const char *s, struct http_head *h)
{
    size_t n = http_head_length(s, strlen(s));
    return n == 0 ? -2 : http_parse_request(s, n, h);
}

static int parse_resp(const char *s, struct http_head *h)
{
    size_t n = http_head_length(s, strlen(s));
    return n == 0 ? -2 : http_parse_response(s, n, h);
}

static void test_heads(void)
{
    struct http_head h;
    CHECK(http_head_length("GET / HTTP/1.1\r\nHost: a\r\n", 25) == 0);
    CHECK(parse_req("GET /x?y HTTP/1.1\r\nHost: a\r\n\r\n", &h) == 0);
    CHECK(h.method_len == 3 && memcmp(h.method, "GET", 3) == 0);
    CHECK(h.target_len == 4 && memcmp(h.target, "/x?y", 4) == 0);
    CHECK(h.minor_version == 1 && h.keep_alive && h.content_length == -1);

    /* Keep-alive: HTTP/1.1 by default, HTTP/1.0 only when asked; tokens in a list. */
    CHECK(parse_req("GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n", &h) == 0 && !h.keep_alive);
    CHECK(parse_req("GET / HTTP/1.0\r\n\r\n", &h) == 0 && !h.keep_alive);
    CHECK(parse_req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &h) == 0 && h.keep_alive);

    /* Malformed: bad version, folded header, no colon, conflicting lengths. */
    CHECK(parse_req("GET / HTTP/2.0\r\n\r\n", &h) == -1);
    CHECK(parse_req("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", &h) == -1);
    CHECK(parse_req("GET / HTTP/1.1\r\nNoColon\r\n\r\n", &h) == -1);
    CHECK(parse_req("GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", &h) == -1);
    CHECK(parse_req("GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", &h) == 0);
    CHECK(parse_req("GET / HTTP/1.1\r\nContent-Length: -3\r\n\r\n", &h) == -1);

    CHECK(parse_resp("HTTP/1.1 204 No Content\r\n\r\n", &h) == 0 && h.status == 204);
    CHECK(parse_resp("HTTP/1.1 200\r\n\r\n", &h) == 0 && h.status == 200); /* empty reason */
    CHECK(parse_resp("HTTP/1.1 20x OK\r\n\r\n", &h) == -1);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\n\r\n", &h) == 0);
    CHECK(h.keepalive_timeout_ms == 5000);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nKeep-Alive: max=3, timeout=0.250\r\n\r\n", &h) == 0);
    CHECK(h.keepalive_timeout_ms == 250);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nKeep-Alive: max=3\r\n\r\n", &h) == 0 && h.keepalive_timeout_ms == -1);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &h) == 0);
    CHECK(h.chunked && !h.other_encoding);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &h) == 0);
    CHECK(!h.chunked && h.other_encoding);
}

static void test_hop_by_hop(void)
{
    struct http_head h;
    CHECK(parse_req("GET / HTTP/1.1\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n"
                    "Host: a\r\n\r\n", &h) == 0);
    size_t cursor = 0;
    struct http_header hdr;
    int kept = 0, dropped = 0;
    while (http_next_header(&h, &cursor, &hdr)) {
        if (http_is_hop_by_hop(&h, &hdr)) {
            dropped++;
        } else {
            kept++;
            CHECK(http_header_is(&hdr, "host") && hdr.value_len == 1);
        }
    }
    CHECK(kept == 1 && dropped == 3);
    CHECK(http_method_idempotent("GET", 3) && http_method_idempotent("DELETE", 6));
    CHECK(!http_method_idempotent("POST", 4) && !http_method_idempotent("PATCH", 5));
}

static void test_framing_rules(void)
{
    struct http_head h;
    struct http_body b;
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", &h) == 0);
    http_body_for_response(&b, &h, 1);
    CHECK(b.framing == HTTP_NO_BODY && b.done); /* HEAD */
    http_body_for_response(&b, &h, 0);
    CHECK(b.framing == HTTP_LENGTH && b.left == 10 && !b.done);
    CHECK(parse_resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", &h) == 0);
    http_body_for_response(&b, &h, 0);
    CHECK(b.framing == HTTP_NO_BODY);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\n\r\n", &h) == 0);
    http_body_for_response(&b, &h, 0);
    CHECK(b.framing == HTTP_UNTIL_CLOSE);
    /* Transfer-Encoding wins over Content-Length. */
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", &h) == 0);
    http_body_for_response(&b, &h, 0);
    CHECK(b.framing == HTTP_CHUNKED);
    CHECK(parse_req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", &h) == 0);
    CHECK(http_body_for_request(&b, &h) == -1);
    CHECK(parse_req("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &h) == 0);
    CHECK(http_body_for_request(&b, &h) == 0 && b.done);
}

/* Feed body in pieces of `step` bytes; return bytes consumed and the payload. */
static ssize_t feed(const char *body, size_t step, char *payload, size_t *payload_len, int *done)
{
    struct http_body b;
    struct http_head h;
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &h) == 0);
    http_body_for_response(&b, &h, 0);
    size_t n = strlen(body), at = 0;
    *payload_len = 0;
    while (at < n && !b.done) {
        size_t piece = n - at < step ? n - at : step, used = 0;
        while (used < piece && !b.done) {
            size_t off, len;
            ssize_t k = http_body_next(&b, body + at + used, piece - used, &off, &len);
            if (k < 0)
                return -1;
            memcpy(payload + *payload_len, body + at + used + off, len);
            *payload_len += len;
            used += (size_t)k;
        }
        at += used;
        if (used < piece)
            break; /* the body ended inside this piece */
    }
    *done = b.done;
    return (ssize_t)at;
}

static void test_chunked(void)
{
    const char *body = "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\nNEXT";
    size_t body_len = strlen(body) - 4; /* "NEXT" belongs to the next message */
    for (size_t step = 1; step <= strlen(body); step++) {
        char payload[64];
        size_t len;
        int done;
        ssize_t used = feed(body, step, payload, &len, &done);
        CHECK(used == (ssize_t)body_len && done);
        CHECK(len == 31 && memcmp(payload, "helloabcdefghijklmnopqrstuvwxyz", 31) == 0);
    }
    char payload[64];
    size_t len;
    int done;
    CHECK(feed("0\r\n\r\n", 100, payload, &len, &done) == 5 && done && len == 0);
    CHECK(feed("5\r\nhello\r\n", 100, payload, &len, &done) == 10 && !done);
    CHECK(feed("x\r\n", 100, payload, &len, &done) == -1);          /* not hex */
    CHECK(feed("5\r\nhelloXX", 100, payload, &len, &done) == -1);   /* no CRLF after data */
    CHECK(feed("5\n\nhello", 100, payload, &len, &done) == -1);      /* bare LF */
    CHECK(feed("fffffffffffffffff\r\n", 100, payload, &len, &done) == -1); /* overflow */

    /* Content-Length framing stops at the length. */
    struct http_head h;
    struct http_body b;
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", &h) == 0);
    http_body_for_response(&b, &h, 0);
    CHECK(http_body_scan(&b, "ab", 2) == 2 && !b.done);
    CHECK(http_body_scan(&b, "cdEXTRA", 7) == 2 && b.done);
}

int main(void)
{
    test_heads();
    test_hop_by_hop();
    test_framing_rules();
    test_chunked();
    printf("http_test: ok\n");
    return 0;
}
