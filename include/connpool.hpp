// connpool.hpp: a header-only C++17 RAII wrapper for libconnpool (connpool.h).
//
//   libconnpool::Pool pool(cfg);                          // owns a connpool* (move-only)
//   libconnpool::Key backend = pool.key("10.0.0.7:443");  // a key resolved once
//   libconnpool::Lease conn = pool.acquire(backend);      // an idle connection, or empty
//   if (!conn && !conn.at_limit()) {
//       int fd = connect_to(backend);                     // -1 if it failed
//       if (fd >= 0)
//           conn.adopt(fd, new_ssl(fd));                  // a new one, with its state
//   }                                                     // (an empty Lease gives back the
//   SSL *ssl = conn.ctx<SSL>();                           //  connect slot it holds)
//   if (!exchange(conn.fd(), ssl))
//       conn.mark_broken();                               // ended, never pooled
//   else if (keep_alive)
//       conn.release_hint(server_timeout_ms);             // back to the pool now
//   // ~Lease: back to the pool with its state, unless marked broken (then discarded)
//
// Ownership follows connpool.h: a Lease owns its fd and its state (ctx) until it is
// released (the pool's from then on, whatever the result) or discarded (the pool's
// on_close callback gets the state, reason CONNPOOL_CLOSE_DISCARDED, and the pool closes
// the fd). A Lease destroyed by a propagating exception discards its connection: the
// exchange on it was interrupted, so a response may be half read. With max_conns_per_key,
// an empty Lease from an acquire that found no connection holds the connect slot reserved
// for the caller: adopt() a new connection into it, or let it go (the slot is given back).
// The Pool must outlive its Leases and Keys.
#ifndef CONNPOOL_HPP
#define CONNPOOL_HPP

#include <connpool.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <system_error>
#include <utility>

namespace libconnpool {

class Pool;

// A key resolved once (connpool_key_get): valid as long as its Pool. Cheap to copy.
class Key {
  public:
    Key() noexcept = default;
    explicit operator bool() const noexcept { return key_ != nullptr; }
    connpool_key *get() const noexcept { return key_; }

  private:
    friend class Pool;
    explicit Key(connpool_key *key) noexcept : key_(key) {}
    connpool_key *key_ = nullptr;
};

// One connection taken from the pool (or adopted), with its state: returned to the pool on
// destruction unless marked broken, in which case it is discarded. Move-only.
class Lease {
  public:
    Lease() noexcept = default;
    ~Lease() { finish(); }

    Lease(Lease &&other) noexcept { take(other); }
    Lease &operator=(Lease &&other) noexcept
    {
        if (this != &other) {
            finish();
            take(other);
        }
        return *this;
    }
    Lease(const Lease &) = delete;
    Lease &operator=(const Lease &) = delete;

    // Holds a connection (false: the pool had none for the key).
    explicit operator bool() const noexcept { return fd_ >= 0; }
    int fd() const noexcept { return fd_; }
    // The key as a string ("" for a Lease made from a Key).
    const std::string &key() const noexcept { return key_; }

    // No connection, and the key is at its connection limit (-EAGAIN), or the wait for one
    // timed out or was cancelled: nothing is reserved, do not connect.
    bool at_limit() const noexcept { return at_limit_; }

    // The caller's state for the connection (an SSL*, a session), as released with it.
    void *ctx() const noexcept { return ctx_; }
    template <class T> T *ctx() const noexcept { return static_cast<T *>(ctx_); }
    // Replaces the state that will travel with the connection when it is released.
    void set_ctx(void *ctx) noexcept { ctx_ = ctx; }

    // Came from the pool rather than adopt(): the server may have closed it since the
    // pool checked it. An idempotent request that fails on it before any response byte
    // should be retried once on a new connection.
    bool reused() const noexcept { return reused_; }
    // For a reused connection: how long it was idle, its age, the requests it served.
    const connpool_conn_info &info() const noexcept { return info_; }

    // An empty Lease (not at_limit()) takes a connection the caller opened (fd >= 0) and
    // its state: from now on it is returned or discarded like a pooled one, in the connect
    // slot the acquire reserved, if any.
    void adopt(int fd, void *ctx = nullptr) noexcept
    {
        if (fd_ >= 0)
            finish(); // a connection held before goes back; a reserved slot is kept for fd
        fd_ = fd;
        ctx_ = ctx;
        slot_ = false;
        reused_ = false;
    }

    // The connection must not be reused (I/O error, incomplete response, the server
    // said "Connection: close"): it is discarded instead of returned.
    void mark_broken() noexcept { broken_ = true; }
    bool broken() const noexcept { return broken_; }

    // Return the connection and its state now; the server announced it closes idle
    // connections after keepalive_timeout_ms (pass a little less; CONNPOOL_NO_HINT: no
    // hint). Returns what connpool_release_ctx() returns (CONNPOOL_POOLED,
    // CONNPOOL_CLOSED, ...); discards instead if marked broken.
    int release_hint(uint64_t keepalive_timeout_ms) noexcept
    {
        if (fd_ < 0)
            return -EBADF;
        if (broken_)
            return discard(), CONNPOOL_CLOSED;
        int fd = std::exchange(fd_, -1);
        void *ctx = std::exchange(ctx_, nullptr);
        if (handle_ != nullptr)
            return connpool_key_release(handle_, fd, ctx, keepalive_timeout_ms);
        return connpool_release_ctx(pool_, key_.c_str(), fd, ctx, keepalive_timeout_ms);
    }

    // Return the connection and its state now, without a keep-alive hint.
    int release() noexcept { return release_hint(CONNPOOL_NO_HINT); }

    // End the connection now (connpool_discard): the pool's on_close gets its state, the
    // pool closes the fd and frees its slot. For an empty Lease: gives back its connect
    // slot, if any.
    void discard() noexcept
    {
        int fd = std::exchange(fd_, -1);
        void *ctx = std::exchange(ctx_, nullptr);
        if (fd < 0 && !std::exchange(slot_, false))
            return;
        if (handle_ != nullptr)
            connpool_key_discard(handle_, fd, ctx);
        else if (pool_ != nullptr)
            connpool_discard(pool_, key_.c_str(), fd, ctx);
    }

    // The same as discard() (the name of 0.1, when it closed the fd itself).
    void close() noexcept { discard(); }

    // Take the connection out of the lease: the caller owns the fd and its state. (With
    // max_conns_per_key, its slot stays taken until it is released or discarded.)
    int detach() noexcept
    {
        ctx_ = nullptr;
        return std::exchange(fd_, -1);
    }

  private:
    friend class Pool;
    Lease(connpool *pool, connpool_key *handle, std::string key, int fd, void *ctx, bool reused,
          const connpool_conn_info &info)
        : pool_(pool), handle_(handle), key_(std::move(key)), fd_(fd), ctx_(ctx),
          reused_(reused), info_(info), exceptions_(std::uncaught_exceptions())
    {
    }

    // An empty Lease for an acquire that found none: rc -ENOENT (a slot may be reserved)
    // or one of the refusals.
    static Lease none(connpool *pool, connpool_key *handle, std::string key, int rc)
    {
        connpool_conn_info info{};
        Lease l(pool, handle, std::move(key), -1, nullptr, false, info);
        l.slot_ = rc == -ENOENT;
        l.at_limit_ = rc != -ENOENT;
        return l;
    }

    void take(Lease &other) noexcept
    {
        pool_ = other.pool_;
        handle_ = other.handle_;
        key_ = std::move(other.key_);
        fd_ = std::exchange(other.fd_, -1);
        ctx_ = std::exchange(other.ctx_, nullptr);
        slot_ = std::exchange(other.slot_, false);
        at_limit_ = other.at_limit_;
        reused_ = other.reused_;
        broken_ = other.broken_;
        info_ = other.info_;
        exceptions_ = other.exceptions_;
    }

    void finish() noexcept
    {
        // More exceptions in flight than when the lease was made: we are being destroyed
        // by stack unwinding, in the middle of an exchange.
        if (fd_ >= 0 && !broken_ && std::uncaught_exceptions() <= exceptions_)
            release();
        else
            discard();
    }

    connpool *pool_ = nullptr;
    connpool_key *handle_ = nullptr;
    std::string key_;
    int fd_ = -1;
    void *ctx_ = nullptr;
    bool slot_ = false;
    bool at_limit_ = false;
    bool reused_ = false;
    bool broken_ = false;
    connpool_conn_info info_{};
    int exceptions_ = 0;
};

// Owns a connpool*; frees it (closing every idle fd, and calling on_close for each) on
// destruction. Move-only; every member may be called from several threads at once, as
// the C functions may.
class Pool {
  public:
    // The library's defaults (connpool_config_init()): adjust a copy and pass it in.
    static connpool_config default_config() noexcept
    {
        connpool_config cfg;
        connpool_config_init(&cfg);
        return cfg;
    }

    Pool() : Pool(default_config()) {}
    // Throws std::system_error(EINVAL) for an invalid configuration.
    explicit Pool(const connpool_config &cfg) : pool_(connpool_new_with_config(&cfg))
    {
        if (pool_ == nullptr)
            throw std::system_error(errno, std::generic_category(), "connpool_new_with_config");
    }
    ~Pool() { connpool_free(pool_); }

    Pool(Pool &&other) noexcept : pool_(std::exchange(other.pool_, nullptr)) {}
    Pool &operator=(Pool &&other) noexcept
    {
        if (this != &other) {
            connpool_free(pool_);
            pool_ = std::exchange(other.pool_, nullptr);
        }
        return *this;
    }
    Pool(const Pool &) = delete;
    Pool &operator=(const Pool &) = delete;

    connpool *get() const noexcept { return pool_; }

    // The handle of key (the same for the same bytes), valid as long as this Pool.
    // Throws std::system_error(EINVAL) for an invalid key.
    Key key(const std::string &key) const
    {
        connpool_key *k = connpool_key_get(pool_, key.c_str());
        if (k == nullptr)
            throw std::system_error(errno, std::generic_category(), "connpool_key_get");
        return Key(k);
    }

    // An idle connection for key (checked alive, most recently used first) with its
    // state, or an empty Lease (at_limit() tells whether to connect). Throws
    // std::system_error(EINVAL) for an invalid key.
    Lease acquire(std::string key)
    {
        connpool_conn_info info = new_info();
        int fd = connpool_acquire_info(pool_, key.c_str(), &info);
        return leased(fd, nullptr, std::move(key), info.ctx, info, "connpool_acquire_info");
    }

    // The same by handle.
    Lease acquire(const Key &key)
    {
        connpool_conn_info info = new_info();
        void *ctx = nullptr;
        int fd = connpool_key_acquire(key.get(), &ctx, &info);
        return leased(fd, key.get(), std::string(), ctx, info, "connpool_key_acquire");
    }

    // As acquire(), but at the key's connection limit waits up to timeout for a connection
    // or a connect slot (connpool_key_acquire_wait); on timeout or shutdown, an empty Lease
    // with at_limit().
    Lease acquire_wait(const Key &key, std::chrono::milliseconds timeout)
    {
        connpool_conn_info info = new_info();
        void *ctx = nullptr;
        auto ms = static_cast<uint64_t>(timeout.count() < 0 ? 0 : timeout.count());
        int fd = connpool_key_acquire_wait(key.get(), &ctx, &info, ms);
        return leased(fd, key.get(), std::string(), ctx, info, "connpool_key_acquire_wait");
    }

    // A Lease for a connection you opened yourself (fd >= 0), with its state: from now on
    // it is returned or discarded like a pooled one.
    Lease adopt(std::string key, int fd, void *ctx = nullptr)
    {
        return Lease(pool_, nullptr, std::move(key), fd, ctx, false, new_info());
    }
    Lease adopt(const Key &key, int fd, void *ctx = nullptr)
    {
        return Lease(pool_, key.get(), std::string(), fd, ctx, false, new_info());
    }

    connpool_stats stats() const noexcept
    {
        connpool_stats st = new_stats();
        connpool_stats_get(pool_, &st);
        return st;
    }
    // The figures of one key (zeros for a key the pool knows nothing of).
    connpool_stats stats(const std::string &key) const noexcept
    {
        connpool_stats st = new_stats();
        connpool_stats_get_key(pool_, key.c_str(), &st);
        return st;
    }

    size_t idle() const noexcept { return connpool_idle_count(pool_); }
    size_t idle(const std::string &key) const noexcept { return connpool_idle_count_key(pool_, key.c_str()); }
    size_t purge(const std::string &key) noexcept { return connpool_purge(pool_, key.c_str()); }
    size_t purge_all() noexcept { return connpool_purge(pool_, nullptr); }
    size_t drain(const std::string &key) noexcept { return connpool_drain(pool_, key.c_str()); }
    size_t drain_all() noexcept { return connpool_drain(pool_, nullptr); }
    size_t prune() noexcept { return connpool_prune(pool_); }
    // Wakes every waiter (-ECANCELED) and makes later waits not wait.
    size_t shutdown() noexcept { return connpool_shutdown(pool_); }

  private:
    static connpool_conn_info new_info() noexcept
    {
        connpool_conn_info info{};
        info.struct_size = sizeof info;
        return info;
    }
    static connpool_stats new_stats() noexcept
    {
        connpool_stats st{};
        st.struct_size = sizeof st;
        return st;
    }

    // A Lease for an acquire's result; throws for a bad argument.
    Lease leased(int fd, connpool_key *handle, std::string key, void *ctx,
                 const connpool_conn_info &info, const char *what)
    {
        if (fd >= 0)
            return Lease(pool_, handle, std::move(key), fd, ctx, true, info);
        if (fd == -ENOENT || fd == -EAGAIN || fd == -ETIMEDOUT || fd == -ECANCELED)
            return Lease::none(pool_, handle, std::move(key), fd);
        throw std::system_error(-fd, std::generic_category(), what);
    }

    connpool *pool_;
};

} // namespace libconnpool

#endif // CONNPOOL_HPP
