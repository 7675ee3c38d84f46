// The C++ wrapper (include/connpool.hpp) on real loopback connections: the state travels
// with a Lease, key handles, a broken Lease is discarded (on_close gets its state), an
// exception unwinding discards, an empty Lease gives back its connect slot, acquire_wait
// at the limit times out with at_limit().
#include <connpool.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                                \
        }                                                                                \
    } while (0)

static int g_discarded;
static void *g_last_ctx;

static void on_close(void *, int, void *ctx, int reason)
{
    if (reason == CONNPOOL_CLOSE_DISCARDED)
        g_discarded++;
    g_last_ctx = ctx;
}

struct Net {
    int listener;
    Net()
    {
        listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(bind(listener, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0);
        CHECK(listen(listener, 16) == 0);
    }
    ~Net() { close(listener); }
    // A connected client socket; its accepted peer in *peer.
    int connect_one(int *peer) const
    {
        sockaddr_in a{};
        socklen_t len = sizeof a;
        CHECK(getsockname(listener, reinterpret_cast<sockaddr *>(&a), &len) == 0);
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(connect(c, reinterpret_cast<sockaddr *>(&a), len) == 0);
        *peer = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        CHECK(*peer >= 0);
        return c;
    }
};

int main()
{
    Net net;
    auto cfg = libconnpool::Pool::default_config();
    cfg.max_conns_per_key = 1;
    cfg.on_close = on_close;
    libconnpool::Pool pool(cfg);
    libconnpool::Key k = pool.key("10.0.0.1:80");
    CHECK(k && pool.key("10.0.0.1:80").get() == k.get());
    int state = 7, peer = -1, peer2 = -1;
    int fd;
    {
        libconnpool::Lease l = pool.acquire(k);
        CHECK(!l && !l.at_limit()); // none idle: the connect slot is ours
        CHECK(pool.stats("10.0.0.1:80").connecting == 1);
        fd = net.connect_one(&peer);
        l.adopt(fd, &state);
        CHECK(pool.stats("10.0.0.1:80").connecting == 1); // the adopted fd holds the slot
        CHECK(pool.acquire(k).at_limit());
        CHECK(l.release() == CONNPOOL_POOLED);
        CHECK(pool.stats("10.0.0.1:80").connecting == 0);
    }
    {
        libconnpool::Lease l = pool.acquire(k);
        CHECK(l && l.fd() == fd && l.ctx<int>() == &state && l.reused());
        libconnpool::Lease none = pool.acquire_wait(k, std::chrono::milliseconds(10));
        CHECK(!none && none.at_limit()); // the only slot is taken: timed out
        l.mark_broken();
    } // discarded: on_close got its state
    CHECK(g_discarded == 1 && g_last_ctx == &state);
    CHECK(pool.stats().lent == 0);
    {
        libconnpool::Lease l = pool.acquire("10.0.0.1:80"); // by string: a slot again
        CHECK(!l && !l.at_limit());
    } // let go empty: the slot comes back
    CHECK(pool.stats("10.0.0.1:80").connecting == 0);
    try {
        libconnpool::Lease l = pool.acquire(k);
        l.adopt(net.connect_one(&peer2), &state);
        throw std::runtime_error("half-read response");
    } catch (const std::runtime_error &) {
    }
    CHECK(g_discarded == 2); // unwinding discarded it
    CHECK(pool.stats().discarded == 2);
    close(peer);
    close(peer2);
    std::printf("wrapper_cxx: ok\n");
    return 0;
}
