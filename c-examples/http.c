/* http.c: see http.h. Strict where being lenient would let a proxy and a server disagree
 * on where a message ends (the root of request smuggling): duplicate Content-Length values
 * that differ, bad chunk sizes and folded header lines are errors. */
#include "http.h"

#include <string.h>

size_t http_head_length(const char *buf, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return i + 1;
    return 0;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

static int equal_nocase(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

int http_header_is(const struct http_header *hdr, const char *name)
{
    return equal_nocase(hdr->name, hdr->name_len, name);
}

/* Does the comma-separated list v contain token (case-insensitive)? */
static int list_has(const char *v, size_t len, const char *token, size_t token_len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == token_len) {
            size_t k = 0;
            while (k < token_len && lower((unsigned char)v[start + k]) == lower((unsigned char)token[k]))
                k++;
            if (k == token_len)
                return 1;
        }
    }
    return 0;
}

int http_next_header(const struct http_head *h, size_t *cursor, struct http_header *hdr)
{
    const char *p = h->headers + *cursor, *end = h->headers + h->headers_len;
    if (p >= end)
        return 0;
    const char *eol = memchr(p, '\n', (size_t)(end - p)); /* parse checked every line ends in CRLF */
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    hdr->line = p;
    hdr->line_len = (size_t)(eol + 1 - p);
    hdr->name = p;
    hdr->name_len = (size_t)(colon - p);
    const char *v = colon + 1, *vend = eol - 1; /* vend: the CR */
    while (v < vend && (*v == ' ' || *v == '\t'))
        v++;
    while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
        vend--;
    hdr->value = v;
    hdr->value_len = (size_t)(vend - v);
    *cursor += hdr->line_len;
    return 1;
}

/* Parse a decimal number of at most 18 digits (no overflow). -1 if not a number. */
static int64_t parse_decimal(const char *s, size_t len)
{
    if (len == 0 || len > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "timeout=5, max=100" -> 5000; "timeout=0.25" -> 250. -1 when absent or malformed. */
static int64_t keepalive_timeout_ms(const char *v, size_t len)
{
    static const char key[] = "timeout=";
    for (size_t i = 0; i + sizeof key - 1 <= len; i++) {
        if (!equal_nocase(v + i, sizeof key - 1, key) || (i > 0 && v[i - 1] != ' ' && v[i - 1] != ','))
            continue;
        size_t j = i + sizeof key - 1, start = j;
        int64_t ms = 0;
        while (j < len && v[j] >= '0' && v[j] <= '9' && j - start < 9)
            ms = ms * 10 + (v[j++] - '0');
        if (j == start)
            return -1;
        ms *= 1000;
        if (j < len && v[j] == '.') { /* fractions of a second, to the millisecond */
            int64_t scale = 100;
            for (j++; j < len && v[j] >= '0' && v[j] <= '9'; j++, scale /= 10)
                ms += (v[j] - '0') * scale;
        }
        return ms;
    }
    return -1;
}

/* Shared by request and response: check the header lines and extract what framing and
 * connection management need. */
static int parse_headers(struct http_head *h, const char *p, const char *end)
{
    h->content_length = -1;
    h->chunked = h->other_encoding = h->expect_continue = 0;
    h->keepalive_timeout_ms = -1;
    h->headers = p;
    h->headers_len = (size_t)(end - 2 - p); /* without the blank line */
    int conn_close = 0, conn_keep_alive = 0;
    const char *q = p;
    while (q < end - 2) {
        const char *eol = memchr(q, '\n', (size_t)(end - q));
        if (eol == NULL || eol == q || eol[-1] != '\r')
            return -1;
        const char *colon = memchr(q, ':', (size_t)(eol - q));
        /* No name, whitespace in or before the name (obsolete line folding): reject. */
        if (colon == NULL || colon == q)
            return -1;
        for (const char *c = q; c < colon; c++)
            if (*c == ' ' || *c == '\t')
                return -1;
        q = eol + 1;
    }
    size_t cursor = 0;
    struct http_header hdr;
    while (http_next_header(h, &cursor, &hdr)) {
        if (http_header_is(&hdr, "Content-Length")) {
            int64_t n = parse_decimal(hdr.value, hdr.value_len);
            if (n < 0 || (h->content_length >= 0 && h->content_length != n))
                return -1;
            h->content_length = n;
        } else if (http_header_is(&hdr, "Transfer-Encoding")) {
            /* Only the last coding matters for framing (RFC 9112 section 6.3). */
            const char *v = hdr.value;
            size_t n = hdr.value_len;
            int ends_chunked = n >= 7 && equal_nocase(v + n - 7, 7, "chunked") &&
                               (n == 7 || v[n - 8] == ' ' || v[n - 8] == ',' || v[n - 8] == '\t');
            h->chunked = ends_chunked;
            h->other_encoding = !ends_chunked;
        } else if (http_header_is(&hdr, "Connection")) {
            conn_close |= list_has(hdr.value, hdr.value_len, "close", 5);
            conn_keep_alive |= list_has(hdr.value, hdr.value_len, "keep-alive", 10);
        } else if (http_header_is(&hdr, "Keep-Alive")) {
            h->keepalive_timeout_ms = keepalive_timeout_ms(hdr.value, hdr.value_len);
        } else if (http_header_is(&hdr, "Expect")) {
            h->expect_continue = equal_nocase(hdr.value, hdr.value_len, "100-continue");
        }
    }
    /* HTTP/1.1 connections persist unless closed; HTTP/1.0 ones only when asked. */
    h->keep_alive = h->minor_version >= 1 ? !conn_close : (conn_keep_alive && !conn_close);
    return 0;
}

/* "HTTP/1.x": sets minor version; -1 otherwise (HTTP/2 never arrives on this path). */
static int parse_version(const char *p, size_t len, int *minor)
{
    if (len != 8 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
        return -1;
    *minor = p[7] - '0';
    return 0;
}

int http_parse_request(const char *buf, size_t head_len, struct http_head *h)
{
    memset(h, 0, sizeof *h);
    const char *end = buf + head_len;
    const char *eol = memchr(buf, '\r', head_len);
    if (eol == NULL || eol[1] != '\n')
        return -1;
    const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
    if (sp1 == NULL || sp1 == buf)
        return -1;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (sp2 == NULL || sp2 == sp1 + 1)
        return -1;
    h->method = buf;
    h->method_len = (size_t)(sp1 - buf);
    h->target = sp1 + 1;
    h->target_len = (size_t)(sp2 - sp1 - 1);
    if (parse_version(sp2 + 1, (size_t)(eol - sp2 - 1), &h->minor_version) != 0)
        return -1;
    h->status = 0;
    return parse_headers(h, eol + 2, end);
}

int http_parse_response(const char *buf, size_t head_len, struct http_head *h)
{
    memset(h, 0, sizeof *h);
    const char *end = buf + head_len;
    const char *eol = memchr(buf, '\r', head_len);
    if (eol == NULL || eol[1] != '\n' || eol - buf < 12 || buf[8] != ' ')
        return -1;
    if (parse_version(buf, 8, &h->minor_version) != 0)
        return -1;
    int64_t status = parse_decimal(buf + 9, 3);
    if (status < 100 || status > 999 || (eol - buf > 12 && buf[12] != ' '))
        return -1;
    h->status = (int)status;
    return parse_headers(h, eol + 2, end);
}

int http_is_hop_by_hop(const struct http_head *h, const struct http_header *hdr)
{
    static const char *const fixed[] = {"Connection", "Keep-Alive", "Proxy-Connection", "TE",
                                        "Trailer", "Transfer-Encoding", "Upgrade"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (http_header_is(hdr, fixed[i]))
            return 1;
    size_t cursor = 0;
    struct http_header c;
    while (http_next_header(h, &cursor, &c))
        if (http_header_is(&c, "Connection") && list_has(c.value, c.value_len, hdr->name, hdr->name_len))
            return 1;
    return 0;
}

int http_method_idempotent(const char *method, size_t len)
{
    static const char *const idempotent[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof idempotent / sizeof idempotent[0]; i++)
        if (len == strlen(idempotent[i]) && memcmp(method, idempotent[i], len) == 0)
            return 1;
    return 0;
}

/* ---- body framing ---- */

enum chunk_state {
    CH_SIZE_FIRST, /* first hex digit of a chunk size */
    CH_SIZE,       /* more hex digits, or the end of the size */
    CH_EXT,        /* chunk extension: skipped up to CR */
    CH_SIZE_LF,    /* LF after the size line */
    CH_DATA,       /* left bytes of chunk data */
    CH_DATA_CR,    /* CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER,      /* start of a trailer line, or the final CRLF */
    CH_TRAILER_LINE, /* inside a trailer field line */
    CH_TRAILER_LF,
    CH_END_LF, /* LF of the final CRLF */
};

static void body_init(struct http_body *b, enum http_framing framing, uint64_t length)
{
    b->framing = framing;
    b->left = length;
    b->state = CH_SIZE_FIRST;
    b->done = framing == HTTP_NO_BODY || (framing == HTTP_LENGTH && length == 0);
}

int http_body_for_request(struct http_body *b, const struct http_head *h)
{
    if (h->other_encoding)
        return -1;
    if (h->chunked)
        body_init(b, HTTP_CHUNKED, 0);
    else if (h->content_length > 0)
        body_init(b, HTTP_LENGTH, (uint64_t)h->content_length);
    else
        body_init(b, HTTP_NO_BODY, 0);
    return 0;
}

void http_body_for_response(struct http_body *b, const struct http_head *h, int head_request)
{
    /* RFC 9112 section 6.3, in order. */
    if (head_request || h->status < 200 || h->status == 204 || h->status == 304)
        body_init(b, HTTP_NO_BODY, 0);
    else if (h->chunked)
        body_init(b, HTTP_CHUNKED, 0);
    else if (h->other_encoding)
        body_init(b, HTTP_UNTIL_CLOSE, 0);
    else if (h->content_length >= 0)
        body_init(b, HTTP_LENGTH, (uint64_t)h->content_length);
    else
        body_init(b, HTTP_UNTIL_CLOSE, 0);
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

ssize_t http_body_next(struct http_body *b, const char *p, size_t n, size_t *payload_off,
                       size_t *payload_len)
{
    *payload_off = *payload_len = 0;
    if (b->done)
        return 0;
    if (b->framing == HTTP_UNTIL_CLOSE) {
        *payload_len = n;
        return (ssize_t)n;
    }
    if (b->framing == HTTP_LENGTH) {
        size_t take = n < b->left ? n : (size_t)b->left;
        b->left -= take;
        b->done = b->left == 0;
        *payload_len = take;
        return (ssize_t)take;
    }
    size_t i = 0;
    while (i < n && !b->done) {
        int c = (unsigned char)p[i];
        switch (b->state) {
        case CH_SIZE_FIRST:
        case CH_SIZE: {
            int v = hex_value(c);
            if (v >= 0) {
                if (b->left >> 56) /* would overflow: no real chunk is this large */
                    return -1;
                b->left = b->left * 16 + (uint64_t)v;
                b->state = CH_SIZE;
            } else if (b->state == CH_SIZE_FIRST) {
                return -1;
            } else if (c == '\r') {
                b->state = CH_SIZE_LF;
            } else if (c == ';' || c == ' ' || c == '\t') {
                b->state = CH_EXT;
            } else {
                return -1;
            }
            i++;
            break;
        }
        case CH_EXT:
            if (c == '\r')
                b->state = CH_SIZE_LF;
            i++;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                return -1;
            b->state = b->left == 0 ? CH_TRAILER : CH_DATA;
            i++;
            break;
        case CH_DATA: {
            size_t take = n - i < b->left ? n - i : (size_t)b->left;
            b->left -= take;
            if (b->left == 0)
                b->state = CH_DATA_CR;
            *payload_off = i;
            *payload_len = take;
            return (ssize_t)(i + take); /* one payload run per call */
        }
        case CH_DATA_CR:
            if (c != '\r')
                return -1;
            b->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                return -1;
            b->state = CH_SIZE_FIRST;
            i++;
            break;
        case CH_TRAILER:
            b->state = c == '\r' ? CH_END_LF : CH_TRAILER_LINE;
            i++;
            break;
        case CH_TRAILER_LINE:
            if (c == '\r')
                b->state = CH_TRAILER_LF;
            i++;
            break;
        case CH_TRAILER_LF:
            if (c != '\n')
                return -1;
            b->state = CH_TRAILER;
            i++;
            break;
        case CH_END_LF:
            if (c != '\n')
                return -1;
            b->done = 1;
            i++;
            break;
        default:
            return -1;
        }
    }
    return (ssize_t)i;
}

ssize_t http_body_scan(struct http_body *b, const char *p, size_t n)
{
    size_t used = 0, off, len;
    while (used < n && !b->done) {
        ssize_t r = http_body_next(b, p + used, n - used, &off, &len);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        used += (size_t)r;
    }
    return (ssize_t)used;
}
