/* Basic lifecycle: new/free, version, acquire/release of a real loopback connection,
 * idle counts, defaults, invalid construction, free closing idle fds. */
#define _GNU_SOURCE
#include "harness.h"

#include <stdint.h>

#include "connpool.h"

static const char *KEY_A = "127.0.0.1:8080";
static const char *KEY_B = "127.0.0.1:8081";

static void test_version(void)
{
    const char *v = connpool_version();
    CHECK(v != NULL);
    CHECK(strcmp(v, "0.1.0") == 0);
    CHECK(connpool_version() == v); /* static string, not reallocated per call */
#ifdef CONNPOOL_VERSION
    CHECK(strcmp(CONNPOOL_VERSION, v) == 0);
#endif
#ifdef CONNPOOL_VERSION_STRING
    CHECK(strcmp(CONNPOOL_VERSION_STRING, v) == 0);
#endif
}

static void test_roundtrip(int listener)
{
    connpool *p = connpool_new(8, 60000);
    CHECK(p != NULL);
    CHECK_EQ(connpool_idle_count(p), 0);
    CHECK_EQ(connpool_acquire(p, KEY_A), -ENOENT);

    int c, s;
    tcp_connect_pair(listener, &c, &s);
    int port = sock_local_port(c);

    /* After POOLED the pool owns the fd: it must stay open. */
    CHECK_EQ(connpool_release(p, KEY_A, c), CONNPOOL_POOLED);
    CHECK_OPEN(c);
    CHECK_EQ(connpool_idle_count(p), 1);
    CHECK_EQ(connpool_idle_count_key(p, KEY_A), 1);
    CHECK_EQ(connpool_idle_count_key(p, KEY_B), 0);

    /* Same fd number, same connection, and it still carries data. */
    int fd = connpool_acquire(p, KEY_A);
    CHECK_EQ(fd, c);
    CHECK_OPEN(fd);
    CHECK_EQ(sock_local_port(fd), port);
    CHECK_EQ(tcp_roundtrip(fd, s, 0x5a), 0);
    CHECK_EQ(connpool_idle_count(p), 0);
    CHECK_EQ(connpool_idle_count_key(p, KEY_A), 0);
    CHECK_EQ(connpool_acquire(p, KEY_A), -ENOENT);

    /* Two keys: counts total and per key. */
    int c2, s2;
    tcp_connect_pair(listener, &c2, &s2);
    CHECK_EQ(connpool_release(p, KEY_A, fd), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, KEY_B, c2), CONNPOOL_POOLED);
    CHECK_EQ(connpool_idle_count(p), 2);
    CHECK_EQ(connpool_idle_count_key(p, KEY_A), 1);
    CHECK_EQ(connpool_idle_count_key(p, KEY_B), 1);
    CHECK_OPEN(c);
    CHECK_OPEN(c2);

    /* free closes every idle fd. */
    connpool_free(p);
    CHECK_CLOSED(c);
    CHECK_CLOSED(c2);
    close(s);
    close(s2);
}

/* Defaults: 8 idle per key (the ninth release is closed), 60 s timeout (immediate reuse works). */
static void test_default(int listener)
{
    connpool *p = connpool_new_default();
    CHECK(p != NULL);
    int c[9], s[9];
    tcp_connect_pairs(listener, 9, c, s);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(connpool_release(p, KEY_A, c[i]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, KEY_A, c[8]), CONNPOOL_CLOSED);
    CHECK_CLOSED(c[8]);
    CHECK_EQ(connpool_idle_count_key(p, KEY_A), 8);
    CHECK_EQ(connpool_acquire(p, KEY_A), c[7]);
    CHECK_OPEN(c[7]);
    close(c[7]);
    connpool_free(p);
    for (int i = 0; i < 7; i++)
        CHECK_CLOSED(c[i]);
    for (int i = 0; i < 9; i++)
        close(s[i]);
}

static void test_new_args(int listener)
{
    errno = 0;
    CHECK(connpool_new(0, 1000) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(connpool_new(0, 0) == NULL);
    CHECK_EQ(errno, EINVAL);

    /* Huge values mean "effectively unlimited", not overflow. */
    connpool *p = connpool_new(SIZE_MAX, UINT64_MAX);
    CHECK(p != NULL);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(connpool_release(p, KEY_A, c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_prune(p), 0);
    CHECK_EQ(connpool_acquire(p, KEY_A), c);
    CHECK_EQ(connpool_release(p, KEY_A, c), CONNPOOL_POOLED);
    connpool_free(p);
    CHECK_CLOSED(c);
    close(s);

    connpool_free(NULL); /* no-op */

    /* An empty pool frees cleanly too. */
    p = connpool_new(1, 0);
    CHECK(p != NULL);
    connpool_free(p);
}

int main(void)
{
    int baseline = count_open_fds();
    int listener = listener_open();
    test_version();
    test_roundtrip(listener);
    test_default(listener);
    test_new_args(listener);
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    printf("test_basic: ok\n");
    return 0;
}
