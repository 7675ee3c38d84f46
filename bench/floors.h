/* The two C floors: the least a pool can do per acquire+release while it
 * honours an idle timeout and a per-key cap, written as a C author would for speed.
 *
 * sfloor (string keys): one lock (a futex lock, floors.c); an open-addressing table
 * (linear probing, 16-byte slots: hash + entry pointer, grown at 3/4 load) keyed by the
 * string, hashed a word at a time with a seeded multiply-fold and compared inline (two
 * words for 8 to 16 bytes); one heap block per key holding its length, its LIFO stack of
 * idle (fd, deadline) records and its bytes. Emptied keys keep their entry. One
 * CLOCK_MONOTONIC_COARSE read per call, outside the lock.
 *
 * hfloor (key handles): one struct per key, made when the pool is made (a proxy's fixed
 * backend list), each on cache lines of its own with its own futex lock and LIFO stack;
 * one CLOCK_MONOTONIC_COARSE read per call. No table, no hash, no string.
 *
 * Both: deadlines are 32-bit milliseconds of the coarse clock compared with wrap-around
 * arithmetic (idle timeouts up to 24 days); an acquire never hands out an fd past its
 * deadline (the stack's deadlines grow towards the top, so an expired top means the
 * whole stack expired); a release into a full key first drops its expired bottom, then
 * closes the incoming fd if still full. fds are closed after unlocking. No liveness
 * check. Same results as connpool_acquire/connpool_release. */
#ifndef BENCH_FLOORS_H
#define BENCH_FLOORS_H

#include <stdint.h>

#define FLOOR_MAX_IDLE 64

typedef struct sfloor sfloor;
/* max_idle_per_key 1..FLOOR_MAX_IDLE; idle_timeout_ms 1..2^31-1. */
sfloor *sfloor_new(unsigned max_idle_per_key, uint32_t idle_timeout_ms);
void sfloor_free(sfloor *p);
/* An idle fd (now the caller's), -ENOENT or -EINVAL. */
int sfloor_acquire(sfloor *p, const char *key);
/* Consumes fd >= 0: 0 pooled, 1 closed (key full), -EINVAL, -ENOMEM (closed); -EBADF. */
int sfloor_release(sfloor *p, const char *key, int fd);

typedef struct hfloor hfloor;
typedef struct hfloor_key hfloor_key;
/* A pool with nkeys key handles (0..nkeys-1). */
hfloor *hfloor_new(unsigned max_idle_per_key, uint32_t idle_timeout_ms, int nkeys);
void hfloor_free(hfloor *p);
hfloor_key *hfloor_key_at(hfloor *p, int i);
int hfloor_acquire(hfloor_key *k);
int hfloor_release(hfloor_key *k, int fd);

#endif
