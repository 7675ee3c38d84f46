// connpool.hpp: a header-only C++17 RAII wrapper for libconnpool (connpool.h).
//
//   libconnpool::Pool pool;                               // owns a connpool* (move-only)
//   libconnpool::Key backend = pool.key("10.0.0.7:443");  // a key resolved once
//   libconnpool::Lease conn = pool.acquire(backend);      // an idle connection, or empty
//   if (!conn)
//       conn = pool.adopt(backend, fd = connect_to(backend), new_ssl(fd)); // a new one
//   SSL *ssl = conn.ctx<SSL>();                           // the state it was released with
//   if (!exchange(conn.fd(), ssl))
//       conn.mark_broken();                               // closed, never pooled
//   else if (keep_alive)
//       conn.release_hint(server_timeout_ms);             // back to the pool now
//   // ~Lease: back to the pool with its state, unless marked broken (then closed)
//
// Ownership follows connpool.h: a Lease owns its fd and its state (ctx) until it is
// released (the pool's from then on, whatever the result; the pool's on_close callback
// frees the state when it closes the connection) or closed. A Lease that closes its
// connection (close(), broken, or destroyed by a propagating exception: the exchange on it
// was interrupted, so a response may be half read) frees the state with the Pool's
// free_ctx function (Pool::set_free_ctx), if any, then closes the fd. The Pool must
// outlive its Leases and Keys.
#ifndef CONNPOOL_HPP
#define CONNPOOL_HPP

#include <connpool.h>

#include <cerrno>
#include <cstdint>
#include <exception>
#include <string>
#include <system_error>
#include <utility>

#include <unistd.h>

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
// destruction unless marked broken, in which case it is closed. Move-only.
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

    // The connection must not be reused (I/O error, incomplete response, the server
    // said "Connection: close"): it is closed instead of returned.
    void mark_broken() noexcept { broken_ = true; }
    bool broken() const noexcept { return broken_; }

    // Return the connection and its state now; the server announced it closes idle
    // connections after keepalive_timeout_ms (pass a little less; CONNPOOL_NO_HINT: no
    // hint). Returns what connpool_release_ctx() returns (CONNPOOL_POOLED,
    // CONNPOOL_CLOSED, ...); closes instead if marked broken.
    int release_hint(uint64_t keepalive_timeout_ms) noexcept
    {
        if (fd_ < 0)
            return -EBADF;
        if (broken_)
            return close(), CONNPOOL_CLOSED;
        int fd = std::exchange(fd_, -1);
        void *ctx = std::exchange(ctx_, nullptr);
        if (handle_ != nullptr)
            return connpool_key_release(handle_, fd, ctx, keepalive_timeout_ms);
        return connpool_release_ctx(pool_, key_.c_str(), fd, ctx, keepalive_timeout_ms);
    }

    // Return the connection and its state now, without a keep-alive hint.
    int release() noexcept { return release_hint(CONNPOOL_NO_HINT); }

    // Close the connection now: its state is freed first (Pool::set_free_ctx), as the
    // pool's on_close would, then the fd is closed.
    void close() noexcept
    {
        void *ctx = std::exchange(ctx_, nullptr);
        if (ctx != nullptr && free_ctx_ != nullptr)
            free_ctx_(ctx);
        if (fd_ >= 0)
            ::close(std::exchange(fd_, -1));
    }

    // Take the fd out of the lease: the caller owns it (and the state) and must close it.
    int detach() noexcept
    {
        ctx_ = nullptr;
        return std::exchange(fd_, -1);
    }

  private:
    friend class Pool;
    Lease(connpool *pool, void (*free_ctx)(void *), connpool_key *handle, std::string key, int fd,
          void *ctx, bool reused, const connpool_conn_info &info)
        : pool_(pool), free_ctx_(free_ctx), handle_(handle), key_(std::move(key)), fd_(fd),
          ctx_(ctx), reused_(reused), info_(info), exceptions_(std::uncaught_exceptions())
    {
    }

    void take(Lease &other) noexcept
    {
        pool_ = other.pool_;
        free_ctx_ = other.free_ctx_;
        handle_ = other.handle_;
        key_ = std::move(other.key_);
        fd_ = std::exchange(other.fd_, -1);
        ctx_ = std::exchange(other.ctx_, nullptr);
        reused_ = other.reused_;
        broken_ = other.broken_;
        info_ = other.info_;
        exceptions_ = other.exceptions_;
    }

    void finish() noexcept
    {
        if (fd_ < 0)
            return;
        // More exceptions in flight than when the lease was made: we are being
        // destroyed by stack unwinding, in the middle of an exchange.
        if (broken_ || std::uncaught_exceptions() > exceptions_)
            close();
        else
            release();
    }

    connpool *pool_ = nullptr;
    void (*free_ctx_)(void *) = nullptr;
    connpool_key *handle_ = nullptr;
    std::string key_;
    int fd_ = -1;
    void *ctx_ = nullptr;
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

    Pool(Pool &&other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), free_ctx_(other.free_ctx_)
    {
    }
    Pool &operator=(Pool &&other) noexcept
    {
        if (this != &other) {
            connpool_free(pool_);
            pool_ = std::exchange(other.pool_, nullptr);
            free_ctx_ = other.free_ctx_;
        }
        return *this;
    }
    Pool(const Pool &) = delete;
    Pool &operator=(const Pool &) = delete;

    connpool *get() const noexcept { return pool_; }

    // How a Lease that closes its connection itself frees its state (what the config's
    // on_close does for the connections the pool closes). Set it before making Leases.
    void set_free_ctx(void (*free_ctx)(void *ctx)) noexcept { free_ctx_ = free_ctx; }

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
    // state, or an empty Lease when there is none. Throws std::system_error(EINVAL) for an
    // invalid key.
    Lease acquire(std::string key)
    {
        connpool_conn_info info = new_info();
        int fd = connpool_acquire_info(pool_, key.c_str(), &info);
        if (fd == -ENOENT)
            return Lease();
        if (fd < 0)
            throw std::system_error(-fd, std::generic_category(), "connpool_acquire_info");
        return Lease(pool_, free_ctx_, nullptr, std::move(key), fd, info.ctx, true, info);
    }

    // The same by handle.
    Lease acquire(const Key &key)
    {
        connpool_conn_info info = new_info();
        void *ctx = nullptr;
        int fd = connpool_key_acquire(key.get(), &ctx, &info);
        if (fd == -ENOENT)
            return Lease();
        if (fd < 0)
            throw std::system_error(-fd, std::generic_category(), "connpool_key_acquire");
        return Lease(pool_, free_ctx_, key.get(), std::string(), fd, ctx, true, info);
    }

    // A Lease for a connection you opened yourself (fd >= 0), with its state: from now on
    // it is returned or closed like a pooled one.
    Lease adopt(std::string key, int fd, void *ctx = nullptr)
    {
        return Lease(pool_, free_ctx_, nullptr, std::move(key), fd, ctx, false, new_info());
    }
    Lease adopt(const Key &key, int fd, void *ctx = nullptr)
    {
        return Lease(pool_, free_ctx_, key.get(), std::string(), fd, ctx, false, new_info());
    }

    connpool_stats stats() const noexcept
    {
        connpool_stats st{};
        st.struct_size = sizeof st;
        connpool_stats_get(pool_, &st);
        return st;
    }

    size_t idle() const noexcept { return connpool_idle_count(pool_); }
    size_t idle(const std::string &key) const noexcept { return connpool_idle_count_key(pool_, key.c_str()); }
    size_t purge(const std::string &key) noexcept { return connpool_purge(pool_, key.c_str()); }
    size_t purge_all() noexcept { return connpool_purge(pool_, nullptr); }
    size_t prune() noexcept { return connpool_prune(pool_); }

  private:
    friend class Lease;
    static connpool_conn_info new_info() noexcept
    {
        connpool_conn_info info{};
        info.struct_size = sizeof info;
        return info;
    }

    connpool *pool_;
    void (*free_ctx_)(void *ctx) = nullptr;
};

} // namespace libconnpool

#endif // CONNPOOL_HPP
