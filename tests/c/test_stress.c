/* Concurrency: threads acquire and release real loopback connections over a few keys.
 * An atomic ownership table per fd proves that no fd is ever handed to two owners at
 * once and that every fd comes back from the key it was released under; at the end
 * every connection is accounted for (held by nobody, idle in the pool exactly once).
 * Run twice: with the recv check, and with the harvest (CONNPOOL_CHECK_HARVEST), whose
 * entries are reported and re-armed while threads race; at its end every connection must
 * still be watched: bytes sent to each are seen, and none is handed out.
 *
 * Races show up only with enough iterations: 100000 ops per thread natively (~0.5 s),
 * 5000 under valgrind (detected by its preload library); override with
 * CONNPOOL_STRESS_OPS=<n>. */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "connpool.h"

#define NTHREADS 4
#define NKEYS 16
#define NSOCKS 64        /* connected pairs, NSOCKS / NTHREADS start in each thread */
#define FD_LIMIT 4096    /* ownership table size; every client fd must be below it */
#define OWNER_NONE 0     /* not one of our client fds */
#define OWNER_POOL (-1)  /* released into the pool */
/* owner > 0: held by thread (owner - 1) */

static atomic_int owner[FD_LIMIT];
static atomic_int released_key[FD_LIMIT]; /* key index the fd was last released under */
static int server_of[FD_LIMIT];           /* written before the threads start, read-only after */
static int port_of[FD_LIMIT];

static connpool *pool;
static char keys[NKEYS][32];
static long ops_per_thread;
static pthread_barrier_t start;

struct worker {
    int id;
    int held[NSOCKS]; /* fds this thread owns right now */
    int nheld;
    uint64_t rng;
    long acquired, released, misses;
};

static uint32_t next_rand(struct worker *w)
{
    return xorshift(&w->rng);
}

static void do_release(struct worker *w, int idx, int k)
{
    int fd = w->held[idx];
    w->held[idx] = w->held[--w->nheld];
    atomic_store(&released_key[fd], k);
    /* Hand over ownership before the call: once released, another thread may acquire it. */
    int expected = w->id + 1;
    CHECK(atomic_compare_exchange_strong(&owner[fd], &expected, OWNER_POOL));
    /* max_idle_per_key >= NSOCKS, timeout 0: nothing may ever be closed. */
    CHECK_EQ(connpool_release(pool, keys[k], fd), CONNPOOL_POOLED);
    w->released++;
}

static void do_acquire(struct worker *w, int k)
{
    int fd = connpool_acquire(pool, keys[k]);
    if (fd == -ENOENT) {
        w->misses++;
        return;
    }
    CHECK(fd >= 0 && fd < FD_LIMIT);
    int expected = OWNER_POOL;
    if (!atomic_compare_exchange_strong(&owner[fd], &expected, w->id + 1)) {
        fprintf(stderr, "fd %d acquired by thread %d while owned by %d\n", fd, w->id, expected);
        CHECK(!"fd handed to two owners");
    }
    CHECK_EQ(atomic_load(&released_key[fd]), k);
    CHECK(w->nheld < NSOCKS);
    w->held[w->nheld++] = fd;
    w->acquired++;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(&start);
    for (long i = 0; i < ops_per_thread; i++) {
        uint32_t r = next_rand(w);
        int k = (int)(r % NKEYS);
        uint32_t op = (r >> 8) % 16;
        if (op < 7 && w->nheld > 0) {
            do_release(w, (int)((r >> 16) % (uint32_t)w->nheld), k);
        } else if (op < 14) {
            do_acquire(w, k);
        } else if (op == 14 && w->nheld > 0) {
            /* Use a held connection: it must be the same live socket, exclusively ours. */
            int fd = w->held[(r >> 16) % (uint32_t)w->nheld];
            CHECK_EQ(sock_local_port(fd), port_of[fd]);
            CHECK_EQ(tcp_roundtrip(fd, server_of[fd], (unsigned char)r), 0);
        } else {
            /* Read-only calls racing with the rest; timeout 0 means prune finds nothing.
             * connpool_idle_count is not bounded here: it sums per-shard counters without
             * a lock, so while fds move between shards it can exceed NSOCKS. It must be
             * exact once the threads are joined (checked in main). */
            (void)connpool_idle_count(pool);
            CHECK(connpool_idle_count_key(pool, keys[k]) <= NSOCKS);
            CHECK_EQ(connpool_prune(pool), 0);
        }
    }
    return NULL;
}

static void run(uint32_t flags)
{
    int baseline = count_open_fds();
    int listener = listener_open();
    for (int i = 0; i < NKEYS; i++)
        make_key(keys[i], sizeof keys[i], i);

    pool = pool_new(NSOCKS, 0, 0, 0, 0, flags);
    memset(owner, 0, sizeof owner);

    static struct worker workers[NTHREADS];
    memset(workers, 0, sizeof workers);
    int clients[NSOCKS];
    for (int i = 0; i < NSOCKS; i++) {
        int c, s;
        tcp_connect_pair(listener, &c, &s);
        CHECK(c < FD_LIMIT && s < FD_LIMIT);
        clients[i] = c;
        server_of[c] = s;
        port_of[c] = sock_local_port(c);
        struct worker *w = &workers[i % NTHREADS];
        w->held[w->nheld++] = c;
        atomic_store(&owner[c], (i % NTHREADS) + 1);
    }

    pthread_t th[NTHREADS];
    CHECK_EQ(pthread_barrier_init(&start, NULL, NTHREADS), 0);
    for (int t = 0; t < NTHREADS; t++) {
        workers[t].id = t;
        workers[t].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1);
        CHECK_EQ(pthread_create(&th[t], NULL, worker_main, &workers[t]), 0);
    }
    long acquired = 0, released = 0;
    for (int t = 0; t < NTHREADS; t++) {
        CHECK_EQ(pthread_join(th[t], NULL), 0);
        acquired += workers[t].acquired;
        released += workers[t].released;
    }
    pthread_barrier_destroy(&start);
    /* The test must actually have exercised reuse. */
    CHECK(acquired > ops_per_thread / 4);

    /* Threads are gone: give back what they still hold. */
    for (int t = 0; t < NTHREADS; t++) {
        struct worker *w = &workers[t];
        while (w->nheld > 0)
            do_release(w, w->nheld - 1, (int)(next_rand(w) % NKEYS));
    }

    /* Every connection is idle exactly once, under the key it was released under. */
    CHECK_EQ(connpool_idle_count(pool), NSOCKS);
    size_t per_key_total = 0;
    for (int k = 0; k < NKEYS; k++)
        per_key_total += connpool_idle_count_key(pool, keys[k]);
    CHECK_EQ(per_key_total, NSOCKS);

    struct worker drain = {.id = NTHREADS};
    for (int k = 0; k < NKEYS; k++) {
        size_t n = connpool_idle_count_key(pool, keys[k]);
        for (size_t j = 0; j < n; j++)
            do_acquire(&drain, k); /* checks ownership and key */
        CHECK_EQ(connpool_acquire(pool, keys[k]), -ENOENT);
    }
    CHECK_EQ(drain.nheld, NSOCKS);
    for (int i = 0; i < NSOCKS; i++) /* each connection still works */
        CHECK_EQ(tcp_roundtrip(drain.held[i], server_of[drain.held[i]], (unsigned char)i), 0);
    while (drain.nheld > 0)
        do_release(&drain, drain.nheld - 1, drain.nheld % NKEYS);

    if (flags & CONNPOOL_CHECK_HARVEST) {
        /* Every idle connection still watched after the race: bytes to each are seen. */
        for (int i = 0; i < NSOCKS; i++) {
            CHECK_SYS(send(server_of[clients[i]], "x", 1, MSG_NOSIGNAL) == 1);
            CHECK(wait_event(clients[i], POLLIN) == 0); /* a number only: not touched */
        }
        sleep_ms((long)CONNPOOL_HARVEST_WINDOW_MS + 1); /* the harvest's window */
        for (int k = 0; k < NKEYS; k++)
            CHECK_EQ(connpool_acquire(pool, keys[k]), -ENOENT);
        CHECK_EQ(stats_of(pool).dead, NSOCKS);
    } else {
        CHECK_EQ(connpool_purge(pool, NULL), NSOCKS);
    }
    CHECK_EQ(connpool_idle_count(pool), 0);
    for (int i = 0; i < NSOCKS; i++) {
        CHECK_CLOSED(clients[i]);
        close(server_of[clients[i]]);
    }
    connpool_free(pool);
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    printf("test_stress (%s): ok (%d threads x %ld ops, %ld acquired, %ld released)\n",
           flags & CONNPOOL_CHECK_HARVEST ? "harvest" : "recv check", NTHREADS, ops_per_thread,
           acquired, released);
}

int main(void)
{
    ops_per_thread = stress_ops(100000, 5000);
    run(CONNPOOL_CHECK_LIVENESS);
    run(CONNPOOL_CHECK_LIVENESS | CONNPOOL_CHECK_HARVEST);
    return 0;
}
