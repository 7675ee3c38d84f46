/* The caller's health check (connpool_config.check, since 0.2) replaces the recv(MSG_PEEK)
 * check in acquire, prune and reap, runs outside every lock (it calls back into the pool),
 * and is what "healthy" means: unread bytes it accepts (a TLS session ticket, an HTTP/2
 * PING) keep a connection, and the idle watcher does not reap a readable connection it
 * calls healthy, while a hang-up still gets reaped. */
#include "harness.h"

#define DEAD_MARK ((void *)0xdead)

static int g_checks, g_closes, g_last_reason;
static connpool *g_pool;

/* Dead when its ctx says so, or when the peer hung up (a real check would read the
 * protocol's bytes here); bytes waiting are fine. */
static int check(void *arg, int fd, void *ctx)
{
    CHECK(arg == &g_checks);
    CHECK(fd_is_open(fd));
    g_checks++;
    (void)connpool_idle_count_key(g_pool, "k:1"); /* under a pool lock: a deadlock */
    if (ctx == DEAD_MARK)
        return 1;
    char b[64];
    ssize_t n = recv(fd, b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return 1; /* EOF */
    if (n < 0 && errno != EAGAIN)
        return 1;
    return 0;
}

static void on_close(void *arg, int fd, void *ctx, int reason)
{
    (void)arg, (void)fd, (void)ctx;
    g_closes++;
    g_last_reason = reason;
}

static connpool *new_pool(uint32_t flags)
{
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.flags = flags;
    cfg.check = check;
    cfg.on_close = on_close;
    cfg.arg = &g_checks;
    connpool *p = connpool_new_with_config(&cfg);
    CHECK(p != NULL);
    return p;
}

/* Wait until fd has input or a hang-up (through a dup: the fd itself is the pool's). */
static void await(int fd)
{
    int d = dup(fd);
    CHECK(d >= 0 && wait_event(d, POLLIN | POLLRDHUP) == 0);
    close(d);
}

static void acquire_and_prune(int listener)
{
    g_pool = new_pool(CONNPOOL_CHECK_LIVENESS);
    int c[3], s[3];
    tcp_connect_pairs(listener, 3, c, s);
    /* Bytes waiting: the recv check would call it dead; this check keeps it. */
    CHECK_EQ(send(s[0], "ticket", 6, 0), 6);
    await(c[0]);
    CHECK_EQ(connpool_release_ctx(g_pool, "k:1", c[0], NULL, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release_ctx(g_pool, "k:1", c[1], DEAD_MARK, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    /* Acquire: the top one (c[1]) is dead by the check, the next (c[0]) healthy. */
    g_checks = 0;
    CHECK_EQ(connpool_acquire(g_pool, "k:1"), c[0]);
    CHECK_EQ(g_checks, 2);
    CHECK_EQ(g_closes, 1);
    CHECK_EQ(g_last_reason, CONNPOOL_CLOSE_DEAD);
    CHECK_CLOSED(c[1]);
    /* Prune: checks every idle connection with it. */
    CHECK_EQ(connpool_release(g_pool, "k:1", c[0]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release_ctx(g_pool, "k:1", c[2], DEAD_MARK, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    g_checks = 0;
    CHECK_EQ(connpool_prune(g_pool), 1);
    CHECK_EQ(g_checks, 2);
    CHECK_CLOSED(c[2]);
    CHECK_EQ(connpool_idle_count_key(g_pool, "k:1"), 1);
    connpool_stats st = stats_of(g_pool);
    CHECK_EQ(st.dead, 2);
    connpool_free(g_pool);
    for (int i = 0; i < 3; i++)
        close(s[i]);
    g_closes = 0;
}

/* The watcher with a check: bytes on an idle connection do not wake it; a hang-up does,
 * and reap closes only the connection that fails the check. */
static void watcher(int listener)
{
    g_pool = new_pool(CONNPOOL_CHECK_LIVENESS | CONNPOOL_WATCH);
    int wfd = connpool_watch_fd(g_pool);
    CHECK(wfd >= 0);
    int c[2], s[2];
    tcp_connect_pairs(listener, 2, c, s);
    CHECK_EQ(connpool_release(g_pool, "k:1", c[0]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(g_pool, "k:1", c[1]), CONNPOOL_POOLED);
    CHECK_EQ(send(s[0], "ping", 4, 0), 4); /* readable, healthy */
    await(c[0]);
    struct pollfd p = {.fd = wfd, .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 0), 0); /* input alone does not wake the watcher */
    CHECK_EQ(connpool_reap(g_pool), 0);
    close(s[1]); /* a hang-up does */
    CHECK_EQ(poll(&p, 1, 5000), 1);
    CHECK_EQ(connpool_reap(g_pool), 1);
    CHECK_CLOSED(c[1]);
    CHECK_OPEN(c[0]);
    CHECK_EQ(connpool_idle_count_key(g_pool, "k:1"), 1);
    CHECK_EQ(g_last_reason, CONNPOOL_CLOSE_DEAD);
    CHECK_EQ(poll(&p, 1, 0), 0); /* nothing left to do */
    connpool_free(g_pool);
    close(s[0]);
    g_closes = 0;
}

/* Without CONNPOOL_CHECK_LIVENESS the check is not made on acquire. */
static void off_without_the_flag(int listener)
{
    g_pool = new_pool(0);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(connpool_release_ctx(g_pool, "k:1", c, DEAD_MARK, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    g_checks = 0;
    CHECK_EQ(connpool_acquire(g_pool, "k:1"), c);
    CHECK_EQ(g_checks, 0);
    connpool_free(g_pool);
    close(c);
    close(s);
}

int main(void)
{
    alarm(60); /* a check run under a pool lock would deadlock: fail, not hang */
    int listener = listener_open();
    int baseline = count_open_fds();
    acquire_and_prune(listener);
    printf("ok: check replaces the recv check in acquire and prune\n");
    watcher(listener);
    printf("ok: the watcher ignores healthy input and reaps a hang-up\n");
    off_without_the_flag(listener);
    printf("ok: no check without CONNPOOL_CHECK_LIVENESS\n");
    CHECK_EQ(count_open_fds(), baseline);
    close(listener);
    return 0;
}
