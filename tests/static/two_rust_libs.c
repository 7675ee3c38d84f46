/* A C program linked to libconnpool.a and to a second, unrelated Rust static library
 * (tests/static/other). Both archives carry Rust's runtime; libconnpool.a exports only
 * connpool_* (cmake/localize-archive.sh), so the link has no duplicate symbols and each
 * library keeps its own copy of what it uses. Both libraries' code must then work. */
#define _POSIX_C_SOURCE 200809L

#include <connpool.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int64_t other_rust_sum(uint32_t n);
int32_t other_rust_catch(void);

#define EXPECT(cond)                                                                 \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "two_rust_libs: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                                \
        }                                                                            \
    } while (0)

int main(void)
{
    /* The other library first: allocation, formatting, a caught panic. */
    EXPECT(other_rust_sum(100) == 5050);
    EXPECT(other_rust_catch() == 1);

    connpool *pool = connpool_new_default();
    EXPECT(pool != NULL);
    int sv[2];
    EXPECT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    EXPECT(connpool_release(pool, "backend:80", sv[0]) == CONNPOOL_POOLED);
    EXPECT(connpool_idle_count(pool) == 1);
    EXPECT(connpool_acquire(pool, "backend:80") == sv[0]);
    EXPECT(connpool_acquire(pool, "backend:80") == -ENOENT);
    EXPECT(connpool_acquire(pool, "") == -EINVAL);
    EXPECT(connpool_release(pool, "backend:80", sv[0]) == CONNPOOL_POOLED);
    connpool_free(pool); /* closes sv[0] */
    char c;
    EXPECT(read(sv[1], &c, 1) == 0); /* the pool closed its end */
    close(sv[1]);

    /* And the other one again, after libconnpool ran. */
    EXPECT(other_rust_catch() == 1);
    EXPECT(strcmp(connpool_version(), CONNPOOL_VERSION) == 0);
    printf("two_rust_libs: libconnpool %s and a second Rust static library linked and ran\n",
           connpool_version());
    return 0;
}
