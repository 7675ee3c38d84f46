/* The struct_size rule, from the outside: binaries built against the 0.1 header (structs
 * declared here with the 0.1 layout) and against a newer one (a grown struct, with a
 * test-only trailing field) both work; the exported connpool_config_init writes exactly the
 * 0.1 layout; output structs are never written beyond struct_size. */
#include "harness.h"

#include <dlfcn.h>

/* The 0.1 layouts, as a program built against 0.1 declares them. */
struct config_v01 {
    size_t struct_size;
    uint32_t max_idle_per_key;
    uint32_t max_idle_total;
    uint64_t idle_timeout_ms;
    uint64_t max_lifetime_ms;
    uint32_t max_uses;
    uint32_t flags;
};
struct info_v01 {
    size_t struct_size;
    uint64_t idle_ms;
    uint64_t age_ms;
    uint32_t uses;
};
struct stats_v01 {
    size_t struct_size;
    uint64_t idle, keys, hits, misses, pooled, closed_full, evicted, expired, dead, retired,
        purged;
};

#define CANARY 0x5a5a5a5a5a5a5a5aull

static int g_listener;

/* A live connection released into `key`; its backend end is returned in *backend. */
static void pooled_conn(connpool *p, const char *key, int *backend)
{
    int c;
    tcp_connect_pair(g_listener, &c, backend);
    CHECK_EQ(connpool_release(p, key, c), CONNPOOL_POOLED);
}

static void config_layouts(void)
{
    _Static_assert(sizeof(struct config_v01) == 40, "0.1 config is 40 bytes");
    /* A 0.1 caller: its settings take effect, later fields take their defaults. */
    struct config_v01 old;
    memset(&old, 0xff, sizeof old);
    (connpool_config_init)((connpool_config *)&old); /* the exported 0.1 function */
    CHECK_EQ(old.struct_size, 40);
    CHECK_EQ(old.max_idle_per_key, 8);
    CHECK_EQ(old.flags, CONNPOOL_CHECK_LIVENESS);
    old.max_idle_per_key = 1;
    connpool *p = connpool_new_with_config((connpool_config *)&old);
    CHECK(p != NULL);
    int b1, c2, s2;
    pooled_conn(p, "k:1", &b1);
    tcp_connect_pair(g_listener, &c2, &s2);
    CHECK_EQ(connpool_release(p, "k:1", c2), CONNPOOL_CLOSED); /* max_idle_per_key 1 */
    connpool_free(p);
    close(b1);
    close(s2);

    /* A newer caller: a trailing field this library does not know, zero (its default) is
     * accepted, set is refused. */
    struct {
        connpool_config c;
        uint64_t future;
    } grown;
    memset(&grown, 0xff, sizeof grown);
    CHECK_EQ(connpool_config_init_sized(&grown.c, sizeof grown), 0);
    CHECK_EQ(grown.c.struct_size, sizeof grown);
    CHECK_EQ(grown.future, 0);
    CHECK_EQ(grown.c.max_idle_per_key, 8);
    p = connpool_new_with_config(&grown.c);
    CHECK(p != NULL);
    connpool_free(p);
    grown.future = 1;
    errno = 0;
    CHECK(connpool_new_with_config(&grown.c) == NULL && errno == EINVAL);

    /* The macro fills exactly this header's struct. */
    connpool_config cfg;
    memset(&cfg, 0xff, sizeof cfg);
    connpool_config_init(&cfg);
    CHECK_EQ(cfg.struct_size, sizeof cfg);
    CHECK_EQ(cfg.idle_timeout_ms, 60000);
    CHECK_EQ(connpool_config_init_sized(&cfg, 39), -EINVAL);
    CHECK_EQ(connpool_config_init_sized(NULL, sizeof cfg), -EINVAL);
}

/* The exported symbol itself, as dlsym() finds it, on a 0.1-sized struct followed by a
 * canary: it writes 40 bytes and not one more. */
static void exported_init_writes_the_first_layout(void)
{
    void (*init)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "connpool_config_init");
    CHECK(init != NULL);
    struct {
        struct config_v01 cfg;
        uint64_t canary[8];
    } mem;
    memset(&mem, 0x5a, sizeof mem);
    init(&mem.cfg);
    CHECK_EQ(mem.cfg.struct_size, 40);
    CHECK_EQ(mem.cfg.max_idle_per_key, 8);
    CHECK_EQ(mem.cfg.idle_timeout_ms, 60000);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(mem.canary[i], CANARY);
}

static void info_layouts(void)
{
    connpool *p = connpool_new_default();
    CHECK(p != NULL);
    int b;

    /* 0.1 layout with a canary after it: filled, canary intact. */
    struct {
        struct info_v01 info;
        uint64_t canary;
    } old;
    memset(&old, 0x5a, sizeof old);
    old.info.struct_size = sizeof old.info;
    pooled_conn(p, "k:1", &b);
    int fd = connpool_acquire_info(p, "k:1", (connpool_conn_info *)&old.info);
    CHECK(fd >= 0);
    CHECK_EQ(old.info.struct_size, sizeof old.info);
    CHECK_EQ(old.info.uses, 1);
    CHECK(old.info.idle_ms < 60000);
    CHECK_EQ(old.canary, CANARY);
    CHECK_EQ(connpool_release(p, "k:1", fd), CONNPOOL_POOLED);

    /* A grown struct: the trailing field this library does not know is not written. */
    struct {
        connpool_conn_info info;
        uint64_t future;
    } grown;
    memset(&grown, 0x5a, sizeof grown);
    grown.info.struct_size = sizeof grown;
    fd = connpool_acquire_info(p, "k:1", &grown.info);
    CHECK(fd >= 0);
    CHECK_EQ(grown.info.uses, 2);
    CHECK_EQ(grown.info.struct_size, sizeof grown);
    CHECK_EQ(grown.future, CANARY);
    CHECK_EQ(connpool_release(p, "k:1", fd), CONNPOOL_POOLED);

    /* Below the 0.1 size: -EINVAL, nothing acquired, nothing written. */
    memset(&old, 0x5a, sizeof old);
    old.info.struct_size = 31;
    CHECK_EQ(connpool_acquire_info(p, "k:1", (connpool_conn_info *)&old.info), -EINVAL);
    CHECK_EQ(old.info.uses, 0x5a5a5a5au);
    CHECK_EQ(connpool_idle_count_key(p, "k:1"), 1);
    connpool_free(p);
    close(b);
}

static void stats_layouts(void)
{
    connpool *p = connpool_new_default();
    CHECK(p != NULL);
    int b;
    pooled_conn(p, "k:1", &b);

    struct {
        struct stats_v01 st;
        uint64_t canary;
    } old;
    memset(&old, 0x5a, sizeof old);
    old.st.struct_size = sizeof old.st;
    CHECK_EQ(connpool_stats_get(p, (connpool_stats *)&old.st), 0);
    CHECK_EQ(old.st.struct_size, 96);
    CHECK_EQ(old.st.idle, 1);
    CHECK_EQ(old.st.pooled, 1);
    CHECK_EQ(old.st.purged, 0);
    CHECK_EQ(old.canary, CANARY);

    struct {
        connpool_stats st;
        uint64_t future;
    } grown;
    memset(&grown, 0x5a, sizeof grown);
    grown.st.struct_size = sizeof grown;
    CHECK_EQ(connpool_stats_get(p, &grown.st), 0);
    CHECK_EQ(grown.st.idle, 1);
    CHECK_EQ(grown.future, CANARY);

    memset(&old, 0x5a, sizeof old);
    old.st.struct_size = 95;
    CHECK_EQ(connpool_stats_get(p, (connpool_stats *)&old.st), -EINVAL);
    CHECK_EQ(old.st.idle, CANARY);
    connpool_free(p);
    close(b);
}

int main(void)
{
    g_listener = listener_open();
    int baseline = count_open_fds();
    config_layouts();
    printf("ok: config: 0.1 layout, grown layout, the macro\n");
    exported_init_writes_the_first_layout();
    printf("ok: the exported connpool_config_init writes 40 bytes\n");
    info_layouts();
    printf("ok: conn_info: 0.1 layout, grown layout, too small\n");
    stats_layouts();
    printf("ok: stats: 0.1 layout, grown layout, too small\n");
    CHECK_EQ(count_open_fds(), baseline);
    close(g_listener);
    return 0;
}
