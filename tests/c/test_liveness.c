/* The liveness check on acquire (CONNPOOL_CHECK_LIVENESS, on by default): an idle connection
 * whose backend closed it (FIN), reset it (RST) or wrote stray bytes while it was idle is
 * never handed out; the pool closes it and tries the next one. connpool_prune() closes them
 * too. Real loopback TCP throughout. Each test runs twice: with the recv check, and with
 * the harvest (CONNPOOL_CHECK_HARVEST), whose guarantee holds once its window has passed
 * since the fault was visible. */
#define _GNU_SOURCE
#include "harness.h"

#include <netinet/tcp.h>

#define KEY "127.0.0.1:8080"

enum fault { FAULT_FIN, FAULT_RST, FAULT_BYTES };

/* The check under test: CONNPOOL_CHECK_LIVENESS, alone or with CONNPOOL_CHECK_HARVEST. */
static uint32_t g_check = CONNPOOL_CHECK_LIVENESS;

static connpool *checked_pool(void) { return pool_new(8, 0, 60000, 0, 0, g_check); }
static const char *fault_name[] = {"FIN", "RST", "stray bytes"};

/* The backend side does `f` to an idle connection; returns when the client side has seen
 * it. `watch` is a dup of the (pooled) client fd, used only to wait for the event. */
static void inject(enum fault f, int server, int watch)
{
    switch (f) {
    case FAULT_FIN:
        CHECK_SYS(close(server) == 0);
        CHECK(wait_event(watch, POLLIN | POLLRDHUP) == 0);
        break;
    case FAULT_RST: {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        CHECK_SYS(setsockopt(server, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0);
        CHECK_SYS(close(server) == 0);
        CHECK(wait_event(watch, POLLIN | POLLRDHUP) == 0);
        break;
    }
    case FAULT_BYTES:
        CHECK_SYS(send(server, "HTTP/1.1 200 OK\r\n", 17, MSG_NOSIGNAL) == 17);
        CHECK(wait_event(watch, POLLIN) == 0);
        break;
    }
    /* The harvest's contract: a connection readable for longer than its window is never
     * handed out. This waits out the window (the guarantee's own terms), not a thread. */
    if (g_check & CONNPOOL_CHECK_HARVEST)
        sleep_ms((long)CONNPOOL_HARVEST_WINDOW_MS + 1);
}

/* One dead connection under one live one... the dead one on top: acquire must skip it. */
static void dead_on_top(enum fault f, int listener)
{
    connpool *pool = checked_pool();
    CHECK(pool != NULL);
    int live_c, live_s, dead_c, dead_s;
    tcp_connect_pair(listener, &live_c, &live_s);
    tcp_connect_pair(listener, &dead_c, &dead_s);
    int watch = dup(dead_c);
    CHECK_SYS(watch >= 0);

    CHECK_EQ(connpool_release(pool, KEY, live_c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(pool, KEY, dead_c), CONNPOOL_POOLED); /* LIFO: on top */
    inject(f, dead_s, watch);

    int got = connpool_acquire(pool, KEY);
    if (got != live_c)
        fprintf(stderr, "%s: acquire returned %d, live %d, dead %d\n", fault_name[f], got, live_c, dead_c);
    CHECK_EQ(got, live_c);
    CHECK(tcp_roundtrip(got, live_s, 0x5a) == 0);
    /* The dead one was closed by the pool (its number; the socket lives on in `watch`). */
    if (got != dead_c)
        CHECK_CLOSED(dead_c);
    connpool_stats st = stats_of(pool);
    CHECK_EQ(st.dead, 1);
    CHECK_EQ(st.hits, 1);
    CHECK_EQ(st.misses, 0);
    CHECK_EQ(st.idle, 0);

    CHECK_EQ(connpool_acquire(pool, KEY), -ENOENT);
    CHECK_EQ(stats_of(pool).misses, 1);
    close(got);
    close(live_s);
    close(watch);
    if (f == FAULT_BYTES)
        close(dead_s);
    connpool_free(pool);
}

/* Every idle connection of the key is dead: acquire closes them all and returns -ENOENT. */
static void all_dead(int listener)
{
    connpool *pool = checked_pool();
    CHECK(pool != NULL);
    int c[3], s[3], w[3];
    tcp_connect_pairs(listener, 3, c, s);
    for (int i = 0; i < 3; i++) {
        w[i] = dup(c[i]);
        CHECK_EQ(connpool_release(pool, KEY, c[i]), CONNPOOL_POOLED);
    }
    for (int i = 0; i < 3; i++)
        inject((enum fault)i, s[i], w[i]);
    CHECK_EQ(connpool_acquire(pool, KEY), -ENOENT);
    for (int i = 0; i < 3; i++)
        CHECK_CLOSED(c[i]);
    connpool_stats st = stats_of(pool);
    CHECK_EQ(st.dead, 3);
    CHECK_EQ(st.hits, 0);
    CHECK_EQ(st.misses, 1);
    CHECK_EQ(st.idle, 0);
    CHECK_EQ(st.keys, 0);
    for (int i = 0; i < 3; i++)
        close(w[i]);
    close(s[2]);
    connpool_free(pool);
}

/* Without the flag the pool does not look: the dead connection comes back (this is what
 * the check prevents). */
static void check_off(int listener)
{
    connpool *pool = pool_new(8, 0, 60000, 0, 0, 0);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    int watch = dup(c);
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
    inject(FAULT_FIN, s, watch);
    CHECK_EQ(connpool_acquire(pool, KEY), c);
    unsigned char b;
    CHECK_EQ(recv(c, &b, 1, MSG_DONTWAIT), 0); /* EOF: dead, and handed out anyway */
    CHECK_EQ(stats_of(pool).dead, 0);
    close(c);
    close(watch);
    connpool_free(pool);
}

/* CONNPOOL_CHECK_SKIP_RECENT: a connection idle for the whole window is checked again (a
 * dead one is never handed out). Inside the window it may be handed out unchecked, but
 * only if its idle time says so: the window itself is tested with an injected clock in
 * tests/health.rs, since here time cannot be held still. */
static void skip_recent(int listener)
{
    connpool *pool = pool_new(8, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS | CONNPOOL_CHECK_SKIP_RECENT);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    int watch = dup(c);
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
    inject(FAULT_FIN, s, watch);
    connpool_conn_info info = {.struct_size = sizeof info};
    int got = connpool_acquire_info(pool, KEY, &info);
    if (got == c) { /* skipped: allowed only inside the window */
        CHECK(info.idle_ms < CONNPOOL_SKIP_RECENT_MS);
        CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
    } else {
        CHECK_EQ(got, -ENOENT);
    }
    /* Past the window (and a coarse clock tick or two): checked, closed, never handed out. */
    sleep_ms((long)CONNPOOL_SKIP_RECENT_MS + 50);
    if (got == c) {
        CHECK_EQ(connpool_acquire(pool, KEY), -ENOENT);
    }
    CHECK_CLOSED(c);
    CHECK_EQ(stats_of(pool).dead, 1);
    close(watch);
    connpool_free(pool);
}

/* connpool_prune() closes dead idle connections of every key, keeps the live ones in
 * their order. */
static void prune_closes_dead(int listener)
{
    connpool *pool = checked_pool();
    CHECK(pool != NULL);
    enum { N = 6 };
    int c[N], s[N], w[N];
    char key[N][32];
    tcp_connect_pairs(listener, N, c, s);
    for (int i = 0; i < N; i++) {
        snprintf(key[i], sizeof key[i], "10.9.0.%d:80", i % 3); /* 3 keys, 2 each */
        w[i] = dup(c[i]);
        CHECK_EQ(connpool_release(pool, key[i], c[i]), CONNPOOL_POOLED);
    }
    /* Kill 0 (FIN), 1 (RST), 2 (bytes); keep 3, 4, 5 alive. */
    for (int i = 0; i < 3; i++)
        inject((enum fault)i, s[i], w[i]);
    CHECK_EQ(connpool_prune(pool), 3);
    for (int i = 0; i < 3; i++)
        CHECK_CLOSED(c[i]);
    connpool_stats st = stats_of(pool);
    CHECK_EQ(st.dead, 3);
    CHECK_EQ(st.idle, 3);
    CHECK_EQ(st.keys, 3);
    for (int i = 3; i < N; i++) {
        CHECK_EQ(connpool_acquire(pool, key[i]), c[i]);
        CHECK(tcp_roundtrip(c[i], s[i], (unsigned char)i) == 0);
        close(c[i]);
        close(s[i]);
    }
    CHECK_EQ(connpool_prune(pool), 0);
    for (int i = 0; i < N; i++)
        close(w[i]);
    close(s[2]);
    connpool_free(pool);
}

/* A released fd that is not a socket (a pipe) fails the check (ENOTSOCK) and is closed. */
static void not_a_socket(void)
{
    connpool *pool = connpool_new_default();
    CHECK(pool != NULL);
    int p[2];
    CHECK_SYS(pipe(p) == 0);
    CHECK_EQ(connpool_release(pool, KEY, p[0]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(pool, KEY), -ENOENT);
    CHECK_CLOSED(p[0]);
    CHECK_EQ(stats_of(pool).dead, 1);
    close(p[1]);
    connpool_free(pool);
}

int main(void)
{
    int baseline = count_open_fds();
    int listener = listener_open();
    for (int round = 0; round < 2; round++) {
        g_check = CONNPOOL_CHECK_LIVENESS | (round ? CONNPOOL_CHECK_HARVEST : 0);
        for (int f = FAULT_FIN; f <= FAULT_BYTES; f++)
            dead_on_top((enum fault)f, listener);
        all_dead(listener);
        prune_closes_dead(listener);
    }
    g_check = CONNPOOL_CHECK_LIVENESS;
    check_off(listener);
    skip_recent(listener);
    not_a_socket(); /* the recv check's own verdict (ENOTSOCK); a harvest sees only input */
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    printf("liveness: FIN, RST and stray bytes never handed out (recv check and harvest); prune closes them\n");
    return 0;
}
