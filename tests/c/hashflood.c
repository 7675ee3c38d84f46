/* Hash flooding by chosen keys. Run by tests/hashflood.sh under
 * valgrind --tool=callgrind, which compares instruction counts per operation.
 *
 *   hashflood [N]     (N keys per family, default 10000)
 *
 * Five families of N keys, each in a fresh default pool:
 *   random16, random120   random printable keys (the controls)
 *   crafted16    16-byte keys whose last 8 bytes, as a little-endian u64, are P1 ^ 16
 *                (P1 = 0x243f6a8885a308d3): the old short-key hash folds
 *                (first8 ^ seed) * (last8 ^ P1 ^ len) = (...) * 0, so every such key had
 *                the same hash whatever the seed.
 *   crafted120   120-byte keys (15 words for the old word step h = (rotl(h,26) ^ w) * K):
 *                flipping bit 63 of word i and bit 25 of word i+1 cancels, so each choice
 *                of pairs to flip among the 14 (2^14 keys) gave one hash whatever the seed.
 *   lowbits16    a generic attack on an unkeyed table: random 16-byte keys kept only if
 *                their FNV-1a hash (a common unkeyed hash) has its low 8 bits zero, so
 *                that a table indexed by those bits would put them all in one group.
 * Phases, each between CALLGRIND_ZERO_STATS and CALLGRIND_DUMP_STATS_AT("hashflood
 * family=F phase=P ops=N"): release (one new idle connection per key), acquire (each
 * key, a hit), rerelease (each back), purge_key (each key), prune_live (one call over N/10
 * live connections: with colliding keys it made one recv per connection per key, N^2/100
 * in all, so only a tenth of the keys), prune_dead (one call over N dead connections).
 * Live connections are unconnected UDP sockets (one fd each; they pass the liveness
 * check: nothing to read); dead ones are socketpair ends whose peer is closed.
 * Outside valgrind it only runs the phases and prints their wall time. */
#define _GNU_SOURCE
#include "harness.h"
#include "hostile.h"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define HAVE_CALLGRIND 1
#endif
#endif
#ifndef HAVE_CALLGRIND
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(label) ((void)(label))
#endif

#define LONG_LEN 120
static const uint64_t P1 = 0x243f6a8885a308d3ull;

static long n_keys = 10000;
static char (*keys)[LONG_LEN + 1];
static int *fds;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static char printable(uint32_t r) { return (char)('0' + r % 75); } /* '0'..'z' */

static void random_keys(size_t len)
{
    for (long i = 0; i < n_keys; i++) {
        for (size_t j = 0; j < len; j++)
            keys[i][j] = printable(xorshift(&rng));
        keys[i][len] = '\0';
    }
}

/* First 8 bytes: i in base 75 (distinct, printable); last 8: P1 ^ 16, little-endian
 * (c3 08 a3 85 88 6a 3f 24: no NUL). */
static void crafted16_keys(void)
{
    uint64_t tail = P1 ^ 16;
    for (long i = 0; i < n_keys; i++) {
        long v = i;
        for (int j = 0; j < 8; j++, v /= 75)
            keys[i][j] = printable((uint32_t)(v % 75));
        for (int j = 0; j < 8; j++)
            keys[i][8 + j] = (char)(tail >> (8 * j));
        keys[i][16] = '\0';
    }
}

/* A random printable base; key i flips pair p (bit 63 of word p = bit 7 of byte 8p+7,
 * bit 25 of word p+1 = bit 1 of byte 8(p+1)+3) for each bit p set in i. Printable bytes
 * stay non-NUL either way. */
static void crafted120_keys(void)
{
    char base[LONG_LEN];
    for (int j = 0; j < LONG_LEN; j++)
        base[j] = printable(xorshift(&rng));
    CHECK(n_keys <= 1L << 14);
    for (long i = 0; i < n_keys; i++) {
        memcpy(keys[i], base, LONG_LEN);
        for (int p = 0; p < 14; p++)
            if (i >> p & 1) {
                keys[i][8 * p + 7] ^= (char)0x80;
                keys[i][8 * (p + 1) + 3] ^= 0x02;
            }
        keys[i][LONG_LEN] = '\0';
    }
}

static uint64_t fnv1a(const char *k, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)k[i]) * 0x100000001b3ull;
    return h;
}

static void lowbits16_keys(void)
{
    for (long i = 0; i < n_keys; i++) {
        do {
            for (int j = 0; j < 16; j++)
                keys[i][j] = printable(xorshift(&rng));
        } while ((fnv1a(keys[i], 16) & 0xff) != 0);
        keys[i][16] = '\0';
    }
}

static double phase_ms;
static long long phase_t0;

static void phase_begin(void)
{
    phase_t0 = now_ms();
    CALLGRIND_ZERO_STATS;
}

static void phase_end(const char *family, const char *phase)
{
    char label[128];
    snprintf(label, sizeof label, "hashflood family=%s phase=%s ops=%ld", family, phase, n_keys);
    CALLGRIND_DUMP_STATS_AT(label);
    phase_ms = (double)(now_ms() - phase_t0);
    printf("  %-10s %-10s %8.0f ms\n", family, phase, phase_ms);
}

static void udp_sockets(void)
{
    for (long i = 0; i < n_keys; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        CHECK_SYS(fds[i] >= 0);
    }
}

static void run_family(const char *family, int measured)
{
    connpool *pool = connpool_new_default();
    CHECK(pool != NULL);
    udp_sockets();

    if (measured)
        phase_begin();
    for (long i = 0; i < n_keys; i++)
        CHECK_EQ(connpool_release(pool, keys[i], fds[i]), CONNPOOL_POOLED);
    if (measured)
        phase_end(family, "release");
    CHECK_EQ(connpool_idle_count(pool), n_keys);

    if (measured)
        phase_begin();
    for (long i = 0; i < n_keys; i++)
        CHECK_EQ(connpool_acquire(pool, keys[i]), fds[i]);
    if (measured)
        phase_end(family, "acquire");

    if (measured)
        phase_begin();
    for (long i = 0; i < n_keys; i++)
        CHECK_EQ(connpool_release(pool, keys[i], fds[i]), CONNPOOL_POOLED);
    if (measured)
        phase_end(family, "rerelease");

    if (measured)
        phase_begin();
    for (long i = 0; i < n_keys; i++)
        CHECK_EQ(connpool_purge(pool, keys[i]), 1);
    if (measured)
        phase_end(family, "purge_key");
    CHECK_EQ(connpool_idle_count(pool), 0);

    /* prune over live connections: one recv each (it was one per connection per colliding
     * key). */
    long n_live = n_keys / 10 > 0 ? n_keys / 10 : 1;
    for (long i = 0; i < n_live; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        CHECK_SYS(fd >= 0);
        CHECK_EQ(connpool_release(pool, keys[i], fd), CONNPOOL_POOLED);
    }
    long saved = n_keys;
    n_keys = n_live; /* (the ops count in the label) */
    if (measured)
        phase_begin();
    CHECK_EQ(connpool_prune(pool), 0);
    if (measured)
        phase_end(family, "prune_live");
    n_keys = saved;
    CHECK_EQ(connpool_purge(pool, NULL), n_live);

    /* prune over dead connections: one recv each, then a close. */
    for (long i = 0; i < n_keys; i++) {
        int sv[2];
        CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        close(sv[1]);
        CHECK_EQ(connpool_release(pool, keys[i], sv[0]), CONNPOOL_POOLED);
    }
    if (measured)
        phase_begin();
    CHECK_EQ(connpool_prune(pool), n_keys);
    if (measured)
        phase_end(family, "prune_dead");
    CHECK_EQ(connpool_idle_count(pool), 0);
    connpool_free(pool);
}

int main(int argc, char **argv)
{
#ifndef HAVE_CALLGRIND
    if (running_on_valgrind()) {
        printf("hashflood: built without <valgrind/callgrind.h>, nothing to measure: skipped\n");
        return 77;
    }
#endif
    if (argc > 1)
        n_keys = atol(argv[1]);
    CHECK(n_keys > 0 && n_keys <= 1L << 14);
    long limit = raise_nofile();
    if (limit < n_keys + 64) {
        fprintf(stderr, "hashflood: RLIMIT_NOFILE %ld is below %ld keys + 64\n", limit, n_keys);
        return 1;
    }
    keys = calloc((size_t)n_keys, sizeof *keys);
    fds = calloc((size_t)n_keys, sizeof *fds);
    CHECK(keys != NULL && fds != NULL);
    int baseline = count_open_fds();
    printf("hashflood: %ld keys per family%s\n", n_keys,
           running_on_valgrind() ? "" : " (not under valgrind: wall times only)");

    /* Unmeasured: first-touch allocations (the fd table's chunks) out of the way. */
    random_keys(16);
    run_family("warmup", 0);

    random_keys(16);
    run_family("random16", 1);
    crafted16_keys();
    run_family("crafted16", 1);
    random_keys(LONG_LEN);
    run_family("random120", 1);
    crafted120_keys();
    run_family("crafted120", 1);
    lowbits16_keys();
    run_family("lowbits16", 1);

    CHECK_EQ(count_open_fds(), baseline);
    free(keys);
    free(fds);
    return 0;
}
