/* Concurrency with every way an fd can leave the pool: threads acquire, release into keys
 * with a cap of 2 (CONNPOOL_CLOSED), let connections expire (20 ms timeout), purge one key or
 * all, prune, close connections themselves, and connect new ones on a miss, over 32 keys.
 *
 * Checked on every step: acquire hands out only an fd that was released and is owned by
 * nobody (atomic ownership table); an fd a thread holds is never closed or replaced under
 * it (its inode is unchanged). At the end: what was idle is exactly what purge(NULL) closes,
 * and the process has exactly the fds it started with. Loops are bounded; no sleeps. */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>

#include "connpool.h"

#define NTHREADS 4
#define NKEYS 32
#define MAX_HELD 16
#define FD_LIMIT 8192
#define OWNER_POOL (-1) /* released: the pool owns it, or closed it */

static atomic_int owner[FD_LIMIT]; /* thread id + 1 while held */
static atomic_ulong inode_of[FD_LIMIT];
static connpool *pool;
static char keys[NKEYS][32];
static long ops_per_thread;
static struct sockaddr_in backend;

struct worker {
    int id;
    int held[MAX_HELD];
    int nheld;
    uint64_t rng;
    long hits, closed_by_pool, connects;
};

static uint32_t next_rand(struct worker *w)
{
    return xorshift(&w->rng);
}

static unsigned long inode(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

static void check_held(struct worker *w, int fd)
{
    CHECK_EQ(atomic_load(&owner[fd]), w->id + 1);
    unsigned long ino = inode(fd);
    if (ino == 0 || ino != atomic_load(&inode_of[fd])) {
        fprintf(stderr, "fd %d closed or replaced while thread %d held it\n", fd, w->id);
        CHECK(!"held fd changed");
    }
}

static void hold(struct worker *w, int fd)
{
    CHECK(fd >= 0 && fd < FD_LIMIT);
    w->held[w->nheld++] = fd;
}

static int take(struct worker *w, uint32_t r)
{
    int j = (int)(r % (uint32_t)w->nheld);
    int fd = w->held[j];
    check_held(w, fd);
    w->held[j] = w->held[--w->nheld];
    return fd;
}

static void connect_new(struct worker *w)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(fd >= 0);
    /* Closed with RST, leaving no TIME_WAIT: tens of thousands of connections through a
     * FIN close would exhaust the loopback ephemeral ports for the whole machine. */
    struct linger rst = {.l_onoff = 1, .l_linger = 0};
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst) == 0);
    CHECK_SYS(connect(fd, (struct sockaddr *)&backend, sizeof backend) == 0);
    CHECK(fd < FD_LIMIT);
    atomic_store(&inode_of[fd], inode(fd));
    atomic_store(&owner[fd], w->id + 1);
    hold(w, fd);
    w->connects++;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (long i = 0; i < ops_per_thread; i++) {
        uint32_t r = next_rand(w);
        const char *key = keys[r % NKEYS];
        uint32_t op = (r >> 8) % 100;
        if (op < 40 && w->nheld > 0) {
            int fd = take(w, r >> 16);
            int me = w->id + 1;
            CHECK(atomic_compare_exchange_strong(&owner[fd], &me, OWNER_POOL));
            int rc = connpool_release(pool, key, fd);
            CHECK(rc == CONNPOOL_POOLED || rc == CONNPOOL_CLOSED);
            w->closed_by_pool += rc == CONNPOOL_CLOSED;
        } else if (op < 80) {
            int fd = connpool_acquire(pool, key);
            if (fd == -ENOENT) {
                if (w->nheld < 4)
                    connect_new(w);
                continue;
            }
            CHECK(fd >= 0 && fd < FD_LIMIT);
            int expected = OWNER_POOL;
            if (!atomic_compare_exchange_strong(&owner[fd], &expected, w->id + 1)) {
                fprintf(stderr, "fd %d handed to thread %d while owned by %d\n", fd, w->id, expected);
                CHECK(!"fd handed to two owners");
            }
            check_held(w, fd);
            w->hits++;
            if (w->nheld < MAX_HELD) {
                hold(w, fd);
            } else {
                atomic_store(&owner[fd], 0);
                close(fd);
            }
        } else if (op < 85 && w->nheld > 0) {
            int fd = take(w, r >> 16); /* a broken connection: the caller closes it */
            atomic_store(&owner[fd], 0);
            close(fd);
        } else if (op < 88) {
            connpool_purge(pool, (r & 0x10000) ? NULL : key);
        } else if (op < 92) {
            connpool_prune(pool);
        } else {
            (void)connpool_idle_count_key(pool, key);
            (void)connpool_idle_count(pool);
            for (int j = 0; j < w->nheld; j++)
                check_held(w, w->held[j]);
        }
    }
    return NULL;
}

/* The backend: accepts connections and keeps each until its client closes (resets) it.
 * Stops when stop_pipe is readable, closing what is left. */
#define MAX_BACKEND 1024
static int stop_pipe[2];

static void *backend_main(void *arg)
{
    int listener = *(int *)arg;
    static struct pollfd fds[2 + MAX_BACKEND];
    nfds_t n = 2;
    fds[0] = (struct pollfd){.fd = stop_pipe[0], .events = POLLIN};
    fds[1] = (struct pollfd){.fd = listener, .events = POLLIN};
    while (!(fds[0].revents & POLLIN)) {
        CHECK_SYS(poll(fds, n, -1) >= 0 || errno == EINTR);
        if ((fds[1].revents & POLLIN) && n < 2 + MAX_BACKEND) {
            int s = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
            if (s >= 0)
                fds[n++] = (struct pollfd){.fd = s, .events = POLLIN};
        }
        for (nfds_t i = 2; i < n; i++) {
            char buf[64];
            if (fds[i].revents && recv(fds[i].fd, buf, sizeof buf, MSG_DONTWAIT) <= 0 &&
                errno != EAGAIN) {
                close(fds[i].fd); /* the client closed (EOF) or reset it */
                fds[i--] = fds[--n];
            }
        }
    }
    for (nfds_t i = 2; i < n; i++)
        close(fds[i].fd);
    return NULL;
}

int main(void)
{
    ops_per_thread = stress_ops(20000, 3000);

    int baseline = count_open_fds();
    int listener = listener_open();
    socklen_t len = sizeof backend;
    CHECK_SYS(getsockname(listener, (struct sockaddr *)&backend, &len) == 0);
    CHECK_SYS(pipe2(stop_pipe, O_CLOEXEC) == 0);
    pthread_t backend_thread;
    CHECK_EQ(pthread_create(&backend_thread, NULL, backend_main, &listener), 0);

    for (int i = 0; i < NKEYS; i++)
        make_key(keys[i], sizeof keys[i], i);
    pool = connpool_new(2, 20);
    CHECK(pool != NULL);

    static struct worker workers[NTHREADS];
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        workers[t].id = t;
        workers[t].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1);
        CHECK_EQ(pthread_create(&th[t], NULL, worker_main, &workers[t]), 0);
    }
    long hits = 0, closed = 0, connects = 0;
    for (int t = 0; t < NTHREADS; t++) {
        CHECK_EQ(pthread_join(th[t], NULL), 0);
        hits += workers[t].hits;
        closed += workers[t].closed_by_pool;
        connects += workers[t].connects;
    }
    CHECK(hits > 0 && closed > 0); /* reuse and the cap were both exercised */

    size_t idle = connpool_idle_count(pool);
    CHECK_EQ(connpool_purge(pool, NULL), idle);
    for (int t = 0; t < NTHREADS; t++)
        for (int j = 0; j < workers[t].nheld; j++) {
            check_held(&workers[t], workers[t].held[j]);
            close(workers[t].held[j]);
        }
    connpool_free(pool);
    CHECK_SYS(write(stop_pipe[1], "x", 1) == 1);
    CHECK_EQ(pthread_join(backend_thread, NULL), 0);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    close(listener);
    CHECK_EQ(count_open_fds(), baseline);
    printf("test_churn: ok (%d threads x %ld ops: %ld reused, %ld closed by the cap, %ld connects)\n",
           NTHREADS, ops_per_thread, hits, closed, connects);
    return 0;
}
