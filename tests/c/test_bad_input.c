/* The bad-input matrix: every public function against NULL pools, bad keys, bad fds and bad
 * configs. Each case gives its documented code, never crashes, leaks nothing, and never
 * closes an fd it was not given (checked with fcntl after every case, and the process's
 * open fd count against a baseline). */
#define _GNU_SOURCE
#include "harness.h"

#include <sys/stat.h>

#define KEY "127.0.0.1:8080"

static connpool *g_pool;  /* liveness check on */
static connpool *g_plain; /* liveness check off */
static char *g_huge;      /* 1 MiB key */
static char g_long[CONNPOOL_MAX_KEY_LEN + 2]; /* 1025 bytes */
static char g_max[CONNPOOL_MAX_KEY_LEN + 1];  /* 1024 bytes: the longest valid key */
static int g_listener;

static int new_socket(void)
{
    int c, s;
    tcp_connect_pair(g_listener, &c, &s);
    close(s); /* the backend end is not needed; for release/acquire codes only */
    return c;
}

/* A live connection (backend end kept open so it passes the liveness check). */
static int g_backend[4096];
static int live_socket(void)
{
    int c, s;
    tcp_connect_pair(g_listener, &c, &s);
    CHECK(c < 4096);
    g_backend[c] = s;
    return c;
}
static void close_backend(int c)
{
    close(g_backend[c]);
    g_backend[c] = -1;
}

/* ---- NULL pool: every function ---- */
static void null_pool(void)
{
    connpool_stats st = {.struct_size = sizeof st};
    connpool_conn_info in = {.struct_size = sizeof in};
    CHECK_EQ(connpool_acquire(NULL, KEY), -EINVAL);
    CHECK_EQ(connpool_acquire_info(NULL, KEY, &in), -EINVAL);
    int fd = new_socket();
    CHECK_EQ(connpool_release(NULL, KEY, fd), -EINVAL);
    CHECK_CLOSED(fd); /* given: consumed */
    fd = new_socket();
    CHECK_EQ(connpool_release_hint(NULL, KEY, fd, 1000), -EINVAL);
    CHECK_CLOSED(fd);
    CHECK_EQ(connpool_release(NULL, KEY, -1), -EINVAL);
    CHECK_EQ(connpool_idle_count(NULL), 0);
    CHECK_EQ(connpool_idle_count_key(NULL, KEY), 0);
    CHECK_EQ(connpool_purge(NULL, KEY), 0);
    CHECK_EQ(connpool_purge(NULL, NULL), 0);
    CHECK_EQ(connpool_prune(NULL), 0);
    CHECK_EQ(connpool_stats_get(NULL, &st), -EINVAL);
    CHECK_EQ(connpool_watch_fd(NULL), -EINVAL);
    CHECK_EQ(connpool_reap(NULL), 0);
    connpool_free(NULL);
    connpool_config_init(NULL);
    CHECK(connpool_version() != NULL);
}

/* ---- keys: NULL, empty, 1025 bytes, 1 MiB, non-UTF-8, the 1024-byte maximum ---- */
static void check_bad_key(const char *key, const char *what)
{
    int fd = live_socket();
    CHECK_EQ(connpool_release(g_pool, KEY, fd), CONNPOOL_POOLED); /* under a good key */
    connpool_conn_info in = {.struct_size = sizeof in};
    int rc[4] = {
        connpool_acquire(g_pool, key),
        connpool_acquire_info(g_pool, key, &in),
        connpool_release(g_pool, key, -1),
        connpool_release_hint(g_pool, key, -1, 5),
    };
    for (int i = 0; i < 4; i++)
        if (rc[i] != -EINVAL) {
            fprintf(stderr, "%s: call %d returned %d\n", what, i, rc[i]);
            exit(1);
        }
    CHECK_EQ(connpool_idle_count_key(g_pool, key), 0);
    if (key != NULL) /* purge(NULL) means every key */
        CHECK_EQ(connpool_purge(g_pool, key), 0);
    CHECK_OPEN(fd); /* the good key's connection is untouched */
    int other = live_socket();
    CHECK_EQ(connpool_release(g_pool, key, other), -EINVAL);
    CHECK_CLOSED(other); /* given: consumed even on error */
    close_backend(other);
    CHECK_EQ(connpool_acquire(g_pool, KEY), fd);
    close(fd);
    close_backend(fd);
}

static void keys(void)
{
    check_bad_key(NULL, "NULL key");
    check_bad_key("", "empty key");
    check_bad_key(g_long, "1025-byte key");
    check_bad_key(g_huge, "1 MiB key");

    /* Any bytes are a valid key, UTF-8 or not, up to 1024 of them. */
    const char *odd[] = {"\xff\xfe\x80:80", "h\xc3\x28st:1", g_max, "\x01"};
    for (int i = 0; i < 4; i++) {
        int fd = live_socket();
        CHECK_EQ(connpool_release(g_pool, odd[i], fd), CONNPOOL_POOLED);
        CHECK_EQ(connpool_idle_count_key(g_pool, odd[i]), 1);
        CHECK_EQ(connpool_acquire(g_pool, odd[i]), fd);
        close(fd);
        close_backend(fd);
    }
    /* Keys differing only past byte 1024 are both invalid, not the same key. */
    CHECK_EQ(connpool_idle_count_key(g_pool, g_long), 0);
}

/* ---- fds ---- */
static void fds(void)
{
    /* Negative fds: -EBADF, nothing consumed. */
    int negatives[] = {-1, -2, -1000, INT32_MIN};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(connpool_release(g_pool, KEY, negatives[i]), -EBADF);
        CHECK_EQ(connpool_release_hint(g_pool, KEY, negatives[i], 10), -EBADF);
    }

    /* A closed fd number: accepted (no probe on release); the liveness check finds EBADF
     * on acquire and drops it, so it is never handed out. Without the check it comes back,
     * as the caller gave it. */
    int fd = new_socket();
    close(fd);
    CHECK_EQ(connpool_release(g_pool, KEY, fd), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(g_pool, KEY), -ENOENT);
    CHECK_EQ(connpool_release(g_plain, KEY, fd), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(g_plain, KEY), fd);

    /* Not a connected socket: a pipe, a regular file, a listening socket. The check fails
     * (ENOTSOCK, ENOTCONN) and the pool closes them. */
    int p[2];
    CHECK_SYS(pipe(p) == 0);
    char path[] = "/tmp/connpool-bad-input-XXXXXX";
    int file = mkstemp(path);
    CHECK_SYS(file >= 0);
    unlink(path);
    int lst = listener_open();
    int odd[3] = {p[0], file, lst};
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(connpool_release(g_pool, KEY, odd[i]), CONNPOOL_POOLED);
        CHECK_EQ(connpool_acquire(g_pool, KEY), -ENOENT);
        CHECK_CLOSED(odd[i]);
    }
    CHECK_OPEN(p[1]); /* not given: untouched */
    close(p[1]);

    /* A UDP socket has nothing to read: it passes the check and comes back. */
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(udp >= 0);
    CHECK_EQ(connpool_release(g_pool, KEY, udp), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(g_pool, KEY), udp);
    close(udp);

    /* The same fd released twice: -EALREADY, nothing closed, kept once. */
    fd = live_socket();
    CHECK_EQ(connpool_release(g_pool, KEY, fd), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(g_pool, KEY, fd), -EALREADY);
    CHECK_EQ(connpool_release_hint(g_pool, "other:1", fd, 100), -EALREADY);
    CHECK_EQ(connpool_release(g_plain, KEY, fd), -EALREADY);
    CHECK_OPEN(fd);
    CHECK_EQ(connpool_idle_count(g_pool), 1);
    CHECK_EQ(connpool_acquire(g_pool, KEY), fd);
    CHECK_EQ(connpool_acquire(g_pool, KEY), -ENOENT);
    close(fd);
    close_backend(fd);

    /* The pool's own watch fd is the pool's: releasing it is a double release. */
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.flags |= CONNPOOL_WATCH;
    connpool *w = connpool_new_with_config(&cfg);
    CHECK(w != NULL);
    int wfd = connpool_watch_fd(w);
    CHECK_EQ(connpool_release(w, KEY, wfd), -EALREADY);
    CHECK_EQ(connpool_release(g_pool, KEY, wfd), -EALREADY);
    CHECK_OPEN(wfd);
    connpool_free(w);
    CHECK_CLOSED(wfd);
}

/* ---- configs ---- */
static void configs(void)
{
    connpool_config cfg;
    struct {
        const char *what;
        size_t size;
        uint32_t per_key;
        uint32_t flags;
        char unknown; /* a byte beyond the fields this library knows */
    } bad[] = {
        {"struct_size 0", 0, 8, CONNPOOL_CHECK_LIVENESS, 0},
        {"struct_size below the 0.1 size", 39, 8, CONNPOOL_CHECK_LIVENESS, 0},
        {"larger, unknown bytes set", sizeof cfg + 8, 8, CONNPOOL_CHECK_LIVENESS, 1},
        {"struct_size SIZE_MAX", SIZE_MAX, 8, CONNPOOL_CHECK_LIVENESS, 0},
        {"max_idle_per_key 0", sizeof cfg, 0, CONNPOOL_CHECK_LIVENESS, 0},
        {"unknown flag", sizeof cfg, 8, 1u << 30, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct {
            connpool_config c;
            char room[16]; /* struct_size may claim more than the struct */
        } buf;
        memset(&buf, 0, sizeof buf);
        connpool_config_init(&buf.c);
        buf.c.struct_size = bad[i].size;
        buf.c.max_idle_per_key = bad[i].per_key;
        buf.c.flags = bad[i].flags;
        buf.room[0] = bad[i].unknown;
        errno = 0;
        connpool *p = connpool_new_with_config(&buf.c);
        if (p != NULL || errno != EINVAL) {
            fprintf(stderr, "config with %s: %p, errno %d\n", bad[i].what, (void *)p, errno);
            exit(1);
        }
    }
    errno = 0;
    CHECK(connpool_new(0, 1000) == NULL && errno == EINVAL);
    /* Absurd but meaningful: accepted. */
    connpool *p = connpool_new(SIZE_MAX, UINT64_MAX);
    CHECK(p != NULL);
    connpool_free(p);
    connpool_config_init(&cfg);
    cfg.max_idle_per_key = cfg.max_idle_total = cfg.max_uses = UINT32_MAX;
    cfg.idle_timeout_ms = cfg.max_lifetime_ms = UINT64_MAX;
    cfg.flags = CONNPOOL_CHECK_LIVENESS | CONNPOOL_WATCH | CONNPOOL_REAPER_THREAD;
    p = connpool_new_with_config(&cfg);
    CHECK(p != NULL);
    int fd = live_socket();
    CHECK_EQ(connpool_release_hint(p, KEY, fd, UINT64_MAX), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(p, KEY), fd);
    CHECK_EQ(connpool_release(p, KEY, fd), CONNPOOL_POOLED);
    connpool_free(p);
    CHECK_CLOSED(fd);
    close_backend(fd);

    /* Output structs: too small is -EINVAL and untouched. */
    connpool_stats st;
    memset(&st, 0x5a, sizeof st);
    st.struct_size = 8;
    CHECK_EQ(connpool_stats_get(g_pool, &st), -EINVAL);
    CHECK_EQ(st.hits, 0x5a5a5a5a5a5a5a5aull);
    CHECK_EQ(connpool_stats_get(g_pool, NULL), -EINVAL);
    connpool_conn_info in;
    memset(&in, 0, sizeof in);
    CHECK_EQ(connpool_acquire_info(g_pool, KEY, &in), -EINVAL); /* struct_size 0 */
}

struct row {
    const char *name;
    void (*run)(void);
};

int main(void)
{
    memset(g_backend, -1, sizeof g_backend);
    g_listener = listener_open();
    g_huge = malloc(1 << 20);
    CHECK(g_huge != NULL);
    memset(g_huge, 'h', (1 << 20) - 1);
    g_huge[(1 << 20) - 1] = '\0';
    memset(g_long, 'k', CONNPOOL_MAX_KEY_LEN + 1);
    memset(g_max, 'm', CONNPOOL_MAX_KEY_LEN);

    int baseline = count_open_fds();
    g_pool = connpool_new_default();
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.flags = 0;
    g_plain = connpool_new_with_config(&cfg);
    CHECK(g_pool != NULL && g_plain != NULL);

    const struct row rows[] = {
        {"NULL pool, every function", null_pool},
        {"keys: NULL, empty, 1025 bytes, 1 MiB, non-UTF-8, 1024 bytes", keys},
        {"fds: negative, closed, pipe, file, listening, UDP, double release, watch fd", fds},
        {"configs and output structs", configs},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int before = count_open_fds();
        rows[i].run();
        CHECK_EQ(connpool_idle_count(g_pool), 0);
        CHECK_EQ(count_open_fds(), before);
        printf("ok: %s\n", rows[i].name);
    }
    connpool_free(g_pool);
    connpool_free(g_plain);
    CHECK_EQ(count_open_fds(), baseline);
    close(g_listener);
    free(g_huge);
    return 0;
}
