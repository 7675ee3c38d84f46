/* max_idle_per_key: a release into a full key closes the incoming fd and returns
 * CONNPOOL_CLOSED; the idle ones are untouched; the cap is per key. */
#define _GNU_SOURCE
#include "harness.h"

#include "connpool.h"

#define N 6

int main(void)
{
    int baseline = count_open_fds();
    int listener = listener_open();
    int c[N], s[N];
    tcp_connect_pairs(listener, N, c, s);
    const char *k1 = "a.example:443", *k2 = "b.example:443";

    connpool *p = connpool_new(2, 0);
    CHECK(p != NULL);

    CHECK_EQ(connpool_release(p, k1, c[0]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, k1, c[1]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, k1, c[2]), CONNPOOL_CLOSED);
    CHECK_CLOSED(c[2]);
    CHECK_OPEN(c[0]);
    CHECK_OPEN(c[1]);
    CHECK_EQ(connpool_idle_count_key(p, k1), 2);

    /* Another key has its own cap of 2. */
    CHECK_EQ(connpool_release(p, k2, c[3]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, k2, c[4]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_idle_count(p), 4);
    CHECK_EQ(connpool_release(p, k2, c[5]), CONNPOOL_CLOSED);
    CHECK_CLOSED(c[5]);
    CHECK_EQ(connpool_idle_count(p), 4);

    /* The kept ones are the first two, in LIFO order; taking one frees a slot. */
    CHECK_EQ(connpool_acquire(p, k1), c[1]);
    CHECK_EQ(connpool_idle_count_key(p, k1), 1);
    CHECK_EQ(connpool_release(p, k1, c[1]), CONNPOOL_POOLED);
    CHECK_OPEN(c[1]);
    CHECK_EQ(connpool_acquire(p, k1), c[1]);
    CHECK_EQ(connpool_acquire(p, k1), c[0]);
    CHECK_EQ(connpool_acquire(p, k1), -ENOENT);
    CHECK_EQ(tcp_roundtrip(c[0], s[0], 1), 0);
    CHECK_EQ(tcp_roundtrip(c[1], s[1], 2), 0);
    close(c[0]);
    close(c[1]);

    connpool_free(p);
    CHECK_CLOSED(c[3]);
    CHECK_CLOSED(c[4]);

    /* Cap of 1: every release beyond the first is closed. */
    int a, sa, b, sb;
    tcp_connect_pair(listener, &a, &sa);
    tcp_connect_pair(listener, &b, &sb);
    p = connpool_new(1, 0);
    CHECK(p != NULL);
    CHECK_EQ(connpool_release(p, k1, a), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, k1, b), CONNPOOL_CLOSED);
    CHECK_CLOSED(b);
    CHECK_OPEN(a);
    CHECK_EQ(connpool_idle_count(p), 1);
    connpool_free(p);
    CHECK_CLOSED(a);

    for (int i = 0; i < N; i++)
        close(s[i]);
    close(sa);
    close(sb);
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    printf("test_limits: ok\n");
    return 0;
}
