/* Key validation and argument errors: lengths 1..1024, NULL/empty, NULL pool, fd < 0,
 * huge keys, keys without a NUL in reach, non-UTF-8 bytes, and key distinctness.
 * Release must consume fd >= 0 even when it returns an error. */
#define _GNU_SOURCE
#include "harness.h"

#include <sys/mman.h>

#include "connpool.h"

static int listener;
static int servers[64];
static int nservers;

/* A fresh connected client fd; its server side is kept for cleanup at the end. */
static int new_client(void)
{
    int c, s;
    CHECK(nservers < 64);
    tcp_connect_pair(listener, &c, &s);
    servers[nservers++] = s;
    return c;
}

static char *repeat(char ch, size_t n)
{
    char *k = malloc(n + 1);
    CHECK(k != NULL);
    memset(k, ch, n);
    k[n] = '\0';
    return k;
}

static void test_lengths(connpool *p)
{
#ifdef CONNPOOL_MAX_KEY_LEN
    CHECK_EQ(CONNPOOL_MAX_KEY_LEN, 1024);
#endif
    char *k1024 = repeat('a', 1024);
    char *k1025 = repeat('a', 1025); /* same first 1024 bytes as k1024 */

    int c = new_client();
    CHECK_EQ(connpool_release(p, k1024, c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_idle_count_key(p, k1024), 1);
    /* 1025 bytes is invalid, and must not alias the 1024-byte key by truncation. */
    CHECK_EQ(connpool_acquire(p, k1025), -EINVAL);
    CHECK_EQ(connpool_idle_count_key(p, k1025), 0);
    CHECK_EQ(connpool_purge(p, k1025), 0);
    CHECK_OPEN(c);
    CHECK_EQ(connpool_acquire(p, k1024), c);

    /* Invalid key on release: -EINVAL and the fd is closed anyway. */
    CHECK_EQ(connpool_release(p, k1025, c), -EINVAL);
    CHECK_CLOSED(c);
    CHECK_EQ(connpool_idle_count(p), 0);

    /* 1 byte is the shortest valid key. */
    c = new_client();
    CHECK_EQ(connpool_release(p, "x", c), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(p, "x"), c);
    close(c);

    /* A 1 MiB key: rejected without crash (and without reading it all, ideally). */
    char *huge = repeat('h', 1u << 20);
    c = new_client();
    CHECK_EQ(connpool_acquire(p, huge), -EINVAL);
    CHECK_EQ(connpool_release(p, huge, c), -EINVAL);
    CHECK_CLOSED(c);
    CHECK_EQ(connpool_idle_count_key(p, huge), 0);
    CHECK_EQ(connpool_purge(p, huge), 0);

    free(huge);
    free(k1024);
    free(k1025);
}

/* "The library reads at most 1025 bytes of a key": put 1025 non-NUL bytes right before
 * an inaccessible page. Reading one byte further would crash. */
static void test_read_bound(connpool *p)
{
    long page = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK_SYS(m != MAP_FAILED);
    CHECK_SYS(mprotect(m + page, (size_t)page, PROT_NONE) == 0);
    char *key = m + page - 1025;
    memset(key, 'z', 1025);

    int c = new_client();
    CHECK_EQ(connpool_acquire(p, key), -EINVAL);
    CHECK_EQ(connpool_release(p, key, c), -EINVAL);
    CHECK_CLOSED(c);
    CHECK_EQ(connpool_idle_count_key(p, key), 0);
    CHECK_EQ(connpool_purge(p, key), 0);
    CHECK_SYS(munmap(m, (size_t)page * 2) == 0);
}

static void test_bad_args(connpool *p)
{
    int c;

    CHECK_EQ(connpool_acquire(p, ""), -EINVAL);
    CHECK_EQ(connpool_acquire(p, NULL), -EINVAL);
    CHECK_EQ(connpool_acquire(NULL, "k:1"), -EINVAL);

    c = new_client();
    CHECK_EQ(connpool_release(p, "", c), -EINVAL);
    CHECK_CLOSED(c);
    c = new_client();
    CHECK_EQ(connpool_release(p, NULL, c), -EINVAL);
    CHECK_CLOSED(c);
    c = new_client();
    CHECK_EQ(connpool_release(NULL, "k:1", c), -EINVAL);
    CHECK_CLOSED(c);
    c = new_client();
    CHECK_EQ(connpool_release(NULL, NULL, c), -EINVAL);
    CHECK_CLOSED(c);

    /* fd < 0: -EBADF, but the key/pool checks come first. */
    CHECK_EQ(connpool_release(p, "k:1", -1), -EBADF);
    CHECK_EQ(connpool_release(p, "k:1", -1000), -EBADF);
    CHECK_EQ(connpool_release(p, "", -1), -EINVAL);
    CHECK_EQ(connpool_release(NULL, "k:1", -1), -EINVAL);
    CHECK_EQ(connpool_idle_count(p), 0);

    /* Query functions on NULL / invalid arguments return 0. */
    CHECK_EQ(connpool_idle_count(NULL), 0);
    CHECK_EQ(connpool_idle_count_key(NULL, "k:1"), 0);
    CHECK_EQ(connpool_idle_count_key(p, NULL), 0);
    CHECK_EQ(connpool_idle_count_key(p, ""), 0);
    CHECK_EQ(connpool_purge(NULL, NULL), 0);
    CHECK_EQ(connpool_purge(NULL, "k:1"), 0);
    CHECK_EQ(connpool_prune(NULL), 0);
}

/* Keys are opaque bytes: each key gets back exactly its own connection. */
static void test_distinct(connpool *p)
{
    char *long1 = repeat('q', 1010), *long2 = repeat('q', 1010);
    long2[1005] = 'r'; /* differs only after byte 1000 */
    char *last1 = repeat('w', 1024), *last2 = repeat('w', 1024);
    last2[1023] = 'v'; /* differs only in the last byte */

    const char *keys[] = {
        "\xff\xfe:80",
        "\xff\xfd:80",
        "\xef\xbf\xbd\xef\xbf\xbd:80", /* what a lossy UTF-8 conversion would turn \xff\xfe into */
        "?\x3f:80",
        "Host:80",
        "host:80",
        "a:1",
        "a:10",
        "a:1 ",
        long1,
        long2,
        last1,
        last2,
    };
    enum { NK = sizeof keys / sizeof keys[0] };
    int fds[NK];
    for (int i = 0; i < NK; i++) {
        fds[i] = new_client();
        CHECK_EQ(connpool_release(p, keys[i], fds[i]), CONNPOOL_POOLED);
    }
    CHECK_EQ(connpool_idle_count(p), NK);
    for (int i = 0; i < NK; i++)
        CHECK_EQ(connpool_idle_count_key(p, keys[i]), 1);
    for (int i = 0; i < NK; i++) {
        CHECK_EQ(connpool_acquire(p, keys[i]), fds[i]);
        CHECK_EQ(connpool_acquire(p, keys[i]), -ENOENT);
        close(fds[i]);
    }
    CHECK_EQ(connpool_idle_count(p), 0);
    free(long1);
    free(long2);
    free(last1);
    free(last2);
}

int main(void)
{
    int baseline = count_open_fds();
    listener = listener_open();
    connpool *p = connpool_new(8, 0);
    CHECK(p != NULL);
    test_lengths(p);
    test_read_bound(p);
    test_bad_args(p);
    test_distinct(p);
    connpool_free(p);
    for (int i = 0; i < nservers; i++)
        close(servers[i]);
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    printf("test_keys: ok\n");
    return 0;
}
