/* The idle watcher: with CONNPOOL_WATCH the caller's event loop polls connpool_watch_fd()
 * and calls connpool_reap(); with CONNPOOL_REAPER_THREAD the pool does it in a thread.
 * Either way an idle connection is closed the moment its backend closes it, or when its
 * deadline passes, without any acquire. Real loopback TCP throughout. */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

#define KEY "127.0.0.1:8080"
#define TICK_MS 10

static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, ms);
    CHECK_SYS(r >= 0);
    return r == 1;
}

/* Waits (bounded: 10 s) for the pool's idle count to reach `n`, without calling anything
 * that would close connections itself (no acquire). */
static void wait_idle(connpool *pool, size_t n)
{
    long long deadline = now_ms() + 10000;
    while (connpool_idle_count(pool) != n) {
        CHECK(now_ms() < deadline);
        sleep_ms(1);
    }
}

/* Waits (bounded: 10 s) until the pool has counted `n` dead connections. */
static void wait_dead(connpool *pool, unsigned long long n)
{
    long long deadline = now_ms() + 10000;
    while (stats_of(pool).dead < n) {
        CHECK(now_ms() < deadline);
        sleep_ms(1);
    }
    CHECK_EQ(stats_of(pool).dead, n);
}

/* Waits (bounded: 10 s) until fd is closed. */
static void wait_closed(int fd)
{
    long long deadline = now_ms() + 10000;
    while (!fd_is_closed(fd)) {
        CHECK(now_ms() < deadline);
        sleep_ms(1);
    }
}

static int threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    CHECK_SYS(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

enum { N = 6 };

/* Releases N connections, then the backend kills each (FIN, RST, stray bytes in turn). */
static void release_then_kill(connpool *pool, int listener, int c[N])
{
    int s[N];
    tcp_connect_pairs(listener, N, c, s);
    for (int i = 0; i < N; i++)
        CHECK_EQ(connpool_release(pool, KEY, c[i]), CONNPOOL_POOLED);
    for (int i = 0; i < N; i++) {
        switch (i % 3) {
        case 0:
            close(s[i]);
            break;
        case 1: {
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            CHECK_SYS(setsockopt(s[i], SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0);
            close(s[i]);
            break;
        }
        default:
            CHECK_SYS(send(s[i], "junk", 4, MSG_NOSIGNAL) == 4);
            shutdown(s[i], SHUT_WR);
            close(s[i]);
        }
    }
}

static void reaper_thread_closes_dead(int listener)
{
    /* ThreadSanitizer's runtime starts a thread of its own: count threads only without it. */
    int count_threads = getenv("TSAN_OPTIONS") == NULL;
    int before = threads_now();
    connpool *pool = pool_new(8, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS | CONNPOOL_REAPER_THREAD);
    if (count_threads)
        CHECK_EQ(threads_now(), before + 1);
    CHECK(connpool_watch_fd(pool) >= 0);
    int c[N];
    release_then_kill(pool, listener, c);
    wait_dead(pool, N); /* counted under the lock that removed them */
    for (int i = 0; i < N; i++)
        wait_closed(c[i]); /* closed just after, outside the lock */
    connpool_stats st = stats_of(pool);
    CHECK_EQ(st.idle, 0);
    CHECK_EQ(st.keys, 0);
    CHECK_EQ(st.hits + st.misses, 0);
    connpool_free(pool);
    /* Stopped and joined. The kernel lists an exited thread for a moment after
     * pthread_join returns (join waits for the tid to be cleared, not for the task to be
     * released), so wait for the count, bounded. */
    long long deadline = now_ms() + 5000;
    while (count_threads && threads_now() != before) {
        CHECK(now_ms() < deadline);
        sleep_ms(1);
    }
}

static void watch_fd_in_a_poll_loop(int listener)
{
    connpool *pool = pool_new(8, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS | CONNPOOL_WATCH);
    int wfd = connpool_watch_fd(pool);
    CHECK(wfd >= 0);
    CHECK_OPEN(wfd);
    CHECK(!readable(wfd, 0));
    int c[N];
    release_then_kill(pool, listener, c);
    size_t reaped = 0;
    for (int rounds = 0; reaped < N && rounds < 1000; rounds++) {
        CHECK(readable(wfd, 5000));
        reaped += connpool_reap(pool);
    }
    CHECK_EQ(reaped, N);
    CHECK_EQ(connpool_idle_count(pool), 0);
    for (int i = 0; i < N; i++)
        CHECK_CLOSED(c[i]);
    connpool_stats st = stats_of(pool);
    CHECK_EQ(st.dead, N);
    CHECK_EQ(st.keys, 0);
    CHECK(!readable(wfd, 0)); /* nothing left to do */
    connpool_free(pool);
}

static void deadline_makes_it_readable(int listener)
{
    connpool *pool = pool_new(8, 0, 100, 0, 0, CONNPOOL_CHECK_LIVENESS | CONNPOOL_WATCH);
    int wfd = connpool_watch_fd(pool);
    CHECK(wfd >= 0);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    long long t0 = now_ms();
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
    CHECK(readable(wfd, 5000));
    /* Not before the deadline, less a tick of the coarse clock that stamped it, or more on
     * a loaded VM that updates that clock late (~26 ms was measured). */
    CHECK(now_ms() - t0 >= 100 - 50);
    CHECK_EQ(connpool_reap(pool), 1);
    CHECK_CLOSED(c);
    CHECK_EQ(stats_of(pool).expired, 1);
    CHECK_EQ(stats_of(pool).keys, 0);
    CHECK(!readable(wfd, 0));

    /* Several deadlines: each fires in turn. If this process is descheduled for longer
     * than 30 ms between two releases, the later release itself closes the expired
     * d[0] (every call on a key first closes its expired connections), so count what is
     * meant, expirations, not reaps: all three expire, by the reaper or by a release. */
    int d[3], e[3];
    tcp_connect_pairs(listener, 3, d, e);
    unsigned long long expired0 = stats_of(pool).expired;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(connpool_release_hint(pool, KEY, d[i], (uint64_t)(30 * (i + 1))), CONNPOOL_POOLED);
    size_t reaped = 0;
    for (int rounds = 0; stats_of(pool).expired < expired0 + 3 && rounds < 100; rounds++) {
        CHECK(readable(wfd, 5000));
        reaped += connpool_reap(pool);
    }
    CHECK_EQ(stats_of(pool).expired, expired0 + 3);
    CHECK(reaped >= 1 && reaped <= 3); /* the last one always goes by the reaper */
    for (int i = 0; i < 3; i++) {
        CHECK_CLOSED(d[i]);
        close(e[i]);
    }
    CHECK(!readable(wfd, 0));
    close(s);
    connpool_free(pool);
}

/* Live, fresh connections: the watch fd stays quiet (no busy loop for the caller). */
static void quiet_when_nothing_to_do(int listener)
{
    connpool *pool = pool_new(8, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS | CONNPOOL_WATCH);
    int wfd = connpool_watch_fd(pool);
    CHECK(!readable(wfd, 0));
    int c[3], s[3];
    tcp_connect_pairs(listener, 3, c, s);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(connpool_release(pool, KEY, c[i]), CONNPOOL_POOLED);
    CHECK(!readable(wfd, 50));
    CHECK_EQ(connpool_reap(pool), 0);
    /* Handed out, an fd's backend close is the caller's business: it may wake the watch fd
     * once (the entry stays registered, and is muted by the reap), and reap closes nothing. */
    CHECK_EQ(connpool_acquire(pool, KEY), c[2]);
    close(s[2]);
    if (readable(wfd, 50))
        CHECK_EQ(connpool_reap(pool), 0);
    CHECK(!readable(wfd, 50));
    CHECK_EQ(connpool_reap(pool), 0);
    CHECK_OPEN(c[2]);
    close(c[2]);
    CHECK_EQ(connpool_idle_count(pool), 2);
    connpool_free(pool);
    for (int i = 0; i < 2; i++) {
        CHECK_CLOSED(c[i]);
        close(s[i]);
    }
}

/* A handed-out fd stays registered (registered once, at its first release). Its reset wakes
 * the watch fd at most once (the reap mutes its entry until its release), and reap closes
 * nothing: the fd is the caller's. */
static void lent_fd_wakes_at_most_once(int listener)
{
    connpool *pool = pool_new(8, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS | CONNPOOL_WATCH);
    int wfd = connpool_watch_fd(pool);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(pool, KEY), c);
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    CHECK_SYS(setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0);
    CHECK_SYS(close(s) == 0); /* RST */
    CHECK(wait_event(c, POLLERR | POLLHUP) == 0);
    if (readable(wfd, 50)) /* the one-shot hang-up, if the kernel reported it */
        CHECK_EQ(connpool_reap(pool), 0);
    CHECK(!readable(wfd, 50));
    CHECK_EQ(connpool_reap(pool), 0);
    CHECK_OPEN(c);
    CHECK_EQ(stats_of(pool).dead, 0);
    close(c);
    CHECK(!readable(wfd, 50));
    connpool_free(pool);
}

/* The caller ends a handed-out connection (connpool_discard) while another reference keeps
 * its file open (here a dup; in real life a fork child); a new socket then gets the same
 * number and is released: it is a different file, with an entry of its own, watched like
 * any other idle connection; the old file's entry left the set with the discard. (Ended
 * with close() instead, the pool cannot tell the new socket from the connection it lent,
 * and does not watch it: the acquire's check still finds it dead.) */
static void reused_number_is_watched(int listener)
{
    connpool *pool = pool_new(8, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS | CONNPOOL_WATCH);
    int wfd = connpool_watch_fd(pool);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(pool, KEY), c);
    int held = dup(c);
    CHECK_SYS(held >= 0);
    CHECK_EQ(connpool_discard(pool, KEY, c, NULL), 0);
    CHECK_CLOSED(c);
    int c2, s2;
    tcp_connect_pair(listener, &c2, &s2);
    if (c2 != c)
        fprintf(stderr, "note: the new socket got %d, not the reused number %d\n", c2, c);
    CHECK_EQ(connpool_release(pool, KEY, c2), CONNPOOL_POOLED);
    CHECK(!readable(wfd, 50));
    close(s2); /* the new connection's backend closes it: watched, so reaped */
    CHECK(readable(wfd, 10000));
    CHECK_EQ(connpool_reap(pool), 1);
    CHECK_CLOSED(c2);
    CHECK_EQ(connpool_idle_count(pool), 0);
    close(s); /* the old file (still open through `held`) gets a FIN: not in the set */
    CHECK(!readable(wfd, 50));
    close(held);
    connpool_free(pool);
}

/* A backend restart: hundreds of idle connections die at the same moment, more than one
 * batch of events (64), with a deadline due as well. */
enum { MANY = 200 };
static void many_at_once(uint32_t flags)
{
    connpool *pool = pool_new(MANY, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS | flags);
    int listener = listener_open();
    static int c[MANY], s[MANY];
    tcp_connect_pairs(listener, MANY, c, s);
    for (int i = 0; i < MANY; i++)
        CHECK_EQ(connpool_release(pool, i % 2 ? "a:1" : "b:1", c[i]), CONNPOOL_POOLED);
    int d, e;
    tcp_connect_pair(listener, &d, &e);
    CHECK_EQ(connpool_release_hint(pool, "c:1", d, 30), CONNPOOL_POOLED); /* due soon */
    for (int i = 0; i < MANY; i++)
        close(s[i]);
    if (flags & CONNPOOL_REAPER_THREAD) {
        wait_dead(pool, MANY);
    } else {
        int wfd = connpool_watch_fd(pool);
        for (int rounds = 0; connpool_idle_count(pool) > 0; rounds++) {
            CHECK(rounds < 10000);
            CHECK(readable(wfd, 5000));
            connpool_reap(pool); /* must return: never loops on a full batch */
        }
        CHECK(!readable(wfd, 0));
    }
    wait_idle(pool, 0);
    for (int i = 0; i < MANY; i++)
        wait_closed(c[i]);
    wait_closed(d);
    connpool_stats st = stats_of(pool);
    CHECK_EQ(st.dead, MANY);
    CHECK_EQ(st.expired, 1);
    CHECK_EQ(st.keys, 0);
    connpool_free(pool);
    close(e);
    close(listener);
}

static void without_the_flag(void)
{
    connpool *pool = connpool_new_default();
    CHECK(pool != NULL);
    CHECK_EQ(connpool_watch_fd(pool), -EINVAL);
    CHECK_EQ(connpool_reap(pool), 0);
    CHECK_EQ(connpool_watch_fd(NULL), -EINVAL);
    CHECK_EQ(connpool_reap(NULL), 0);
    connpool_free(pool);
}

/* ---- stress: workers acquire and release while backends die at random; the reaper runs ---- */
enum { WORKERS = 4, MAXFD = 8192, KEYS = 3 };
static connpool *g_pool;
static atomic_int g_owner[MAXFD]; /* 0: not held by a worker; else worker id + 1 */
static atomic_int g_port[MAXFD];  /* local port of the socket a worker put on that fd */
static atomic_int g_peer[MAXFD];  /* its backend end, until the backend closes it */
static atomic_long g_handed, g_killed;

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    int listener = listener_open();
    uint64_t rng = 0x853c49e6748fea9bull * (uint64_t)(id + 1);
    long ops = stress_ops(3000, 200);
    for (long i = 0; i < ops; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%u:1", xorshift(&rng) % KEYS);
        int fd = connpool_acquire(g_pool, key);
        int expect = 0;
        if (fd >= 0) {
            CHECK(fd < MAXFD);
            atomic_fetch_add(&g_handed, 1);
        } else {
            CHECK_EQ(fd, -ENOENT);
            int s;
            tcp_connect_pair(listener, &fd, &s);
            CHECK(fd < MAXFD);
            atomic_store(&g_port[fd], sock_local_port(fd));
            /* The backend end of an earlier connection on this number that the pool closed
             * (full, or at check-in after a check) is nobody's now. */
            int old = atomic_exchange(&g_peer[fd], s);
            if (old > 0)
                close(old);
        }
        /* Held by us alone, and the very socket put on that number (not a recycled one):
         * the pool never hands out or closes what another side owns. */
        CHECK(atomic_compare_exchange_strong(&g_owner[fd], &expect, id + 1));
        CHECK_OPEN(fd);
        CHECK_EQ(sock_local_port(fd), atomic_load(&g_port[fd]));
        int kill = xorshift(&rng) % 4 == 0;
        atomic_store(&g_owner[fd], 0); /* the pool's from the release on */
        int peer = kill ? atomic_exchange(&g_peer[fd], 0) : 0;
        int rc = connpool_release(g_pool, key, fd);
        CHECK(rc == CONNPOOL_POOLED || rc == CONNPOOL_CLOSED);
        if (peer > 0) {
            /* The backend resets it while it is idle: the reaper (or an acquire's check)
             * must close it. Only the releaser ever touches this backend end. */
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            setsockopt(peer, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            close(peer);
            atomic_fetch_add(&g_killed, 1);
        }
    }
    close(listener);
    return NULL;
}

static void stress(void)
{
    int baseline = count_open_fds();
    g_pool = pool_new(4, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS | CONNPOOL_REAPER_THREAD);
    pthread_t t[WORKERS];
    for (intptr_t i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    connpool_stats st = stats_of(g_pool);
    printf("watch stress: %ld handed out, %ld killed while idle, dead %llu, idle %llu, closed_full %llu\n",
           atomic_load(&g_handed), atomic_load(&g_killed), (unsigned long long)st.dead,
           (unsigned long long)st.idle, (unsigned long long)st.closed_full);
    CHECK(st.dead > 0);
    /* Only connections whose backend was killed may be closed as dead: a live one never is
     * (this caught stale epoll events naming a reused fd number). */
    CHECK(st.dead <= (unsigned long long)atomic_load(&g_killed));
    CHECK_EQ(st.pooled, st.idle + st.hits + st.dead + st.expired + st.evicted);
    connpool_free(g_pool);
    /* Backend ends still open belong to connections that were closed by the per-key cap
     * or are closed now by free. */
    for (int fd = 0; fd < MAXFD; fd++) {
        int peer = atomic_exchange(&g_peer[fd], 0);
        if (peer > 0)
            close(peer);
    }
    CHECK_EQ(count_open_fds(), baseline);
}

int main(void)
{
    int baseline = count_open_fds();
    int listener = listener_open();
    without_the_flag();
    reaper_thread_closes_dead(listener);
    watch_fd_in_a_poll_loop(listener);
    deadline_makes_it_readable(listener);
    quiet_when_nothing_to_do(listener);
    lent_fd_wakes_at_most_once(listener);
    reused_number_is_watched(listener);
    many_at_once(CONNPOOL_WATCH);
    many_at_once(CONNPOOL_REAPER_THREAD);
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    stress();
    printf("watch: reaper thread, poll loop, deadlines and quiet fd all ok\n");
    return 0;
}
