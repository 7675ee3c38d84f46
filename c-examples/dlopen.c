/* Using libconnpool through dlopen/dlsym (plugins, optional dependencies).
 *
 * Usage: ./dlopen [path/to/libconnpool.so.0]
 * Build: cc -std=c11 dlopen.c -ldl     (no -lconnpool: everything is resolved at run time)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connpool.h" /* only for the connpool type and the CONNPOOL_* constants */

#ifndef CONNPOOL_LIB_PATH
#define CONNPOOL_LIB_PATH "libconnpool.so.0" /* searched like any shared library */
#endif

/* Function pointer types matching the declarations in connpool.h. */
typedef const char *(*version_fn)(void);
typedef connpool *(*new_fn)(size_t, uint64_t);
typedef void (*free_fn)(connpool *);
typedef int (*acquire_fn)(connpool *, const char *);
typedef int (*release_fn)(connpool *, const char *, int);
typedef size_t (*idle_count_fn)(const connpool *);

/* dlsym returns void *; converting it to a function pointer is what POSIX requires to work. */
#define LOAD(lib, var, type, name)                                                       \
    do {                                                                                 \
        var = (type)dlsym(lib, name);                                                    \
        if (var == NULL) {                                                               \
            fprintf(stderr, "dlsym(%s): %s\n", name, dlerror());                         \
            dlclose(lib);                                                                \
            return 1;                                                                    \
        }                                                                                \
    } while (0)

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : CONNPOOL_LIB_PATH;
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen(%s): %s\n", path, dlerror());
        return 1;
    }

    version_fn version;
    new_fn pool_new;
    free_fn pool_free;
    acquire_fn acquire;
    release_fn release;
    idle_count_fn idle_count;
    LOAD(lib, version, version_fn, "connpool_version");
    LOAD(lib, pool_new, new_fn, "connpool_new");
    LOAD(lib, pool_free, free_fn, "connpool_free");
    LOAD(lib, acquire, acquire_fn, "connpool_acquire");
    LOAD(lib, release, release_fn, "connpool_release");
    LOAD(lib, idle_count, idle_count_fn, "connpool_idle_count");

    /* A header/library mismatch is worth a warning: the header's constants may differ. */
    printf("loaded %s: version %s (header %s)\n", path, version(), CONNPOOL_VERSION);

    connpool *pool = pool_new(4, 30000);
    if (pool == NULL) {
        perror("connpool_new");
        dlclose(lib);
        return 1;
    }

    /* Any connected stream socket can be pooled; a socketpair stands in for a backend. */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("socketpair");
        pool_free(pool);
        dlclose(lib);
        return 1;
    }
    const char *key = "backend.local:9000";
    int status = 0;

    int fd = acquire(pool, key);
    printf("acquire on empty pool: %d (%s)\n", fd, fd == -ENOENT ? "-ENOENT" : "unexpected");
    status |= fd != -ENOENT;

    /* sv[0] becomes the pool's: we must not close it ourselves any more. */
    int rc = release(pool, key, sv[0]);
    printf("release fd %d: %s, idle %zu\n", sv[0], rc == CONNPOOL_POOLED ? "pooled" : "not pooled",
           idle_count(pool));
    status |= rc != CONNPOOL_POOLED;

    /* Ours again: the same fd comes back. */
    fd = acquire(pool, key);
    printf("acquire: fd %d (%s)\n", fd, fd == sv[0] ? "same connection" : "unexpected");
    status |= fd != sv[0];
    if (fd >= 0)
        close(fd); /* we own it, we close it */

    pool_free(pool); /* nothing idle left; would close idle fds otherwise */
    close(sv[1]);
    dlclose(lib);
    return status;
}
