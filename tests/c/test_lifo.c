/* Reuse order is LIFO per key; keys do not share connections. */
#define _GNU_SOURCE
#include "harness.h"

#include "connpool.h"

int main(void)
{
    int baseline = count_open_fds();
    int listener = listener_open();
    connpool *p = connpool_new(8, 0);
    CHECK(p != NULL);

    int c[3], s[3], port[3];
    for (int i = 0; i < 3; i++) {
        tcp_connect_pair(listener, &c[i], &s[i]);
        port[i] = sock_local_port(c[i]);
    }
    const char *k1 = "backend-1:80", *k2 = "backend-2:80";

    /* Release A, B, C on one key: acquire yields C, B, A (same connections, checked by port). */
    for (int i = 0; i < 3; i++)
        CHECK_EQ(connpool_release(p, k1, c[i]), CONNPOOL_POOLED);
    for (int i = 2; i >= 0; i--) {
        int fd = connpool_acquire(p, k1);
        CHECK_EQ(fd, c[i]);
        CHECK_EQ(sock_local_port(fd), port[i]);
    }
    CHECK_EQ(connpool_acquire(p, k1), -ENOENT);

    /* Keys are independent: A and C on k1, B on k2. */
    CHECK_EQ(connpool_release(p, k1, c[0]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, k2, c[1]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, k1, c[2]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(p, k2), c[1]);
    CHECK_EQ(connpool_acquire(p, k2), -ENOENT);
    CHECK_EQ(connpool_acquire(p, k1), c[2]);
    CHECK_EQ(connpool_acquire(p, k1), c[0]);
    CHECK_EQ(connpool_acquire(p, k1), -ENOENT);

    /* Interleaved: a re-released connection goes back on top. */
    CHECK_EQ(connpool_release(p, k1, c[0]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, k1, c[1]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(p, k1), c[1]);
    CHECK_EQ(connpool_release(p, k1, c[2]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, k1, c[1]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(p, k1), c[1]);
    CHECK_EQ(connpool_acquire(p, k1), c[2]);
    CHECK_EQ(connpool_acquire(p, k1), c[0]);
    CHECK_EQ(connpool_acquire(p, k1), -ENOENT);

    /* The caller owns all three again: each still works end to end. */
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(tcp_roundtrip(c[i], s[i], (unsigned char)i), 0);
        close(c[i]);
        close(s[i]);
    }
    CHECK_EQ(connpool_idle_count(p), 0);
    connpool_free(p);
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    printf("test_lifo: ok\n");
    return 0;
}
