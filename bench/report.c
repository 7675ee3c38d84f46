/* The idle watcher's cost and the speed targets, judged from this run's figures. */
#include <string.h>

#include "bench.h"

void print_watch_cost(const struct scenario *scs)
{
    int off = find_contender(FAM_LIB, 0, 0, 0), on = find_contender(FAM_LIB, 0, 1, 1);
    int woff = find_contender(FAM_LIB, 0, 0, LIB_WATCH);
    int won = find_contender(FAM_LIB, 0, 1, 1 | LIB_WATCH);
    if (woff < 0 || won < 0 || (cs[woff].skip && cs[won].skip))
        return;
    printf("\n== idle watcher (CONNPOOL_WATCH): libconnpool with and without it, ns per pair"
           " ==\n");
    printf("%-46s %-10s %8s %8s %9s %9s\n", "scenario", "check", "without", "with", "added",
           "ratio");
    const int base[2] = {off, on}, with[2] = {woff, won};
    for (int sid = 0; sid < NSCEN; sid++) {
        if (sid == SC_BIG)
            continue;
        for (int k = 0; k < 2; k++) {
            const struct result *b = &results[sid][base[k]], *w = &results[sid][with[k]];
            if (!b->valid || !w->valid)
                continue;
            printf("%-46s %-10s %8.1f %8.1f %9.1f %8.2fx\n", scs[sid].title,
                   k ? "recv peek" : "off", b->median, w->median, w->vs_lib_diff, w->vs_lib);
        }
    }
    printf("('added', 'ratio': medians of the per-round difference and ratio, same round)\n");
    fflush(stdout);
}

static void target(const char *what, int have, double value, const char *unit, int met)
{
    if (!have)
        printf("  %-74s %12s  %s\n", what, "-", "n/a (not measured in this run)");
    else
        printf("  %-74s %9.2f %-2s  %s\n", what, value, unit, met ? "MET" : "MISSED");
}

/* A per-round ratio target: a / b against limit (le: at most; else at least). */
static void ratio_target(const char *what, int sid, int a, int b, double limit, int le)
{
    double r = round_ratio(sid, a, b);
    target(what, r > 0, r, "x", le ? r <= limit : r >= limit);
}

/* The targets about speed and memory for one build of the library (its string and handle
 * rows), named who in the lines. */
static void build_targets(const char *who, int lib, int libk)
{
    int sf = find_contender(FAM_SFLOOR, 0, 0, 0), hf = find_contender(FAM_HFLOOR, 1, 0, 0);
    int rws = find_contender(FAM_RWS, 0, 0, 0);
    char what[160];
    snprintf(what, sizeof what, "string keys, check off: %s / C string floor <= 1.5x (1 key)",
             who);
    ratio_target(what, SC_ONE, lib, sf, 1.5, 1);
    snprintf(what, sizeof what,
             "key handles, check off: %s / C handle+clock floor <= 1.2x (1 key)", who);
    ratio_target(what, SC_ONE, libk, hf, 1.2, 1);
    snprintf(what, sizeof what, "rust-web-server ConnPool / %s, string keys >= 3x (1 key)",
             who);
    ratio_target(what, SC_ONE, rws, lib, 3.0, 0);
    snprintf(what, sizeof what, "rust-web-server ConnPool / %s by key handle >= 4x (1 key)",
             who);
    ratio_target(what, SC_ONE, rws, libk, 4.0, 0);
    snprintf(what, sizeof what, "%d keys: %s / C string floor <= 1.3x", opt.big_keys, who);
    ratio_target(what, SC_BIG, lib, sf, 1.3, 1);
    const struct memory *m = lib >= 0 ? &memory[lib] : NULL;
    snprintf(what, sizeof what, "%s: memory per key, one idle connection (%d keys) <= 200 B",
             who, opt.big_keys);
    target(what, m && m->valid, m ? m->filled : 0, "B", m && m->filled <= 200);
    snprintf(what, sizeof what, "%s: memory after purge near zero (<= 10%% of filled)", who);
    target(what, m && m->valid, m ? m->emptied : 0, "B", m && m->emptied <= 0.1 * m->filled);
    /* The same ratios at the other key counts, where measured. */
    const struct {
        int sid, a, b, nkeys;
        const char *what;
    } also[] = {{SC_MANY, lib, sf, opt.keys, "string keys"},
                {SC_MANY, libk, hf, opt.keys, "key handles"},
                {SC_BIG, libk, hf, opt.big_keys, "key handles"}};
    for (size_t i = 0; i < sizeof also / sizeof also[0]; i++) {
        double x = round_ratio(also[i].sid, also[i].a, also[i].b);
        if (x > 0)
            printf("  (not a target: %s, %d keys: %s / its C floor %.2fx)\n", also[i].what,
                   also[i].nkeys, who, x);
    }
}

void print_targets(void)
{
    int lib = find_contender(FAM_LIB, 0, 0, 0), libk = find_contender(FAM_LIB, 1, 0, 0);
    int woff = find_contender(FAM_LIB, 0, 0, LIB_WATCH);
    int skip = find_contender(FAM_LIB, 0, 1, 1 | LIB_SKIP_RECENT);
    printf("\n== targets, from the figures above; ratios are medians of per-round"
           " ratios ==\n");
    build_targets("libconnpool", lib, libk);
    ratio_target("idle watcher (CONNPOOL_WATCH) <= 1.5x check off (1 key)", SC_ONE, woff, lib,
                 1.5, 1);
    int harvest = find_contender(FAM_LIB, 0, 1, 1 | LIB_HARVEST);
    ratio_target("liveness policy (CONNPOOL_CHECK_HARVEST, 1 ms window) <= 1.5x check off",
                 SC_ONE, harvest, lib, 1.5, 1);
    double r = round_ratio(SC_ONE, skip, lib);
    if (r > 0)
        printf("    (for comparison, 'skip recent', a 100 ms window: %.2fx check off)\n", r);
    printf("  %-74s %12s  %s\n", "2 threads on different keys: no shared cache line written",
           "-", "not timed here: bench/sharing.sh shows it");
    int alt = find_contender(FAM_ALT, 0, 0, 0), altk = find_contender(FAM_ALT, 1, 0, 0);
    if (alt >= 0 && !cs[alt].skip) {
        printf("the same for the ALT build (CONNPOOL_BENCH_ALT_LIB):\n");
        build_targets("ALT", alt, altk);
    }
}
