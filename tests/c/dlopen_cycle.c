/* dlopen / use / dlclose 1,000 times leaves nothing behind.
 *
 * Each cycle dlopen()s the library, makes a pool with CONNPOOL_REAPER_THREAD, releases a few
 * connections (one of them dead, so the reaper has work), acquires and releases one, frees
 * the pool and dlclose()s the library. At the end: no thread (the /proc/self/task count is
 * back to its baseline), no fd (/proc/self/fd) and no heap growth (glibc's in-use bytes
 * after cycle 10 and at the end; memcheck and LeakSanitizer check for leaks in their runs).
 * Not a tests/c/test_*.c file: those link the library, and then dlopen() would only return
 * the copy already loaded. (The library is linked with -z nodelete, so dlclose() never
 * unmaps it; this test also holds if that changes.) */
#define _GNU_SOURCE
#include "harness.h"
#include "hostile.h"

#include <dlfcn.h>
#include <malloc.h>

#ifndef CONNPOOL_LIB_PATH
#error "CONNPOOL_LIB_PATH must be defined (full path of libconnpool.so.0)"
#endif

#define SYM(lib, name) __typeof__(&name) p_##name = (__typeof__(&name))dlsym(lib, #name); CHECK(p_##name != NULL)

/* Heap bytes in use (every arena); 0 where that is not known (valgrind, ASan). */
static size_t heap_in_use(void)
{
    if (running_on_valgrind() || built_with_asan())
        return 0;
    return mallinfo2().uordblks;
}

static void cycle(void)
{
    void *lib = dlopen(CONNPOOL_LIB_PATH, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen(%s): %s\n", CONNPOOL_LIB_PATH, dlerror());
        exit(1);
    }
    SYM(lib, connpool_config_init);
    SYM(lib, connpool_new_with_config);
    SYM(lib, connpool_release);
    SYM(lib, connpool_acquire);
    SYM(lib, connpool_watch_fd);
    SYM(lib, connpool_free);

    connpool_config cfg;
    p_connpool_config_init(&cfg);
    cfg.flags |= CONNPOOL_REAPER_THREAD;
    connpool *pool = p_connpool_new_with_config(&cfg);
    CHECK(pool != NULL);
    CHECK(p_connpool_watch_fd(pool) >= 0);
    enum { N = 3 };
    int c[N], s[N];
    for (int i = 0; i < N; i++) {
        int sv[2];
        CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        c[i] = sv[0];
        s[i] = sv[1];
        char key[32];
        make_key(key, sizeof key, i);
        CHECK_EQ(p_connpool_release(pool, key, c[i]), CONNPOOL_POOLED);
    }
    close(s[N - 1]); /* dead: the reaper may close it, or free does */
    char key0[32];
    make_key(key0, sizeof key0, 0);
    CHECK_EQ(p_connpool_acquire(pool, key0), c[0]);
    CHECK(tcp_roundtrip(c[0], s[0], 1) == 0);
    CHECK_EQ(p_connpool_release(pool, key0, c[0]), CONNPOOL_POOLED);
    p_connpool_free(pool); /* joins the reaper, closes every idle fd */
    for (int i = 0; i < N; i++)
        CHECK_CLOSED(c[i]);
    for (int i = 0; i < N - 1; i++)
        close(s[i]);
    CHECK_EQ(dlclose(lib), 0);
}

int main(void)
{
    int cycles = running_on_valgrind() ? 20 : 1000;
    int threads = threads_now();
    int fds = count_open_fds();
    size_t heap_early = 0;
    long long t0 = now_ms();
    for (int i = 0; i < cycles; i++) {
        cycle();
        if (i == 9)
            heap_early = heap_in_use();
    }
    /* Joined threads: the kernel may list one for a moment after its join (bounded wait). */
    long long deadline = now_ms() + watchdog_ms(5000);
    while (threads_now() != threads && now_ms() < deadline)
        sleep_ms(1);
    size_t heap_end = heap_in_use();
    printf("dlopen_cycle: %d cycles in %lld ms; threads %d -> %d, fds %d -> %d, heap in use "
           "after cycle 10: %zu, at the end: %zu\n",
           cycles, now_ms() - t0, threads, threads_now(), fds, count_open_fds(), heap_early,
           heap_end);
    CHECK_EQ(threads_now(), threads);
    CHECK_EQ(count_open_fds(), fds);
    /* Growth of less than 16 bytes a cycle, or none at all, passes. */
    CHECK(heap_end <= heap_early + 16 * (size_t)cycles);
    return 0;
}
