/* Helpers for the hostile-conditions tests: running a case in a forked child
 * under a watchdog, and classifying how it ended (exit code, signal, or hung and killed).
 *
 * Include after harness.h. Everything is static inline, as in harness.h. */
#ifndef CONNPOOL_TEST_HOSTILE_H
#define CONNPOOL_TEST_HOSTILE_H

#include "harness.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* ---- checks inside a forked child ---- */

/* A child reports a failed check and leaves with _exit(): exit() would run the parent's
 * atexit handlers (LeakSanitizer's among them) in a process that shares its state. */
#define CCHECK(cond)                                                                     \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: child %d: CHECK failed: %s\n", __FILE__, __LINE__,  \
                    (int)getpid(), #cond);                                               \
            _exit(1);                                                                    \
        }                                                                                \
    } while (0)

#define CCHECK_EQ(a, b)                                                                  \
    do {                                                                                 \
        long long ccheck_a_ = (long long)(a), ccheck_b_ = (long long)(b);                \
        if (ccheck_a_ != ccheck_b_) {                                                    \
            fprintf(stderr, "%s:%d: child %d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n", \
                    __FILE__, __LINE__, (int)getpid(), #a, #b, ccheck_a_, ccheck_b_);    \
            _exit(1);                                                                    \
        }                                                                                \
    } while (0)

/* ---- how a child ended ---- */

/* A child says it passed with child_pass() (harness.h): its exit status alone does not. */

enum child_how { CHILD_EXITED, CHILD_SIGNALED, CHILD_HUNG };

struct child_end {
    enum child_how how;
    int code;   /* exit status, or the signal number */
    int passed; /* the child reported success (child_pass) */
};

static inline int child_ok(struct child_end e) { return e.how == CHILD_EXITED && e.passed; }

/* "passed", "exit 1", "signal 6 (Aborted)", "hung (killed by the watchdog)". */
static inline const char *child_describe(struct child_end e, char *buf, size_t len)
{
    if (e.how == CHILD_EXITED && e.passed)
        snprintf(buf, len, "passed");
    else if (e.how == CHILD_EXITED)
        snprintf(buf, len, "exit %d", e.code);
    else if (e.how == CHILD_SIGNALED)
        snprintf(buf, len, "signal %d (%s)", e.code, strsignal(e.code));
    else
        snprintf(buf, len, "hung (killed by the watchdog)");
    return buf;
}

/* Bounds scale with the environment: valgrind runs code ~50x slower. */
static inline int watchdog_ms(int native_ms)
{
    return running_on_valgrind() ? native_ms * 20 : native_ms;
}

/* A pidfd for pid, or -1 where the kernel (or valgrind) lacks pidfd_open; then the child's
 * own alarm() is the watchdog (see fork_child). */
static inline int pidfd_for(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    return -1;
#endif
}

/* One line per thread of a hung child: its state and kernel wait channel, so that a report
 * says where it hung (e.g. "S futex_wait_queue"). */
static inline void child_print_threads(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[384], wchan[64] = "?", state = '?';
        snprintf(p, sizeof p, "/proc/%d/task/%s/wchan", (int)pid, e->d_name);
        FILE *f = fopen(p, "r");
        if (f != NULL) {
            if (fgets(wchan, sizeof wchan, f) == NULL)
                wchan[0] = '\0';
            fclose(f);
        }
        snprintf(p, sizeof p, "/proc/%d/task/%s/stat", (int)pid, e->d_name);
        f = fopen(p, "r");
        if (f != NULL) {
            char line[256];
            if (fgets(line, sizeof line, f) != NULL) {
                char *rp = strrchr(line, ')');
                if (rp != NULL && rp[1] == ' ')
                    state = rp[2];
            }
            fclose(f);
        }
        fprintf(stderr, "    thread %s: state %c, wchan %s\n", e->d_name, state, wchan);
    }
    closedir(d);
}

/* Forks; the child arms alarm() (a second watchdog, for when pidfds are missing: valgrind
 * 3.19 has no pidfd_open) and runs fn(arg), then child_pass(). *pass_rd: the parent's end
 * of the pass pipe, for child_reap(). stdio is flushed first, or the child would print the
 * parent's buffered output again. */
static inline pid_t fork_child(void (*fn)(void *), void *arg, int bound_ms, int *pass_rd)
{
    fflush(stdout);
    fflush(stderr);
    *pass_rd = pass_pipe();
    pid_t pid = fork();
    CHECK_SYS(pid >= 0);
    if (pid == 0) {
        close(*pass_rd);
        alarm((unsigned)(bound_ms / 1000 + 5));
        fn(arg);
        child_pass();
    }
    pass_pipe_parent();
    return pid;
}

/* Reaps an ended (or killed) child and reads its pass byte; closes pass_rd. */
static inline struct child_end child_reap(pid_t pid, int pass_rd, int killed)
{
    int status;
    pid_t w;
    while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    CHECK_SYS(w == pid);
    char p = 0;
    struct child_end e = {CHILD_EXITED, 0, read(pass_rd, &p, 1) == 1 && p == 'P'};
    close(pass_rd);
    if (killed) {
        e.how = CHILD_HUNG;
        e.code = SIGKILL;
    } else if (WIFEXITED(status)) {
        e.code = WEXITSTATUS(status);
    } else {
        e.how = CHILD_SIGNALED;
        e.code = WTERMSIG(status);
        if (e.code == SIGALRM) /* the child's own watchdog fired */
            e.how = CHILD_HUNG;
    }
    return e;
}

/* Kills a child that outlived its bound (after printing its threads), and reaps it. */
static inline struct child_end child_kill_hung(pid_t pid, int pass_rd)
{
    child_print_threads(pid);
    kill(pid, SIGKILL);
    return child_reap(pid, pass_rd, 1);
}

/* Waits for the child at most bound_ms (pidfd + poll), then kills it: always reaped. */
static inline struct child_end child_wait(pid_t pid, int bound_ms, int pass_rd)
{
    int pidfd = pidfd_for(pid);
    if (pidfd >= 0) {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        long long deadline = now_ms() + bound_ms;
        int r;
        do {
            long long left = deadline - now_ms();
            r = poll(&p, 1, left > 0 ? (int)left : 0);
        } while (r < 0 && errno == EINTR);
        close(pidfd);
        if (r == 0)
            return child_kill_hung(pid, pass_rd);
    }
    return child_reap(pid, pass_rd, 0);
}

/* Runs fn(arg) in a forked child under a watchdog of bound_ms (scaled under valgrind). */
static inline struct child_end run_in_child(void (*fn)(void *), void *arg, int bound_ms)
{
    bound_ms = watchdog_ms(bound_ms);
    int pass_rd;
    pid_t pid = fork_child(fn, arg, bound_ms, &pass_rd);
    return child_wait(pid, bound_ms, pass_rd);
}

/* ---- process resources ---- */

/* Raises the soft fd limit to the hard one; returns the new soft limit. */
static inline long raise_nofile(void)
{
    struct rlimit r;
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &r) == 0);
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &r) != 0) /* valgrind refuses some values */
            CHECK_SYS(getrlimit(RLIMIT_NOFILE, &r) == 0);
    }
    return (long)r.rlim_cur;
}

/* Threads of this process, from /proc/self/task. */
static inline int threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    CHECK_SYS(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

#endif /* CONNPOOL_TEST_HOSTILE_H */
