/* C declarations of bench/seedpool (the seed's pool design, a Rust staticlib). */
#ifndef BENCH_SEEDPOOL_H
#define BENCH_SEEDPOOL_H

typedef struct SeedPool SeedPool;

/* 8 idle per key, 60 s idle timeout; check != 0: recv peek check on acquire. */
SeedPool *seedpool_new(int check);
void seedpool_free(SeedPool *pool);
/* An idle fd (now the caller's), -ENOENT or -EINVAL. */
int seedpool_acquire(const SeedPool *pool, const char *key);
/* Consumes fd >= 0: 0 pooled, 1 closed (key full), -EINVAL (closed); -EBADF for fd < 0. */
int seedpool_release(const SeedPool *pool, const char *key, int fd);

#endif
