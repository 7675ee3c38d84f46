// cpp_client: libconnpool's C++ wrapper (include/connpool.hpp) in a small HTTP client.
//
//   cpp_client 127.0.0.1:PORT        (a server such as the demo's `backend`)
//
// Sends GET requests to one server through a libconnpool::Pool, in three rounds:
//   1. back to back: every request after the first reuses the same connection;
//   2. after a pause longer than the server's announced keep-alive timeout, the
//      connection having been released with that timeout as a hint: the pool expired it,
//      so the request goes on a new connection, not on one the server closed;
//   3. the same pause, the connection released without the hint: the server closed it,
//      the pool's liveness check finds it dead, and again a new connection is used.
// Then it checks the pool's statistics: exit status 0 if everything went as described.
//
// Build: c++ -std=c++17 cpp_client.cpp http.c net.c -lconnpool (http.c, net.c as C)
#include <connpool.hpp>

#include <cstdio>
#include <string>
#include <thread>
#include <chrono>

#include "http.h"
#include "net.h"

namespace {

constexpr int kTimeoutMs = 5000;

struct Response {
    int status = 0;
    bool keep_alive = false;
    int64_t keepalive_timeout_ms = -1; // "Keep-Alive: timeout=", -1 if not announced
};

// Send request on fd and read the whole response. false on any failure; any_byte tells
// whether some of the response had arrived (then a retry could repeat the request).
bool exchange(int fd, const std::string &request, Response &resp, bool &any_byte)
{
    any_byte = false;
    iovec iov{const_cast<char *>(request.data()), request.size()};
    if (net_send_all(fd, &iov, 1, kTimeoutMs, -1) != 0)
        return false;
    static char buf[65536];
    size_t got = 0, head_len;
    while ((head_len = http_head_length(buf, got)) == 0) {
        ssize_t r = got < HTTP_MAX_HEAD ? net_recv(fd, buf + got, sizeof buf - got, kTimeoutMs, -1) : -1;
        if (r <= 0)
            return false;
        any_byte = true;
        got += static_cast<size_t>(r);
    }
    http_head head;
    http_body body;
    if (http_parse_response(buf, head_len, &head) != 0)
        return false;
    http_body_for_response(&body, &head, 0);
    size_t off = head_len;
    for (;;) {
        ssize_t used = http_body_scan(&body, buf + off, got - off);
        if (used < 0)
            return false;
        off += static_cast<size_t>(used);
        if (body.done)
            break;
        ssize_t r = net_recv(fd, buf, sizeof buf, kTimeoutMs, -1);
        if (r == 0 && body.framing == HTTP_UNTIL_CLOSE)
            break;
        if (r <= 0)
            return false;
        off = 0;
        got = static_cast<size_t>(r);
    }
    resp.status = head.status;
    // Reusable only if both sides keep it open and nothing follows the response.
    resp.keep_alive = head.keep_alive && body.framing != HTTP_UNTIL_CLOSE && off == got;
    resp.keepalive_timeout_ms = head.keepalive_timeout_ms;
    return true;
}

class Client {
  public:
    Client(const sockaddr_in &addr, std::string key, libconnpool::Pool &pool)
        : addr_(addr), key_(std::move(key)), pool_(pool),
          request_("GET / HTTP/1.1\r\nHost: " + key_ + "\r\nUser-Agent: cpp_client\r\n\r\n")
    {
    }

    // One request; hint: release with the server's keep-alive timeout. false if it failed.
    bool get(bool hint, Response &resp)
    {
        for (int attempt = 0; attempt < 2; attempt++) {
            // First an idle connection from the pool; on the retry, always a new one.
            libconnpool::Lease conn = attempt == 0 ? pool_.acquire(key_) : libconnpool::Lease();
            if (!conn) {
                int fd = net_connect(&addr_, kTimeoutMs);
                if (fd < 0) {
                    std::perror("cpp_client: connect");
                    return false;
                }
                conn = pool_.adopt(key_, fd);
            }
            bool any_byte = false;
            if (!exchange(conn.fd(), request_, resp, any_byte)) {
                conn.mark_broken(); // closed when conn goes out of scope
                // A reused connection the server closed just before our request arrived:
                // GET is idempotent, so send it once more on a new connection.
                if (conn.reused() && !any_byte)
                    continue;
                std::fprintf(stderr, "cpp_client: request failed\n");
                return false;
            }
            std::printf("cpp_client: %d on a %s connection\n", resp.status,
                        conn.reused() ? "reused" : "new");
            if (!resp.keep_alive)
                conn.mark_broken();
            else if (hint && resp.keepalive_timeout_ms >= 0)
                // Expire it a quarter before the server closes it.
                conn.release_hint(static_cast<uint64_t>(resp.keepalive_timeout_ms -
                                                        resp.keepalive_timeout_ms / 4));
            // Otherwise ~Lease returns it to the pool (or closes it if marked broken).
            return resp.status >= 200 && resp.status <= 299;
        }
        return false;
    }

  private:
    sockaddr_in addr_;
    std::string key_;
    libconnpool::Pool &pool_;
    std::string request_;
};

} // namespace

int main(int argc, char **argv)
{
    sockaddr_in addr{};
    if (argc != 2 || net_parse_addr(argv[1], &addr) != 0) {
        std::fprintf(stderr, "usage: cpp_client 127.0.0.1:PORT\n");
        return 2;
    }
    auto cfg = libconnpool::Pool::default_config();
    cfg.max_idle_per_key = 4;
    libconnpool::Pool pool(cfg);
    Client client(addr, argv[1], pool);
    Response resp;

    std::printf("round 1: back to back\n");
    for (int i = 0; i < 5; i++)
        if (!client.get(true, resp))
            return 1;
    if (resp.keepalive_timeout_ms < 0) {
        std::fprintf(stderr, "cpp_client: the server announced no keep-alive timeout\n");
        return 1;
    }
    // The point of rounds 2 and 3 is the passage of time: outlive the server's timeout,
    // twice over, so that its timer has fired even on a loaded machine.
    auto pause = std::chrono::milliseconds(2 * resp.keepalive_timeout_ms);

    std::printf("round 2: after %lld ms idle, released with the server's timeout as a hint\n",
                static_cast<long long>(pause.count()));
    std::this_thread::sleep_for(pause);
    if (!client.get(false, resp)) // this time released without the hint, for round 3
        return 1;

    std::printf("round 3: after %lld ms idle, released without a hint\n", static_cast<long long>(pause.count()));
    std::this_thread::sleep_for(pause);
    if (!client.get(true, resp))
        return 1;

    connpool_stats st = pool.stats();
    std::printf("pool: hits=%llu misses=%llu expired=%llu dead=%llu idle=%llu\n",
                static_cast<unsigned long long>(st.hits), static_cast<unsigned long long>(st.misses),
                static_cast<unsigned long long>(st.expired), static_cast<unsigned long long>(st.dead),
                static_cast<unsigned long long>(st.idle));
    // Round 1 reused its connection 4 times; round 2 found it expired, round 3 dead.
    bool ok = st.hits == 4 && st.expired == 1 && st.dead == 1;
    std::printf("cpp_client: %s\n", ok ? "ok" : "unexpected pool statistics");
    return ok ? 0 : 1;
}
