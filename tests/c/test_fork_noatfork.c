/* A child made without pthread_atfork handlers never gets the parent's
 * connections. The library notices a new process by itself (a page marked
 * MADV_WIPEONFORK, zeroed in every child), not through an atfork handler, which these
 * children never run:
 *   _Fork()                                 glibc 2.34+: fork without atfork handlers
 *   syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) a raw fork system call
 *   fork() with a copy of the library loaded by dlmopen(LM_ID_NEWLM): its handler was
 *                                           registered with that namespace's libc, whose
 *                                           handlers fork() does not run
 * In the child: the first acquire of the parent's key is -ENOENT, after it the child's
 * copies of the pool's idle fds are closed, and the pool works with the child's own
 * connections. The parent's connections stay open and working (round trips).
 *
 * Before the fix the child's acquire handed out the parent's connection. */
#define _GNU_SOURCE
#include "harness.h"
#include "hostile.h"

#include <dlfcn.h>
#include <sys/syscall.h>

#ifndef CONNPOOL_LIB_PATH
#error "CONNPOOL_LIB_PATH must be defined (full path of libconnpool.so.0)"
#endif

#define KEY "127.0.0.1:8080"
enum { N = 3 };

/* The library's functions: the ones linked in, or those of a dlmopen'ed copy. */
struct api {
    connpool *(*new_default)(void);
    void (*free)(connpool *);
    int (*acquire)(connpool *, const char *);
    int (*release)(connpool *, const char *, int);
    size_t (*idle_count_key)(const connpool *, const char *);
};

enum how { VIA_FORK_NOATFORK, VIA_RAW_CLONE, VIA_FORK };

static pid_t fork_by(enum how how)
{
    fflush(stdout);
    fflush(stderr);
    switch (how) {
    case VIA_FORK_NOATFORK: return _Fork();
    case VIA_RAW_CLONE: return (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    default: return fork();
    }
}

/* The child: nothing of the parent's is handed out, the inherited copies get closed, and
 * the pool works with the child's own connections. */
static void child(const struct api *api, connpool *pool, const int *c)
{
    alarm(60);
    int got = api->acquire(pool, KEY);
    if (got != -ENOENT) {
        fprintf(stderr, "  child: acquire(%s) returned %d (the parent's connection: %s), not -ENOENT\n",
                KEY, got, got == c[0] || got == c[1] || got == c[2] ? "yes" : "no");
        _exit(1);
    }
    for (int i = 0; i < N; i++)
        CCHECK(fd_is_closed(c[i])); /* the child's copies, closed by that first call */
    CCHECK_EQ(api->idle_count_key(pool, KEY), 0);
    int sv[2];
    CCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    CCHECK_EQ(api->release(pool, KEY, sv[0]), CONNPOOL_POOLED);
    CCHECK_EQ(api->acquire(pool, KEY), sv[0]);
    CCHECK(tcp_roundtrip(sv[0], sv[1], 7) == 0);
    CCHECK_EQ(api->release(pool, KEY, sv[0]), CONNPOOL_POOLED);
    api->free(pool);
    CCHECK(fd_is_closed(sv[0]));
    child_pass();
}

/* Returns 0 if the case passed. */
static int run_case(const char *name, const struct api *api, enum how how)
{
    connpool *pool = api->new_default();
    CHECK(pool != NULL);
    int c[N], s[N];
    for (int i = 0; i < N; i++) {
        int sv[2];
        CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        c[i] = sv[0];
        s[i] = sv[1];
        CHECK_EQ(api->release(pool, KEY, c[i]), CONNPOOL_POOLED);
    }
    int pass_rd = pass_pipe();
    pid_t pid = fork_by(how);
    CHECK_SYS(pid >= 0);
    if (pid == 0) {
        close(pass_rd);
        child(api, pool, c);
    }
    pass_pipe_parent();
    struct child_end e = child_wait(pid, watchdog_ms(10000), pass_rd);
    char buf[64];
    printf("fork without atfork: %-44s %s\n", name, child_ok(e) ? "ok" : child_describe(e, buf, sizeof buf));

    /* The parent's connections: all open, all working, all still pooled. */
    CHECK_EQ(api->idle_count_key(pool, KEY), N);
    for (int i = N - 1; i >= 0; i--) {
        CHECK_EQ(api->acquire(pool, KEY), c[i]);
        CHECK(tcp_roundtrip(c[i], s[i], (unsigned char)i) == 0);
        close(c[i]);
        close(s[i]);
    }
    api->free(pool);
    return !child_ok(e);
}

#define LOAD(api, lib, name)                                                             \
    do {                                                                                 \
        *(void **)&(api).name = dlsym(lib, "connpool_" #name);                           \
        CHECK((api).name != NULL);                                                       \
    } while (0)

int main(void)
{
    int baseline = count_open_fds();
    struct api linked = {connpool_new_default, connpool_free, connpool_acquire, connpool_release,
                         connpool_idle_count_key};
    int failed = 0;
    failed += run_case("_Fork()", &linked, VIA_FORK_NOATFORK);
    failed += run_case("syscall(SYS_clone, SIGCHLD)", &linked, VIA_RAW_CLONE);

    /* A second copy of the library, in its own namespace (with its own libc). Valgrind does
     * not redirect the string functions of that second libc, so memcheck reports false
     * errors in it. */
    void *lib = NULL;
    if (running_on_valgrind())
        printf("fork without atfork: dlmopen copy: skipped under valgrind (a second libc)\n");
    else if ((lib = dlmopen(LM_ID_NEWLM, CONNPOOL_LIB_PATH, RTLD_NOW | RTLD_LOCAL)) == NULL)
        printf("fork without atfork: dlmopen(LM_ID_NEWLM) of the library failed (%s): skipped\n",
               dlerror());
    if (lib != NULL) {
        struct api copy;
        LOAD(copy, lib, new_default);
        LOAD(copy, lib, free);
        LOAD(copy, lib, acquire);
        LOAD(copy, lib, release);
        LOAD(copy, lib, idle_count_key);
        CHECK((void *)copy.acquire != (void *)connpool_acquire); /* really another copy */
        failed += run_case("fork() with a dlmopen(LM_ID_NEWLM) copy", &copy, VIA_FORK);
        dlclose(lib);
    }
    CHECK_EQ(count_open_fds(), baseline);
    CHECK_EQ(failed, 0);
    return 0;
}
