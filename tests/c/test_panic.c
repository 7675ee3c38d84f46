/* The panic boundary: a panic inside an exported function never unwinds into C. This test
 * loads a build of the library with the test-only cargo feature `panic-inject` (it panics
 * inside a shard lock for the key "connpool-test-panic", and in the constructor for
 * max_idle_per_key 0xDEAD) and checks what the caller sees: -ENOTRECOVERABLE from int
 * functions, 0 from size_t ones, NULL from constructors, the fd given to release closed,
 * the process alive, and the pool still usable (the lock was released on unwinding). */
#define _GNU_SOURCE
#include "harness.h"

#include <dlfcn.h>

#ifndef CONNPOOL_PANIC_LIB_PATH
#define CONNPOOL_PANIC_LIB_PATH ""
#endif

#define MAGIC "connpool-test-panic"
#define KEY "127.0.0.1:8080"

#define SYM(name) __typeof__(&name) p_##name = (__typeof__(&name))dlsym(lib, #name); CHECK(p_##name != NULL)

int main(void)
{
    if (CONNPOOL_PANIC_LIB_PATH[0] == '\0' || access(CONNPOOL_PANIC_LIB_PATH, R_OK) != 0) {
        printf("panic: the panic-inject build is missing: skipped\n");
        return 77;
    }
    void *lib = dlopen(CONNPOOL_PANIC_LIB_PATH, RTLD_NOW | RTLD_LOCAL);
    CHECK(lib != NULL);
    /* The functions must come from that build, not from another libconnpool in the process. */
    Dl_info where;
    CHECK(dladdr(dlsym(lib, "connpool_acquire"), &where) != 0);
    if (strcmp(where.dli_fname, CONNPOOL_PANIC_LIB_PATH) != 0) {
        fprintf(stderr, "connpool_acquire comes from %s\n", where.dli_fname);
        return 1;
    }
    SYM(connpool_new_default);
    SYM(connpool_new_with_config);
    SYM(connpool_config_init);
    SYM(connpool_free);
    SYM(connpool_acquire);
    SYM(connpool_acquire_info);
    SYM(connpool_release);
    SYM(connpool_release_hint);
    SYM(connpool_stats_get);

    int baseline = count_open_fds();
    int listener = listener_open();
    connpool *pool = p_connpool_new_default();
    CHECK(pool != NULL);

    fprintf(stderr, "(the panic messages below are expected)\n");
    CHECK_EQ(p_connpool_acquire(pool, MAGIC), -ENOTRECOVERABLE);
    connpool_conn_info in = {.struct_size = sizeof in};
    CHECK_EQ(p_connpool_acquire_info(pool, MAGIC, &in), -ENOTRECOVERABLE);

    int c, s;
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(p_connpool_release(pool, MAGIC, c), -ENOTRECOVERABLE);
    CHECK_CLOSED(c); /* consumed, as on any other error */
    close(s);
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(p_connpool_release_hint(pool, MAGIC, c, 1000), -ENOTRECOVERABLE);
    CHECK_CLOSED(c);

    connpool_config cfg;
    p_connpool_config_init(&cfg);
    cfg.max_idle_per_key = 0xDEAD;
    CHECK(p_connpool_new_with_config(&cfg) == NULL);

    /* Still usable, on every shard (the magic key's shard lock was released). */
    for (int i = 0; i < 64; i++) {
        char key[32];
        make_key(key, sizeof key, i);
        int d, e;
        tcp_connect_pair(listener, &d, &e);
        CHECK_EQ(p_connpool_release(pool, key, d), CONNPOOL_POOLED);
        CHECK_EQ(p_connpool_acquire(pool, key), d);
        close(d);
        close(e);
    }
    connpool_stats st = {.struct_size = sizeof st};
    CHECK_EQ(p_connpool_stats_get(pool, &st), 0);
    p_connpool_free(pool);
    close(s);
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    printf("panic: every injected panic stopped at the boundary\n");
    return 0;
}
