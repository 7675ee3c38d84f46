/* connpool_config: defaults, validation (NULL + errno EINVAL), and the argument checks of
 * connpool_stats_get(). */
#define _GNU_SOURCE
#include "harness.h"

static void defaults(void)
{
    connpool_config cfg;
    memset(&cfg, 0xab, sizeof cfg);
    connpool_config_init(&cfg);
    CHECK_EQ(cfg.struct_size, sizeof(connpool_config));
    CHECK_EQ(cfg.max_idle_per_key, 8);
    CHECK_EQ(cfg.max_idle_total, 0);
    CHECK_EQ(cfg.idle_timeout_ms, 60000);
    CHECK_EQ(cfg.max_lifetime_ms, 0);
    CHECK_EQ(cfg.max_uses, 0);
    CHECK_EQ(cfg.flags, CONNPOOL_CHECK_LIVENESS);
    connpool_config_init(NULL); /* no-op */

    connpool *p = connpool_new_with_config(&cfg);
    CHECK(p != NULL);
    connpool_free(p);
    p = connpool_new_with_config(NULL); /* the defaults */
    CHECK(p != NULL);
    connpool_stats st = stats_of(p);
    CHECK_EQ(st.struct_size, sizeof st);
    CHECK_EQ(st.idle + st.keys + st.hits + st.misses + st.pooled + st.closed_full + st.evicted +
                 st.expired + st.dead + st.retired + st.purged,
             0);
    connpool_free(p);
}

static void rejected(const connpool_config *cfg, const char *what)
{
    errno = 0;
    connpool *p = connpool_new_with_config(cfg);
    if (p != NULL || errno != EINVAL) {
        fprintf(stderr, "config with %s: pool %p, errno %d\n", what, (void *)p, errno);
        exit(1);
    }
}

static void invalid(void)
{
    connpool_config cfg;
    /* A newer caller's bigger struct: accepted when the fields this library does not know
     * are zero (their defaults), rejected when one is set. */
    struct {
        connpool_config cfg;
        char newer_fields[64];
    } big;
    memset(&big, 0, sizeof big);
    connpool_config_init(&big.cfg);
    big.cfg.struct_size = sizeof big;
    connpool *ok = connpool_new_with_config(&big.cfg);
    CHECK(ok != NULL);
    connpool_free(ok);
    big.newer_fields[63] = 1;
    rejected(&big.cfg, "a set field this library does not know");
    connpool_config_init(&cfg);
    cfg.struct_size = 0;
    rejected(&cfg, "struct_size 0");
    cfg.struct_size = 39; /* one byte short of the first released struct */
    rejected(&cfg, "struct_size too small");
    cfg.struct_size = sizeof(size_t); /* only the size field */
    rejected(&cfg, "struct_size of one field");

    connpool_config_init(&cfg);
    cfg.max_idle_per_key = 0;
    rejected(&cfg, "max_idle_per_key 0");
    connpool_config_init(&cfg);
    cfg.flags = 1u << 31;
    rejected(&cfg, "an unknown flag");
    cfg.flags = CONNPOOL_CHECK_LIVENESS | (1u << 7);
    rejected(&cfg, "a known and an unknown flag");

    /* Absurd but meaningful limits are accepted. */
    connpool_config_init(&cfg);
    cfg.max_idle_per_key = UINT32_MAX;
    cfg.max_idle_total = UINT32_MAX;
    cfg.idle_timeout_ms = UINT64_MAX;
    cfg.max_lifetime_ms = UINT64_MAX;
    cfg.max_uses = UINT32_MAX;
    cfg.flags = 0;
    connpool *p = connpool_new_with_config(&cfg);
    CHECK(p != NULL);
    int sv[2];
    CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK_EQ(connpool_release(p, "k:1", sv[0]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(p, "k:1"), sv[0]);
    close(sv[0]);
    close(sv[1]);
    connpool_free(p);

    /* max_idle_total smaller than max_idle_per_key is fine: the global cap rules. */
    connpool_config_init(&cfg);
    cfg.max_idle_total = 1;
    p = connpool_new_with_config(&cfg);
    CHECK(p != NULL);
    connpool_free(p);
}

static void stats_arguments(void)
{
    connpool *p = connpool_new_default();
    CHECK(p != NULL);
    connpool_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_EQ(connpool_stats_get(NULL, &st), -EINVAL);
    CHECK_EQ(connpool_stats_get(p, NULL), -EINVAL);
    st.struct_size = 0;
    CHECK_EQ(connpool_stats_get(p, &st), -EINVAL);
    st.struct_size = 88; /* a field short of the 0.1 struct (96 bytes) */
    st.hits = 12345;
    CHECK_EQ(connpool_stats_get(p, &st), -EINVAL);
    CHECK_EQ(st.hits, 12345); /* untouched */
    /* A larger struct (a newer caller): the known fields are filled, the rest untouched. */
    struct {
        connpool_stats st;
        uint64_t newer;
    } big;
    memset(&big, 0, sizeof big);
    big.st.struct_size = sizeof big;
    big.st.hits = 77;
    big.newer = 42;
    CHECK_EQ(connpool_stats_get(p, &big.st), 0);
    CHECK_EQ(big.st.hits, 0);
    CHECK_EQ(big.st.struct_size, sizeof big);
    CHECK_EQ(big.newer, 42);
    connpool_free(p);
}

/* The older constructors keep working and check liveness. */
static void old_constructors_check_liveness(void)
{
    connpool *pools[2] = {connpool_new(4, 1000), connpool_new_default()};
    for (int i = 0; i < 2; i++) {
        CHECK(pools[i] != NULL);
        int sv[2];
        CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        CHECK_EQ(connpool_release(pools[i], "k:1", sv[0]), CONNPOOL_POOLED);
        close(sv[1]); /* the peer goes away */
        CHECK_EQ(connpool_acquire(pools[i], "k:1"), -ENOENT);
        CHECK_CLOSED(sv[0]);
        CHECK_EQ(stats_of(pools[i]).dead, 1);
        connpool_free(pools[i]);
    }
}

int main(void)
{
    int baseline = count_open_fds();
    defaults();
    invalid();
    stats_arguments();
    old_constructors_check_liveness();
    CHECK_EQ(count_open_fds(), baseline);
    return 0;
}
