/* Key handles (since 0.2): the same bytes give the same handle; string and handle calls on
 * one key see one idle set; a handle survives purge, prune, fork and an empty key; bad
 * arguments get the documented errors with the fd ownership rules of release. */
#include "harness.h"

#include <sys/wait.h>

static void same_bytes_same_handle(connpool *p)
{
    connpool_key *a = connpool_key_get(p, "10.0.0.1:80");
    CHECK(a != NULL);
    CHECK(connpool_key_get(p, "10.0.0.1:80") == a);
    char copy[] = "10.0.0.1:80";
    CHECK(connpool_key_get(p, copy) == a);
    CHECK(connpool_key_get(p, "10.0.0.2:80") != a);
    errno = 0;
    CHECK(connpool_key_get(NULL, "k:1") == NULL && errno == EINVAL);
    errno = 0;
    CHECK(connpool_key_get(p, "") == NULL && errno == EINVAL);
    errno = 0;
    CHECK(connpool_key_get(p, NULL) == NULL && errno == EINVAL);
}

static void one_idle_set(connpool *p, int listener)
{
    connpool_key *k = connpool_key_get(p, "k:1");
    int c[2], s[2];
    tcp_connect_pairs(listener, 2, c, s);
    static int state;
    CHECK_EQ(connpool_release(p, "k:1", c[0]), CONNPOOL_POOLED);
    CHECK_EQ(connpool_key_release(k, c[1], &state, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(connpool_idle_count_key(p, "k:1"), 2);
    void *ctx = NULL;
    CHECK_EQ(connpool_acquire_ctx(p, "k:1", &ctx), c[1]); /* LIFO across the forms */
    CHECK(ctx == &state);
    connpool_conn_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ctx = &state;
    CHECK_EQ(connpool_key_acquire(k, &ctx, &info), c[0]);
    CHECK(ctx == NULL && info.ctx == NULL);
    CHECK_EQ(info.uses, 1);
    CHECK_EQ(connpool_key_acquire(k, NULL, NULL), -ENOENT);
    /* Back by handle, out by handle without out-pointers. */
    CHECK_EQ(connpool_key_release(k, c[0], NULL, 5000), CONNPOOL_POOLED);
    CHECK_EQ(connpool_key_acquire(k, NULL, NULL), c[0]);
    /* A zero hint closes at once, as connpool_release_hint(..., 0). */
    CHECK_EQ(connpool_key_release(k, c[0], NULL, 0), CONNPOOL_CLOSED);
    CHECK_CLOSED(c[0]);
    CHECK_EQ(connpool_key_release(k, c[1], NULL, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    close(s[0]);
    close(s[1]);
}

/* The handle outlives purge, prune and an empty key. */
static void survives(connpool *p, int listener)
{
    connpool_key *k = connpool_key_get(p, "k:1");
    CHECK(connpool_purge(p, NULL) >= 1);
    (void)connpool_prune(p);
    CHECK_EQ(connpool_key_acquire(k, NULL, NULL), -ENOENT);
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(connpool_key_release(k, c, NULL, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK(connpool_key_get(p, "k:1") == k);
    CHECK_EQ(connpool_key_acquire(k, NULL, NULL), c);
    CHECK_EQ(tcp_roundtrip(c, s, 3), 0);
    CHECK_EQ(connpool_key_release(k, c, NULL, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    close(s);
}

/* In a fork child the handle still works, on the child's own (empty) pool. */
static void survives_fork(connpool *p, int listener)
{
    connpool_key *k = connpool_key_get(p, "k:1");
    CHECK_EQ(connpool_idle_count_key(p, "k:1"), 1);
    fflush(NULL);
    int rd;
    pid_t pid = fork_passing(&rd);
    if (pid == 0) {
        int ok = connpool_key_acquire(k, NULL, NULL) == -ENOENT;
        int c, s;
        tcp_connect_pair(listener, &c, &s);
        ok = ok && connpool_key_release(k, c, NULL, CONNPOOL_NO_HINT) == CONNPOOL_POOLED;
        ok = ok && connpool_key_get(p, "k:1") == k;
        ok = ok && connpool_acquire(p, "k:1") == c;
        close(c);
        close(s);
        if (ok)
            child_pass();
        _exit(1);
    }
    int status;
    CHECK_SYS(waitpid(pid, &status, 0) == pid);
    CHECK(child_succeeded(status, rd));
    CHECK_EQ(connpool_idle_count_key(p, "k:1"), 1);
}

static void bad_arguments(connpool *p, int listener)
{
    connpool_key *k = connpool_key_get(p, "k:2");
    int c, s;
    tcp_connect_pair(listener, &c, &s);
    CHECK_EQ(connpool_key_acquire(NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(connpool_key_release(NULL, -1, NULL, CONNPOOL_NO_HINT), -EINVAL);
    CHECK_EQ(connpool_key_release(k, -1, NULL, CONNPOOL_NO_HINT), -EBADF);
    connpool_conn_info small;
    memset(&small, 0, sizeof small);
    small.struct_size = 31;
    CHECK_EQ(connpool_key_release(k, c, NULL, CONNPOOL_NO_HINT), CONNPOOL_POOLED);
    CHECK_EQ(connpool_key_acquire(k, NULL, &small), -EINVAL);
    CHECK_EQ(connpool_idle_count_key(p, "k:2"), 1); /* nothing acquired */
    /* A double release, by handle or with a NULL handle: -EALREADY, untouched. */
    CHECK_EQ(connpool_key_release(k, c, NULL, CONNPOOL_NO_HINT), -EALREADY);
    CHECK_EQ(connpool_key_release(NULL, c, NULL, CONNPOOL_NO_HINT), -EALREADY);
    CHECK_OPEN(c);
    /* A NULL handle with the caller's fd: -EINVAL, and the fd is closed. */
    int c2, s2;
    tcp_connect_pair(listener, &c2, &s2);
    CHECK_EQ(connpool_key_release(NULL, c2, NULL, CONNPOOL_NO_HINT), -EINVAL);
    CHECK_CLOSED(c2);
    close(s);
    close(s2);
}

int main(void)
{
    int listener = listener_open();
    int baseline = count_open_fds();
    connpool *p = connpool_new_default();
    CHECK(p != NULL);
    same_bytes_same_handle(p);
    printf("ok: the same bytes give the same handle; bad arguments give EINVAL\n");
    one_idle_set(p, listener);
    printf("ok: string and handle calls share one idle set and its ctx\n");
    survives(p, listener);
    printf("ok: a handle survives purge, prune and an empty key\n");
    survives_fork(p, listener);
    printf("ok: a handle works in a fork child, on the child's pool\n");
    bad_arguments(p, listener);
    printf("ok: bad arguments keep the ownership rules\n");
    connpool_free(p);
    CHECK_EQ(count_open_fds(), baseline);
    close(listener);
    return 0;
}
