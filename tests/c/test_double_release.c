/* A double release never closes an fd the pool owns, whatever else is
 * wrong with the call. Release checks the process-wide fd table first and returns
 * -EALREADY without closing, on every error path.
 *
 * The matrix: each error path of connpool_release / connpool_release_hint (NULL pool, NULL
 * key, "", a key of CONNPOOL_MAX_KEY_LEN + 1 bytes, a valid key that is full, a zero
 * keep-alive hint that would expire it) x each kind of fd:
 *   idle      idle in this pool
 *   other     idle in another pool
 *   watch     this pool's watch fd (CONNPOOL_WATCH)
 *   held      (control) acquired, so the caller's: consumed and closed as documented
 * For pooled fds: -EALREADY, the fd still open, and the pool hands out the very same
 * connection for its original key (a byte round trip with its peer) after the caller has
 * opened a new socket (which would reuse the number had it been closed: crossed streams).
 * For the watch fd: still the watch fd, still working, and connpool_free() leaves alone the
 * sockets the caller opened after the bad call. Each cell runs in a forked child.
 *
 * Before the fix the bad-key and NULL-pool paths returned -EINVAL and closed the fd. */
#define _GNU_SOURCE
#include "harness.h"
#include "hostile.h"

#define OWN "10.2.0.1:80"
#define OTHER "10.2.0.2:80"
#define FULL "10.2.0.3:80"

enum path { P_NULL_POOL, P_NULL_KEY, P_EMPTY_KEY, P_LONG_KEY, P_FULL_KEY, P_HINT_ZERO, NPATHS };
enum kind { K_IDLE, K_OTHER, K_WATCH, K_HELD, NKINDS };

static const char *const PATH_NAME[NPATHS] = {"NULL pool", "NULL key", "empty key", "key > max",
                                              "full key", "hint 0 (expires)"};
static const char *const KIND_NAME[NKINDS] = {"idle", "other", "watch", "held"};

struct cell {
    enum path path;
    enum kind kind;
    int hint; /* through connpool_release_hint() */
};

static char long_key[CONNPOOL_MAX_KEY_LEN + 2];

static int pair(int *peer)
{
    int sv[2];
    CCHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    *peer = sv[1];
    return sv[0];
}

static int bad_release(connpool *pool, const struct cell *c, int fd)
{
    const char *key = FULL;
    switch (c->path) {
    case P_NULL_POOL: pool = NULL; break;
    case P_NULL_KEY: key = NULL; break;
    case P_EMPTY_KEY: key = ""; break;
    case P_LONG_KEY: key = long_key; break;
    case P_FULL_KEY: break;
    case P_HINT_ZERO: key = "10.2.0.4:80"; return connpool_release_hint(pool, key, fd, 0);
    default: break;
    }
    return c->hint ? connpool_release_hint(pool, key, fd, 60000) : connpool_release(pool, key, fd);
}

static void run_cell(void *arg)
{
    const struct cell *c = arg;
    /* max_idle_per_key 1: FULL is full once the filler is in. */
    connpool *pool = pool_new(1, 0, 60000, 0, 0, CONNPOOL_CHECK_LIVENESS | CONNPOOL_WATCH);
    connpool *other = connpool_new_default();
    CCHECK(other != NULL);
    int filler_peer, filler = pair(&filler_peer);
    CCHECK_EQ(connpool_release(pool, FULL, filler), CONNPOOL_POOLED);
    int idle_peer, idle = pair(&idle_peer);
    CCHECK_EQ(connpool_release(pool, OWN, idle), CONNPOOL_POOLED);
    int other_peer, other_fd = pair(&other_peer);
    CCHECK_EQ(connpool_release(other, OTHER, other_fd), CONNPOOL_POOLED);
    int wfd = connpool_watch_fd(pool);
    CCHECK(wfd >= 0);
    int held_peer, held = pair(&held_peer);
    CCHECK_EQ(connpool_release(pool, "10.2.0.5:80", held), CONNPOOL_POOLED);
    CCHECK_EQ(connpool_acquire(pool, "10.2.0.5:80"), held); /* the caller's now */

    const int fd_of[NKINDS] = {idle, other_fd, wfd, held};
    int fd = fd_of[c->kind];
    int rc = bad_release(pool, c, fd);

    /* The caller opens a socket now: had fd been closed, this one would get its number. */
    int mine_peer, mine = pair(&mine_peer);

    if (c->kind == K_HELD) {
        /* Control: the caller's fd is consumed, as documented. */
        int closes = c->path == P_FULL_KEY || c->path == P_HINT_ZERO;
        CCHECK_EQ(rc, closes ? CONNPOOL_CLOSED : -EINVAL);
        CCHECK(mine == fd || mine_peer == fd || fd_is_closed(fd));
    } else {
        if (rc != -EALREADY) /* say what became of the pool's fd */
            fprintf(stderr, "  %s %s %s: rc %d, and the pool's fd %d %s\n",
                    c->hint ? "release_hint" : "release", PATH_NAME[c->path], KIND_NAME[c->kind],
                    rc, fd, mine == fd || mine_peer == fd ? "was closed (the caller's new socket got its number)"
                                                          : fd_is_open(fd) ? "is open" : "was closed");
        CCHECK_EQ(rc, -EALREADY);
        CCHECK(mine != fd && mine_peer != fd); /* not closed: its number was not free */
        CCHECK(fd_is_open(fd));
    }
    switch (c->kind) {
    case K_IDLE: /* the same connection, for its original key */
        CCHECK_EQ(connpool_acquire(pool, OWN), idle);
        CCHECK(tcp_roundtrip(idle, idle_peer, 1) == 0);
        close(idle);
        break;
    case K_OTHER:
        CCHECK_EQ(connpool_acquire(other, OTHER), other_fd);
        CCHECK(tcp_roundtrip(other_fd, other_peer, 2) == 0);
        close(other_fd);
        CCHECK_EQ(connpool_acquire(pool, OTHER), -ENOENT); /* not adopted by this pool */
        break;
    case K_WATCH: { /* still this pool's watch fd, and it still works */
        CCHECK_EQ(connpool_watch_fd(pool), wfd);
        int dead_peer, dead = pair(&dead_peer);
        CCHECK_EQ(connpool_release(pool, "10.2.0.6:80", dead), CONNPOOL_POOLED);
        close(dead_peer);
        struct pollfd p = {.fd = wfd, .events = POLLIN};
        CCHECK(poll(&p, 1, watchdog_ms(5000)) == 1);
        CCHECK_EQ(connpool_reap(pool), 1);
        CCHECK(fd_is_closed(dead));
        break;
    }
    default:
        break;
    }
    /* Nothing else changed: the full key still holds its filler, alive. */
    CCHECK_EQ(connpool_idle_count_key(pool, FULL), 1);
    CCHECK_EQ(connpool_acquire(pool, FULL), filler);
    CCHECK(tcp_roundtrip(filler, filler_peer, 3) == 0);
    close(filler);
    connpool_free(pool);
    connpool_free(other);
    /* free closed what the pool owned (the watch fd among them), not the caller's socket
     * that took a number the pool once owned. */
    CCHECK(fd_is_closed(wfd));
    CCHECK(fd_is_open(mine) && fd_is_open(mine_peer));
    CCHECK(tcp_roundtrip(mine, mine_peer, 4) == 0);
}

int main(void)
{
    memset(long_key, 'k', CONNPOOL_MAX_KEY_LEN + 1);
    int failed = 0, cells = 0;
    for (int path = 0; path < NPATHS; path++)
        for (int hint = 0; hint < 2; hint++) {
            if (path == P_HINT_ZERO && !hint)
                continue; /* (a hint of 0 exists only with release_hint) */
            for (int kind = 0; kind < NKINDS; kind++) {
                struct cell c = {(enum path)path, (enum kind)kind, hint};
                struct child_end e = run_in_child(run_cell, &c, 10000);
                char buf[64];
                printf("double release: %-13s %-17s %-6s %s\n", hint ? "release_hint" : "release",
                       PATH_NAME[path], KIND_NAME[kind],
                       child_ok(e) ? "ok" : child_describe(e, buf, sizeof buf));
                failed += !child_ok(e);
                cells++;
            }
        }
    printf("double release: %d of %d cells failed\n", failed, cells);
    CHECK_EQ(failed, 0);
    return 0;
}
