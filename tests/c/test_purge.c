/* connpool_purge(key) closes only that key's idle fds; purge(NULL) closes all. */
#define _GNU_SOURCE
#include "harness.h"

#include "connpool.h"

#define N 5

int main(void)
{
    int baseline = count_open_fds();
    int listener = listener_open();
    int c[N], s[N];
    tcp_connect_pairs(listener, N, c, s);
    const char *k1 = "10.1.1.1:80", *k2 = "10.1.1.2:80", *k3 = "10.1.1.3:80";

    connpool *p = connpool_new(8, 0);
    CHECK(p != NULL);
    CHECK_EQ(connpool_purge(p, k1), 0); /* empty pool */
    CHECK_EQ(connpool_purge(p, NULL), 0);

    CHECK_EQ(connpool_release(p, k1, c[0]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, k1, c[1]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, k2, c[2]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, k3, c[3]), CONNPOOL_POOLED);

    /* Only k1's two are closed. */
    CHECK_EQ(connpool_purge(p, k1), 2);
    CHECK_CLOSED(c[0]);
    CHECK_CLOSED(c[1]);
    CHECK_OPEN(c[2]);
    CHECK_OPEN(c[3]);
    CHECK_EQ(connpool_idle_count_key(p, k1), 0);
    CHECK_EQ(connpool_idle_count(p), 2);
    CHECK_EQ(connpool_acquire(p, k1), -ENOENT);
    CHECK_EQ(connpool_purge(p, k1), 0);
    CHECK_EQ(connpool_purge(p, "unknown:1"), 0);
    CHECK_EQ(connpool_purge(p, ""), 0); /* invalid key */
    CHECK_EQ(connpool_idle_count(p), 2);

    /* purge(NULL) closes every key's. */
    CHECK_EQ(connpool_purge(p, NULL), 2);
    CHECK_CLOSED(c[2]);
    CHECK_CLOSED(c[3]);
    CHECK_EQ(connpool_idle_count(p), 0);
    CHECK_EQ(connpool_idle_count_key(p, k2), 0);
    CHECK_EQ(connpool_idle_count_key(p, k3), 0);
    CHECK_EQ(connpool_purge(p, NULL), 0);

    /* The pool stays usable after a purge. */
    CHECK_EQ(connpool_release(p, k1, c[4]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(p, k1), c[4]);
    CHECK_EQ(tcp_roundtrip(c[4], s[4], 3), 0);
    CHECK_EQ(connpool_release(p, k1, c[4]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_purge(p, k1), 1);
    CHECK_CLOSED(c[4]);

    CHECK_EQ(connpool_purge(NULL, NULL), 0);
    CHECK_EQ(connpool_purge(NULL, k1), 0);
    connpool_free(p);
    for (int i = 0; i < N; i++)
        close(s[i]);
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    printf("test_purge: ok\n");
    return 0;
}
