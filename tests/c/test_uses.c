/* max_uses, the fd history behind it (a recycled fd number is never treated as younger or
 * less used than the connection it replaces), and double releases. */
#define _GNU_SOURCE
#include "harness.h"

#define KEY "127.0.0.1:8080"

static int uses_of_next(connpool *pool, int expect_fd)
{
    connpool_conn_info in;
    memset(&in, 0, sizeof in);
    in.struct_size = sizeof in;
    CHECK_EQ(connpool_acquire_info(pool, KEY, &in), expect_fd);
    return (int)in.uses;
}

/* With max_uses = 3 the third release of the same connection closes it. */
static void third_release_closes(int listener)
{
    connpool *pool = pool_new(8, 0, 60000, 0, 3, CONNPOOL_CHECK_LIVENESS);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED); /* 1 request served */
    CHECK_EQ(uses_of_next(pool, c), 1);
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED); /* 2 */
    CHECK_EQ(uses_of_next(pool, c), 2);
    CHECK(tcp_roundtrip(c, s, 3) == 0);
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_CLOSED); /* 3: retired */
    CHECK_CLOSED(c);
    connpool_stats st = stats_of(pool);
    CHECK_EQ(st.retired, 1);
    CHECK_EQ(st.pooled, 2);
    CHECK_EQ(st.idle, 0);
    close(s);
    connpool_free(pool);

    /* max_uses = 1: a connection serves one request and is never kept. */
    pool = pool_new(8, 0, 60000, 0, 1, CONNPOOL_CHECK_LIVENESS);
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_CLOSED);
    CHECK_CLOSED(c);
    CHECK_EQ(stats_of(pool).retired, 1);
    close(s);
    connpool_free(pool);
}

/* The caller closes an acquired connection, and a new socket gets the same fd number: the
 * pool cannot tell them apart without a syscall, so it counts the new socket as the old
 * connection, older and more used than it is, never younger. */
static void recycled_number_is_never_younger(int listener)
{
    connpool *pool = pool_new(8, 0, 60000, 0, 3, CONNPOOL_CHECK_LIVENESS);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(connpool_release(pool, KEY, c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(pool, KEY), c); /* lent, 1 use */
    close(c);                                 /* the caller drops it */
    close(s);
    int d, t;
    tcp_connect_pair(listener, &d, &t);
    CHECK_EQ(d, c); /* the lowest free number: the same one */
    CHECK_EQ(connpool_release(pool, KEY, d), CONNPOOL_POOLED);
    CHECK_EQ(uses_of_next(pool, d), 2); /* counted as the old connection's second use */
    CHECK_EQ(connpool_release(pool, KEY, d), CONNPOOL_CLOSED); /* third: retired early */
    CHECK_CLOSED(d);
    close(t);

    /* A number the pool closed is forgotten: a new socket on it starts afresh. */
    int e, u;
    tcp_connect_pair(listener, &e, &u);
    CHECK_EQ(e, d);
    CHECK_EQ(connpool_release(pool, KEY, e), CONNPOOL_POOLED);
    CHECK_EQ(uses_of_next(pool, e), 1);
    close(e);
    close(u);
    connpool_free(pool);
}

/* Releasing an fd the pool already holds idle: -EALREADY, nothing closed, held once. */
static void double_release(int listener)
{
    connpool *a = connpool_new_default();
    connpool *b = connpool_new_default();
    CHECK(a != NULL && b != NULL);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(connpool_release(a, KEY, c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(a, KEY, c), -EALREADY);
    CHECK_EQ(connpool_release(a, "other:1", c), -EALREADY);
    CHECK_EQ(connpool_release(b, KEY, c), -EALREADY); /* owned by another pool */
    CHECK_OPEN(c);
    CHECK_EQ(connpool_idle_count(a), 1);
    CHECK_EQ(connpool_idle_count(b), 0);
    CHECK_EQ(connpool_acquire(a, KEY), c);
    CHECK_EQ(connpool_acquire(a, KEY), -ENOENT);
    CHECK_EQ(connpool_acquire(a, "other:1"), -ENOENT);
    CHECK(tcp_roundtrip(c, s, 9) == 0);
    /* Once acquired it is the caller's again and can be released normally. */
    CHECK_EQ(connpool_release(a, KEY, c), CONNPOOL_POOLED);
    connpool_stats st = stats_of(a);
    CHECK_EQ(st.pooled, 2);
    CHECK_EQ(st.idle, 1);
    connpool_free(a);
    CHECK_CLOSED(c);
    connpool_free(b);
    close(s);
}

int main(void)
{
    int baseline = count_open_fds();
    int listener = listener_open();
    third_release_closes(listener);
    recycled_number_is_never_younger(listener);
    double_release(listener);
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    return 0;
}
