/* backend: a small HTTP/1.1 origin server on 127.0.0.1 for the demo.
 *
 * One thread, epoll (edge-triggered). Keep-alive by default, like real servers: it
 * advertises "Keep-Alive: timeout=S, max=R", closes a connection after it has been idle
 * --idle-ms milliseconds and after --max-requests requests. Those closes are exactly what
 * a connection pool must survive: a pooled connection can be closed by its server at any
 * moment.
 *
 *   backend [--port N] [--size BYTES] [--idle-ms N] [--max-requests N]
 *           [--framing length|chunked|close|mixed] [--no-keep-alive-header]
 *           [--drop-every N]
 *
 * Any request gets 200 and a body of --size bytes ("/bytes/N" asks for N bytes instead),
 * framed by Content-Length, chunked encoding, or the connection's close (mixed: rotates
 * through the three). --no-keep-alive-header keeps the idle timeout secret, as many servers
 * do (nginx by default): a client then cannot expire connections before the server closes
 * them, and must detect the closed ones. --drop-every N closes a connection, unanswered,
 * on every Nth request that arrives on an already used connection: what a client sees
 * when a server's idle timer fires just as its request arrives (a race no client check
 * can prevent; the proxy must retry). It prints "backend: listening on 127.0.0.1:PORT pid PID" when ready
 * and, on SIGINT or SIGTERM, its counters ("backend: accepted=N requests=N ...").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "net.h"

#define MAX_BODY (16u << 20) /* /bytes/N is capped at 16 MiB */
#define CHUNK 4096           /* chunked responses use chunks of this size */

enum framing { FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE, FRAME_MIXED };

static struct {
    int port;
    size_t size;
    uint64_t idle_ms; /* 0: never close idle connections */
    uint32_t max_requests; /* 0: no limit */
    enum framing framing;
    int keep_alive_header; /* announce "Keep-Alive: timeout=..." */
    uint64_t drop_every;   /* 0: never drop a request */
} opt = {0, 1024, 5000, 0, FRAME_LENGTH, 1, 0};

static struct {
    uint64_t accepted, requests, idle_closed, max_closed, peer_closed, dropped;
    uint64_t reused_requests; /* requests on an already used connection, for --drop-every */
} stats;

/* One client connection. It sits on the idle list (oldest first) whenever it has no
 * response to write, so the oldest idle connection is always at the head: the idle timer
 * is then O(1) per event and exact, without a periodic scan. */
struct conn {
    int fd;
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

/* Connections waiting, oldest first: idle between requests (closed after idle_ms, the
 * keep-alive timeout) or accepted and still waiting for their first request (closed after
 * FRESH_MS, like a server's header timeout: a client may take a while to send its first
 * request after connect() returns, and the keep-alive timer is not meant for that). */
#define FRESH_MS 10000
struct list {
    struct conn *head, *tail;
};
static struct list idle_list, fresh_list;
static struct conn *all_conns;
static char filler[CHUNK]; /* body bytes */
static uint64_t framing_rotation;

static void idle_remove(struct conn *c)
{
    struct list *l = c->on_list;
    if (l == NULL)
        return;
    if (c->prev) c->prev->next = c->next; else l->head = c->next;
    if (c->next) c->next->prev = c->prev; else l->tail = c->prev;
    c->prev = c->next = NULL;
    c->on_list = NULL;
}

/* (Re)start the clock of list l for c: move it to l's tail, the youngest end. */
static void list_touch(struct list *l, struct conn *c)
{
    idle_remove(c);
    c->last_active = now_ms();
    c->prev = l->tail;
    c->next = NULL;
    if (l->tail) l->tail->next = c; else l->head = c;
    l->tail = c;
    c->on_list = l;
}

/* (Re)start the idle (keep-alive) clock. */
static void idle_touch(struct conn *c) { list_touch(&idle_list, c); }

static uint64_t fresh_ms(void) { return opt.idle_ms > FRESH_MS ? opt.idle_ms : FRESH_MS; }

static void conn_close(struct conn *c)
{
    idle_remove(c);
    if (c->all_prev) c->all_prev->all_next = c->all_next; else all_conns = c->all_next;
    if (c->all_next) c->all_next->all_prev = c->all_prev;
    close(c->fd); /* also removes it from the epoll set */
    free(c->out);
    free(c);
}

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
static int next_request(struct conn *c)
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

/* Do everything the connection allows now: write, parse, read, until the socket would
 * block (edge-triggered epoll reports each readiness change once). */
static void service(struct conn *c)
{
    for (;;) {
        if (c->out_off < c->out_len) {
            ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return; /* EPOLLOUT will call us again; not idle meanwhile */
                if (errno == EINTR)
                    continue;
                conn_close(c);
                return;
            }
            c->out_off += (size_t)w;
            if (c->out_off < c->out_len)
                continue;
            if (c->close_after) {
                conn_close(c);
                return;
            }
            idle_touch(c); /* response out: the idle clock starts */
            continue;
        }
        int next = next_request(c);
        if (next < 0) {
            conn_close(c);
            return;
        }
        if (next > 0) {
            idle_remove(c); /* busy until its response is out */
            continue;
        }
        ssize_t r = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
        if (r > 0) {
            c->in_len += (size_t)r;
            idle_touch(c);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        stats.peer_closed++; /* EOF or error */
        conn_close(c);
        return;
    }
}

static void accept_all(int epfd, int listener)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN: accepted everything; EMFILE etc.: retried on the next event */
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        stats.accepted++;
        c->fd = fd;
        net_nodelay(fd);
        c->all_next = all_conns;
        if (all_conns)
            all_conns->all_prev = c;
        all_conns = c;
        list_touch(&fresh_list, c); /* one that never sends a request is closed too, later */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_close(c);
            continue;
        }
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: backend [--port N] [--size BYTES] [--idle-ms N] [--max-requests N]\n"
                    "               [--framing length|chunked|close|mixed] [--no-keep-alive-header]\n"
                    "               [--drop-every N]\n");
    exit(2);
}

static void parse_options(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},         {"size", required_argument, NULL, 's'},
        {"idle-ms", required_argument, NULL, 'i'},      {"max-requests", required_argument, NULL, 'm'},
        {"framing", required_argument, NULL, 'f'},      {"no-keep-alive-header", no_argument, NULL, 'k'},
        {"drop-every", required_argument, NULL, 'd'},   {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p': opt.port = atoi(optarg); break;
        case 's': opt.size = (size_t)strtoull(optarg, NULL, 10); break;
        case 'i': opt.idle_ms = strtoull(optarg, NULL, 10); break;
        case 'm': opt.max_requests = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'k': opt.keep_alive_header = 0; break;
        case 'd': opt.drop_every = strtoull(optarg, NULL, 10); break;
        case 'f':
            if (strcmp(optarg, "length") == 0) opt.framing = FRAME_LENGTH;
            else if (strcmp(optarg, "chunked") == 0) opt.framing = FRAME_CHUNKED;
            else if (strcmp(optarg, "close") == 0) opt.framing = FRAME_CLOSE;
            else if (strcmp(optarg, "mixed") == 0) opt.framing = FRAME_MIXED;
            else usage();
            break;
        default: usage();
        }
    }
    if (optind != argc || opt.size > MAX_BODY)
        usage();
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    memset(filler, 'x', sizeof filler);

    /* Signals arrive as readable events of a signalfd, so stopping is one more event of
     * the loop, with no handler racing the loop's state. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    int listener = net_listen_loopback(opt.port);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || listener < 0 || epfd < 0) {
        perror("backend: setup");
        return 1;
    }
    if (fcntl(listener, F_SETFL, O_NONBLOCK) != 0) {
        perror("backend: fcntl");
        return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listener};
    epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev);
    ev.data.ptr = &sfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);

    printf("backend: listening on 127.0.0.1:%d pid %d\n", net_local_port(listener), (int)getpid());
    fflush(stdout);

    int running = 1;
    while (running) {
        int timeout = -1;
        if (opt.idle_ms > 0 && (idle_list.head != NULL || fresh_list.head != NULL)) {
            uint64_t deadline = UINT64_MAX, now = now_ms();
            if (idle_list.head != NULL)
                deadline = idle_list.head->last_active + opt.idle_ms;
            if (fresh_list.head != NULL && fresh_list.head->last_active + fresh_ms() < deadline)
                deadline = fresh_list.head->last_active + fresh_ms();
            timeout = deadline > now ? (int)(deadline - now) : 0;
        }
        struct epoll_event events[64];
        int n = epoll_wait(epfd, events, 64, timeout);
        if (n < 0 && errno != EINTR) {
            perror("backend: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == &listener)
                accept_all(epfd, listener);
            else if (events[i].data.ptr == &sfd)
                running = 0;
            else
                service(events[i].data.ptr);
        }
        /* Close the connections idle for idle_ms, oldest first, like a server's
         * keep-alive timer. */
        uint64_t now = now_ms();
        while (opt.idle_ms > 0 && idle_list.head != NULL && now >= idle_list.head->last_active + opt.idle_ms) {
            stats.idle_closed++;
            conn_close(idle_list.head);
        }
        while (opt.idle_ms > 0 && fresh_list.head != NULL && now >= fresh_list.head->last_active + fresh_ms()) {
            stats.idle_closed++;
            conn_close(fresh_list.head);
        }
    }

    while (all_conns != NULL)
        conn_close(all_conns);
    close(epfd);
    close(listener);
    close(sfd);
    printf("backend: accepted=%llu requests=%llu idle_closed=%llu max_closed=%llu peer_closed=%llu dropped=%llu\n",
           (unsigned long long)stats.accepted, (unsigned long long)stats.requests,
           (unsigned long long)stats.idle_closed, (unsigned long long)stats.max_closed,
           (unsigned long long)stats.peer_closed, (unsigned long long)stats.dropped);
    return 0;
}
