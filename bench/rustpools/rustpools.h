/* C declarations of bench/rustpools: the real rust-web-server and pingora-pool crates
 * behind C-callable shims (src/rws.rs, src/pingora.rs say what each does and skips). */
#ifndef BENCH_RUSTPOOLS_H
#define BENCH_RUSTPOOLS_H

#include <stddef.h>
#include <stdint.h>

/* rust-web-server 18.7.0 proxy::ConnPool. */
typedef struct RwsPool RwsPool;
RwsPool *rws_pool_new(size_t max_idle, uint64_t idle_timeout_ms);
void rws_pool_free(RwsPool *pool);
/* An idle fd (now the caller's), -ENOENT or -EINVAL. */
int rws_pool_acquire(const RwsPool *pool, const char *key);
/* Consumes fd >= 0: 0 (kept, or closed when the key was full), -EINVAL; -EBADF for fd < 0. */
int rws_pool_release(const RwsPool *pool, const char *key, int fd);

/* pingora-pool 0.9.1 ConnectionPool, size = its global LRU capacity. */
typedef struct PingoraPool PingoraPool;
PingoraPool *pingora_pool_new(size_t size);
void pingora_pool_free(PingoraPool *pool);
/* The group key of a string key (pingora-core's kind of hash); 0 for a bad key. */
uint64_t pingora_pool_key(const char *key);
int pingora_pool_get(const PingoraPool *pool, uint64_t group);
int pingora_pool_put(const PingoraPool *pool, uint64_t group, int fd);
/* The same, hashing the string key on every call. */
int pingora_pool_acquire(const PingoraPool *pool, const char *key);
int pingora_pool_release(const PingoraPool *pool, const char *key, int fd);

#endif
