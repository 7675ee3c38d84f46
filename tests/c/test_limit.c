/* A per-key connection limit (since 0.2): connect slots, -EAGAIN at the limit, FIFO
 * hand-off to waiters, timeouts, slots freed by discards and by releases that close,
 * drain (lent connections closed at their release) and purge (idle only), shutdown, the
 * event loop's notice through the watch fd, and per-key figures that add up. */
#include "harness.h"

#include <pthread.h>

static int g_listener;
static int g_closes[8]; /* on_close calls by reason */

static void on_close(void *arg, int fd, void *ctx, int reason)
{
    (void)arg, (void)fd, (void)ctx;
    CHECK(reason > 0 && reason < 8);
    __atomic_add_fetch(&g_closes[reason], 1, __ATOMIC_RELAXED);
}

static connpool *limited(uint32_t n, uint32_t flags)
{
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.max_conns_per_key = n;
    cfg.flags = flags;
    cfg.on_close = on_close;
    connpool *p = connpool_new_with_config(&cfg);
    CHECK(p != NULL);
    return p;
}

static connpool_stats key_stats(connpool *p, const char *key)
{
    connpool_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    CHECK_EQ(connpool_stats_get_key(p, key, &s), 0);
    return s;
}

/* A new connection; its backend end in *s. */
static int conn(int *s)
{
    int c;
    tcp_connect_pair(g_listener, &c, s);
    return c;
}

static void slots(void)
{
    connpool *p = limited(2, CONNPOOL_CHECK_LIVENESS);
    int s[3];
    CHECK_EQ(connpool_acquire(p, "k:1"), -ENOENT); /* slot 1 reserved */
    CHECK_EQ(connpool_acquire(p, "k:1"), -ENOENT); /* slot 2 */
    CHECK_EQ(connpool_acquire(p, "k:1"), -EAGAIN); /* at the limit: nothing changed */
    CHECK_EQ(key_stats(p, "k:1").connecting, 2);
    CHECK_EQ(key_stats(p, "k:1").misses, 2); /* -EAGAIN is not a miss */
    CHECK_EQ(connpool_discard(p, "k:1", -1, NULL), 0); /* a connect failed: slot back */
    CHECK_EQ(key_stats(p, "k:1").connecting, 1);
    CHECK_EQ(connpool_acquire(p, "k:1"), -ENOENT);
    int a = conn(&s[0]), b = conn(&s[1]);
    CHECK_EQ(connpool_release(p, "k:1", a), CONNPOOL_POOLED); /* uses its slot */
    CHECK_EQ(connpool_release(p, "k:1", b), CONNPOOL_POOLED);
    connpool_stats st = key_stats(p, "k:1");
    CHECK_EQ(st.connecting, 0);
    CHECK_EQ(st.idle, 2);
    /* A fresh connection nobody reserved a slot for, at the limit: closed (full). */
    int c = conn(&s[2]);
    CHECK_EQ(connpool_release(p, "k:1", c), CONNPOOL_CLOSED);
    CHECK_CLOSED(c);
    CHECK_EQ(g_closes[CONNPOOL_CLOSE_FULL], 1);
    /* Both idle: acquires hand them out; then the key is at its limit. */
    CHECK_EQ(connpool_acquire(p, "k:1"), b);
    CHECK_EQ(connpool_acquire(p, "k:1"), a);
    CHECK_EQ(connpool_acquire(p, "k:1"), -EAGAIN);
    CHECK_EQ(key_stats(p, "k:1").lent, 2);
    /* Another key is not limited by this one. */
    CHECK_EQ(connpool_acquire(p, "k:2"), -ENOENT);
    CHECK_EQ(connpool_discard(p, "k:2", -1, NULL), 0);
    /* Discard ends a held connection (on_close with its ctx) and frees its slot. */
    CHECK_EQ(connpool_discard(p, "k:1", a, NULL), 0);
    CHECK_CLOSED(a);
    CHECK_EQ(g_closes[CONNPOOL_CLOSE_DISCARDED], 1);
    CHECK_EQ(connpool_acquire(p, "k:1"), -ENOENT);
    CHECK_EQ(connpool_discard(p, "k:1", -1, NULL), 0);
    CHECK_EQ(connpool_release(p, "k:1", b), CONNPOOL_POOLED);
    connpool_stats all = stats_of(p);
    CHECK_EQ(all.discarded, 1);
    CHECK_EQ(all.lent, 0);
    CHECK_EQ(all.connecting, 0);
    connpool_free(p);
    for (int i = 0; i < 3; i++)
        close(s[i]);
    memset(g_closes, 0, sizeof g_closes);
}

/* ---- waiters ---- */

struct waiter {
    connpool *pool;
    uint64_t timeout_ms;
    int order; /* its place in the queue */
    int got;   /* what acquire_wait returned */
    int *served; /* the order in which waiters were served */
    int *nserved;
};

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;
    w->got = connpool_acquire_wait(w->pool, "k:1", NULL, w->timeout_ms);
    int i = __atomic_fetch_add(w->nserved, 1, __ATOMIC_SEQ_CST);
    w->served[i] = w->order;
    return NULL;
}

/* Starts waiters one at a time, each queued (the waiting gauge says so) before the next. */
static void start_waiters(connpool *p, struct waiter *w, pthread_t *t, int n, uint64_t ms,
                          int *served, int *nserved)
{
    for (int i = 0; i < n; i++) {
        w[i] = (struct waiter){p, ms, i, 0, served, nserved};
        CHECK_EQ(pthread_create(&t[i], NULL, wait_thread, &w[i]), 0);
        for (int spins = 0; key_stats(p, "k:1").waiting != (uint64_t)i + 1; spins++) {
            CHECK(spins < 100000); /* bounded: the waiter queues itself at once */
            sched_yield();
        }
    }
}

static void fifo_hand_off(void)
{
    connpool *p = limited(1, CONNPOOL_CHECK_LIVENESS);
    int s;
    CHECK_EQ(connpool_acquire(p, "k:1"), -ENOENT);
    int c = conn(&s);
    struct waiter w[3];
    pthread_t t[3];
    int served[3], nserved = 0;
    start_waiters(p, w, t, 3, 60000, served, &nserved);
    /* Each release hands the connection straight to the longest waiter. */
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(connpool_release(p, "k:1", c), CONNPOOL_POOLED);
        CHECK_EQ(pthread_join(t[i], NULL), 0);
        CHECK_EQ(w[i].got, c);
        CHECK_EQ(served[i], i); /* first come, first served */
        CHECK_EQ(connpool_idle_count_key(p, "k:1"), 0); /* never idle in between */
    }
    CHECK_EQ(tcp_roundtrip(c, s, 5), 0); /* the same working connection */
    connpool_stats st = key_stats(p, "k:1");
    CHECK_EQ(st.lent, 1);
    CHECK_EQ(st.waiting, 0);
    CHECK_EQ(connpool_release(p, "k:1", c), CONNPOOL_POOLED);
    connpool_free(p);
    close(s);
}

/* A waiter times out; a discard and a release that closes each give their slot to the
 * longest waiter (-ENOENT: connect, the slot is its); shutdown cancels the rest. */
static void slots_to_waiters(void)
{
    connpool *p = limited(1, CONNPOOL_CHECK_LIVENESS);
    int s;
    CHECK_EQ(connpool_acquire(p, "k:1"), -ENOENT);
    int c = conn(&s);
    CHECK_EQ(connpool_acquire_wait(p, "k:1", NULL, 0), -EAGAIN); /* no wait */
    CHECK_EQ(connpool_acquire_wait(p, "k:1", NULL, 20), -ETIMEDOUT);
    CHECK_EQ(key_stats(p, "k:1").waiting, 0);

    struct waiter w[2];
    pthread_t t[2];
    int served[2], nserved = 0;
    start_waiters(p, w, t, 1, 60000, served, &nserved);
    CHECK_EQ(connpool_discard(p, "k:1", c, NULL), 0); /* its slot goes to the waiter */
    CHECK_EQ(pthread_join(t[0], NULL), 0);
    CHECK_EQ(w[0].got, -ENOENT);
    CHECK_EQ(key_stats(p, "k:1").connecting, 1);
    /* Misses are the acquires told to connect: the first and the served waiter; not the
     * -EAGAIN, the timeout nor the wait's own attempts. */
    CHECK_EQ(key_stats(p, "k:1").misses, 2);

    int s2;
    int c2 = conn(&s2);
    CHECK_EQ(connpool_release(p, "k:1", c2), CONNPOOL_POOLED); /* the waiter's slot */
    CHECK_EQ(connpool_acquire(p, "k:1"), c2);
    nserved = 0;
    start_waiters(p, w, t, 1, 60000, served, &nserved);
    CHECK_EQ(connpool_release_hint(p, "k:1", c2, 0), CONNPOOL_CLOSED); /* closes: slot */
    CHECK_EQ(pthread_join(t[0], NULL), 0);
    CHECK_EQ(w[0].got, -ENOENT);
    CHECK_EQ(connpool_discard(p, "k:1", -1, NULL), 0);

    /* Shutdown: waiters end with -ECANCELED, later waits do not wait. */
    CHECK_EQ(connpool_acquire(p, "k:1"), -ENOENT);
    nserved = 0;
    start_waiters(p, w, t, 2, 60000, served, &nserved);
    CHECK_EQ(connpool_shutdown(p), 2);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(pthread_join(t[i], NULL), 0);
        CHECK_EQ(w[i].got, -ECANCELED);
    }
    CHECK_EQ(connpool_acquire_wait(p, "k:1", NULL, 60000), -ECANCELED);
    CHECK_EQ(connpool_discard(p, "k:1", -1, NULL), 0);
    CHECK_EQ(connpool_acquire_wait(p, "k:1", NULL, 60000), -ENOENT); /* no wait needed */
    CHECK_EQ(connpool_discard(p, "k:1", -1, NULL), 0);
    connpool_free(p);
    close(s);
    close(s2);
}

/* Drain closes the idle connections at once and the lent ones at their release; purge
 * keeps its meaning: idle ones only. */
static void drain_and_purge(void)
{
    connpool *p = limited(4, CONNPOOL_CHECK_LIVENESS);
    int s[4], c[4];
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(connpool_acquire(p, "k:1"), -ENOENT);
        c[i] = conn(&s[i]);
    }
    CHECK_EQ(connpool_release(p, "k:1", c[0]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_release(p, "k:1", c[1]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(p, "k:1"), c[1]); /* lent */
    CHECK_EQ(connpool_purge(p, "k:1"), 1);       /* c[0] only */
    CHECK_EQ(connpool_release(p, "k:1", c[1]), CONNPOOL_POOLED); /* purge: still kept */
    CHECK_EQ(connpool_release(p, "k:1", c[2]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(p, "k:1"), c[2]); /* lent across the drain */
    int before = g_closes[CONNPOOL_CLOSE_PURGED];
    CHECK_EQ(connpool_drain(p, "k:1"), 1); /* c[1], idle */
    CHECK_CLOSED(c[1]);
    CHECK_EQ(connpool_release(p, "k:1", c[2]), CONNPOOL_CLOSED); /* lent before: closed */
    CHECK_CLOSED(c[2]);
    CHECK_EQ(g_closes[CONNPOOL_CLOSE_PURGED] - before, 2);
    /* Lent after the drain: kept. And a drain of every key. */
    CHECK_EQ(connpool_release(p, "k:1", c[3]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(p, "k:1"), c[3]);
    CHECK_EQ(connpool_release(p, "k:1", c[3]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(p, "k:1"), c[3]);
    CHECK_EQ(connpool_drain(p, NULL), 0);
    CHECK_EQ(connpool_release(p, "k:1", c[3]), CONNPOOL_CLOSED);
    CHECK_EQ(key_stats(p, "k:1").lent, 0);
    connpool_free(p);
    for (int i = 0; i < 4; i++)
        close(s[i]);
}

/* An event loop refused with -EAGAIN learns from the watch fd when to retry. */
static void event_loop_notice(void)
{
    connpool *p = limited(1, CONNPOOL_CHECK_LIVENESS | CONNPOOL_WATCH);
    int wfd = connpool_watch_fd(p);
    CHECK(wfd >= 0);
    struct pollfd pf = {.fd = wfd, .events = POLLIN};
    int s;
    CHECK_EQ(connpool_acquire(p, "k:1"), -ENOENT);
    int c = conn(&s);
    CHECK_EQ(connpool_acquire(p, "k:1"), -EAGAIN);
    CHECK_EQ(poll(&pf, 1, 0), 0); /* nothing yet */
    CHECK_EQ(connpool_release(p, "k:1", c), CONNPOOL_POOLED); /* room: an idle one */
    CHECK_EQ(poll(&pf, 1, 5000), 1);
    CHECK_EQ(connpool_reap(p), 0); /* consumes the notice */
    CHECK_EQ(poll(&pf, 1, 0), 0);
    CHECK_EQ(connpool_acquire(p, "k:1"), c); /* the retry succeeds */
    /* Refused again; a discard frees the slot: the watch fd says so. */
    CHECK_EQ(connpool_acquire(p, "k:1"), -EAGAIN);
    CHECK_EQ(connpool_discard(p, "k:1", c, NULL), 0);
    CHECK_EQ(poll(&pf, 1, 5000), 1);
    CHECK_EQ(connpool_reap(p), 0);
    CHECK_EQ(connpool_acquire(p, "k:1"), -ENOENT);
    CHECK_EQ(connpool_discard(p, "k:1", -1, NULL), 0);
    connpool_free(p);
    close(s);
}

/* The per-key figures add up to the pool's. */
static void per_key_stats_add_up(void)
{
    connpool *p = limited(3, CONNPOOL_CHECK_LIVENESS);
    const char *keys[] = {"a:1", "b:1", "c:1"};
    int s[9], c[9], n = 0;
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i <= k; i++) /* a slot for each first, then the connections */
            CHECK_EQ(connpool_acquire(p, keys[k]), -ENOENT);
        for (int i = 0; i <= k; i++) {
            c[n] = conn(&s[n]);
            CHECK_EQ(connpool_release(p, keys[k], c[n]), CONNPOOL_POOLED);
            n++;
        }
    }
    CHECK(connpool_acquire(p, "c:1") >= 0);
    connpool_stats sum, all = stats_of(p);
    memset(&sum, 0, sizeof sum);
    for (int k = 0; k < 3; k++) {
        connpool_stats st = key_stats(p, keys[k]);
        sum.idle += st.idle, sum.keys += st.keys, sum.hits += st.hits;
        sum.misses += st.misses, sum.pooled += st.pooled, sum.lent += st.lent;
        sum.connecting += st.connecting;
    }
    CHECK_EQ(sum.idle, all.idle);
    CHECK_EQ(sum.keys, all.keys);
    CHECK_EQ(sum.hits, all.hits);
    CHECK_EQ(sum.misses, all.misses);
    CHECK_EQ(sum.pooled, all.pooled);
    CHECK_EQ(sum.lent, 1);
    CHECK_EQ(sum.lent, all.lent);
    CHECK_EQ(key_stats(p, "nobody:1").pooled, 0); /* unknown key: zeros */
    CHECK_EQ(connpool_stats_get_key(NULL, "a:1", &sum), -EINVAL);
    CHECK_EQ(connpool_stats_get_key(p, "", &sum), -EINVAL);
    connpool_free(p);
    for (int i = 0; i < n; i++) {
        close(s[i]);
        if (i == n - 1)
            close(c[i]); /* the one held: freeing the pool left it ours */
    }
}

int main(void)
{
    alarm(120);
    g_listener = listener_open();
    int baseline = count_open_fds();
    slots();
    printf("ok: connect slots, -EAGAIN at the limit, discard of slots and connections\n");
    fifo_hand_off();
    printf("ok: releases hand the connection to the longest waiter, in order\n");
    slots_to_waiters();
    printf("ok: timeouts; discards and closing releases give slots to waiters; shutdown\n");
    drain_and_purge();
    printf("ok: drain closes lent connections at their release; purge is idle only\n");
    event_loop_notice();
    printf("ok: the watch fd tells an event loop when to retry\n");
    per_key_stats_add_up();
    printf("ok: per-key figures add up\n");
    CHECK_EQ(count_open_fds(), baseline);
    close(g_listener);
    return 0;
}
