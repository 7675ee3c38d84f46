/* The contenders, in the order of the tables: the harness alone (no pool), libconnpool
 * (contenders_lib.c), the C floors, the hand-written C pool, the Rust crates and
 * apr_reslist (contenders_other.c), and another build of libconnpool when
 * CONNPOOL_BENCH_ALT_LIB is set (contenders_lib.c). */
#include "contenders.h"

#include <errno.h>
#include <stdlib.h>

/* ---- the harness alone: the loop and two indirect calls, no pool ---- */

struct none {
    int n;
    int fds[];
};

static void *none_create(int arg, char **keys, int nkeys)
{
    (void)arg;
    (void)keys;
    return calloc(1, sizeof(struct none) + (size_t)nkeys * MAX_IDLE_PER_KEY * sizeof(int));
}
static void none_destroy(void *p) { free(p); }
static int none_acquire(void *p, const char *key)
{
    (void)key;
    return ((struct none *)p)->fds[0];
}
static int none_release(void *p, const char *key, int fd)
{
    (void)p;
    (void)key;
    (void)fd;
    return 0;
}
static int none_put(void *p, const char *key, int fd)
{
    (void)key;
    struct none *n = p;
    n->fds[n->n++] = fd;
    return 0;
}
static int none_take(void *p, const char *key)
{
    (void)key;
    struct none *n = p;
    return n->n > 0 ? n->fds[--n->n] : -ENOENT;
}

const char *contender_declined;

#define MAX_ROWS 32
static contender all[MAX_ROWS];

int contenders_init(const contender **out)
{
    other_init();
    int n = 0;
    all[n++] = (contender){.name = "harness alone (no pool)", .variant = "-",
                           .family = FAM_NONE, .create = none_create,
                           .destroy = none_destroy, .acquire = none_acquire,
                           .release = none_release, .put = none_put, .take = none_take,
                           .big = 1};
    n += lib_rows(all + n);
    n += other_rows(all + n);
    n += alt_rows(all + n);
    *out = all;
    return n;
}

void contenders_fini(void) { other_fini(); }
