/* Memory per key with one idle connection, RSS-confirmed: for each pool that can hold
 * never-opened fd numbers (contender.big), in a child process of its own (so that one
 * pool's freed memory or the library's process-wide fd registry does not blur
 * another's): RSS before making the pool, after one fd was released under each of K keys,
 * after emptying it (libconnpool: connpool_purge(pool, NULL); the others: every fd taken
 * back) and after destroying it. Each reading follows malloc_trim(0), since glibc keeps
 * freed memory otherwise. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <malloc.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

struct memory memory[MAX_CONTENDERS];

/* Resident bytes of this process, after giving free heap memory back to the kernel. */
static long rss_bytes(void)
{
    malloc_trim(0);
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = -1;
    if (f == NULL || fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    if (f)
        fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

/* What a child reports: the four readings, or why its pool declined (rss[0] = -1). */
struct reading {
    long rss[4];
    char why[200];
};

/* In the child: the four readings, written to out. */
static void measure_child(const contender *c, int *fds, int open, int k, int out)
{
    struct scenario s = {.nkeys = k, .fds_per_key = 1, .fds = fds, .big = 1, .fds_open = open};
    struct reading rd = {{0}, ""};
    rd.rss[0] = rss_bytes();
    contender_declined = NULL;
    void *pool = c->create(c->arg, keys, k);
    if (pool == NULL && contender_declined) {
        rd.rss[0] = -1;
        snprintf(rd.why, sizeof rd.why, "%s", contender_declined);
    } else if (pool == NULL) {
        _exit(2);
    } else {
        fill(c, pool, &s);
        rd.rss[1] = rss_bytes();
        if (c->purge)
            c->purge(pool);
        else
            drain(c, pool, &s);
        rd.rss[2] = rss_bytes();
        c->destroy(pool);
        rd.rss[3] = rss_bytes();
    }
    if (write(out, &rd, sizeof rd) != (ssize_t)sizeof rd)
        _exit(2);
    _exit(0);
}

void run_memory(void)
{
    int k = opt.big_keys;
    const char *how;
    int open;
    int *fds = big_fds_make(k, &how, &open);
    printf("\n== memory per key: %d keys, one idle fd each; RSS after malloc_trim(0), one"
           " child process per pool ==\n",
           k);
    printf("(fds: %s)\n", how);
    printf("%-26s %-11s %10s %10s %10s  %s\n", "contender", "variant", "filled", "emptied",
           "destroyed", "(bytes per key above the RSS before the pool; emptied by)");
    fflush(stdout);
    for (int i = 0; i < ncs; i++) {
        const contender *c = &cs[i];
        if (c->family == FAM_NONE || !c->big || c->skip)
            continue;
        int p[2];
        if (pipe(p) != 0)
            DIE("pipe: %s", strerror(errno));
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            DIE("fork: %s", strerror(errno));
        if (pid == 0) {
            close(p[0]);
            measure_child(c, fds, open, k, p[1]);
        }
        close(p[1]);
        struct reading rd;
        int ok = read(p[0], &rd, sizeof rd) == (ssize_t)sizeof rd;
        const long *rss = rd.rss;
        int status;
        close(p[0]);
        waitpid(pid, &status, 0);
        printf("%-26s %-11s ", c->name, c->variant);
        if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            printf("failed (child status %d)\n", status);
            continue;
        }
        if (rss[0] < 0) {
            printf("%s\n", rd.why);
            continue;
        }
        struct memory *m = &memory[i];
        m->valid = 1;
        m->filled = (double)(rss[1] - rss[0]) / k;
        m->emptied = (double)(rss[2] - rss[0]) / k;
        m->freed = (double)(rss[3] - rss[0]) / k;
        printf("%10.1f %10.1f %10.1f  %s\n", m->filled, m->emptied, m->freed,
               c->purge ? "connpool_purge(pool, NULL)" : "taking every fd back");
    }
    printf("(libconnpool's figures include its process-wide fd registry: 32 bytes per fd\n"
           " number ever pooled, kept for the life of the process by design,\n"
           " src/fd_table/mod.rs)\n");
    fflush(stdout);
    big_fds_free(fds, k);
}
