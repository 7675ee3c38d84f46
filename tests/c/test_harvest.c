/* The harvest check (CONNPOOL_CHECK_HARVEST), beyond the faults on idle connections that
 * test_liveness and test_faults run with it: what arrives while the caller holds a
 * connection and is still unread at its release (seen, whether or not a harvest ran
 * meanwhile), a lent connection read in full (kept, and watched again), the caller's own
 * check given only what a harvest found, discard of a muted connection, prune, and a fork
 * child's own set. Every wait below is the harvest's documented window (its guarantee's
 * terms), never a stand-in for synchronisation: the events are awaited with poll() first. */
#define _GNU_SOURCE
#include "harness.h"

#include <sys/wait.h>

#define A "10.7.0.1:80"
#define B "10.7.0.2:80"

static int g_listener;

static connpool *harvest_pool(void)
{
    return pool_new(8, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS | CONNPOOL_CHECK_HARVEST);
}

static void past_window(void) { sleep_ms((long)CONNPOOL_HARVEST_WINDOW_MS + 1); }

/* Bytes arrive while the caller holds c; it releases c without reading them. `harvest`:
 * a harvest runs meanwhile (an acquire of another key after the window), which finds c
 * readable while lent and mutes it; the release must watch it again. Either way, once the
 * window has passed, c is never handed out. */
static void unread_at_release(int harvest)
{
    connpool *pool = harvest_pool();
    int c, s;
    tcp_connect_pair(g_listener, &c, &s);
    CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(pool, A), c);
    CHECK_SYS(send(s, "junk", 4, MSG_NOSIGNAL) == 4);
    CHECK(wait_event(c, POLLIN) == 0); /* ours to poll: we hold it */
    if (harvest) {
        past_window();
        CHECK_EQ(connpool_acquire(pool, B), -ENOENT); /* harvests: c is readable, lent */
    }
    CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED);
    CHECK_EQ(fcntl(c, F_GETFD) >= 0, 1); /* pooled: open, the pool's */
    past_window();
    CHECK_EQ(connpool_acquire(pool, A), -ENOENT);
    CHECK_CLOSED(c);
    CHECK_EQ(stats_of(pool).dead, 1);
    close(s);
    connpool_free(pool);
}

/* A lent connection a harvest found readable, then read in full by the caller: healthy,
 * handed out again; and watched again: a FIN after its release is seen. */
static void read_in_full(void)
{
    connpool *pool = harvest_pool();
    int c, s;
    tcp_connect_pair(g_listener, &c, &s);
    CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(pool, A), c);
    CHECK_SYS(send(s, "resp", 4, MSG_NOSIGNAL) == 4);
    CHECK(wait_event(c, POLLIN) == 0);
    past_window();
    CHECK_EQ(connpool_acquire(pool, B), -ENOENT); /* mutes c: lent and readable */
    char buf[4];
    CHECK_SYS(recv(c, buf, sizeof buf, 0) == 4); /* the response, read in full */
    CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED);
    past_window();
    CHECK_EQ(connpool_acquire(pool, A), c); /* nothing to read: handed out */
    CHECK(tcp_roundtrip(c, s, 7) == 0);
    CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED);
    int watch = dup(c);
    CHECK_SYS(close(s) == 0); /* FIN while idle */
    CHECK(wait_event(watch, POLLIN | POLLRDHUP) == 0);
    past_window();
    CHECK_EQ(connpool_acquire(pool, A), -ENOENT);
    CHECK_CLOSED(c);
    connpool_stats st = stats_of(pool);
    CHECK_EQ(st.dead, 1);
    CHECK_EQ(st.hits, 2);
    close(watch);
    connpool_free(pool);
}

/* Healthy connections are never suspected: reused over and over, across harvests. */
static void healthy_kept(void)
{
    connpool *pool = harvest_pool();
    enum { N = 4 };
    int c[N], s[N];
    tcp_connect_pairs(g_listener, N, c, s);
    for (int i = 0; i < N; i++)
        CHECK_EQ(connpool_release(pool, A, c[i]), CONNPOOL_POOLED);
    for (int round = 0; round < 3; round++) {
        past_window();
        for (int i = N - 1; i >= 0; i--)
            CHECK_EQ(connpool_acquire(pool, A), c[i]); /* LIFO, none lost */
        for (int i = 0; i < N; i++) {
            CHECK(tcp_roundtrip(c[i], s[i], (unsigned char)i) == 0);
            CHECK_EQ(connpool_release(pool, A, c[i]), CONNPOOL_POOLED);
        }
    }
    CHECK_EQ(stats_of(pool).dead, 0);
    for (int i = 0; i < N; i++)
        close(s[i]);
    connpool_free(pool);
    for (int i = 0; i < N; i++)
        CHECK_CLOSED(c[i]);
}

/* The caller's check runs only for what a harvest found readable. */
static int g_checks, g_verdict;
static int count_check(void *arg, int fd, void *ctx)
{
    (void)arg, (void)ctx;
    g_checks++;
    char b[16];
    while (recv(fd, b, sizeof b, MSG_DONTWAIT) > 0) { /* a TLS ticket, say: consumed */
    }
    return g_verdict;
}

static void own_check(void)
{
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.flags = CONNPOOL_CHECK_LIVENESS | CONNPOOL_CHECK_HARVEST;
    cfg.check = count_check;
    connpool *pool = connpool_new_with_config(&cfg);
    CHECK(pool != NULL);
    int c, s;
    tcp_connect_pair(g_listener, &c, &s);
    CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED);
    past_window();
    CHECK_EQ(connpool_acquire(pool, A), c);
    CHECK_EQ(g_checks, 0); /* nothing readable: not checked */
    CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED);
    int watch = dup(c);
    CHECK_SYS(send(s, "ticket", 6, MSG_NOSIGNAL) == 6);
    CHECK(wait_event(watch, POLLIN) == 0);
    past_window();
    g_verdict = 0; /* healthy: the check read the ticket */
    CHECK_EQ(connpool_acquire(pool, A), c);
    CHECK_EQ(g_checks, 1);
    CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED); /* watched again */
    CHECK_SYS(send(s, "bad", 3, MSG_NOSIGNAL) == 3);
    CHECK(wait_event(watch, POLLIN) == 0);
    past_window();
    g_verdict = 1; /* dead */
    CHECK_EQ(connpool_acquire(pool, A), -ENOENT);
    CHECK_EQ(g_checks, 2);
    CHECK_CLOSED(c);
    close(watch);
    close(s);
    connpool_free(pool);
}

/* A lent connection a harvest muted, discarded by the caller: closed, nothing left. Then
 * prune closes what a harvest would find, at once (it harvests itself). */
static void discard_and_prune(void)
{
    connpool *pool = harvest_pool();
    int c, s, d, t;
    tcp_connect_pair(g_listener, &c, &s);
    tcp_connect_pair(g_listener, &d, &t);
    CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(pool, A), c);
    CHECK_SYS(send(s, "x", 1, MSG_NOSIGNAL) == 1);
    CHECK(wait_event(c, POLLIN) == 0);
    past_window();
    CHECK_EQ(connpool_acquire(pool, B), -ENOENT); /* mutes c */
    CHECK_EQ(connpool_discard(pool, A, c, NULL), 0);
    CHECK_CLOSED(c);
    CHECK_EQ(connpool_release(pool, B, d), CONNPOOL_POOLED);
    int watch = dup(d);
    CHECK_SYS(close(t) == 0);
    CHECK(wait_event(watch, POLLIN | POLLRDHUP) == 0);
    CHECK_EQ(connpool_prune(pool), 1); /* no window: prune harvests now */
    CHECK_CLOSED(d);
    connpool_stats st = stats_of(pool);
    CHECK_EQ(st.discarded, 1);
    CHECK_EQ(st.dead, 1);
    CHECK_EQ(st.idle, 0);
    close(watch);
    close(s);
    connpool_free(pool);
}

/* The same guarantee once the pool has run long enough for the acquires to judge the
 * window by the CPU's counter (calibrated by the harvests over 10 ms, where the kernel keeps
 * time by it): pairs for 30 ms first, then a FIN. */
static void after_calibration(void)
{
    connpool *pool = harvest_pool();
    int c, s;
    tcp_connect_pair(g_listener, &c, &s);
    CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED);
    long long until = now_ms() + 30;
    for (long i = 0; i < 10000000 && now_ms() < until; i++) {
        CHECK_EQ(connpool_acquire(pool, A), c);
        CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED);
    }
    int watch = dup(c);
    CHECK_SYS(close(s) == 0);
    CHECK(wait_event(watch, POLLIN | POLLRDHUP) == 0);
    past_window();
    CHECK_EQ(connpool_acquire(pool, A), -ENOENT);
    CHECK_CLOSED(c);
    CHECK_EQ(stats_of(pool).dead, 1);
    close(watch);
    connpool_free(pool);
}

/* A fork child's pool has a set of its own: its connections are watched there. */
static void fork_child(void)
{
    connpool *pool = harvest_pool();
    int c, s;
    tcp_connect_pair(g_listener, &c, &s);
    CHECK_EQ(connpool_release(pool, A, c), CONNPOOL_POOLED); /* the parent's */
    int rd;
    pid_t pid = fork_passing(&rd);
    if (pid == 0) {
        int d, t;
        tcp_connect_pair(g_listener, &d, &t);
        if (connpool_acquire(pool, A) != -ENOENT) /* the parent's connection is not ours */
            _exit(2);
        if (connpool_release(pool, A, d) != CONNPOOL_POOLED)
            _exit(3);
        close(t); /* FIN */
        struct pollfd p = {.fd = d, .events = POLLRDHUP};
        if (poll(&p, 1, 5000) != 1)
            _exit(4);
        past_window();
        if (connpool_acquire(pool, A) != -ENOENT || fcntl(d, F_GETFD) != -1)
            _exit(5);
        child_pass();
    }
    int status;
    CHECK_SYS(waitpid(pid, &status, 0) == pid);
    CHECK(child_succeeded(status, rd));
    CHECK_EQ(connpool_acquire(pool, A), c); /* the parent's, untouched by the child */
    CHECK(tcp_roundtrip(c, s, 1) == 0);
    close(c);
    close(s);
    connpool_free(pool);
}

int main(void)
{
    int baseline = count_open_fds();
    g_listener = listener_open();
    unread_at_release(0);
    unread_at_release(1);
    read_in_full();
    healthy_kept();
    own_check();
    discard_and_prune();
    after_calibration();
    fork_child();
    close(g_listener);
    CHECK_EQ(count_open_fds(), baseline);
    printf("harvest: unread bytes at release seen, lent connections muted and watched again, "
           "own check, discard, prune, fork\n");
    return 0;
}
