/* demo.h: what the demo driver's two files share.
 *
 *   demo.c         options; starting, driving and stopping the programs; one run per row
 *   demo_report.c  the tables and the verdicts
 */
#ifndef DEMO_DEMO_H
#define DEMO_DEMO_H

/* One kind of run (a row of a table). */
struct kind {
    const char *name, *label;
    int pool;              /* proxy with the pool */
    int keep_alive_header; /* backends announce their idle timeout */
    int tls;               /* TLS 1.3 between proxy and backends (see demo.c) */
    int naive_check;       /* TLS: the pool's default recv-peek check, not the TLS-aware one */
    int counted;           /* one backend, counting its connections open at once: the limit
                              runs (own table) */
    int limit;             /* the proxy with --max-conns-per-backend, the backend with
                              --max-conns (both the demo's --limit) */
    int harvest;           /* the proxy's pool checks by harvest (--harvest) */
};

/* What one run measured. */
struct row {
    const struct kind *kind;
    long long requests, errors, p50_us, p99_us; /* loadgen's */
    long long accepted, accepted_max, dropped;  /* the backends': sum, largest, dropped */
    long long hits, misses, expired, dead;      /* the pool's */
    long long proxy_requests, retries, handshakes, tickets_in_check; /* the proxy's */
    long long open_max;   /* counted runs: the most connections a backend had open at once */
    int over_limit;       /* a backend exited 3: it saw more than --max-conns */
    long long queued, unavailable, held; /* the proxy's with a limit; held: lent + connecting
                                            + waiting left at exit (must be 0) */
    double rps;
    char memcheck[160]; /* the proxy wrapper's verdict line, if any */
};

/* What the verdicts judge, besides failed requests (always). */
struct checks {
    long long max_accepted; /* a backend's connections in a pool run; -1: not judged */
    int hits;               /* every pool run had pool hits */
    int drop_every;         /* backends dropped requests: pool runs must have retried */
    int keeps_connections;  /* every response keeps its connection (framing length or
                               chunked, no max): TLS handshakes must be < requests / 10 */
    long long limit;        /* the limit runs' connections per backend */
    long long few;          /* a run of at most this many requests (a few per client
                               connection: a slow run, under valgrind on a loaded machine)
                               may have reused no connection: reuse is not judged there */
};

/* Print the table of the plain runs, of the TLS runs, then of the limit runs. */
void report_tables(const struct row *rows, int nrows, long long limit, int connections);

/* Print a FAIL line per failed check; 1 if any failed, else 0. */
int report_verdicts(const struct row *rows, int nrows, const struct checks *chk);

#endif /* DEMO_DEMO_H */
