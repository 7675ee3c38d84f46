/* spawn.c: see spawn.h. */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 16

static struct child *children[MAX_CHILDREN];
static int interrupt_pipe[2] = {-1, -1};
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    int saved = errno;
    interrupted = 1;
    ssize_t w = write(interrupt_pipe[1], "x", 1); /* wakes every poll below */
    (void)w;
    errno = saved;
}

void spawn_init(void)
{
    if (pipe2(interrupt_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        perror("demo: pipe2");
        exit(1);
    }
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int spawn_interrupted(void) { return interrupted; }

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int spawn_start(struct child *c, const char *name, char *const argv[])
{
    memset(c, 0, sizeof *c);
    c->name = name;
    c->out = c->pidfd = -1;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* die with the driver, even after its SIGKILL */
        if (getppid() != parent)
            _exit(1); /* the driver died before prctl took effect */
        signal(SIGINT, SIG_DFL); /* handlers are reset by exec anyway; be explicit */
        signal(SIGTERM, SIG_DFL);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(p[1], 1) < 0)
            _exit(127);
        execvp(argv[0], argv); /* a bare name is looked up in PATH */
        fprintf(stderr, "demo: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* also here: whichever runs first, the group exists before we signal it */
    close(p[1]);
    c->pid = c->server_pid = pid;
    c->out = p[0];
    c->running = 1;
    /* A pidfd turns "the child exited" into a readable fd: waits poll it with a timeout
     * instead of polling waitpid() in a sleep loop. (Linux 5.3; no glibc wrapper before 2.36.) */
    c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (c->pidfd < 0) {
        perror("demo: pidfd_open");
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(c->out);
        c->running = 0;
        return -1;
    }
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == NULL) {
            children[i] = c;
            break;
        }
    return 0;
}

static void forget(struct child *c)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == c)
            children[i] = NULL;
}

static void reap(struct child *c, int status)
{
    c->running = 0;
    c->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (c->out >= 0)
        close(c->out);
    close(c->pidfd);
    c->out = c->pidfd = -1;
    forget(c);
}

/* Read what c printed for at most timeout_ms (0: what is there now). 1: read something,
 * 0: timeout, -1: EOF, -2: interrupted. */
static int read_some(struct child *c, int timeout_ms)
{
    if (c->out < 0)
        return -1;
    struct pollfd p[2] = {{.fd = c->out, .events = POLLIN}, {.fd = interrupt_pipe[0], .events = POLLIN}};
    int r = poll(p, 2, timeout_ms);
    if (interrupted)
        return -2;
    if (r <= 0)
        return 0; /* timeout, or EINTR from SIGCHLD & co: the caller re-checks its clock */
    char buf[4096];
    ssize_t n = read(c->out, buf, sizeof buf);
    if (n <= 0) {
        close(c->out);
        c->out = -1;
        return -1;
    }
    size_t room = sizeof c->output - 1 - c->len, take = (size_t)n < room ? (size_t)n : room;
    memcpy(c->output + c->len, buf, take);
    c->len += take;
    c->output[c->len] = '\0';
    return 1;
}

int spawn_wait_exit(struct child *c, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    while (c->running) {
        int64_t left = (int64_t)(deadline - now_ms());
        if (left <= 0 || interrupted) {
            kill(-c->pid, SIGKILL);
            int status;
            waitpid(c->pid, &status, 0);
            reap(c, status);
            return -1;
        }
        /* out may be -1 (EOF seen): poll() ignores negative fds. */
        struct pollfd p[3] = {{.fd = c->pidfd, .events = POLLIN},
                              {.fd = interrupt_pipe[0], .events = POLLIN},
                              {.fd = c->out, .events = POLLIN}};
        if (poll(p, 3, (int)left) <= 0)
            continue;
        if (p[2].revents)
            read_some(c, 0);
        if (p[0].revents) { /* exited: take what is left in the pipe, then reap */
            while (read_some(c, 0) > 0) {
            }
            int status;
            waitpid(c->pid, &status, 0);
            reap(c, status);
        }
    }
    return 0;
}

int spawn_stop(struct child *c, int timeout_ms)
{
    if (!c->running)
        return 0;
    kill(c->server_pid, SIGTERM);
    return spawn_wait_exit(c, timeout_ms);
}

int spawn_wait_ready(struct child *c, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        const char *line = strstr(c->output, "listening on 127.0.0.1:");
        const char *pid = line ? strstr(line, " pid ") : NULL;
        if (pid != NULL && strchr(pid, '\n') != NULL) {
            c->port = atoi(line + strlen("listening on 127.0.0.1:"));
            c->server_pid = (pid_t)atoi(pid + 5);
            return 0;
        }
        int64_t left = (int64_t)(deadline - now_ms());
        if (left <= 0 || interrupted)
            break;
        if (read_some(c, (int)left) < 0) { /* EOF: it exited without becoming ready */
            spawn_wait_exit(c, 5000);
            return -1;
        }
    }
    fprintf(stderr, "demo: %s not ready after %d ms\n", c->name, timeout_ms);
    return -1;
}

void spawn_kill_all(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] != NULL)
            kill(-children[i]->pid, SIGTERM);
    uint64_t deadline = now_ms() + 3000;
    for (int i = 0; i < MAX_CHILDREN; i++) {
        struct child *c = children[i];
        if (c == NULL)
            continue;
        int64_t left = (int64_t)(deadline - now_ms());
        struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) != 1)
            kill(-c->pid, SIGKILL); /* did not stop in time */
        int status;
        waitpid(c->pid, &status, 0);
        reap(c, status);
    }
}

int64_t spawn_field(const struct child *c, const char *line_prefix, const char *key)
{
    size_t plen = strlen(line_prefix), klen = strlen(key);
    for (const char *line = c->output; *line; ) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len >= plen && memcmp(line, line_prefix, plen) == 0) {
            for (const char *p = line; p + klen < line + len; p++)
                if ((p == line || p[-1] == ' ') && memcmp(p, key, klen) == 0 && p[klen] == '=')
                    return strtoll(p + klen + 1, NULL, 10);
        }
        if (!eol)
            break;
        line = eol + 1;
    }
    return -1;
}
