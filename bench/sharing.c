/* --sharing (for bench/sharing.sh): does a pool's hot path write a cache line that another
 * thread's hot path on another key writes too? The 2-vCPU machine cannot time false
 * sharing reliably, so sharing.sh runs this mode under valgrind's lackey, which logs every
 * store, and compares the lines each thread wrote.
 *
 * Per pool, twice (two fds with adjacent numbers, then 64 apart): two threads, each with
 * its own key (keys 0 and 1) and one idle fd, warm up
 * (first-touch allocations), then take turns: thread 0's N pairs between a store to
 * sharing_begin and one to sharing_end, then thread 1's, the other thread blocked in a
 * barrier meanwhile. The addresses of the two markers and the process's mappings are
 * printed for the parser. With SHARING_SAME_KEY set, both threads work on key 0 (two idle
 * fds): the lines both write are then those a contended key moves between cores. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

volatile uint64_t sharing_begin, sharing_end;

struct turn {
    const contender *c;
    void *pool;
    int t, key;
    long pairs;
    pthread_barrier_t *bar;
};

static void *taker(void *arg)
{
    struct turn *w = arg;
    run_pairs(w->c, w->pool, &keys[w->key], 1, 100); /* warm */
    pthread_barrier_wait(w->bar);
    for (int phase = 0; phase < 2; phase++) {
        if (phase == w->t) {
            sharing_begin = 1;
            run_pairs(w->c, w->pool, &keys[w->key], 1, w->pairs);
            sharing_end = 1;
        }
        pthread_barrier_wait(w->bar);
    }
    return NULL;
}

/* The rows checked: libconnpool's check-off rows and the floors (controls: the string
 * floor shares its lock and table, the handle floor shares nothing). */
static int checked(const contender *c)
{
    if (c->skip || c->check || c->arg != 0)
        return 0;
    return c->family == FAM_LIB || c->family == FAM_ALT || c->family == FAM_SFLOOR ||
           c->family == FAM_HFLOOR;
}

/* One pool's turns, with the two idle fds given. */
static void turns(const contender *c, long pairs, int *fds, const char *label)
{
    int same = getenv("SHARING_SAME_KEY") != NULL;
    struct scenario s = {.nkeys = same ? 1 : 2, .fds_per_key = same ? 2 : 1, .fds = fds,
                         .fds_open = 1};
    void *pool = c->create(c->arg, keys, s.nkeys);
    if (pool == NULL)
        DIE("%s (%s): could not create a pool", c->name, c->variant);
    fill(c, pool, &s);
    printf("sharing: contender=%s|%s, %s\n", c->name, c->variant, label);
    fflush(stdout);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    pthread_t tid[2];
    struct turn w[2];
    for (int t = 0; t < 2; t++) {
        w[t] = (struct turn){c, pool, t, same ? 0 : t, pairs, &bar};
        if (pthread_create(&tid[t], NULL, taker, &w[t]) != 0)
            DIE("pthread_create failed");
    }
    for (int t = 0; t < 2; t++)
        pthread_join(tid[t], NULL);
    pthread_barrier_destroy(&bar);
    drain(c, pool, &s);
    c->destroy(pool);
}

void run_sharing(long pairs)
{
    printf("sharing: begin=%p end=%p pairs=%ld keys=%s,%s\n", (void *)&sharing_begin,
           (void *)&sharing_end, pairs, keys[0], keys[1]);
    /* The fds as the kernel numbered them (adjacent), and the same connections with
     * numbers 64 apart: a per-fd table with 32-byte slots puts adjacent ones on one line. */
    int near[2] = {conn_fds[0], conn_fds[1]};
    int far[2] = {conn_fds[0], fcntl(conn_fds[1], F_DUPFD_CLOEXEC, conn_fds[0] + 64)};
    if (far[1] < 0)
        DIE("fcntl(F_DUPFD): %s", strerror(errno));
    char label[64];
    for (int i = 0; i < ncs; i++) {
        if (!checked(&cs[i]))
            continue;
        snprintf(label, sizeof label, "fds %d and %d", near[0], near[1]);
        turns(&cs[i], pairs, near, label);
        snprintf(label, sizeof label, "fds %d and %d", far[0], far[1]);
        turns(&cs[i], pairs, far, label);
    }
    close(far[1]);
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    while (maps && fgets(line, sizeof line, maps))
        printf("map: %s", line);
    if (maps)
        fclose(maps);
}
