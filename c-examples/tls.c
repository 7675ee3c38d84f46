/* tls.c: see tls.h. */
#define _GNU_SOURCE
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "net.h"

static atomic_ullong tickets_received, tickets_in_check;
/* Set while tls_idle_check() runs on this thread: the ticket callback runs inside its
 * SSL_peek(), on the same thread. */
static _Thread_local int in_check;

unsigned long long tls_tickets_received(void) { return atomic_load(&tickets_received); }
unsigned long long tls_tickets_in_check(void) { return atomic_load(&tickets_in_check); }

/* OpenSSL calls this for each session ticket a client receives. 0: we keep no reference
 * (the session is freed): the demo never resumes. */
static int on_new_session(SSL *ssl, SSL_SESSION *session)
{
    (void)ssl, (void)session;
    atomic_fetch_add(&tickets_received, 1);
    if (in_check)
        atomic_fetch_add(&tickets_in_check, 1);
    return 0;
}

static void print_errors(const char *what)
{
    fprintf(stderr, "tls: %s failed\n", what);
    ERR_print_errors_fp(stderr);
}

/* A self-signed certificate for "localhost", valid a week, and its key. */
static int use_new_certificate(SSL_CTX *ctx, int rsa)
{
    EVP_PKEY *key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name = x ? X509_get_subject_name(x) : NULL;
    int ok = key != NULL && name != NULL && X509_set_version(x, 2) == 1 &&
             ASN1_INTEGER_set(X509_get_serialNumber(x), 1) == 1 &&
             X509_gmtime_adj(X509_getm_notBefore(x), -60) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(x), 7 * 24 * 3600) != NULL && X509_set_pubkey(x, key) == 1 &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0) == 1 &&
             X509_set_issuer_name(x, name) == 1 && X509_sign(x, key, EVP_sha256()) > 0 &&
             SSL_CTX_use_certificate(ctx, x) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1;
    X509_free(x); /* the context holds its own references */
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}

/* Both sides: TLS 1.3 only (its session tickets come after the handshake), and SSL_write
 * behaves like send(): partial writes, retried from wherever the buffer is then. */
static SSL_CTX *new_ctx(const SSL_METHOD *method)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL)
        return NULL;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
}

SSL_CTX *tls_server_ctx(int flags)
{
    SSL_CTX *ctx = new_ctx(TLS_server_method());
    if (ctx == NULL || use_new_certificate(ctx, flags & TLS_SERVER_RSA) != 0) {
        print_errors("server context");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (flags & TLS_SERVER_LATE_TICKET)
        SSL_CTX_set_num_tickets(ctx, 0); /* OpenSSL's default: 2, at the end of the handshake */
    return ctx;
}

SSL_CTX *tls_client_ctx(void)
{
    SSL_CTX *ctx = new_ctx(TLS_client_method());
    if (ctx == NULL) {
        print_errors("client context");
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* The callback is only called with client caching on; NO_INTERNAL_STORE keeps nothing. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    return ctx;
}

/* After an SSL call returned r <= 0: wait for what it wants, until deadline. 0: call it
 * again; -1 with errno set. The thread's OpenSSL error queue is left empty. */
static int wait_for(SSL *ssl, int r, uint64_t deadline, int stop_fd)
{
    int err = SSL_get_error(ssl, r);
    ERR_clear_error();
    short events = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (events == 0) {
        errno = ECONNRESET; /* close_notify where none may come, EOF, reset, TLS error */
        return -1;
    }
    int64_t left = (int64_t)(deadline - now_ms());
    int w = left > 0 ? net_wait(SSL_get_fd(ssl), events, (int)left, stop_fd) : 0;
    if (w == 1)
        return 0;
    errno = w == 0 ? ETIMEDOUT : ECANCELED;
    return -1;
}

SSL *tls_connect(SSL_CTX *ctx, int fd, int timeout_ms, int stop_fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
        return NULL;
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        errno = ENOMEM;
        return NULL;
    }
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int r = SSL_connect(ssl);
        if (r == 1)
            return ssl;
        if (wait_for(ssl, r, deadline, stop_fd) != 0) {
            int e = errno;
            SSL_free(ssl);
            errno = e;
            return NULL;
        }
    }
}

int tls_send_all(SSL *ssl, struct iovec *iov, int n, int timeout_ms, int stop_fd)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (int i = 0; i < n; i++) {
        const char *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left > 0) {
            int w = SSL_write(ssl, p, left > INT_MAX ? INT_MAX : (int)left);
            if (w > 0) {
                p += w;
                left -= (size_t)w;
            } else if (wait_for(ssl, w, deadline, stop_fd) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

ssize_t tls_recv(SSL *ssl, void *buf, size_t len, int timeout_ms, int stop_fd)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        /* Read before polling: OpenSSL may hold decrypted bytes the fd no longer shows. */
        int r = SSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
        if (r > 0)
            return r;
        if (SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN) {
            ERR_clear_error();
            return 0;
        }
        if (wait_for(ssl, r, deadline, stop_fd) != 0)
            return -1;
    }
}

/* r from a non-blocking SSL call as a recv()-like result. */
static ssize_t nb_result(SSL *ssl, int r)
{
    if (r > 0)
        return r;
    int err = SSL_get_error(ssl, r);
    ERR_clear_error();
    if (err == SSL_ERROR_ZERO_RETURN)
        return 0;
    errno = err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ? EAGAIN : ECONNRESET;
    return -1;
}

int tls_accept_nb(SSL *ssl)
{
    ssize_t r = nb_result(ssl, SSL_accept(ssl));
    if (r == 0)
        errno = ECONNRESET; /* a close_notify before the handshake ended */
    return r > 0 ? 1 : -1;
}

ssize_t tls_read_nb(SSL *ssl, void *buf, size_t len)
{
    return nb_result(ssl, SSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len));
}

ssize_t tls_write_nb(SSL *ssl, const void *buf, size_t len)
{
    ssize_t r = nb_result(ssl, SSL_write(ssl, buf, len > INT_MAX ? INT_MAX : (int)len));
    if (r == 0) {
        errno = ECONNRESET;
        return -1;
    }
    return r;
}

void tls_send_ticket(SSL *ssl)
{
    /* Queued, then written by SSL_do_handshake(); if the socket is full, by the next write. */
    if (SSL_new_session_ticket(ssl) == 1)
        SSL_do_handshake(ssl);
    ERR_clear_error();
}

int tls_idle_check(SSL *ssl)
{
    char byte;
    /* Nothing held by OpenSSL and nothing waiting on the socket: healthy, for the price of
     * the pool's default check (one recv). OpenSSL's record layer runs only when bytes are
     * waiting, to tell a ticket from a close_notify or data. */
    if (!SSL_has_pending(ssl)) {
        ssize_t n = recv(SSL_get_fd(ssl), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0)
            return 1; /* EOF */
        if (n < 0 && errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : 1;
    }
    ERR_clear_error(); /* SSL_get_error() reads this thread's queue: start it empty */
    /* SSL_MODE_AUTO_RETRY (OpenSSL's default) makes it go on past each ticket while more
     * records are waiting: a close_notify behind a ticket is seen in this same call. */
    in_check = 1;
    int r = SSL_peek(ssl, &byte, 1);
    in_check = 0;
    if (r > 0)
        return 1;
    int err = SSL_get_error(ssl, r);
    ERR_clear_error();
    /* WANT_WRITE: OpenSSL has a reply of its own to send (a KeyUpdate's): alive too. */
    return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ? 0 : 1;
}

void tls_close(SSL *ssl, int notify)
{
    if (ssl == NULL)
        return;
    /* After a fatal error OpenSSL's state machine is in its error state, which counts as
     * "in init": SSL_shutdown() must not be called then. */
    if (notify && !SSL_in_init(ssl) && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
        SSL_shutdown(ssl); /* sends close_notify; the fd is closed next, so no wait for the reply */
    SSL_free(ssl);
    ERR_clear_error();
}
