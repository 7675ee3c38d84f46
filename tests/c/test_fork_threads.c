/* A fork child that uses its pool from several threads never hangs.
 *
 * 8 parent threads contend on one pool while the main thread forks 300 children; each
 * child runs 3 threads on the inherited pool (acquire, release, prune, stats over real
 * socketpairs, round trips on what it gets back), then frees it. A child that does not
 * finish within its watchdog bound is killed and counted as hung: none may hang. Run
 * twice: a plain pool, and one with CONNPOOL_REAPER_THREAD (the child gets its own reaper,
 * which connpool_free() joins).
 *
 * Why children hung: parking_lot keeps a process-wide table of parked threads; the child
 * inherits it half-updated (a bucket lock held, queues of waiter records living in TLS of
 * parent threads that do not exist in the child, whose memory glibc gives to the child's
 * new threads). A child hangs once its own threads park: then they enqueue into, or
 * rebuild, that table. So both sides are made to park for real: every thread first pools
 * 100 idle connections on KEYS[0], and connpool_prune() then holds that key's lock for
 * hundreds of recv() calls while the others wait. With parking_lot 2-10% of the children
 * hung; with short children (100 ops) or no preload, under 0.5%. */
#define _GNU_SOURCE
#include "harness.h"
#include "hostile.h"

#include <pthread.h>
#include <stdatomic.h>

enum {
    PARENT_THREADS = 8,
    CHILD_THREADS = 3,
    NKEYS = 3,
    PER_KEY = 512, /* max_idle_per_key: room for every preloaded connection */
    MAXFD = 16384,
    IN_FLIGHT = 4,    /* children alive at once */
    ENOUGH_HUNG = 5,  /* stop forking once this many hung: the verdict is in */
    BOUND_MS = 5000,  /* per child; a healthy one takes tens of ms */
};

static const char *const KEYS[NKEYS] = {"10.16.0.1:80", "10.16.0.2:80", "10.16.0.3:80"};

static connpool *g_pool;
static atomic_int g_stop;
static atomic_long g_parent_ops;
static long g_child_ops, g_preload;
static pthread_barrier_t g_barrier; /* the child's threads start together */
/* peer_of[fd]: the other end of the socketpair on fd. Only the side that owns fd (the
 * thread that made it or acquired it) touches the entry. */
static atomic_int g_peer_of[MAXFD];
/* peer_live[peer]: that peer end is open and ours to close at the end. */
static atomic_int g_peer_live[MAXFD];

/* Connects a new socketpair and releases one end into key. 0, or -1 on failure. */
static int connect_and_release(const char *key)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    if (sv[0] >= MAXFD || sv[1] >= MAXFD)
        return -1;
    atomic_store(&g_peer_of[sv[0]], sv[1]);
    atomic_store(&g_peer_live[sv[1]], 1);
    int rc = connpool_release(g_pool, key, sv[0]);
    if (rc == CONNPOOL_CLOSED) {
        atomic_store(&g_peer_live[sv[1]], 0); /* before close: the number may be reused */
        close(sv[1]);
    }
    return rc == CONNPOOL_POOLED || rc == CONNPOOL_CLOSED ? 0 : -1;
}

/* One acquire-or-connect and release, plus now and then stats (every shard lock at once)
 * and prune (recv under each key's lock). In a child, `check` also proves that each
 * connection handed out is the child's own: a byte round trip with the peer it made. */
static int one_op(uint64_t *rng, int check, unsigned stats_mask, unsigned prune_mask)
{
    uint32_t r = xorshift(rng);
    const char *key = KEYS[r % NKEYS];
    int fd = connpool_acquire(g_pool, key);
    if (fd == -ENOENT)
        return connect_and_release(key);
    if (fd < 0 || fd >= MAXFD)
        return -1;
    int peer = atomic_load(&g_peer_of[fd]); /* read while fd is still ours */
    if (check && tcp_roundtrip(fd, peer, (unsigned char)r) != 0)
        return -1;
    int rc = connpool_release(g_pool, key, fd);
    if (rc == CONNPOOL_CLOSED) {
        atomic_store(&g_peer_live[peer], 0);
        close(peer);
    } else if (rc != CONNPOOL_POOLED) {
        return -1;
    }
    if (((r >> 8) & stats_mask) == 0) {
        connpool_stats st = {.struct_size = sizeof st};
        if (connpool_stats_get(g_pool, &st) != 0)
            return -1;
    }
    if (((r >> 16) & prune_mask) == 0)
        connpool_prune(g_pool);
    return 0;
}

static void *parent_thread(void *arg)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull * ((uint64_t)(intptr_t)arg + 1);
    /* Lowest priority: the children get the CPU first (the run stays short), and the parent
     * threads are preempted anywhere, inside the pool's locks too, when a child is forked. */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), 19) != 0)
        perror("setpriority"); /* only slower */
    for (long i = 0; i < g_preload; i++)
        CHECK(connect_and_release(KEYS[0]) == 0);
    long ops = 0;
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        CHECK(one_op(&rng, 0, 15, 63) == 0);
        ops++;
    }
    atomic_fetch_add(&g_parent_ops, ops);
    return NULL;
}

static void *child_thread(void *arg)
{
    uint64_t rng = (0x2545f4914f6cdd1dull * ((uint64_t)(intptr_t)arg + 1)) ^ (uint64_t)getpid();
    for (long i = 0; i < g_preload; i++)
        CCHECK(connect_and_release(KEYS[0]) == 0);
    pthread_barrier_wait(&g_barrier);
    for (long i = 0; i < g_child_ops; i++)
        CCHECK(one_op(&rng, 1, 3, 1) == 0);
    return NULL;
}

/* The child: 3 threads on the inherited pool, then connpool_free (which joins the child's
 * own reaper, if any). Its socketpairs and inherited fds go with _exit. */
static void child_main(void *unused)
{
    (void)unused;
    pthread_t t[CHILD_THREADS];
    CCHECK(pthread_barrier_init(&g_barrier, NULL, CHILD_THREADS) == 0);
    for (intptr_t i = 0; i < CHILD_THREADS; i++)
        CCHECK(pthread_create(&t[i], NULL, child_thread, (void *)i) == 0);
    for (int i = 0; i < CHILD_THREADS; i++)
        CCHECK(pthread_join(t[i], NULL) == 0);
    connpool_stats st = {.struct_size = sizeof st};
    CCHECK_EQ(connpool_stats_get(g_pool, &st), 0);
    CCHECK_EQ(st.dead, 0); /* everything the child got back was its own, alive */
    connpool_free(g_pool);
}

/* Ends one child: reaped, or killed at its deadline. Returns 1 if it failed. */
static int finish_child(pid_t pid, int pass_rd, int exited, int *hung)
{
    struct child_end e;
    if (exited) {
        e = child_reap(pid, pass_rd, 0);
    } else {
        fprintf(stderr, "  child %d still running after %d ms; its threads:\n", (int)pid,
                watchdog_ms(BOUND_MS));
        e = child_kill_hung(pid, pass_rd);
    }
    if (child_ok(e))
        return 0;
    char buf[64];
    fprintf(stderr, "  child %d: %s\n", (int)pid, child_describe(e, buf, sizeof buf));
    *hung += e.how == CHILD_HUNG;
    return 1;
}

/* Forks up to `children` children, IN_FLIGHT at a time, each under its own deadline.
 * Returns how many failed; *forked says how many were started. */
static int fork_children(int children, int *forked)
{
    int bound = watchdog_ms(BOUND_MS);
    pid_t pid[IN_FLIGHT];
    int pidfd[IN_FLIGHT], pass_rd[IN_FLIGHT];
    long long deadline[IN_FLIGHT];
    int running = 0, started = 0, failed = 0, hung = 0;
    while ((started < children && hung < ENOUGH_HUNG) || running > 0) {
        while (running < IN_FLIGHT && started < children && hung < ENOUGH_HUNG) {
            pid[running] = fork_child(child_main, NULL, bound, &pass_rd[running]);
            pidfd[running] = pidfd_for(pid[running]);
            deadline[running] = now_ms() + bound;
            running++;
            started++;
        }
        /* Wait for a child to end, or for the nearest deadline. */
        struct pollfd p[IN_FLIGHT];
        long long nearest = deadline[0];
        for (int i = 0; i < running; i++) {
            p[i] = (struct pollfd){.fd = pidfd[i], .events = POLLIN};
            if (deadline[i] < nearest)
                nearest = deadline[i];
        }
        long long left = nearest - now_ms();
        if (pidfd[0] >= 0)
            CHECK_SYS(poll(p, (nfds_t)running, left > 0 ? (int)left : 0) >= 0 || errno == EINTR);
        for (int i = 0; i < running; i++) {
            /* (without a pidfd, the child's alarm() bounds the wait in child_reap) */
            int exited = pidfd[i] < 0 || p[i].revents != 0;
            if (!exited && now_ms() < deadline[i])
                continue;
            if (pidfd[i] >= 0)
                close(pidfd[i]);
            failed += finish_child(pid[i], pass_rd[i], exited, &hung);
            running--;
            pid[i] = pid[running];
            pidfd[i] = pidfd[running];
            pass_rd[i] = pass_rd[running];
            deadline[i] = deadline[running];
            p[i] = p[running];
            i--;
        }
    }
    *forked = started;
    if (failed)
        fprintf(stderr, "  %d of %d children failed, %d of them hung%s\n", failed, started, hung,
                hung >= ENOUGH_HUNG ? " (stopped forking)" : "");
    return failed;
}

/* Returns the number of failed children. */
static int run(const char *name, uint32_t flags, int children)
{
    int baseline = count_open_fds();
    long long t0 = now_ms();
    g_pool = pool_new(PER_KEY, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS | flags);
    atomic_store(&g_stop, 0);
    atomic_store(&g_parent_ops, 0);
    pthread_t t[PARENT_THREADS];
    for (intptr_t i = 0; i < PARENT_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, parent_thread, (void *)i) == 0);
    int forked;
    int failed = fork_children(children, &forked);
    atomic_store(&g_stop, 1);
    for (int i = 0; i < PARENT_THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    connpool_stats st = stats_of(g_pool);
    connpool_free(g_pool); /* closes every idle connection; then their peers go */
    for (int fd = 0; fd < MAXFD; fd++)
        if (atomic_exchange(&g_peer_live[fd], 0))
            close(fd);
    printf("%s: %d children x %d threads x %ld ops, %ld parent ops, %d failed, %lld ms\n", name,
           forked, CHILD_THREADS, g_child_ops, atomic_load(&g_parent_ops), failed, now_ms() - t0);
    CHECK_EQ(st.dead, 0); /* no child touched a parent connection */
    CHECK_EQ(count_open_fds(), baseline);
    return failed;
}

int main(void)
{
    if (built_with_asan()) {
        /* gcc 12's libasan keeps its allocator's locks across fork(): a child of this
         * multithreaded parent can hang in malloc whatever the library does (seen with a
         * fixed library: children stuck in SizeClassAllocator64's region mutex). */
        printf("fork_threads: ASan's allocator is not fork-safe under threads: skipped\n");
        return 77;
    }
    /* Each thread parks 100 connections: 2 fds each. */
    CHECK(raise_nofile() >= 4096);
    /* Valgrind runs a process's threads one at a time and forks slowly: a few children
     * there still check that the child's calls work and its pool is freed cleanly. */
    int children = (int)stress_ops(300, 20);
    g_child_ops = running_on_valgrind() ? 20 : 200;
    g_preload = running_on_valgrind() ? 10 : 100;
    int failed = run("fork_threads (plain pool)", 0, children);
    failed += run("fork_threads (reaper thread)", CONNPOOL_REAPER_THREAD, children);
    CHECK_EQ(failed, 0);
    return 0;
}
