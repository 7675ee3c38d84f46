/* A connection pool as a competent C author writes it by hand, for the benchmark:
 * one pthread mutex, keys in a chained hash table (FNV-1a, hash cached, strcmp to
 * confirm, doubling at load factor 1), each key's idle fds in a linked stack (LIFO),
 * nodes recycled through a free list (no malloc on the hot path), deadlines from
 * clock_gettime(CLOCK_MONOTONIC) read outside the lock, fds closed after unlocking, and
 * optionally a recv(MSG_PEEK | MSG_DONTWAIT) liveness check on acquire (outside the lock).
 * Same contract as connpool_acquire/connpool_release. */
#ifndef BENCH_CPOOL_H
#define BENCH_CPOOL_H

#include <stdint.h>

typedef struct cpool cpool;

/* max_idle_per_key >= 1; idle_timeout_ms 0 = none; check: liveness check on acquire. */
cpool *cpool_new(unsigned max_idle_per_key, uint64_t idle_timeout_ms, int check);
void cpool_free(cpool *p);
/* An idle fd (now the caller's), or -ENOENT / -EINVAL. */
int cpool_acquire(cpool *p, const char *key);
/* Consumes fd >= 0: 0 pooled, 1 closed (key full), -EINVAL (closed); -EBADF for fd < 0. */
int cpool_release(cpool *p, const char *key, int fd);

#endif
