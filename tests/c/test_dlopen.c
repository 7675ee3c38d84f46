/* The shared library at CONNPOOL_LIB_PATH exports every function the header declares,
 * and works when reached only through dlopen/dlsym. */
#define _GNU_SOURCE
#include "harness.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include "connpool.h"

#ifndef CONNPOOL_LIB_PATH
#error "CONNPOOL_LIB_PATH must be defined (full path of libconnpool.so.0)"
#endif
#ifndef CONNPOOL_HEADER_PATH
#error "CONNPOOL_HEADER_PATH must be defined (path of include/connpool.h)"
#endif

#define MAX_FUNCS 128

static const char *const REQUIRED[] = {
    "connpool_new",     "connpool_new_default", "connpool_free",         "connpool_acquire",
    "connpool_release", "connpool_idle_count",  "connpool_idle_count_key", "connpool_purge",
    "connpool_prune",   "connpool_version",
};

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    struct stat st;
    CHECK_SYS(fstat(fileno(f), &st) == 0);
    char *buf = malloc((size_t)st.st_size + 1);
    CHECK(buf != NULL);
    CHECK_EQ(fread(buf, 1, (size_t)st.st_size, f), st.st_size);
    buf[st.st_size] = '\0';
    fclose(f);
    return buf;
}

/* Blank out comments, string literals and preprocessor lines (with continuations), so
 * only declarations remain. Newlines are kept. */
static void strip(char *s)
{
    int line_start = 1;
    for (char *p = s; *p;) {
        if (p[0] == '/' && p[1] == '*') {
            char *end = strstr(p + 2, "*/");
            char *stop = end ? end + 2 : p + strlen(p);
            for (; p < stop; p++)
                if (*p != '\n')
                    *p = ' ';
        } else if (p[0] == '/' && p[1] == '/') {
            while (*p && *p != '\n')
                *p++ = ' ';
        } else if (line_start && *p == '#') {
            while (*p && !(*p == '\n' && p[-1] != '\\')) {
                if (*p != '\n')
                    *p = ' ';
                p++;
            }
        } else if (*p == '"') {
            *p++ = ' ';
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    *p++ = ' ';
                *p++ = ' ';
            }
            if (*p)
                *p++ = ' ';
        } else {
            if (*p == '\n')
                line_start = 1;
            else if (*p != ' ' && *p != '\t')
                line_start = 0;
            p++;
        }
    }
}

static int is_ident(char c) { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

/* Every identifier connpool_[a-z0-9_]+ directly followed (after blanks) by '('. */
static int find_functions(const char *s, char names[][64])
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, "connpool_")) != NULL;) {
        if (p > s && is_ident(p[-1])) {
            p++;
            continue;
        }
        const char *q = p + strlen("connpool_");
        while ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_')
            q++;
        const char *r = q;
        while (*r == ' ' || *r == '\t' || *r == '\n' || *r == '\r')
            r++;
        size_t len = (size_t)(q - p);
        if (*r == '(' && !is_ident(*q) && len > strlen("connpool_") && len < 64) {
            int dup = 0;
            for (int i = 0; i < n; i++)
                dup |= strlen(names[i]) == len && strncmp(names[i], p, len) == 0;
            if (!dup) {
                CHECK(n < MAX_FUNCS);
                memcpy(names[n], p, len);
                names[n][len] = '\0';
                n++;
            }
        }
        p = q;
    }
    return n;
}

/* The header's declarations must match the documented signatures. */
typedef const char *(*version_fn)(void);
typedef connpool *(*new_default_fn)(void);
typedef connpool *(*new_fn)(size_t, uint64_t);
typedef void (*free_fn)(connpool *);
typedef int (*acquire_fn)(connpool *, const char *);
typedef int (*release_fn)(connpool *, const char *, int);
typedef size_t (*idle_count_fn)(const connpool *);
_Static_assert(__builtin_types_compatible_p(version_fn, __typeof__(&connpool_version)), "version");
_Static_assert(__builtin_types_compatible_p(new_default_fn, __typeof__(&connpool_new_default)), "new_default");
_Static_assert(__builtin_types_compatible_p(new_fn, __typeof__(&connpool_new)), "new");
_Static_assert(__builtin_types_compatible_p(free_fn, __typeof__(&connpool_free)), "free");
_Static_assert(__builtin_types_compatible_p(acquire_fn, __typeof__(&connpool_acquire)), "acquire");
_Static_assert(__builtin_types_compatible_p(release_fn, __typeof__(&connpool_release)), "release");
_Static_assert(__builtin_types_compatible_p(idle_count_fn, __typeof__(&connpool_idle_count)), "idle_count");

int main(void)
{
    int baseline = count_open_fds();

    void *lib = dlopen(CONNPOOL_LIB_PATH, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen(%s): %s\n", CONNPOOL_LIB_PATH, dlerror());
        return 1;
    }

    char *header = read_file(CONNPOOL_HEADER_PATH);
    strip(header);
    static char names[MAX_FUNCS][64];
    int n = find_functions(header, names);
    free(header);

    size_t nreq = sizeof REQUIRED / sizeof REQUIRED[0];
    for (size_t i = 0; i < nreq; i++) {
        int found = 0;
        for (int j = 0; j < n; j++)
            found |= strcmp(names[j], REQUIRED[i]) == 0;
        if (!found)
            fprintf(stderr, "header does not declare %s\n", REQUIRED[i]);
        CHECK(found);
    }
    CHECK(n >= (int)nreq);

    /* Everything the header declares must resolve in the library. */
    int missing = 0;
    for (int j = 0; j < n; j++) {
        dlerror();
        if (dlsym(lib, names[j]) == NULL) {
            fprintf(stderr, "dlsym(%s): %s\n", names[j], dlerror());
            missing++;
        }
    }
    CHECK_EQ(missing, 0);

    /* Call through the resolved pointers only. */
    version_fn version = (version_fn)dlsym(lib, "connpool_version");
    new_default_fn new_default = (new_default_fn)dlsym(lib, "connpool_new_default");
    acquire_fn acquire = (acquire_fn)dlsym(lib, "connpool_acquire");
    release_fn release = (release_fn)dlsym(lib, "connpool_release");
    idle_count_fn idle_count = (idle_count_fn)dlsym(lib, "connpool_idle_count");
    free_fn pool_free = (free_fn)dlsym(lib, "connpool_free");
    CHECK(version && new_default && acquire && release && idle_count && pool_free);

    CHECK(strcmp(version(), "0.1.0") == 0);
    connpool *p = new_default();
    CHECK(p != NULL);
    CHECK_EQ(acquire(p, "127.0.0.1:80"), -ENOENT);
    int sv[2];
    CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK_EQ(release(p, "127.0.0.1:80", sv[0]), CONNPOOL_POOLED);
    CHECK_EQ(idle_count(p), 1);
    CHECK_EQ(acquire(p, "127.0.0.1:80"), sv[0]);
    CHECK_EQ(release(p, "127.0.0.1:80", sv[0]), CONNPOOL_POOLED);
    pool_free(p);
    CHECK_CLOSED(sv[0]);
    close(sv[1]);

    CHECK_EQ(dlclose(lib), 0);
    CHECK_EQ(count_open_fds(), baseline);
    printf("test_dlopen: ok (%d functions declared and exported)\n", n);
    return 0;
}
