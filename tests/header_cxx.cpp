// include/connpool.h must compile as C++17 with -Wall -Wextra -Wpedantic -Werror and
// declare its functions extern "C" (this program links and runs against the library).
#include <connpool.h>
#include <connpool.h> // include guard

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <type_traits>

// Every function keeps its C signature.
static_assert(std::is_same_v<decltype(&connpool_new), connpool *(*)(size_t, uint64_t)>);
static_assert(std::is_same_v<decltype(&connpool_new_default), connpool *(*)()>);
static_assert(std::is_same_v<decltype(&connpool_free), void (*)(connpool *)>);
static_assert(std::is_same_v<decltype(&connpool_acquire), int (*)(connpool *, const char *)>);
static_assert(std::is_same_v<decltype(&connpool_release), int (*)(connpool *, const char *, int)>);
static_assert(std::is_same_v<decltype(&connpool_version), const char *(*)()>);
static_assert(std::is_same_v<decltype(&connpool_idle_count), size_t (*)(const connpool *)>);
static_assert(
    std::is_same_v<decltype(&connpool_idle_count_key), size_t (*)(const connpool *, const char *)>);
static_assert(std::is_same_v<decltype(&connpool_purge), size_t (*)(connpool *, const char *)>);
static_assert(std::is_same_v<decltype(&connpool_prune), size_t (*)(connpool *)>);
static_assert(std::is_same_v<decltype(&connpool_config_init), void (*)(connpool_config *)>);
static_assert(
    std::is_same_v<decltype(&connpool_config_init_sized), int (*)(connpool_config *, size_t)>);
static_assert(std::is_same_v<decltype(&connpool_release_ctx),
                             int (*)(connpool *, const char *, int, void *, uint64_t)>);
static_assert(
    std::is_same_v<decltype(&connpool_acquire_ctx), int (*)(connpool *, const char *, void **)>);
static_assert(
    std::is_same_v<decltype(&connpool_key_get), connpool_key *(*)(connpool *, const char *)>);
static_assert(std::is_same_v<decltype(&connpool_key_acquire),
                             int (*)(connpool_key *, void **, connpool_conn_info *)>);
static_assert(std::is_same_v<decltype(&connpool_key_release),
                             int (*)(connpool_key *, int, void *, uint64_t)>);
static_assert(std::is_same_v<decltype(connpool_config::on_close), void (*)(void *, int, void *, int)>);
static_assert(std::is_same_v<decltype(connpool_config::check), int (*)(void *, int, void *)>);
static_assert(std::is_same_v<decltype(connpool_conn_info::ctx), void *>);
static_assert(CONNPOOL_NO_HINT == UINT64_MAX);
static_assert(CONNPOOL_POOLED != CONNPOOL_CLOSED);

int main()
{
    connpool *pool = connpool_new(4, 1000);
    if (pool == nullptr)
        return 1;
    if (connpool_acquire(pool, "localhost:80") != -ENOENT)
        return 2;
    connpool_free(pool);
    if (std::strcmp(connpool_version(), CONNPOOL_VERSION) != 0)
        return 3;
    std::printf("header_cxx: ok (%s)\n", connpool_version());
    return 0;
}
