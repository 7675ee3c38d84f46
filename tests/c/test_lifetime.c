/* Time-based limits with the real clock: max_lifetime_ms (counted from the first release,
 * not reset by reuse), the keep-alive hint of connpool_release_hint(), and the idle and age
 * figures of connpool_acquire_info(). Waiting here is for time itself to pass. */
#define _GNU_SOURCE
#include "harness.h"

#define KEY "127.0.0.1:8080"
/* Expiry errs early by at most one tick of CLOCK_MONOTONIC_COARSE (4 ms at 250 Hz)... */
#define TICK_MS 10
/* ...or by as much as a loaded VM updates that clock late (up to ~26 ms was measured), since
 * deadlines are stamped with it: bounds on how EARLY something expires allow for that. */
#define EARLY_MS 50

static void wait_until(long long t)
{
    while (now_ms() < t)
        sleep_ms(5);
}

/* A connection kept busy (reused every few ms, so never idle long) still dies at its
 * lifetime: never handed out after it, and not before it (less a tick). */
static void lifetime_counts_from_first_release(int listener)
{
    const long long lifetime = 150;
    connpool *pool = pool_new(8, 0, 60000, (uint64_t)lifetime, 0, CONNPOOL_CHECK_LIVENESS);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    long long born = now_ms();
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
    long long last_ok = born;
    for (int i = 0; i < 10000; i++) {
        long long t = now_ms();
        int fd = connpool_acquire(pool, KEY);
        if (fd < 0) {
            CHECK_EQ(fd, -ENOENT);
            break;
        }
        CHECK_EQ(fd, c);
        last_ok = t;
        int rc = connpool_release(pool, KEY, fd);
        if (rc == CONNPOOL_CLOSED) /* the lifetime ran out while we held it */
            break;
        CHECK_EQ(rc, CONNPOOL_POOLED);
        sleep_ms(5);
    }
    CHECK_CLOSED(c);
    long long lived = now_ms() - born;
    CHECK(lived >= lifetime - EARLY_MS);
    CHECK(last_ok - born <= lifetime + 1000); /* loose: it did end */
    connpool_stats st = stats_of(pool);
    CHECK_EQ(st.expired, 1);
    CHECK_EQ(st.idle, 0);
    CHECK_EQ(connpool_acquire(pool, KEY), -ENOENT);
    close(s);
    connpool_free(pool);
}

/* Held by the caller past its lifetime: the release closes it. */
static void lifetime_on_release(int listener)
{
    /* Long enough that release-then-acquire fits in it even on a stalled machine. */
    connpool *pool = pool_new(8, 0, 60000, 600, 0, CONNPOOL_CHECK_LIVENESS);
    int c, s;
    long long born;
    for (int attempt = 0;; attempt++) {
        tcp_connect_pair(listener, &c, &s);
        long long before = now_ms();
        CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
        born = now_ms(); /* after the release: the pool's birth time is no later */
        int got = connpool_acquire(pool, KEY);
        if (got == c)
            break;
        /* A machine that stalled the test past the lifetime between the two calls: the
         * connection rightly died in the pool. Try again, a few times. */
        CHECK_EQ(got, -ENOENT);
        CHECK_CLOSED(c);
        CHECK(now_ms() - before >= 600 - EARLY_MS);
        close(s);
        printf("test_lifetime: note: release and acquire %lld ms apart; again\n", now_ms() - before);
        if (attempt == 4) {
            printf("test_lifetime: note: lifetime on release not judged\n");
            connpool_free(pool);
            return;
        }
    }
    unsigned long long expired = stats_of(pool).expired; /* (the retries' connections) */
    wait_until(born + 600 + TICK_MS);
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_CLOSED);
    CHECK_CLOSED(c);
    CHECK_EQ(stats_of(pool).expired, expired + 1);
    close(s);
    connpool_free(pool);
}

/* release_hint: the connection expires after min(hint, idle timeout). */
static void keepalive_hint(int listener)
{
    connpool *pool = pool_new(8, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS);
    int c[3], s[3];
    tcp_connect_pairs(listener, 3, c, s);

    /* Hint shorter than the idle timeout: it wins. */
    long long before = now_ms();
    CHECK_EQ(connpool_release_hint(pool, "a:1", c[0], 600), CONNPOOL_POOLED);
    long long t0 = now_ms(); /* after the release: deadlines are waited for from here */
    CHECK_EQ(connpool_release(pool, "b:1", c[1]), CONNPOOL_POOLED); /* no hint: 60 s */
    size_t n = connpool_idle_count_key(pool, "a:1");
    /* Still there, unless the machine stalled the test for most of the 600 ms (then the
     * count itself closed it: expired either way below). */
    if (now_ms() - before < 600 - EARLY_MS)
        CHECK_EQ(n, 1);
    else
        printf("test_lifetime: note: %lld ms after the release; hint not judged early\n",
               now_ms() - before);
    wait_until(t0 + 600 + TICK_MS);
    CHECK_EQ(connpool_acquire(pool, "a:1"), -ENOENT);
    CHECK_CLOSED(c[0]);
    CHECK_EQ(connpool_acquire(pool, "b:1"), c[1]);
    CHECK_EQ(stats_of(pool).expired, 1);

    /* A zero hint: the server will not keep it; closed at once. */
    CHECK_EQ(connpool_release_hint(pool, "b:1", c[1], 0), CONNPOOL_CLOSED);
    CHECK_CLOSED(c[1]);
    CHECK_EQ(stats_of(pool).expired, 2);

    /* Bad arguments: the same codes and ownership as connpool_release(). */
    CHECK_EQ(connpool_release_hint(pool, "b:1", -1, 1000), -EBADF);
    CHECK_EQ(connpool_release_hint(NULL, "b:1", c[2], 1000), -EINVAL);
    CHECK_CLOSED(c[2]);
    for (int i = 0; i < 3; i++)
        close(s[i]);
    connpool_free(pool);

    /* Hint longer than the idle timeout: the idle timeout wins. */
    pool = pool_new(8, 0, 600, 0, 0, CONNPOOL_CHECK_LIVENESS);
    int d, e;
    tcp_connect_pair(listener, &d, &e);
    CHECK_EQ(connpool_release_hint(pool, "a:1", d, 600000), CONNPOOL_POOLED);
    t0 = now_ms();
    wait_until(t0 + 600 + TICK_MS);
    CHECK_EQ(connpool_acquire(pool, "a:1"), -ENOENT);
    CHECK_CLOSED(d);
    close(e);
    connpool_free(pool);
}

/* acquire_info: idle time, age and uses of the connection handed out. */
static void info(int listener)
{
    connpool *pool = connpool_new_default();
    CHECK(pool != NULL);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    /* A stalled machine may pause anywhere: bound the pool's readings from both sides. */
    long long before = now_ms();
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
    long long after = now_ms();
    wait_until(after + 50);

    connpool_conn_info in;
    memset(&in, 0xff, sizeof in);
    in.struct_size = sizeof in;
    CHECK_EQ(connpool_acquire_info(pool, KEY, &in), c);
    CHECK_EQ(in.struct_size, sizeof in);
    CHECK(in.idle_ms >= 50 - TICK_MS);
    CHECK(in.age_ms >= in.idle_ms);
    /* Loose: the pool's stamps come from a coarse clock that a loaded VM may update late, so
     * a connection can look older than it is (never younger). */
    CHECK(in.age_ms <= (uint64_t)(now_ms() - before) + 1000);
    CHECK_EQ(in.uses, 1);
    uint64_t age1 = in.age_ms;

    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire_info(pool, KEY, &in), c);
    CHECK_EQ(in.uses, 2);
    CHECK(in.age_ms >= age1);
    CHECK(in.idle_ms <= in.age_ms);

    /* A struct_size too small: -EINVAL, nothing acquired, *info untouched. */
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
    connpool_conn_info small;
    memset(&small, 0, sizeof small);
    small.struct_size = 31; /* one byte short of the 0.1 struct */
    CHECK_EQ(connpool_acquire_info(pool, KEY, &small), -EINVAL);
    CHECK_EQ(small.uses, 0);
    CHECK_EQ(connpool_idle_count_key(pool, KEY), 1);
    /* NULL info: a plain acquire. */
    CHECK_EQ(connpool_acquire_info(pool, KEY, NULL), c);
    /* No connection: -ENOENT and *info untouched. */
    memset(&in, 0, sizeof in);
    in.struct_size = sizeof in;
    CHECK_EQ(connpool_acquire_info(pool, KEY, &in), -ENOENT);
    CHECK_EQ(in.uses, 0);
    CHECK_EQ(connpool_acquire_info(NULL, KEY, &in), -EINVAL);
    CHECK_EQ(connpool_acquire_info(pool, NULL, &in), -EINVAL);
    close(c);
    close(s);
    connpool_free(pool);
}

int main(void)
{
    int baseline = count_open_fds();
    int listener = listener_open();
    lifetime_counts_from_first_release(listener);
    lifetime_on_release(listener);
    keepalive_hint(listener);
    info(listener);
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    return 0;
}
