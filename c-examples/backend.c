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
 *           [--drop-every N] [--tls [--late-ticket]] [--max-conns N | --count-conns]
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
 *
 * --tls serves TLS 1.3 only, with a self-signed certificate made at start-up, in memory.
 * Its connections close with close_notify. OpenSSL sends a server's session tickets as
 * its handshake ends and with its next write, before the first response, so a client reads
 * them with that response; --late-ticket sends the ticket after the first response instead, so that it
 * reaches the client on an idle connection (as a later ticket or a KeyUpdate does): what
 * a connection pool's check must not take for a dead connection.
 *
 * --max-conns N is a capacity: it counts the connections open at once and, if it ever
 * has more than N, says so on stderr and exits 3 instead of 0 (a proxy with a per-backend
 * limit must never let that happen). --count-conns counts without a limit. Either way it
 * also prints "backend: max_open=M over_limit=K" at exit: the most connections open at
 * once, and the accepts that found more than N. count_open() keeps the count exact.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#include "backend.h"
#include "net.h"
#include "tls.h"

struct backend_options opt = {0, 1024, 5000, 0, FRAME_LENGTH, 1, 0, 0, 0, 0, 0};
struct backend_stats stats;
static SSL_CTX *tls_ctx; /* with --tls */

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
    /* With TLS, close_notify first: the client can tell a close from a cut connection. */
    tls_close(c->ssl, c->tls_ready);
    close(c->fd); /* also removes it from the epoll set */
    free(c->out);
    free(c);
    stats.open--;
}

/* send() and recv(), or with --tls their TLS forms, which answer the same way (-1 with
 * EAGAIN: wait for the next readiness). */
static ssize_t conn_send(struct conn *c, const void *p, size_t n)
{
    return c->ssl ? tls_write_nb(c->ssl, p, n) : send(c->fd, p, n, MSG_NOSIGNAL);
}

static ssize_t conn_recv(struct conn *c, void *p, size_t n)
{
    return c->ssl ? tls_read_nb(c->ssl, p, n) : recv(c->fd, p, n, 0);
}

/* Do everything the connection allows now: handshake, write, parse, read, until the
 * socket would block (edge-triggered epoll reports each readiness change once). */
static void service(struct conn *c)
{
    if (c->ssl != NULL && !c->tls_ready) {
        if (tls_accept_nb(c->ssl) < 0) {
            if (errno != EAGAIN)
                conn_close(c);
            return;
        }
        c->tls_ready = 1;
    }
    for (;;) {
        if (c->out_off < c->out_len) {
            ssize_t w = conn_send(c, c->out + c->out_off, c->out_len - c->out_off);
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
            /* --late-ticket: the session ticket follows the first response, so it reaches
             * the client while the connection is idle in its pool. */
            if (c->ssl != NULL && opt.late_ticket && c->requests == 1)
                tls_send_ticket(c->ssl);
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
        ssize_t r = conn_recv(c, c->in + c->in_len, sizeof c->in - c->in_len);
        if (r > 0) {
            c->in_len += (size_t)r;
            idle_touch(c);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        stats.peer_closed++; /* EOF (TLS: close_notify) or error */
        conn_close(c);
        return;
    }
}

/* --max-conns, --count-conns: count the connections open now, exactly, after an accept.
 * A client's close is a FIN or a reset that the kernel processes at once (on loopback,
 * normally before the client's close() returns), but this loop may not have read it yet:
 * when a client closes one connection and at once opens another (a pool freeing a slot,
 * then filling it), the kernel completes the connect, and this loop can take the new
 * connection from the accept queue (in the same batch, or in accept_all's loop behind
 * others) before it has seen the close. So the loop serves a batch's connections before
 * its accepts (main), and here every connection is looked at before counting: an EOF or
 * a reset with nothing before it closes it now, as its event would (keeping the sweep
 * short when the loop falls behind); one with bytes pending (a request, a TLS close_notify)
 * is left to its event and counts while its TCP state is ESTABLISHED, not after its
 * client's FIN or reset. The sweep answers nothing: serving requests here let a client
 * close its connections on the answer before the count, which then missed them. */
static int still_open(const struct conn *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || len < 1)
        return 1; /* cannot tell: count it, as its client may still hold it */
    return ti.tcpi_state == TCP_ESTABLISHED;
}

static void count_open(void)
{
    uint64_t open = 0;
    for (struct conn *c = all_conns, *next; c != NULL; c = next) {
        next = c->all_next; /* conn_close() frees c, never another connection */
        char b;
        ssize_t r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            stats.peer_closed++;
            conn_close(c);
        } else {
            open += (uint64_t)(r < 0 || still_open(c));
        }
    }
    if (open > stats.open_max)
        stats.open_max = open;
    if (opt.max_conns > 0 && open > opt.max_conns && stats.over_limit++ < 5)
        fprintf(stderr, "backend: %llu connections open at once, over --max-conns %u\n",
                (unsigned long long)open, opt.max_conns);
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
        stats.open++;
        c->fd = fd;
        net_nodelay(fd);
        c->all_next = all_conns;
        if (all_conns)
            all_conns->all_prev = c;
        all_conns = c;
        if (tls_ctx != NULL) {
            c->ssl = SSL_new(tls_ctx);
            if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
                conn_close(c);
                continue;
            }
            SSL_set_accept_state(c->ssl);
        }
        list_touch(&fresh_list, c); /* one that never sends a request is closed too, later */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_close(c);
            continue;
        }
        if (opt.count_conns)
            count_open(); /* c included: one its client already closed is not counted */
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: backend [--port N] [--size BYTES] [--idle-ms N] [--max-requests N]\n"
                    "               [--framing length|chunked|close|mixed] [--no-keep-alive-header]\n"
                    "               [--drop-every N] [--tls [--late-ticket]] [--max-conns N | --count-conns]\n");
    exit(2);
}

static void parse_options(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},         {"size", required_argument, NULL, 's'},
        {"idle-ms", required_argument, NULL, 'i'},      {"max-requests", required_argument, NULL, 'm'},
        {"framing", required_argument, NULL, 'f'},      {"no-keep-alive-header", no_argument, NULL, 'k'},
        {"drop-every", required_argument, NULL, 'd'},   {"tls", no_argument, NULL, 't'},
        {"late-ticket", no_argument, NULL, 'l'},         {"max-conns", required_argument, NULL, 'x'},
        {"count-conns", no_argument, NULL, 'n'},         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p': opt.port = atoi(optarg); break;
        case 's': opt.size = (size_t)strtoull(optarg, NULL, 10); break;
        case 'i': opt.idle_ms = strtoull(optarg, NULL, 10); break;
        case 'm': opt.max_requests = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'k': opt.keep_alive_header = 0; break;
        case 'd': opt.drop_every = strtoull(optarg, NULL, 10); break;
        case 't': opt.tls = 1; break;
        case 'l': opt.late_ticket = 1; break;
        case 'x': opt.max_conns = (uint32_t)strtoul(optarg, NULL, 10); opt.count_conns = 1; break;
        case 'n': opt.count_conns = 1; break;
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
    if (optind != argc || opt.size > MAX_BODY || (opt.late_ticket && !opt.tls))
        usage();
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    if (opt.tls && (tls_ctx = tls_server_ctx(opt.late_ticket ? TLS_SERVER_LATE_TICKET : 0)) == NULL)
        return 1;

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
        /* Accepts after the batch's connections: their EOFs are handled before a new
         * connection is counted, and count_open() (which may close connections) never
         * frees one whose event is still ahead in the batch. */
        int accept_ready = 0;
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == &listener)
                accept_ready = 1;
            else if (events[i].data.ptr == &sfd)
                running = 0;
            else
                service(events[i].data.ptr);
        }
        if (accept_ready)
            accept_all(epfd, listener);
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
    SSL_CTX_free(tls_ctx);
    printf("backend: accepted=%llu requests=%llu idle_closed=%llu max_closed=%llu peer_closed=%llu dropped=%llu\n",
           (unsigned long long)stats.accepted, (unsigned long long)stats.requests,
           (unsigned long long)stats.idle_closed, (unsigned long long)stats.max_closed,
           (unsigned long long)stats.peer_closed, (unsigned long long)stats.dropped);
    if (opt.count_conns)
        printf("backend: max_open=%llu over_limit=%llu\n", (unsigned long long)stats.open_max,
               (unsigned long long)stats.over_limit);
    return stats.over_limit > 0 ? 3 : 0;
}
