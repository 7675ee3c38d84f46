/* The two C floors: see floors.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "floors.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_MAX_KEY_LEN 1024

/* A futex lock (Drepper, "Futexes Are Tricky", mutex 3): 0 free, 1 locked, 2 locked with
 * waiters. Uncontended, one CAS locks and one exchange unlocks, without a system call: the
 * fast path of the parking_lot lock libconnpool uses. (glibc's pthread_mutex costs ~50
 * more instructions per lock+unlock: type and owner bookkeeping.) */
static inline void lock(atomic_int *l)
{
    int c = 0;
    if (atomic_compare_exchange_strong_explicit(l, &c, 1, memory_order_acquire,
                                                memory_order_relaxed))
        return;
    if (c != 2)
        c = atomic_exchange_explicit(l, 2, memory_order_acquire);
    while (c != 0) {
        syscall(SYS_futex, l, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
        c = atomic_exchange_explicit(l, 2, memory_order_acquire);
    }
}

static inline void unlock(atomic_int *l)
{
    if (atomic_exchange_explicit(l, 0, memory_order_release) == 2)
        syscall(SYS_futex, l, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

struct sidle {
    int32_t fd;
    uint32_t deadline; /* coarse-clock ms, wrapping */
};

/* The coarse clock in ms, truncated to 32 bits: compared only as differences. */
static inline uint32_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

static inline int expired(uint32_t deadline, uint32_t now)
{
    return (int32_t)(deadline - now) <= 0;
}

/* Closes the fds a call detached under its lock, after unlocking. */
static void close_all(const int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        close(fds[i]);
}

/* Pops the top of a stack for an acquire; an expired top means every record expired
 * (deadlines grow towards the top): they go to doomed. Returns the fd or -ENOENT. */
static int stack_pop(struct sidle *idle, uint32_t *n, uint32_t now, int *doomed,
                     unsigned *ndoomed)
{
    if (*n == 0)
        return -ENOENT;
    struct sidle top = idle[*n - 1];
    if (!expired(top.deadline, now)) {
        (*n)--;
        return top.fd;
    }
    for (uint32_t i = 0; i < *n; i++)
        doomed[(*ndoomed)++] = idle[i].fd;
    *n = 0;
    return -ENOENT;
}

/* Pushes fd for a release; a full stack first drops its expired bottom. Returns 0, or 1
 * when still full (the caller closes fd). */
static int stack_push(struct sidle *idle, uint32_t *n, unsigned max, int fd, uint32_t now,
                      uint32_t timeout, int *doomed, unsigned *ndoomed)
{
    if (*n == max) {
        uint32_t m = 0;
        while (m < *n && expired(idle[m].deadline, now))
            doomed[(*ndoomed)++] = idle[m++].fd;
        if (m == 0)
            return 1;
        memmove(idle, idle + m, (*n - m) * sizeof *idle);
        *n -= m;
    }
    idle[(*n)++] = (struct sidle){fd, now + timeout};
    return 0;
}

/* ---- sfloor: string keys ---- */

struct sentry {
    uint32_t len;
    uint32_t n;
    struct sidle idle[]; /* max_idle records, then the key's bytes */
};

struct slot {
    uint64_t hash;
    struct sentry *e; /* NULL: empty */
};

struct sfloor {
    atomic_int lock;
    struct slot *slots;
    size_t mask, used;
    uint64_t seed;
    unsigned max_idle;
    uint32_t timeout;
};

static inline uint64_t fold(uint64_t a, uint64_t b)
{
    unsigned __int128 p = (unsigned __int128)a * b;
    return (uint64_t)p ^ (uint64_t)(p >> 64);
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint64_t load32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* A word at a time; the tail is the last 8 bytes, overlapping (keys are 1..1024 bytes). */
static uint64_t str_hash(const char *key, size_t n, uint64_t seed)
{
    const unsigned char *p = (const unsigned char *)key;
    const uint64_t k1 = 0x9e3779b97f4a7c15ull, k2 = 0xd6e8feb86659fd93ull;
    uint64_t h = seed ^ n;
    if (n >= 8) {
        const unsigned char *last = p + n - 8;
        for (; p < last; p += 8)
            h = fold(h ^ load64(p), k1);
        h = fold(h ^ load64(last), k2);
    } else if (n >= 4) {
        h = fold(h ^ (load32(p) << 32 | load32(p + n - 4)), k2);
    } else {
        h = fold(h ^ (p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16), k2);
    }
    return fold(h, k1 ^ k2);
}

static inline const char *entry_key(const sfloor *p, const struct sentry *e)
{
    return (const char *)&e->idle[p->max_idle];
}

/* Whether the n bytes at a and b are equal: keys of 8 to 16 bytes ("host:port") in two
 * overlapping words, without a call. */
static inline int key_eq(const char *a, const char *b, size_t n)
{
    if (n < 8 || n > 16)
        return memcmp(a, b, n) == 0;
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    return ((load64(x) ^ load64(y)) | (load64(x + n - 8) ^ load64(y + n - 8))) == 0;
}

/* The slot holding key, or the empty slot where it would go. */
static struct slot *probe(const sfloor *p, uint64_t h, const char *key, size_t len)
{
    for (size_t i = h & p->mask;; i = (i + 1) & p->mask) {
        struct slot *s = &p->slots[i];
        if (s->e == NULL ||
            (s->hash == h && s->e->len == len && key_eq(entry_key(p, s->e), key, len)))
            return s;
    }
}

static int grow(sfloor *p)
{
    size_t n = (p->mask + 1) * 2;
    struct slot *old = p->slots, *s = calloc(n, sizeof *s);
    if (s == NULL)
        return -1;
    size_t old_n = p->mask + 1;
    p->slots = s;
    p->mask = n - 1;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i].e == NULL)
            continue;
        size_t j = old[i].hash & p->mask;
        while (s[j].e)
            j = (j + 1) & p->mask;
        s[j] = old[i];
    }
    free(old);
    return 0;
}

sfloor *sfloor_new(unsigned max_idle_per_key, uint32_t idle_timeout_ms)
{
    if (max_idle_per_key == 0 || max_idle_per_key > FLOOR_MAX_IDLE || idle_timeout_ms == 0 ||
        idle_timeout_ms > INT32_MAX) {
        errno = EINVAL;
        return NULL;
    }
    sfloor *p = calloc(1, sizeof *p);
    if (p == NULL || (p->slots = calloc(64, sizeof *p->slots)) == NULL) {
        free(p);
        return NULL;
    }
    atomic_init(&p->lock, 0);
    p->mask = 63;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    p->seed = fold((uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)p, 0x2545f4914f6cdd1dull);
    p->max_idle = max_idle_per_key;
    p->timeout = idle_timeout_ms;
    return p;
}

void sfloor_free(sfloor *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i <= p->mask; i++) {
        struct sentry *e = p->slots[i].e;
        if (e == NULL)
            continue;
        for (uint32_t j = 0; j < e->n; j++)
            close(e->idle[j].fd);
        free(e);
    }
    free(p->slots);
    free(p);
}

/* The key's length, or 0 when it is not 1..FLOOR_MAX_KEY_LEN bytes. */
static size_t key_len(const char *key)
{
    size_t n = key ? strnlen(key, FLOOR_MAX_KEY_LEN + 1) : 0;
    return n <= FLOOR_MAX_KEY_LEN ? n : 0;
}

int sfloor_acquire(sfloor *p, const char *key)
{
    size_t len = key_len(key);
    if (p == NULL || len == 0)
        return -EINVAL;
    uint64_t h = str_hash(key, len, p->seed);
    uint32_t now = coarse_ms();
    int doomed[FLOOR_MAX_IDLE];
    unsigned ndoomed = 0;
    int fd = -ENOENT;
    lock(&p->lock);
    struct slot *s = probe(p, h, key, len);
    if (s->e)
        fd = stack_pop(s->e->idle, &s->e->n, now, doomed, &ndoomed);
    unlock(&p->lock);
    close_all(doomed, ndoomed);
    return fd;
}

int sfloor_release(sfloor *p, const char *key, int fd)
{
    if (fd < 0)
        return -EBADF;
    size_t len = key_len(key);
    if (p == NULL || len == 0) {
        close(fd);
        return -EINVAL;
    }
    uint64_t h = str_hash(key, len, p->seed);
    uint32_t now = coarse_ms();
    int doomed[FLOOR_MAX_IDLE + 1];
    unsigned ndoomed = 0;
    int r;
    lock(&p->lock);
    struct slot *s = probe(p, h, key, len);
    if (s->e == NULL) {
        size_t idle_bytes = p->max_idle * sizeof(struct sidle);
        struct sentry *e = malloc(sizeof *e + idle_bytes + len);
        if (e == NULL || ((p->used + 1) * 4 > (p->mask + 1) * 3 && grow(p) != 0)) {
            unlock(&p->lock);
            free(e);
            close(fd);
            return -ENOMEM;
        }
        e->len = (uint32_t)len;
        e->n = 0;
        memcpy((char *)e->idle + idle_bytes, key, len);
        s = probe(p, h, key, len); /* the table may have grown */
        s->hash = h;
        s->e = e;
        p->used++;
    }
    r = stack_push(s->e->idle, &s->e->n, p->max_idle, fd, now, p->timeout, doomed, &ndoomed);
    unlock(&p->lock);
    if (r)
        doomed[ndoomed++] = fd;
    close_all(doomed, ndoomed);
    return r;
}

/* ---- hfloor: key handles ---- */

struct hfloor_key {
    atomic_int lock;
    uint32_t n, max_idle, timeout;
    struct sidle idle[]; /* max_idle records */
};

struct hfloor {
    char *keys;    /* nkeys structs, stride bytes apart */
    size_t stride; /* whole cache lines: keys never share one (no false sharing) */
    int nkeys;
};

hfloor *hfloor_new(unsigned max_idle_per_key, uint32_t idle_timeout_ms, int nkeys)
{
    if (max_idle_per_key == 0 || max_idle_per_key > FLOOR_MAX_IDLE || idle_timeout_ms == 0 ||
        idle_timeout_ms > INT32_MAX || nkeys < 1) {
        errno = EINVAL;
        return NULL;
    }
    hfloor *p = malloc(sizeof *p);
    if (p == NULL)
        return NULL;
    p->stride = (sizeof(struct hfloor_key) + max_idle_per_key * sizeof(struct sidle) + 63) &
                ~(size_t)63;
    p->nkeys = nkeys;
    if ((p->keys = aligned_alloc(64, (size_t)nkeys * p->stride)) == NULL) {
        free(p);
        return NULL;
    }
    for (int i = 0; i < nkeys; i++) {
        struct hfloor_key *k = hfloor_key_at(p, i);
        atomic_init(&k->lock, 0);
        k->n = 0;
        k->max_idle = max_idle_per_key;
        k->timeout = idle_timeout_ms;
    }
    return p;
}

void hfloor_free(hfloor *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->nkeys; i++) {
        struct hfloor_key *k = hfloor_key_at(p, i);
        for (uint32_t j = 0; j < k->n; j++)
            close(k->idle[j].fd);
    }
    free(p->keys);
    free(p);
}

hfloor_key *hfloor_key_at(hfloor *p, int i)
{
    return p && i >= 0 && i < p->nkeys ? (hfloor_key *)(p->keys + (size_t)i * p->stride) : NULL;
}

int hfloor_acquire(hfloor_key *k)
{
    uint32_t now = coarse_ms();
    int doomed[FLOOR_MAX_IDLE];
    unsigned ndoomed = 0;
    lock(&k->lock);
    int fd = stack_pop(k->idle, &k->n, now, doomed, &ndoomed);
    unlock(&k->lock);
    close_all(doomed, ndoomed);
    return fd;
}

int hfloor_release(hfloor_key *k, int fd)
{
    if (fd < 0)
        return -EBADF;
    uint32_t now = coarse_ms();
    int doomed[FLOOR_MAX_IDLE + 1];
    unsigned ndoomed = 0;
    lock(&k->lock);
    int r = stack_push(k->idle, &k->n, k->max_idle, fd, now, k->timeout, doomed, &ndoomed);
    unlock(&k->lock);
    if (r)
        doomed[ndoomed++] = fd;
    close_all(doomed, ndoomed);
    return r;
}
