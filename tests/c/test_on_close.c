/* Connection state (since 0.2): the caller's ctx travels with its fd, and on_close is
 * called exactly once for every connection the pool owned and closes, for every reason,
 * with the fd still open and the ctx it was released with; never for a connection the
 * caller holds, never for an fd the pool refused, never under a pool lock (the callback
 * calls back into the pool on the same key), and not in a fork child for the parent's. */
#include "harness.h"

#include <pthread.h>
#include <sys/wait.h>

#define MAX_CALLS 64

struct call {
    int fd;
    void *ctx;
    int reason;
    int fd_was_open;
};

static struct call g_calls[MAX_CALLS];
static int g_ncalls;
static connpool *g_reenter; /* the pool the callback calls back into, if any */
static int g_listener;
static int g_reentered;

static void on_close(void *arg, int fd, void *ctx, int reason)
{
    CHECK(arg == &g_calls);
    CHECK(g_ncalls < MAX_CALLS);
    g_calls[g_ncalls++] = (struct call){fd, ctx, reason, fd_is_open(fd)};
    if (g_reenter != NULL) {
        /* Back into the pool on the same key: a callback under a pool lock deadlocks. */
        int c, s;
        tcp_connect_pair(g_listener, &c, &s);
        (void)connpool_idle_count_key(g_reenter, "k:1");
        int got = connpool_acquire(g_reenter, "k:1");
        if (got >= 0)
            close(got);
        CHECK_EQ(connpool_release(g_reenter, "k:1", c), CONNPOOL_POOLED);
        close(s);
        g_reentered++;
    }
}

static connpool *pool_with(uint32_t per_key, uint32_t total, uint32_t uses, uint32_t flags)
{
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.max_idle_per_key = per_key;
    cfg.max_idle_total = total;
    cfg.max_uses = uses;
    cfg.flags = flags;
    cfg.on_close = on_close;
    cfg.arg = &g_calls;
    connpool *p = connpool_new_with_config(&cfg);
    CHECK(p != NULL);
    return p;
}

/* The one call since the last reset, with this fd, ctx and reason; the fd open during it
 * and closed after. */
static void expect_one(int fd, void *ctx, int reason)
{
    CHECK_EQ(g_ncalls, 1);
    CHECK_EQ(g_calls[0].fd, fd);
    CHECK(g_calls[0].ctx == ctx);
    CHECK_EQ(g_calls[0].reason, reason);
    CHECK(g_calls[0].fd_was_open);
    CHECK_CLOSED(fd);
    g_ncalls = 0;
}

static int ctx_tag[16];
#define CTX(i) ((void *)&ctx_tag[i])

static void every_reason(void)
{
    int c[8], s[8];
    tcp_connect_pairs(g_listener, 8, c, s);

    /* full */
    connpool *p = pool_with(1, 0, 0, CONNPOOL_CHECK_LIVENESS);
    CHECK_EQ(connpool_release_ctx(p, "k:1", c[0], CTX(0), CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(g_ncalls, 0);
    CHECK_EQ(connpool_release_ctx(p, "k:1", c[1], CTX(1), CONNPOOL_NO_HINT), CONNPOOL_CLOSED);
    expect_one(c[1], CTX(1), CONNPOOL_CLOSE_FULL);

    /* expired: a zero hint closes at once */
    CHECK_EQ(connpool_release_ctx(p, "k:2", c[2], CTX(2), 0), CONNPOOL_CLOSED);
    expect_one(c[2], CTX(2), CONNPOOL_CLOSE_EXPIRED);

    /* dead: the backend closed it while idle; acquire's check finds it */
    close(s[0]);
    int d = dup(c[0]); /* to wait for the FIN without touching the pool's fd */
    CHECK(d >= 0 && wait_event(d, POLLIN) == 0);
    close(d);
    CHECK_EQ(connpool_acquire(p, "k:1"), -ENOENT);
    expect_one(c[0], CTX(0), CONNPOOL_CLOSE_DEAD);

    /* purged: by purge, and by free */
    CHECK_EQ(connpool_release_ctx(p, "k:3", c[3], CTX(3), CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(connpool_purge(p, "k:3"), 1);
    expect_one(c[3], CTX(3), CONNPOOL_CLOSE_PURGED);
    CHECK_EQ(connpool_release_ctx(p, "k:4", c[4], CTX(4), CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    connpool_free(p);
    expect_one(c[4], CTX(4), CONNPOOL_CLOSE_PURGED);

    /* retired at max_uses */
    p = pool_with(8, 0, 1, CONNPOOL_CHECK_LIVENESS);
    CHECK_EQ(connpool_release_ctx(p, "k:1", c[5], CTX(5), CONNPOOL_NO_HINT), CONNPOOL_CLOSED);
    expect_one(c[5], CTX(5), CONNPOOL_CLOSE_RETIRED);
    connpool_free(p);

    /* evicted for the global cap */
    p = pool_with(8, 1, 0, CONNPOOL_CHECK_LIVENESS);
    CHECK_EQ(connpool_release_ctx(p, "k:1", c[6], CTX(6), CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release_ctx(p, "k:2", c[7], CTX(7), CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    expect_one(c[6], CTX(6), CONNPOOL_CLOSE_EVICTED);
    connpool_free(p);
    expect_one(c[7], CTX(7), CONNPOOL_CLOSE_PURGED);

    /* The reasons are distinct small integers. */
    int r[] = {CONNPOOL_CLOSE_FULL, CONNPOOL_CLOSE_EVICTED, CONNPOOL_CLOSE_EXPIRED,
               CONNPOOL_CLOSE_DEAD, CONNPOOL_CLOSE_RETIRED, CONNPOOL_CLOSE_PURGED};
    for (int i = 0; i < 6; i++)
        for (int j = i + 1; j < 6; j++)
            CHECK(r[i] != r[j]);
    for (int i = 1; i < 8; i++)
        close(s[i]);
}

/* The ctx comes back with the fd from every acquire form, and the caller's holds are never
 * reported. */
static void ctx_round_trip(void)
{
    connpool *p = pool_with(8, 0, 0, CONNPOOL_CHECK_LIVENESS);
    int c, s;
    tcp_connect_pair(g_listener, &c, &s);
    CHECK_EQ(connpool_release_ctx(p, "k:1", c, CTX(8), 5000), CONNPOOL_POOLED);
    void *got = NULL;
    CHECK_EQ(connpool_acquire_ctx(p, "k:1", &got), c);
    CHECK(got == CTX(8));
    CHECK_EQ(connpool_release_ctx(p, "k:1", c, CTX(9), CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    connpool_conn_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK_EQ(connpool_acquire_info(p, "k:1", &info), c);
    CHECK(info.ctx == CTX(9));
    CHECK_EQ(info.uses, 2);
    /* A plain release: no state (NULL), and acquire_ctx with a NULL out-pointer. */
    CHECK_EQ(connpool_release(p, "k:1", c), CONNPOOL_POOLED);
    got = CTX(0);
    CHECK_EQ(connpool_acquire_ctx(p, "k:1", &got), c);
    CHECK(got == NULL);
    CHECK_EQ(connpool_release_ctx(p, "k:1", c, CTX(10), CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire_ctx(p, "k:1", NULL), c);
    /* Held by the caller: freeing the pool reports nothing, closes nothing. */
    connpool_free(p);
    CHECK_EQ(g_ncalls, 0);
    CHECK_OPEN(c);
    close(c);
    close(s);
}

/* An fd the pool refused is never reported: -EINVAL (bad key: closed), -EALREADY (a double
 * release: untouched), -EBADF. */
static void refused_fds_are_not_reported(void)
{
    connpool *p = pool_with(8, 0, 0, CONNPOOL_CHECK_LIVENESS);
    int c, s;
    tcp_connect_pair(g_listener, &c, &s);
    CHECK_EQ(connpool_release_ctx(p, "", c, CTX(11), CONNPOOL_NO_HINT), -EINVAL);
    CHECK_CLOSED(c);
    close(s);
    tcp_connect_pair(g_listener, &c, &s);
    CHECK_EQ(connpool_release_ctx(p, "k:1", c, CTX(12), CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release_ctx(p, "k:1", c, CTX(13), CONNPOOL_NO_HINT), -EALREADY);
    CHECK_EQ(connpool_release_ctx(p, "", c, CTX(13), CONNPOOL_NO_HINT), -EALREADY);
    CHECK_EQ(connpool_release_ctx(p, "k:1", -1, CTX(13), CONNPOOL_NO_HINT), -EBADF);
    CHECK_EQ(g_ncalls, 0);
    CHECK_OPEN(c);
    connpool_free(p);
    expect_one(c, CTX(12), CONNPOOL_CLOSE_PURGED); /* the first release's ctx */
    close(s);
}

/* The callback calls back into the pool on the same key, for a close made by each kind of
 * call (release, acquire, purge, free): no deadlock, and the connections it releases are
 * the pool's like any other (free closes them too). */
static void callbacks_reenter_the_pool(void)
{
    connpool *p = pool_with(1, 0, 0, CONNPOOL_CHECK_LIVENESS);
    g_reenter = p;
    int c[2], s[2];
    tcp_connect_pairs(g_listener, 2, c, s);
    CHECK_EQ(connpool_release(p, "k:1", c[0]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, "k:1", c[1]), CONNPOOL_CLOSED); /* full: callback */
    CHECK_EQ(g_reentered, 1);
    CHECK(connpool_purge(p, "k:1") >= 1); /* purge: callback */
    CHECK(g_reentered >= 2);
    g_reenter = NULL;
    connpool_free(p); /* the connections the callback released are closed too */
    CHECK_EQ(g_calls[g_ncalls - 1].reason, CONNPOOL_CLOSE_PURGED);
    g_ncalls = 0;
    g_reentered = 0;
    close(s[0]);
    close(s[1]);
}

/* A fork child closes its copies of the parent's idle connections without calling
 * on_close: they and their state are the parent's. */
static void fork_child_reports_nothing(void)
{
    connpool *p = pool_with(8, 0, 0, CONNPOOL_CHECK_LIVENESS);
    int c, s;
    tcp_connect_pair(g_listener, &c, &s);
    CHECK_EQ(connpool_release_ctx(p, "k:1", c, CTX(14), CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    fflush(NULL);
    int rd;
    pid_t pid = fork_passing(&rd);
    if (pid == 0) {
        int ok = connpool_acquire(p, "k:1") == -ENOENT && fd_is_closed(c) && g_ncalls == 0;
        connpool_free(p);
        ok = ok && g_ncalls == 0;
        if (ok)
            child_pass();
        _exit(1);
    }
    int status;
    CHECK_SYS(waitpid(pid, &status, 0) == pid);
    CHECK(child_succeeded(status, rd));
    CHECK_EQ(g_ncalls, 0);
    CHECK_EQ(connpool_acquire_ctx(p, "k:1", NULL), c); /* the parent's is untouched */
    CHECK_EQ(tcp_roundtrip(c, s, 7), 0);
    close(c);
    close(s);
    connpool_free(p);
    CHECK_EQ(g_ncalls, 0);
}

int main(void)
{
    alarm(60); /* a callback run under a pool lock would deadlock: fail, not hang */
    g_listener = listener_open();
    int baseline = count_open_fds();
    every_reason();
    printf("ok: on_close once per close, every reason, fd open, its ctx\n");
    ctx_round_trip();
    printf("ok: ctx from acquire_ctx, acquire_info, NULL out-pointers; held ones unreported\n");
    refused_fds_are_not_reported();
    printf("ok: refused fds are not reported\n");
    callbacks_reenter_the_pool();
    printf("ok: callbacks call back into the pool on the same key\n");
    fork_child_reports_nothing();
    printf("ok: a fork child reports nothing\n");
    CHECK_EQ(count_open_fds(), baseline);
    close(g_listener);
    return 0;
}
