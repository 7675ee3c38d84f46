/* http.h: just enough HTTP/1.1 parsing for the demo's backend, proxy and load generator.
 *
 * Nothing here allocates or does I/O. A message head (request or status line, headers,
 * blank line) is parsed in place: struct http_head points into the caller's buffer. A
 * message body is not parsed but *framed*: struct http_body tells where it ends
 * (Content-Length, chunked, or at connection close, RFC 9112 section 6), which is what a
 * proxy must know before it may reuse a connection.
 */
#ifndef DEMO_HTTP_H
#define DEMO_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest head we accept. Real servers use 8 to 64 KiB; 16 KiB is plenty for the demo. */
#define HTTP_MAX_HEAD 16384

/* Length of the head at the start of buf (up to and including the blank line), or 0 while
 * it is incomplete. */
size_t http_head_length(const char *buf, size_t len);

struct http_head {
    const char *method; /* request only: "GET", ... (not NUL-terminated) */
    size_t method_len;
    const char *target; /* request only: "/path?query" */
    size_t target_len;
    int status;         /* response only: 200, ... */
    int minor_version;  /* HTTP/1.<minor_version>: 0 or 1 */
    int64_t content_length;       /* -1 when there is no Content-Length */
    int chunked;                  /* Transfer-Encoding ends with "chunked" */
    int other_encoding;           /* Transfer-Encoding present but not ending with chunked */
    int keep_alive;               /* persistent per version and Connection header */
    int expect_continue;          /* Expect: 100-continue */
    int64_t keepalive_timeout_ms; /* Keep-Alive: timeout=S (seconds, fraction allowed); -1 none */
    const char *headers;          /* the header lines, each ending in CRLF */
    size_t headers_len;
};

/* Parse a head of head_len bytes (as returned by http_head_length). 0, or -1 if malformed. */
int http_parse_request(const char *buf, size_t head_len, struct http_head *h);
int http_parse_response(const char *buf, size_t head_len, struct http_head *h);

struct http_header {
    const char *name, *value; /* value without surrounding whitespace */
    size_t name_len, value_len;
    const char *line; /* the whole line including its CRLF, to copy it unchanged */
    size_t line_len;
};

/* Iterate over the header lines of a parsed head: start with *cursor = 0; returns 1 and
 * fills hdr while there is a header, 0 at the end. */
int http_next_header(const struct http_head *h, size_t *cursor, struct http_header *hdr);

/* Case-insensitive header-name test. */
int http_header_is(const struct http_header *hdr, const char *name);

/* A hop-by-hop header describes one connection, not the message, so a proxy must not
 * forward it (RFC 9110 section 7.6.1): Connection, Keep-Alive, Proxy-Connection, TE,
 * Trailer, Transfer-Encoding, Upgrade, and any header the Connection header names. The
 * proxy frames bodies itself, so Transfer-Encoding is treated as hop-by-hop here too;
 * callers that pass a chunked body through unchanged re-add it. */
int http_is_hop_by_hop(const struct http_head *h, const struct http_header *hdr);

/* Is method idempotent (RFC 9110 section 9.2.2)? Only those may be retried on a new
 * connection after a reused one failed. */
int http_method_idempotent(const char *method, size_t len);

/* ---- body framing ---- */

enum http_framing {
    HTTP_NO_BODY,     /* HEAD response, 1xx/204/304, or a request without a body */
    HTTP_LENGTH,      /* Content-Length bytes */
    HTTP_CHUNKED,     /* chunks up to the zero-size chunk and the trailer section */
    HTTP_UNTIL_CLOSE, /* response without a length: the body ends when the peer closes */
};

struct http_body {
    enum http_framing framing;
    uint64_t left; /* LENGTH: bytes left; CHUNKED: data bytes left in the current chunk */
    int state;     /* chunked parser state */
    int done;      /* the body is complete */
};

/* Framing of a request body: -1 for a request we cannot frame (Transfer-Encoding other
 * than chunked, RFC 9112 section 6.3 rule 4). */
int http_body_for_request(struct http_body *b, const struct http_head *h);

/* Framing of a response body; head_request: the request was HEAD (no body follows). */
void http_body_for_response(struct http_body *b, const struct http_head *h, int head_request);

/* Feed n body bytes at p. Consumes framing bytes and at most one run of payload bytes,
 * which it reports as p[*payload_off .. *payload_off + *payload_len). Returns the number
 * of bytes consumed (call again with the rest), or -1 if the chunked framing is malformed.
 * Stops at the end of the body (b->done): bytes after it are not consumed. */
ssize_t http_body_next(struct http_body *b, const char *p, size_t n, size_t *payload_off,
                       size_t *payload_len);

/* Feed n body bytes, ignoring payload boundaries: bytes consumed (stops at the end of the
 * body), or -1 if malformed. */
ssize_t http_body_scan(struct http_body *b, const char *p, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* DEMO_HTTP_H */
