// connpool.hpp: a header-only C++17 RAII wrapper for libconnpool (connpool.h).
//
//   libconnpool::Pool pool;                           // owns a connpool* (move-only)
//   libconnpool::Lease conn = pool.acquire(key);      // an idle connection, or empty
//   if (!conn)
//       conn = pool.adopt(key, connect_to(backend));  // a new one, handled the same way
//   if (!exchange(conn.fd()))
//       conn.mark_broken();                           // closed, never pooled
//   else if (keep_alive)
//       conn.release_hint(server_timeout_ms);         // back to the pool now
//   // ~Lease: back to the pool, unless marked broken (then closed)
//
// Ownership follows connpool.h: a Lease owns its fd until it is released (the pool's
// from then on, whatever the result) or closed. A Lease destroyed by a propagating
// exception closes its fd instead of pooling it: the exchange on it was interrupted, so
// a response may be half read. The Pool must outlive its Leases.
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

// One connection taken from the pool (or adopted): returned to the pool on destruction
// unless marked broken, in which case it is closed. Move-only.
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
    const std::string &key() const noexcept { return key_; }

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

    // Return the connection now; the server announced it closes idle connections after
    // keepalive_timeout_ms (pass a little less). Returns what connpool_release_hint()
    // returns (CONNPOOL_POOLED, CONNPOOL_CLOSED, ...); closes instead if marked broken.
    int release_hint(uint64_t keepalive_timeout_ms) noexcept
    {
        if (fd_ < 0)
            return -EBADF;
        if (broken_)
            return close(), CONNPOOL_CLOSED;
        return connpool_release_hint(pool_, key_.c_str(), std::exchange(fd_, -1), keepalive_timeout_ms);
    }

    // Return the connection now (connpool_release()); closes instead if marked broken.
    int release() noexcept
    {
        if (fd_ < 0)
            return -EBADF;
        if (broken_)
            return close(), CONNPOOL_CLOSED;
        return connpool_release(pool_, key_.c_str(), std::exchange(fd_, -1));
    }

    // Close the connection now.
    void close() noexcept
    {
        if (fd_ >= 0)
            ::close(std::exchange(fd_, -1));
    }

    // Take the fd out of the lease: the caller owns it and must close it.
    int detach() noexcept { return std::exchange(fd_, -1); }

  private:
    friend class Pool;
    Lease(connpool *pool, std::string key, int fd, bool reused, const connpool_conn_info &info)
        : pool_(pool), key_(std::move(key)), fd_(fd), reused_(reused), info_(info),
          exceptions_(std::uncaught_exceptions())
    {
    }

    void take(Lease &other) noexcept
    {
        pool_ = other.pool_;
        key_ = std::move(other.key_);
        fd_ = std::exchange(other.fd_, -1);
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
    std::string key_;
    int fd_ = -1;
    bool reused_ = false;
    bool broken_ = false;
    connpool_conn_info info_{};
    int exceptions_ = 0;
};

// Owns a connpool*; frees it (closing every idle fd) on destruction. Move-only; every
// member may be called from several threads at once, as the C functions may.
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

    // An idle connection for key (checked alive, most recently used first), or an empty
    // Lease when there is none. Throws std::system_error(EINVAL) for an invalid key.
    Lease acquire(std::string key)
    {
        connpool_conn_info info{};
        info.struct_size = sizeof info;
        int fd = connpool_acquire_info(pool_, key.c_str(), &info);
        if (fd == -ENOENT)
            return Lease();
        if (fd < 0)
            throw std::system_error(-fd, std::generic_category(), "connpool_acquire_info");
        return Lease(pool_, std::move(key), fd, true, info);
    }

    // A Lease for a connection you opened yourself (fd >= 0): from now on it is returned
    // or closed like a pooled one.
    Lease adopt(std::string key, int fd)
    {
        connpool_conn_info info{};
        info.struct_size = sizeof info;
        return Lease(pool_, std::move(key), fd, false, info);
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
    connpool *pool_;
};

} // namespace libconnpool

#endif // CONNPOOL_HPP
