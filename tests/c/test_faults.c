/* Fault injection with real sockets:
 * - a backend restart: every idle connection of a backend dies at once (FIN or RST); the
 *   pool hands out none of them, closes all of them (counted dead), and then works with new
 *   connections; and the same while 4 threads keep working through the restart. Both with
 *   the recv check and with the harvest (CONNPOOL_CHECK_HARVEST);
 * - fd exhaustion (RLIMIT_NOFILE lowered, in a child process): the pool keeps working
 *   without needing any new fd, still drops dead connections, and a pool that needs fds
 *   (the watcher) fails cleanly with EMFILE. */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>

enum { KEYS = 4, PER_KEY = 8, N = KEYS * PER_KEY };

static void key_of(char *buf, size_t len, int i) { snprintf(buf, len, "10.3.0.%d:8080", i % KEYS); }

static void kill_backend_end(int s, int rst)
{
    if (rst) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        CHECK_SYS(setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0);
    }
    CHECK_SYS(close(s) == 0);
}

/* The check under test: CONNPOOL_CHECK_LIVENESS, alone or with CONNPOOL_CHECK_HARVEST. */
static uint32_t g_check = CONNPOOL_CHECK_LIVENESS;

/* Every idle connection dies at once; the pool hands out none of them. */
static void restart_while_idle(void)
{
    connpool *pool = pool_new(PER_KEY, 0, 60000, 0, 0, g_check);
    int listener = listener_open();
    int c[N], s[N], watch[N];
    tcp_connect_pairs(listener, N, c, s);
    for (int i = 0; i < N; i++) {
        char key[32];
        key_of(key, sizeof key, i);
        watch[i] = dup(c[i]); /* only to see the backend's close arrive */
        CHECK_EQ(connpool_release(pool, key, c[i]), CONNPOOL_POOLED);
    }
    /* The restart: the backend's process dies, its sockets close (half FIN, half RST). */
    for (int i = 0; i < N; i++)
        kill_backend_end(s[i], i % 2);
    close(listener);
    for (int i = 0; i < N; i++) {
        CHECK(wait_event(watch[i], POLLIN | POLLRDHUP) == 0);
        close(watch[i]);
    }
    if (g_check & CONNPOOL_CHECK_HARVEST) /* the harvest's guarantee starts after its window */
        sleep_ms((long)CONNPOOL_HARVEST_WINDOW_MS + 1);
    for (int k = 0; k < KEYS; k++) {
        char key[32];
        key_of(key, sizeof key, k);
        CHECK_EQ(connpool_acquire(pool, key), -ENOENT);
    }
    for (int i = 0; i < N; i++)
        CHECK_CLOSED(c[i]);
    connpool_stats st = stats_of(pool);
    CHECK_EQ(st.dead, N);
    CHECK_EQ(st.idle, 0);
    CHECK_EQ(st.misses, KEYS);

    /* The restarted backend: new connections work and are reused. */
    listener = listener_open();
    int d, e;
    tcp_connect_pair(listener, &d, &e);
    CHECK_EQ(connpool_release(pool, "10.3.0.0:8080", d), CONNPOOL_POOLED);
    CHECK_EQ(connpool_acquire(pool, "10.3.0.0:8080"), d);
    CHECK(tcp_roundtrip(d, e, 1) == 0);
    close(d);
    close(e);
    close(listener);
    connpool_free(pool);
}

/* ---- restarts while 4 threads work: nothing crashes, leaks or is miscounted ----
 * The backend is an echo thread that owns every accepted socket; a restart makes it reset
 * them all at once. Workers own only their client ends. */
enum { WORKERS = 4, MAXCONN = 512 };
static connpool *g_pool;
static int g_listener, g_control[2];
static atomic_long g_ops, g_failed, g_restarts;
static atomic_int g_stop;

static void *backend(void *arg)
{
    (void)arg;
    struct pollfd p[2 + MAXCONN];
    int n = 2;
    p[0] = (struct pollfd){.fd = g_control[0], .events = POLLIN};
    p[1] = (struct pollfd){.fd = g_listener, .events = POLLIN};
    for (;;) {
        CHECK_SYS(poll(p, (nfds_t)n, -1) >= 0 || errno == EINTR);
        if (p[0].revents) {
            char cmd;
            CHECK_SYS(read(g_control[0], &cmd, 1) == 1);
            for (int i = 2; i < n; i++) /* the restart: every connection reset at once */
                kill_backend_end(p[i].fd, 1);
            n = 2;
            atomic_fetch_add(&g_restarts, 1);
            if (cmd == 'q')
                return NULL;
        }
        if ((p[1].revents & POLLIN) && n < 2 + MAXCONN) {
            int c = accept4(g_listener, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0)
                p[n++] = (struct pollfd){.fd = c, .events = POLLIN};
        }
        for (int i = 2; i < n; i++) {
            if (!p[i].revents)
                continue;
            char b;
            if (recv(p[i].fd, &b, 1, 0) == 1 && send(p[i].fd, &b, 1, MSG_NOSIGNAL) == 1)
                continue;
            close(p[i].fd); /* the client went away */
            p[i--] = p[--n];
        }
    }
}

static int connect_backend(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    CHECK_SYS(getsockname(g_listener, (struct sockaddr *)&a, &len) == 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(fd >= 0);
    CHECK_SYS(connect(fd, (struct sockaddr *)&a, len) == 0);
    return fd;
}

/* One request: a byte out, its echo back (bounded wait). */
static int request(int fd, unsigned char b)
{
    unsigned char got;
    if (send(fd, &b, 1, MSG_NOSIGNAL) != 1)
        return -1;
    return read_byte_timeout(fd, &got) == 0 && got == b ? 0 : -1;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t rng = 0x1234567ull * (uint64_t)(id + 1);
    while (!atomic_load(&g_stop)) {
        char key[32];
        key_of(key, sizeof key, (int)(xorshift(&rng) % KEYS));
        int fd = connpool_acquire(g_pool, key);
        if (fd < 0) {
            CHECK_EQ(fd, -ENOENT);
            fd = connect_backend();
        }
        if (request(fd, (unsigned char)id) != 0) {
            /* Reset by a restart while in use (a proxy would retry): the caller ends it
             * (with the harvest, through the pool, as its contract says). */
            atomic_fetch_add(&g_failed, 1);
            if (g_check & CONNPOOL_CHECK_HARVEST)
                CHECK_EQ(connpool_discard(g_pool, key, fd, NULL), 0);
            else
                close(fd);
            continue;
        }
        int rc = connpool_release(g_pool, key, fd);
        CHECK(rc == CONNPOOL_POOLED || rc == CONNPOOL_CLOSED);
        atomic_fetch_add(&g_ops, 1);
    }
    return NULL;
}

static void restart_under_load(void)
{
    int baseline = count_open_fds();
    g_pool = pool_new(PER_KEY, 0, 60000, 0, 0, g_check);
    atomic_store(&g_stop, 0);
    atomic_store(&g_ops, 0);
    atomic_store(&g_failed, 0);
    g_listener = listener_open();
    CHECK_SYS(pipe(g_control) == 0);
    pthread_t b, t[WORKERS];
    CHECK(pthread_create(&b, NULL, backend, NULL) == 0);
    for (intptr_t i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    int restarts = running_on_valgrind() ? 3 : 20;
    for (int r = 0; r < restarts; r++) {
        long before = atomic_load(&g_ops);
        long long deadline = now_ms() + 10000;
        while (atomic_load(&g_ops) < before + 200) { /* let traffic build up (bounded) */
            CHECK(now_ms() < deadline);
            sched_yield();
        }
        CHECK_SYS(write(g_control[1], "r", 1) == 1);
    }
    atomic_store(&g_stop, 1);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    connpool_stats st = stats_of(g_pool);
    printf("restart under load (%s): %d restarts, %ld requests, %ld reset while in use, dead %llu, "
           "hits %llu, misses %llu\n",
           g_check & CONNPOOL_CHECK_HARVEST ? "harvest" : "recv check", restarts, atomic_load(&g_ops), atomic_load(&g_failed), (unsigned long long)st.dead,
           (unsigned long long)st.hits, (unsigned long long)st.misses);
    CHECK(st.dead > 0); /* idle connections killed by restarts were caught by the check */
    CHECK_EQ(st.pooled, st.idle + st.hits + st.dead + st.expired + st.evicted);
    if (g_check & CONNPOOL_CHECK_HARVEST) /* every connection released or discarded */
        CHECK_EQ(st.lent, 0);
    connpool_free(g_pool);
    CHECK_SYS(write(g_control[1], "q", 1) == 1);
    pthread_join(b, NULL);
    close(g_control[0]);
    close(g_control[1]);
    close(g_listener);
    CHECK_EQ(count_open_fds(), baseline);
}

/* ---- fd exhaustion, in a child process with a low RLIMIT_NOFILE ---- */
#define CHILD_CHECK(cond, code) \
    do {                        \
        if (!(cond))            \
            _exit(code);        \
    } while (0)

static void exhausted_child(void)
{
    connpool *pool = pool_new(8, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS);
    int listener = listener_open();
    int c[3], s[3];
    tcp_connect_pairs(listener, 3, c, s);
    int watch2 = dup(c[2]); /* only to see the RST arrive (made before the fds run out) */
    CHILD_CHECK(watch2 >= 0, 10);
    for (int i = 0; i < 3; i++)
        CHILD_CHECK(connpool_release(pool, "k:1", c[i]) == CONNPOOL_POOLED, 10);
    /* Use up every fd the limit allows. Only the soft limit: valgrind refuses any change
     * of the hard one (EPERM). */
    struct rlimit rl;
    CHILD_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, 11);
    rl.rlim_cur = (rlim_t)count_open_fds() + 8;
    CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, 11);
    int filler[64], nf = 0;
    while (nf < 64 && (filler[nf] = socket(AF_INET, SOCK_STREAM, 0)) >= 0)
        nf++;
    CHILD_CHECK(nf < 64 && errno == EMFILE, 12);

    /* A pool needing fds of its own fails cleanly. */
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.flags |= CONNPOOL_WATCH;
    errno = 0;
    CHILD_CHECK(connpool_new_with_config(&cfg) == NULL && errno == EMFILE, 13);
    /* One that needs none still comes up. */
    connpool *other = connpool_new_default();
    CHILD_CHECK(other != NULL, 14);
    connpool_free(other);

    /* The backend kills c[2] (top of the stack): acquire skips it, hands out c[1]. */
    kill_backend_end(s[2], 1);
    /* Wait for it: the RST is processed in softirq context, which a loaded machine may
     * defer to ksoftirqd, after close() returned. */
    CHILD_CHECK(wait_event(watch2, POLLIN | POLLRDHUP) == 0, 20);
    close(watch2);
    CHILD_CHECK(connpool_acquire(pool, "k:1") == c[1], 15);
    CHILD_CHECK(fd_is_closed(c[2]), 16);
    CHILD_CHECK(tcp_roundtrip(c[1], s[1], 5) == 0, 17);
    CHILD_CHECK(connpool_release(pool, "k:1", c[1]) == CONNPOOL_POOLED, 18);
    connpool_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHILD_CHECK(connpool_stats_get(pool, &st) == 0 && st.dead == 1 && st.idle == 2, 19);
    connpool_free(pool);
    child_pass();
}

static void fd_exhaustion(void)
{
    int rd;
    pid_t pid = fork_passing(&rd);
    if (pid == 0) {
        alarm(30);
        exhausted_child();
    }
    int status;
    CHECK_SYS(waitpid(pid, &status, 0) == pid);
    if (!child_succeeded(status, rd)) {
        fprintf(stderr, "fd exhaustion child: status %d\n", status);
        exit(1);
    }
}

int main(void)
{
    int baseline = count_open_fds();
    for (int round = 0; round < 2; round++) {
        g_check = CONNPOOL_CHECK_LIVENESS | (round ? CONNPOOL_CHECK_HARVEST : 0);
        restart_while_idle();
        CHECK_EQ(count_open_fds(), baseline);
        restart_under_load();
    }
    g_check = CONNPOOL_CHECK_LIVENESS;
    fd_exhaustion();
    CHECK_EQ(count_open_fds(), baseline);
    printf("faults: restarts (idle and under load) and fd exhaustion handled\n");
    return 0;
}
