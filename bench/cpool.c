/* The hand-written C pool: see cpool.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CPOOL_MAX_KEY_LEN 1024

struct idle {
    struct idle *next; /* next older */
    uint64_t deadline; /* ns, CLOCK_MONOTONIC */
    int fd;
};

struct key {
    struct key *next; /* bucket chain */
    uint64_t hash;
    unsigned nidle;
    struct idle *top; /* most recently released first */
    char name[];
};

struct cpool {
    pthread_mutex_t lock;
    struct key **buckets;
    size_t nbuckets; /* power of two */
    size_t nkeys;
    struct idle *free_nodes;
    unsigned max_idle;
    uint64_t timeout_ns; /* UINT64_MAX: none */
    int check;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* FNV-1a 64 over the key; also validates its length (1..1024). */
static int key_hash(const char *key, uint64_t *hash)
{
    if (key == NULL)
        return -1;
    uint64_t h = 0xcbf29ce484222325ull;
    size_t n = 0;
    for (const unsigned char *s = (const unsigned char *)key; *s; s++, n++) {
        if (n == CPOOL_MAX_KEY_LEN)
            return -1;
        h = (h ^ *s) * 0x100000001b3ull;
    }
    if (n == 0)
        return -1;
    *hash = h;
    return 0;
}

static struct key *find(const cpool *p, uint64_t h, const char *name)
{
    for (struct key *k = p->buckets[h & (p->nbuckets - 1)]; k; k = k->next)
        if (k->hash == h && strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

static void grow(cpool *p)
{
    size_t n = p->nbuckets * 2;
    struct key **b = calloc(n, sizeof *b);
    if (b == NULL)
        return; /* keep the longer chains */
    for (size_t i = 0; i < p->nbuckets; i++) {
        struct key *k = p->buckets[i];
        while (k) {
            struct key *next = k->next;
            k->next = b[k->hash & (n - 1)];
            b[k->hash & (n - 1)] = k;
            k = next;
        }
    }
    free(p->buckets);
    p->buckets = b;
    p->nbuckets = n;
}

cpool *cpool_new(unsigned max_idle_per_key, uint64_t idle_timeout_ms, int check)
{
    if (max_idle_per_key == 0) {
        errno = EINVAL;
        return NULL;
    }
    cpool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->nbuckets = 64;
    p->buckets = calloc(p->nbuckets, sizeof *p->buckets);
    if (p->buckets == NULL) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->max_idle = max_idle_per_key;
    p->timeout_ns = idle_timeout_ms ? idle_timeout_ms * 1000000u : UINT64_MAX;
    p->check = check;
    return p;
}

void cpool_free(cpool *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nbuckets; i++) {
        struct key *k = p->buckets[i];
        while (k) {
            struct key *next = k->next;
            for (struct idle *c = k->top, *n; c; c = n) {
                n = c->next;
                close(c->fd);
                free(c);
            }
            free(k);
            k = next;
        }
    }
    for (struct idle *c = p->free_nodes, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(p->buckets);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Under the lock: detaches k's expired connections. Deadlines decrease down the stack
 * (the top is the newest), so everything from the first expired node down is detached.
 * Called when the top has expired (acquire) or when the key is full (release); otherwise
 * an expired connection below a fresh one waits, never handed out, until it reaches the
 * top or the key fills up. */
static struct idle *detach_expired(struct key *k, uint64_t now)
{
    struct idle **link = &k->top;
    while (*link && (*link)->deadline > now)
        link = &(*link)->next;
    struct idle *doomed = *link;
    *link = NULL;
    for (struct idle *d = doomed; d; d = d->next)
        k->nidle--;
    return doomed;
}

/* Closes a detached list outside the lock, then gives its nodes back. */
static void close_list(cpool *p, struct idle *doomed)
{
    if (doomed == NULL)
        return;
    struct idle *last = doomed;
    for (struct idle *c = doomed; c; c = c->next) {
        close(c->fd);
        last = c;
    }
    pthread_mutex_lock(&p->lock);
    last->next = p->free_nodes;
    p->free_nodes = doomed;
    pthread_mutex_unlock(&p->lock);
}

static int alive(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

int cpool_acquire(cpool *p, const char *key)
{
    uint64_t h;
    if (p == NULL || key_hash(key, &h) != 0)
        return -EINVAL;
    for (;;) {
        uint64_t now = p->timeout_ns != UINT64_MAX ? now_ns() : 0;
        struct idle *doomed = NULL;
        int fd = -ENOENT;
        pthread_mutex_lock(&p->lock);
        struct key *k = find(p, h, key);
        if (k && k->top) {
            if (k->top->deadline <= now) {
                doomed = detach_expired(k, now);
            } else {
                struct idle *c = k->top;
                k->top = c->next;
                k->nidle--;
                fd = c->fd;
                c->next = p->free_nodes;
                p->free_nodes = c;
            }
        }
        pthread_mutex_unlock(&p->lock);
        close_list(p, doomed);
        if (fd < 0 || !p->check || alive(fd))
            return fd;
        close(fd); /* dead: try the next one */
    }
}

int cpool_release(cpool *p, const char *key, int fd)
{
    uint64_t h;
    if (fd < 0)
        return -EBADF;
    if (p == NULL || key_hash(key, &h) != 0) {
        close(fd);
        return -EINVAL;
    }
    uint64_t now = p->timeout_ns != UINT64_MAX ? now_ns() : 0;
    uint64_t deadline = p->timeout_ns != UINT64_MAX ? now + p->timeout_ns : UINT64_MAX;
    int result = 0;
    struct idle *doomed = NULL;
    pthread_mutex_lock(&p->lock);
    struct key *k = find(p, h, key);
    if (k == NULL) {
        size_t len = strlen(key);
        k = malloc(sizeof *k + len + 1);
        if (k == NULL) {
            pthread_mutex_unlock(&p->lock);
            close(fd);
            return -ENOMEM;
        }
        memcpy(k->name, key, len + 1);
        k->hash = h;
        k->nidle = 0;
        k->top = NULL;
        if (p->nkeys >= p->nbuckets)
            grow(p);
        k->next = p->buckets[h & (p->nbuckets - 1)];
        p->buckets[h & (p->nbuckets - 1)] = k;
        p->nkeys++;
    }
    if (k->nidle >= p->max_idle || (k->top && k->top->deadline <= now))
        doomed = detach_expired(k, now);
    struct idle *c = NULL;
    if (k->nidle < p->max_idle) {
        c = p->free_nodes;
        if (c)
            p->free_nodes = c->next;
        else
            c = malloc(sizeof *c);
    }
    if (c) {
        c->fd = fd;
        c->deadline = deadline;
        c->next = k->top;
        k->top = c;
        k->nidle++;
    } else {
        result = 1;
    }
    pthread_mutex_unlock(&p->lock);
    if (result)
        close(fd);
    close_list(p, doomed);
    return result;
}
