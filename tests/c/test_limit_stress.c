/* The per-key limit under 8 threads mixing acquire, acquire_wait, handles, release (some
 * closing: zero hints), discard of connections and of connect slots, purge, prune, drain
 * and expiry, against backends that count their connections: no backend ever sees more
 * than the limit. The backends are AF_UNIX listeners: a client's close() is seen by its
 * peer at once (no network stack in between), so when a backend accepts it first sweeps
 * its connections for end-of-file and its count is exact, not a race with late FINs. */
#include "harness.h"

#include <pthread.h>
#include <sys/un.h>

#define KEYS 4
#define LIMIT 3
#define THREADS 8
#define MAX_CONNS 64

static const char *g_keys[KEYS] = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "db:5432"};
static struct sockaddr_un g_addr[KEYS];
static int g_listen[KEYS];
static int g_stop_pipe[2];
static int g_most[KEYS]; /* the most connections each backend saw at once */
static connpool *g_pool;
static connpool_key *g_handle[KEYS];
static int g_owner[65536]; /* fd number -> 1 while a test thread holds it */

static void on_close(void *arg, int fd, void *ctx, int reason)
{
    (void)arg, (void)ctx, (void)reason;
    /* The pool never closes a connection a thread holds. */
    CHECK(fd >= 0 && fd < 65536 && __atomic_load_n(&g_owner[fd], __ATOMIC_SEQ_CST) == 0);
}

/* ---- the backends: one thread, KEYS listeners ---- */

struct backend {
    int conns[KEYS][MAX_CONNS];
    int n[KEYS];
};

/* Closes the connections of key k whose client has closed its end. */
static void sweep(struct backend *b, int k)
{
    for (int i = 0; i < b->n[k];) {
        char c;
        ssize_t r = recv(b->conns[k][i], &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
            close(b->conns[k][i]);
            b->conns[k][i] = b->conns[k][--b->n[k]];
        } else {
            i++;
        }
    }
}

static void *backend_thread(void *arg)
{
    (void)arg;
    struct backend *b = calloc(1, sizeof *b);
    CHECK(b != NULL);
    for (;;) {
        struct pollfd p[KEYS + 1];
        for (int k = 0; k < KEYS; k++)
            p[k] = (struct pollfd){.fd = g_listen[k], .events = POLLIN};
        p[KEYS] = (struct pollfd){.fd = g_stop_pipe[0], .events = POLLIN};
        CHECK_SYS(poll(p, KEYS + 1, 1000) >= 0);
        if (p[KEYS].revents)
            break;
        for (int k = 0; k < KEYS; k++) {
            if (!p[k].revents)
                continue;
            sweep(b, k); /* whatever closed before this connect is gone by now */
            int s = accept4(g_listen[k], NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (s < 0)
                continue;
            CHECK(b->n[k] < MAX_CONNS);
            b->conns[k][b->n[k]++] = s;
            if (b->n[k] > g_most[k])
                __atomic_store_n(&g_most[k], b->n[k], __ATOMIC_SEQ_CST);
        }
    }
    for (int k = 0; k < KEYS; k++)
        for (int i = 0; i < b->n[k]; i++)
            close(b->conns[k][i]);
    free(b);
    return NULL;
}

static int connect_to(int k)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(fd >= 0);
    CHECK_SYS(connect(fd, (struct sockaddr *)&g_addr[k], sizeof g_addr[k]) == 0);
    return fd;
}

/* ---- the clients ---- */

struct held {
    int fd, key;
};

static void hold(struct held *h, int *n, int fd, int k)
{
    CHECK(fd >= 0 && fd < 65536);
    __atomic_store_n(&g_owner[fd], 1, __ATOMIC_SEQ_CST);
    h[(*n)++] = (struct held){fd, k};
}

/* Gives back held connection i: a release (by string or handle, some with a zero hint,
 * which closes), or a discard. */
static void give_back(struct held *h, int *n, int i, uint32_t r)
{
    struct held x = h[i];
    h[i] = h[--*n];
    __atomic_store_n(&g_owner[x.fd], 0, __ATOMIC_SEQ_CST);
    int rc;
    switch (r % 5) {
    case 0:
        rc = connpool_discard(g_pool, g_keys[x.key], x.fd, NULL);
        CHECK_EQ(rc, 0);
        return;
    case 1:
        rc = connpool_release_hint(g_pool, g_keys[x.key], x.fd, 0);
        CHECK_EQ(rc, CONNPOOL_CLOSED);
        return;
    case 2:
        rc = connpool_key_release(g_handle[x.key], x.fd, NULL, CONNPOOL_NO_HINT);
        break;
    default:
        rc = connpool_release(g_pool, g_keys[x.key], x.fd);
        break;
    }
    CHECK(rc == CONNPOOL_POOLED || rc == CONNPOOL_CLOSED);
}

static void *client_thread(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    long ops = stress_ops(3000, 150);
    struct held h[2];
    int n = 0;
    for (long op = 0; op < ops; op++) {
        uint32_t r = xorshift(&rng);
        int k = (int)(r % KEYS);
        if (n == 2 || (n > 0 && r % 3 == 0)) {
            give_back(h, &n, (int)((r >> 8) % (uint32_t)n), r >> 16);
            continue;
        }
        int fd;
        switch ((r >> 8) % 8) {
        case 0:
            fd = connpool_acquire_wait(g_pool, g_keys[k], NULL, 20);
            break;
        case 1:
            fd = connpool_key_acquire_wait(g_handle[k], NULL, NULL, 20);
            break;
        case 2:
            fd = connpool_key_acquire(g_handle[k], NULL, NULL);
            break;
        case 3:
            if (r % 7 == 0)
                connpool_purge(g_pool, g_keys[k]);
            else if (r % 7 == 1)
                connpool_drain(g_pool, g_keys[k]);
            else
                connpool_prune(g_pool);
            continue;
        default:
            fd = connpool_acquire(g_pool, g_keys[k]);
            break;
        }
        if (fd >= 0) {
            hold(h, &n, fd, k);
        } else if (fd == -ENOENT) {
            if ((r >> 20) % 4 == 0) {
                CHECK_EQ(connpool_discard(g_pool, g_keys[k], -1, NULL), 0); /* connect failed */
            } else {
                hold(h, &n, connect_to(k), k); /* the slot is ours: connect */
            }
        } else {
            CHECK(fd == -EAGAIN || fd == -ETIMEDOUT);
        }
    }
    while (n > 0)
        give_back(h, &n, 0, 3);
    return NULL;
}

int main(void)
{
    alarm(300);
    CHECK_SYS(pipe(g_stop_pipe) == 0);
    for (int k = 0; k < KEYS; k++) {
        g_listen[k] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        CHECK_SYS(g_listen[k] >= 0);
        memset(&g_addr[k], 0, sizeof g_addr[k]);
        g_addr[k].sun_family = AF_UNIX;
        /* Abstract names: nothing to clean up on disk. */
        snprintf(g_addr[k].sun_path + 1, sizeof g_addr[k].sun_path - 1, "connpool-limit-%d-%d",
                 (int)getpid(), k);
        CHECK_SYS(bind(g_listen[k], (struct sockaddr *)&g_addr[k], sizeof g_addr[k]) == 0);
        CHECK_SYS(listen(g_listen[k], 64) == 0);
    }
    connpool_config cfg;
    connpool_config_init(&cfg);
    cfg.max_conns_per_key = LIMIT;
    cfg.idle_timeout_ms = 30; /* expiry while the threads run */
    cfg.on_close = on_close;
    g_pool = connpool_new_with_config(&cfg);
    CHECK(g_pool != NULL);
    for (int k = 0; k < KEYS; k++)
        g_handle[k] = connpool_key_get(g_pool, g_keys[k]);

    pthread_t backend, clients[THREADS];
    CHECK_EQ(pthread_create(&backend, NULL, backend_thread, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ(pthread_create(&clients[i], NULL, client_thread, (void *)(uintptr_t)(i + 1)), 0);
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ(pthread_join(clients[i], NULL), 0);

    connpool_stats st = stats_of(g_pool);
    CHECK_EQ(st.lent, 0);
    CHECK_EQ(st.connecting, 0);
    CHECK_EQ(st.waiting, 0);
    for (int k = 0; k < KEYS; k++) {
        printf("key %s: a backend saw at most %d connections (limit %d)\n", g_keys[k],
               g_most[k], LIMIT);
        CHECK(g_most[k] <= LIMIT);
        CHECK(g_most[k] >= 1);
    }
    printf("hits %llu misses %llu pooled %llu discarded %llu expired %llu purged %llu\n",
           (unsigned long long)st.hits, (unsigned long long)st.misses,
           (unsigned long long)st.pooled, (unsigned long long)st.discarded,
           (unsigned long long)st.expired, (unsigned long long)st.purged);
    connpool_free(g_pool);
    CHECK_EQ(write(g_stop_pipe[1], "x", 1), 1);
    CHECK_EQ(pthread_join(backend, NULL), 0);
    for (int k = 0; k < KEYS; k++)
        close(g_listen[k]);
    close(g_stop_pipe[0]);
    close(g_stop_pipe[1]);
    return 0;
}
