/* Smallest program using an installed libconnpool: built by
 * tests/install_consumer.sh through find_package(connpool) and pkg-config. */
#define _POSIX_C_SOURCE 200809L

#include <connpool.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define EXPECT(cond)                                                           \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "consumer: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                          \
        }                                                                      \
    } while (0)

int main(void)
{
    connpool *pool = connpool_new_default();
    EXPECT(pool != NULL);

    EXPECT(connpool_acquire(pool, "127.0.0.1:8080") == -ENOENT);

    int sv[2];
    EXPECT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    EXPECT(connpool_release(pool, "127.0.0.1:8080", sv[0]) == CONNPOOL_POOLED);

    int fd = connpool_acquire(pool, "127.0.0.1:8080");
    EXPECT(fd == sv[0]);
    EXPECT(connpool_acquire(pool, "127.0.0.1:8080") == -ENOENT);

    /* The fd is still a working socket. */
    EXPECT(write(fd, "x", 1) == 1);
    char c = 0;
    EXPECT(read(sv[1], &c, 1) == 1 && c == 'x');

    close(fd);
    close(sv[1]);
    connpool_free(pool);

    const char *version = connpool_version();
    EXPECT(version != NULL && strcmp(version, CONNPOOL_VERSION) == 0);
    printf("consumer: libconnpool %s ok\n", version);
    return 0;
}
