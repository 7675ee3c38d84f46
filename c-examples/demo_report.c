/* demo_report.c: the demo's tables and verdicts (see demo.h). The verdicts judge counts
 * only, never timings: a loaded machine changes the speeds, not what must hold. */
#include <stdarg.h>
#include <stdio.h>

#include "demo.h"

static const char *dash_or(long long v, int pool)
{
    static char bufs[8][24];
    static int next;
    if (!pool)
        return "-";
    char *p = bufs[next++ % 8];
    snprintf(p, sizeof bufs[0], "%lld", v);
    return p;
}

/* The first row of rows[0..n) with these pool and tls settings (and the TLS check), not a
 * limit run, or NULL. */
static const struct row *find(const struct row *rows, int n, int pool, int tls, int naive)
{
    for (int i = 0; i < n; i++)
        if (rows[i].kind->pool == pool && rows[i].kind->tls == tls && rows[i].kind->naive_check == naive &&
            !rows[i].kind->counted)
            return &rows[i];
    return NULL;
}

static void plain_table(const struct row *rows, int nrows)
{
    printf("\n%-28s %8s %8s %8s %7s %9s %8s %7s %8s %6s %8s\n", "", "req/s", "p50 ms", "p99 ms", "failed",
           "backend", "pool", "misses", "expired", "dead", "retries");
    printf("%-28s %8s %8s %8s %7s %9s %8s\n", "", "", "", "", "", "conns", "hits");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        int pool = r->kind->pool;
        if (r->kind->tls || r->kind->counted)
            continue;
        printf("%-28s %8.0f %8.2f %8.2f %7lld %9lld %8s", r->kind->label, r->rps, (double)r->p50_us / 1000.0,
               (double)r->p99_us / 1000.0, r->errors, r->accepted, dash_or(r->hits, pool));
        printf(" %7s %8s %6s %8s\n", dash_or(r->misses, pool), dash_or(r->expired, pool), dash_or(r->dead, pool),
               dash_or(r->retries, pool));
    }
    const struct row *with = find(rows, nrows, 1, 0, 0), *without = find(rows, nrows, 0, 0, 0);
    if (with && without && without->rps > 0 && with->accepted > 0)
        printf("\nWith the pool: %.1fx the requests/s and %.0fx fewer backend connections than without.\n",
               with->rps / without->rps, (double)without->accepted / (double)with->accepted);
}

static void tls_table(const struct row *rows, int nrows)
{
    printf("\nTLS 1.3 to the backends, which keep idle connections open and send a session ticket after a\n"
           "connection's first response (it reaches the proxy while the connection is idle in the pool):\n");
    printf("\n%-28s %8s %8s %8s %7s %9s %10s %8s %6s %9s\n", "", "req/s", "p50 ms", "p99 ms", "failed", "backend",
           "TLS", "pool", "dead", "tickets");
    printf("%-28s %8s %8s %8s %7s %9s %10s %8s %6s %9s\n", "", "", "", "", "", "conns", "handshakes", "hits", "",
           "in check");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        int pool = r->kind->pool;
        if (!r->kind->tls)
            continue;
        printf("%-28s %8.0f %8.2f %8.2f %7lld %9lld %10lld %8s %6s %9s\n", r->kind->label, r->rps,
               (double)r->p50_us / 1000.0, (double)r->p99_us / 1000.0, r->errors, r->accepted, r->handshakes,
               dash_or(r->hits, pool), dash_or(r->dead, pool), dash_or(r->tickets_in_check, pool));
    }
    const struct row *with = find(rows, nrows, 1, 1, 0), *without = find(rows, nrows, 0, 1, 0);
    const struct row *naive = find(rows, nrows, 1, 1, 1);
    if (with && with->handshakes > 0)
        printf("\nTLS with the pool: %lld handshakes for %lld requests (one per %.0f requests).\n", with->handshakes,
               with->proxy_requests, (double)with->proxy_requests / (double)with->handshakes);
    if (with && without && without->rps > 0)
        printf("Without it: %lld handshakes for %lld requests, and %.1fx fewer requests/s.\n", without->handshakes,
               without->proxy_requests, with->rps / without->rps);
    if (with && naive)
        printf("With the pool's recv-peek check instead of the TLS-aware one: %lld healthy connections closed as\n"
               "dead (a ticket was waiting on them) and %lld handshakes instead of %lld.\n",
               naive->dead, naive->handshakes, with->handshakes);
}

/* The limit runs: one backend counting its connections open at once, through the proxy
 * with max_conns_per_key = limit and without a limit. */
static void limit_table(const struct row *rows, int nrows, long long limit, int connections)
{
    printf("\nOne backend that counts its connections open at once (with the limit it runs with\n"
           "--max-conns %lld: it fails if it ever has more); %d client connections through the proxy:\n",
           limit, connections);
    printf("\n%-28s %8s %8s %8s %7s %9s %9s %9s %6s\n", "", "req/s", "p50 ms", "p99 ms", "failed", "backend",
           "backend", "requests", "503s");
    printf("%-28s %8s %8s %8s %7s %9s %9s %9s\n", "", "", "", "", "", "max open", "conns", "queued");
    const struct row *with = NULL, *without = NULL;
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        int lim = r->kind->limit;
        if (!r->kind->counted)
            continue;
        if (lim && with == NULL)
            with = r;
        if (!lim && without == NULL)
            without = r;
        char label[40];
        if (lim)
            snprintf(label, sizeof label, "pool, limit %lld", limit);
        else
            snprintf(label, sizeof label, "%s", r->kind->label);
        printf("%-28s %8.0f %8.2f %8.2f %7lld %9lld %9lld %9s %6s\n", label, r->rps, (double)r->p50_us / 1000.0,
               (double)r->p99_us / 1000.0, r->errors, r->open_max, r->accepted, dash_or(r->queued, lim),
               dash_or(r->unavailable, lim));
    }
    if (with)
        printf("\nWith max_conns_per_key = %lld the backend never had more than %lld connections open; %lld\n"
               "requests waited in the proxy for one of them (first come, first served), %lld in vain (503).\n",
               limit, with->open_max, with->queued, with->unavailable);
    if (without && without->open_max > limit)
        printf("Without the limit it had up to %lld open at once: %.1fx the limit.\n", without->open_max,
               (double)without->open_max / (double)limit);
    else if (without)
        printf("Without the limit it had at most %lld open at once, not more than %lld: this load did not\n"
               "need more connections, so the run shows nothing (more --connections would).\n",
               without->open_max, limit);
}

void report_tables(const struct row *rows, int nrows, long long limit, int connections)
{
    int plain = 0, tls = 0, counted = 0;
    for (int i = 0; i < nrows; i++)
        rows[i].kind->counted ? counted++ : rows[i].kind->tls ? tls++ : plain++;
    if (plain)
        plain_table(rows, nrows);
    if (tls)
        tls_table(rows, nrows);
    if (counted)
        limit_table(rows, nrows, limit, connections);
    for (int i = 0; i < nrows; i++)
        if (rows[i].memcheck[0])
            printf("%s: proxy %s\n", rows[i].kind->label, rows[i].memcheck);
}

static int fail(const struct row *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const struct row *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: %s: ", r->kind->label);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return 1;
}

int report_verdicts(const struct row *rows, int nrows, const struct checks *chk)
{
    int status = 0;
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        const struct kind *k = r->kind;
        if (r->errors != 0)
            status |= fail(r, "%lld failed requests", r->errors);
        if (k->pool && !k->naive_check && chk->max_accepted >= 0 && r->accepted_max > chk->max_accepted)
            status |= fail(r, "a backend accepted %lld connections (limit %lld)", r->accepted_max, chk->max_accepted);
        /* Judged on what the backends really dropped: a slow run (valgrind, a loaded
         * machine) may not reach --drop-every requests on a used connection at all. */
        if (k->pool && chk->drop_every > 0 && r->dropped > 0 && r->retries <= 0)
            status |= fail(r, "backends dropped requests, but the proxy retried none");
        /* Reuse is judged where a run made enough requests to reuse connections. */
        int slow = r->proxy_requests <= chk->few;
        if (slow && k->pool)
            printf("note: %s: %lld requests, too few to judge reuse (a slow run)\n", k->label,
                   r->proxy_requests);
        /* (The recv-peek check may close every connection a ticket reached: no hits.) */
        if (k->pool && !k->naive_check && chk->hits && r->hits <= 0 && !slow)
            status |= fail(r, "no pool hits");
        if (k->tls && k->pool && !k->naive_check) {
            if (r->handshakes > r->accepted)
                status |= fail(r, "%lld TLS handshakes, more than the %lld backend connections", r->handshakes,
                               r->accepted);
            if (chk->keeps_connections && r->handshakes * 10 >= r->proxy_requests)
                status |= fail(r, "%lld TLS handshakes for %lld requests: not under a tenth", r->handshakes,
                               r->proxy_requests);
            /* The backends close no idle connection in the TLS runs: any "dead" one was healthy. */
            if (r->dead != 0)
                status |= fail(r, "%lld healthy connections closed as dead", r->dead);
            if (r->tickets_in_check <= 0 && !slow)
                status |= fail(r, "no session ticket reached the check: the run shows nothing");
        }
        if (k->tls && k->naive_check && r->dead <= 0 && !slow)
            status |= fail(r, "the recv-peek check closed no connection: no ticket reached an idle one");
        if (k->counted && r->open_max < 0)
            status |= fail(r, "the backend reported no count of its open connections");
        if (k->limit && (r->over_limit || r->open_max > chk->limit))
            status |= fail(r, "the backend had %lld connections open at once (limit %lld)", r->open_max, chk->limit);
        /* Every connection the pool lent and every connect slot came back (released or
         * discarded), and no thread was left waiting: the pool's per-key figures at exit. */
        if (k->limit && r->held != 0)
            status |= fail(r, "%lld connections, slots or waiters left in the pool at exit (want 0)", r->held);
        if (k->tls && !k->pool && r->handshakes != r->proxy_requests)
            status |= fail(r, "%lld TLS handshakes for %lld requests: want one per request", r->handshakes,
                           r->proxy_requests);
    }
    return status;
}
