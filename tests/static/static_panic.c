/* The panic boundary in the localized static archive: linked to the panic-inject build of
 * libconnpool.a (every symbol but connpool_* made local, rust_eh_personality included),
 * a panic inside an exported function must still unwind to the boundary and come back as
 * -ENOTRECOVERABLE: the unwinder finds the personality routine through .eh_frame, not by
 * its global name. In that build the key "connpool-test-panic" panics inside a lock. */
#define _POSIX_C_SOURCE 200809L

#include <connpool.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAGIC "connpool-test-panic"

#define EXPECT(cond)                                                                \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "static_panic: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                               \
        }                                                                           \
    } while (0)

int main(void)
{
    connpool *pool = connpool_new_default();
    EXPECT(pool != NULL);
    fprintf(stderr, "(the panic messages below are expected)\n");
    EXPECT(connpool_acquire(pool, MAGIC) == -ENOTRECOVERABLE);

    int sv[2];
    EXPECT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    EXPECT(connpool_release(pool, MAGIC, sv[0]) == -ENOTRECOVERABLE);
    EXPECT(fcntl(sv[0], F_GETFD) == -1 && errno == EBADF); /* consumed, as on any error */

    /* The pool is still usable after the unwinds. */
    int sp[2];
    EXPECT(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
    EXPECT(connpool_release(pool, "backend:80", sp[0]) == CONNPOOL_POOLED);
    EXPECT(connpool_acquire(pool, "backend:80") == sp[0]);
    close(sp[0]);
    close(sp[1]);
    close(sv[1]);
    connpool_free(pool);
    printf("static_panic: panics caught at the boundary in the localized archive\n");
    return 0;
}
