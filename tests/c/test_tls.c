/* Pooling SSL*: real TLS 1.3 connections over loopback, each released with its SSL* as the
 * ctx of its fd, as the demo proxy does (c-examples/tls.c: the check and the helpers under
 * test). on_close frees every SSL exactly once, with the fd still open, whichever way the
 * pool closes the connection (key full, a 0 keep-alive hint, dead, purge, free), never one
 * the caller holds. The TLS-aware check keeps a connection whose session tickets arrived
 * while it was idle (and reads them); the pool's default recv-peek check calls the same
 * connection dead. A server's close_notify, a bare close and application data nobody asked
 * for are dead for the TLS check too, and it never consumes application data.
 *
 * The server ends live in this thread: both ends are non-blocking and a pump drives the
 * handshakes, so every wait is for bytes on loopback (poll, bounded), never a timer. */
#include "harness.h"

#include <openssl/err.h>
#include <signal.h>

#include "tls.h"

#define KEY "tls.example:443"
#define MAX_CONNS 16

/* A connection: the client end (the pool's to own when released) and the server end. */
struct tconn {
    int cfd, sfd;
    SSL *c, *s;  /* c: NULL once on_close freed it */
    int closes;  /* on_close calls for it */
    int reason;  /* the last one's */
};

static struct tconn conns[MAX_CONNS];
static int nconns;
static connpool *g_pool;
static int g_checks;
static SSL_CTX *g_cctx, *g_sctx;
static int g_listener;

static struct tconn *by_ssl(const void *ctx)
{
    for (int i = 0; i < nconns; i++)
        if (conns[i].c != NULL && conns[i].c == ctx)
            return &conns[i];
    return NULL;
}

static void on_close(void *arg, int fd, void *ctx, int reason)
{
    CHECK(arg == &g_checks);
    CHECK(fd_is_open(fd)); /* still open: freeing the SSL may send a close_notify on it */
    struct tconn *t = by_ssl(ctx);
    CHECK(t != NULL);
    CHECK_EQ(t->cfd, fd);
    CHECK_EQ(++t->closes, 1);
    t->reason = reason;
    (void)connpool_idle_count_key(g_pool, KEY); /* under a pool lock this would deadlock */
    tls_close(ctx, reason != CONNPOOL_CLOSE_DEAD);
    t->c = NULL;
}

static int check(void *arg, int fd, void *ctx)
{
    CHECK(arg == &g_checks);
    CHECK(ctx != NULL && SSL_get_fd(ctx) == fd);
    g_checks++;
    return tls_idle_check(ctx);
}

/* A pool that owns SSL*s: on_close always; the TLS check, or (tls_check 0) the default. */
static connpool *tls_pool(int tls_check, uint32_t per_key)
{
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.max_idle_per_key = per_key;
    cfg.on_close = on_close;
    cfg.check = tls_check ? check : NULL;
    cfg.arg = &g_checks;
    g_pool = connpool_new_with_config(&cfg);
    CHECK(g_pool != NULL);
    return g_pool;
}

static int want_io(SSL *ssl, int r)
{
    int err = SSL_get_error(ssl, r);
    ERR_clear_error();
    return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
}

/* A TLS 1.3 connection over loopback, handshake done on both ends. */
static struct tconn *tls_pair(void)
{
    CHECK(nconns < MAX_CONNS);
    struct tconn *t = &conns[nconns++];
    memset(t, 0, sizeof *t);
    tcp_connect_pair(g_listener, &t->cfd, &t->sfd);
    CHECK_SYS(fcntl(t->cfd, F_SETFL, O_NONBLOCK) == 0 && fcntl(t->sfd, F_SETFL, O_NONBLOCK) == 0);
    t->c = SSL_new(g_cctx);
    t->s = SSL_new(g_sctx);
    CHECK(t->c != NULL && t->s != NULL && SSL_set_fd(t->c, t->cfd) == 1 && SSL_set_fd(t->s, t->sfd) == 1);
    SSL_set_connect_state(t->c);
    SSL_set_accept_state(t->s);
    int cdone = 0, sdone = 0;
    for (int round = 0; round < 50 && !(cdone && sdone); round++) {
        int r;
        if (!cdone && (r = SSL_do_handshake(t->c)) != 1)
            CHECK(want_io(t->c, r));
        else
            cdone = 1;
        if (!sdone && (r = SSL_do_handshake(t->s)) != 1)
            CHECK(want_io(t->s, r));
        else
            sdone = 1;
        /* Wait for the other end's next flight (both flights are tiny: never WANT_WRITE). */
        struct pollfd p[2];
        int n = 0;
        if (!cdone)
            p[n++] = (struct pollfd){.fd = t->cfd, .events = POLLIN};
        if (!sdone)
            p[n++] = (struct pollfd){.fd = t->sfd, .events = POLLIN};
        if (n > 0)
            CHECK(poll(p, (nfds_t)n, 5000) > 0);
    }
    CHECK(cdone && sdone);
    CHECK_EQ(SSL_version(t->c), TLS1_3_VERSION);
    return t;
}

/* Wait (bounded) until fd has input or a hang-up, through a dup: fd may be the pool's. */
static void await_input(int fd)
{
    int d = dup(fd);
    CHECK(d >= 0 && wait_event(d, POLLIN | POLLRDHUP) == 0);
    close(d);
}

/* Wait (bounded) until the peer's FIN has reached fd (and with it whatever it sent before). */
static void await_hangup(int fd)
{
    int d = dup(fd);
    CHECK(d >= 0 && wait_event(d, POLLRDHUP) == 0);
    close(d);
}

/* The server's session ticket (OpenSSL's server sends one as its handshake ends, the
 * second with its next write) is waiting, unread: what the recv-peek check calls stray
 * bytes. */
static void await_tickets(struct tconn *t)
{
    await_input(t->cfd);
    char b;
    CHECK_EQ(recv(t->cfd, &b, 1, MSG_PEEK | MSG_DONTWAIT), 1);
}

/* Let the check read the tickets now, so that the next input is what the server does next
 * (poll cannot tell a ticket from a close_notify or data). */
static void drain_tickets(struct tconn *t)
{
    await_tickets(t);
    CHECK_EQ(tls_idle_check(t->c), 0);
}

static int read_some(SSL *ssl, int fd, char *buf, int len)
{
    for (int i = 0; i < 50; i++) {
        int r = SSL_read(ssl, buf, len);
        if (r > 0)
            return r;
        CHECK(want_io(ssl, r));
        CHECK(wait_event(fd, POLLIN) == 0);
    }
    return -1;
}

/* One exchange each way: the connection (and its SSL) still works. */
static void roundtrip(struct tconn *t)
{
    char buf[8];
    CHECK_EQ(SSL_write(t->c, "ping", 4), 4);
    CHECK_EQ(read_some(t->s, t->sfd, buf, sizeof buf), 4);
    CHECK(memcmp(buf, "ping", 4) == 0);
    CHECK_EQ(SSL_write(t->s, "pong", 4), 4);
    CHECK_EQ(read_some(t->c, t->cfd, buf, sizeof buf), 4);
    CHECK(memcmp(buf, "pong", 4) == 0);
}

/* Close the server end: with close_notify, or bare (FIN only). */
static void server_close(struct tconn *t, int notify)
{
    tls_close(t->s, notify);
    close(t->sfd);
    t->s = NULL;
    t->sfd = -1;
}

/* The caller's end, held (never given to the pool, or acquired back): the test frees it. */
static void client_close(struct tconn *t)
{
    tls_close(t->c, 1);
    close(t->cfd);
    t->c = NULL;
}

static void expect_closed_by_pool(const struct tconn *t, int reason)
{
    CHECK_EQ(t->closes, 1);
    CHECK_EQ(t->reason, reason);
    CHECK(t->c == NULL);
    CHECK_CLOSED(t->cfd);
}

/* Tickets that arrived while idle: the TLS check reads them and keeps the connection, at
 * acquire and at prune; the SSL comes back by handle, acquire_ctx and acquire_info. */
static void tickets_are_healthy(void)
{
    connpool *pool = tls_pool(1, 8);
    connpool_key *k = connpool_key_get(pool, KEY);
    CHECK(k != NULL);
    struct tconn *t = tls_pair();
    await_tickets(t);
    unsigned long long before = tls_tickets_in_check();
    CHECK_EQ(connpool_key_release(k, t->cfd, t->c, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    void *ctx = NULL;
    connpool_conn_info info = {.struct_size = sizeof info};
    g_checks = 0;
    CHECK_EQ(connpool_key_acquire(k, &ctx, &info), t->cfd);
    CHECK(ctx == t->c && info.ctx == t->c);
    CHECK_EQ(g_checks, 1);
    CHECK(tls_tickets_in_check() - before >= 1); /* read by the check */
    CHECK_EQ(stats_of(pool).dead, 0);
    char b;
    CHECK(recv(t->cfd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == -1 && errno == EAGAIN); /* all read */
    roundtrip(t);

    /* The string calls see the same connection and the same SSL. */
    CHECK_EQ(connpool_release_ctx(pool, KEY, t->cfd, t->c, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    ctx = NULL;
    CHECK_EQ(connpool_acquire_ctx(pool, KEY, &ctx), t->cfd);
    CHECK(ctx == t->c);
    CHECK_EQ(connpool_key_release(k, t->cfd, t->c, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK_EQ(connpool_acquire_info(pool, KEY, &info), t->cfd);
    CHECK(info.ctx == t->c);
    roundtrip(t);

    /* A ticket sent later, while the connection is pooled: prune checks it, keeps it. */
    CHECK_EQ(connpool_key_release(k, t->cfd, t->c, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    tls_send_ticket(t->s);
    await_input(t->cfd);
    before = tls_tickets_in_check();
    CHECK_EQ(connpool_prune(pool), 0);
    CHECK_EQ(tls_tickets_in_check() - before, 1);
    CHECK_EQ(connpool_idle_count_key(pool, KEY), 1);
    CHECK_EQ(t->closes, 0);

    connpool_free(pool); /* on_close: purged, close_notify, SSL freed */
    expect_closed_by_pool(t, CONNPOOL_CLOSE_PURGED);
    server_close(t, 0);
}

/* The same tickets, with the pool's default check: "bytes nobody asked for", dead. */
static void naive_check_kills_them(void)
{
    connpool *pool = tls_pool(0, 8);
    struct tconn *t = tls_pair();
    await_tickets(t);
    CHECK_EQ(connpool_release_ctx(pool, KEY, t->cfd, t->c, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(pool, KEY), -ENOENT);
    CHECK_EQ(stats_of(pool).dead, 1);
    expect_closed_by_pool(t, CONNPOOL_CLOSE_DEAD);
    connpool_free(pool);
    server_close(t, 0);
}

/* Dead for the TLS check: close_notify + close (also behind an unread ticket), a bare
 * close, application data nobody asked for; at acquire and at prune. */
static void server_closes_are_dead(void)
{
    connpool *pool = tls_pool(1, 8);
    struct tconn *notify = tls_pair(), *bare = tls_pair(), *data = tls_pair(), *pruned = tls_pair();
    struct tconn *all[] = {notify, bare, data, pruned};
    drain_tickets(bare);
    drain_tickets(data); /* so that its next input is the data */
    await_tickets(pruned); /* its ticket stays unread: the check reads past it */
    for (int i = 0; i < 4; i++)
        CHECK_EQ(connpool_release_ctx(pool, KEY, all[i]->cfd, all[i]->c, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    server_close(notify, 1);
    server_close(bare, 0);
    CHECK_EQ(SSL_write(data->s, "HTTP/1.1 200 OK\r\n", 17), 17);
    server_close(pruned, 1);
    await_hangup(notify->cfd);
    await_hangup(bare->cfd);
    await_input(data->cfd);
    await_hangup(pruned->cfd);
    CHECK_EQ(connpool_prune(pool), 4);
    CHECK_EQ(stats_of(pool).dead, 4);
    for (int i = 0; i < 4; i++)
        expect_closed_by_pool(all[i], CONNPOOL_CLOSE_DEAD);
    server_close(data, 0);

    /* At acquire: the top one is dead (close_notify), the next healthy (its tickets). */
    struct tconn *healthy = tls_pair(), *gone = tls_pair();
    await_tickets(healthy);
    await_tickets(gone);
    CHECK_EQ(connpool_release_ctx(pool, KEY, healthy->cfd, healthy->c, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release_ctx(pool, KEY, gone->cfd, gone->c, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    server_close(gone, 1);
    await_hangup(gone->cfd);
    void *ctx = NULL;
    CHECK_EQ(connpool_acquire_ctx(pool, KEY, &ctx), healthy->cfd);
    CHECK(ctx == healthy->c);
    expect_closed_by_pool(gone, CONNPOOL_CLOSE_DEAD);
    CHECK_EQ(healthy->closes, 0);
    roundtrip(healthy);
    connpool_free(pool); /* it is held: never closed by the pool, no on_close */
    CHECK_EQ(healthy->closes, 0);
    CHECK_OPEN(healthy->cfd);
    client_close(healthy);
    server_close(healthy, 0);
}

/* The check peeks: application data it calls dead is still there to read. */
static void check_never_consumes(void)
{
    struct tconn *t = tls_pair();
    drain_tickets(t);
    CHECK_EQ(SSL_write(t->s, "data", 4), 4);
    await_input(t->cfd);
    CHECK_EQ(tls_idle_check(t->c), 1);
    char buf[8];
    CHECK_EQ(read_some(t->c, t->cfd, buf, sizeof buf), 4);
    CHECK(memcmp(buf, "data", 4) == 0);
    CHECK_EQ(tls_idle_check(t->c), 0); /* nothing left: healthy, and it did not block */
    client_close(t);
    server_close(t, 0);
}

/* Every other way the pool closes a connection frees its SSL once: key full, a 0 hint
 * (expired at release), purge, free. */
static void every_close_frees_once(void)
{
    connpool *pool = tls_pool(1, 2);
    connpool_key *k = connpool_key_get(pool, KEY);
    struct tconn *t[5];
    for (int i = 0; i < 5; i++)
        t[i] = tls_pair();
    CHECK_EQ(connpool_key_release(k, t[0]->cfd, t[0]->c, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(connpool_key_release(k, t[1]->cfd, t[1]->c, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(connpool_key_release(k, t[2]->cfd, t[2]->c, CONNPOOL_NO_HINT), CONNPOOL_CLOSED);
    expect_closed_by_pool(t[2], CONNPOOL_CLOSE_FULL); /* before the release returned */
    CHECK_EQ(connpool_key_release(k, t[3]->cfd, t[3]->c, 0), CONNPOOL_CLOSED);
    expect_closed_by_pool(t[3], CONNPOOL_CLOSE_EXPIRED);
    CHECK_EQ(connpool_purge(pool, KEY), 2);
    expect_closed_by_pool(t[0], CONNPOOL_CLOSE_PURGED);
    expect_closed_by_pool(t[1], CONNPOOL_CLOSE_PURGED);
    CHECK_EQ(connpool_release_ctx(pool, KEY, t[4]->cfd, t[4]->c, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    connpool_free(pool);
    expect_closed_by_pool(t[4], CONNPOOL_CLOSE_PURGED);
    for (int i = 0; i < 5; i++)
        server_close(t[i], 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a close_notify written to a closed peer: EPIPE, not a signal */
    int fds_before = count_open_fds();
    g_sctx = tls_server_ctx(0); /* OpenSSL's default: two tickets as the handshake ends */
    g_cctx = tls_client_ctx();
    CHECK(g_sctx != NULL && g_cctx != NULL);
    g_listener = listener_open();

    tickets_are_healthy();
    naive_check_kills_them();
    server_closes_are_dead();
    check_never_consumes();
    every_close_frees_once();

    for (int i = 0; i < nconns; i++)
        CHECK(conns[i].c == NULL && conns[i].s == NULL); /* every SSL freed */
    close(g_listener);
    SSL_CTX_free(g_sctx);
    SSL_CTX_free(g_cctx);
    CHECK_EQ(count_open_fds(), fds_before);
    printf("test_tls: ok (%d TLS 1.3 connections, %llu tickets received, %llu read by the check)\n", nconns,
           tls_tickets_received(), tls_tickets_in_check());
    return 0;
}
