/* spawn.h: child processes for the demo driver, with their stdout captured.
 *
 * Every child runs in its own process group, so the driver can stop it together with
 * anything it started (a valgrind wrapper script and the proxy under it), and dies with
 * the driver (PR_SET_PDEATHSIG) even if the driver is killed with SIGKILL. Every wait is
 * bounded and ends early when the driver is interrupted (spawn_interrupted()).
 */
#ifndef DEMO_SPAWN_H
#define DEMO_SPAWN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPAWN_OUTPUT_MAX 16384

struct child {
    const char *name;
    pid_t pid;        /* what we forked: a server, or a wrapper running one */
    pid_t server_pid; /* the "pid N" the server printed when ready: the one to stop */
    int port;         /* the "127.0.0.1:PORT" it printed when ready */
    int out;          /* read end of its stdout, -1 at EOF */
    int pidfd;        /* readable once the child has exited (pidfd_open) */
    char output[SPAWN_OUTPUT_MAX]; /* everything it printed (NUL-terminated, truncated) */
    size_t len;
    int running;
    int status; /* exit status once it ended: 0..255, or 128 + signal */
};

/* Install SIGINT/SIGTERM handlers that interrupt every wait; call once. */
void spawn_init(void);
int spawn_interrupted(void);

/* Start argv[0] (a path, or a name looked up in PATH) with stdout captured, stdin from /dev/null, stderr inherited.
 * 0, or -1. */
int spawn_start(struct child *c, const char *name, char *const argv[]);

/* Wait until it prints "listening on 127.0.0.1:PORT pid PID"; fills port, server_pid.
 * 0; -1 on timeout, interruption or exit (then c->running is 0 and c->status set). */
int spawn_wait_ready(struct child *c, int timeout_ms);

/* Read its output until it exits, then reap it. 0 when it exited within timeout_ms
 * (c->status tells how), -1 otherwise (it is then killed). */
int spawn_wait_exit(struct child *c, int timeout_ms);

/* Ask it to stop (SIGTERM to the server pid) and wait as spawn_wait_exit. */
int spawn_stop(struct child *c, int timeout_ms);

/* Stop every child still running: SIGTERM to each process group, then SIGKILL. For
 * errors and interruptions. */
void spawn_kill_all(void);

/* The number after "key=" on the line of c's output that starts with line_prefix;
 * -1 if absent. */
int64_t spawn_field(const struct child *c, const char *line_prefix, const char *key);

#endif /* DEMO_SPAWN_H */
