/* tls.h: the OpenSSL parts of the demo, shared by the backend (--tls), the proxy
 * (--backend-tls), the TLS benchmark and tests/c/test_tls.c. libconnpool itself never uses
 * OpenSSL: it pools the fd and carries the SSL* as the fd's ctx.
 *
 * Every SSL here works on a non-blocking fd, so no call blocks unless it says it waits
 * (with a timeout and a stop fd, as in net.h). That is what lets the pool's check read a
 * pooled connection's pending records without ever blocking.
 */
#ifndef DEMO_TLS_H
#define DEMO_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* tls_server_ctx() flags. */
#define TLS_SERVER_LATE_TICKET 1 /* no ticket in the handshake: tls_send_ticket() sends one later */
#define TLS_SERVER_RSA 2         /* an RSA-2048 certificate instead of ECDSA P-256 */

/* A server context, TLS 1.3 only, with a fresh self-signed certificate and key made in
 * memory (no files, no openssl command). NULL on failure (printed to stderr). */
SSL_CTX *tls_server_ctx(int flags);

/* A client context, TLS 1.3 only. It does not verify the server's certificate: the demo's
 * backends make theirs at start-up, so there is nothing to verify it against (a real proxy
 * verifies: SSL_VERIFY_PEER, its CAs, SSL_set1_host). It counts the session tickets it
 * receives and keeps none: the demo never resumes a session, it reuses the connection. */
SSL_CTX *tls_client_ctx(void);

/* Session tickets received by clients of tls_client_ctx(), in all and those read by
 * tls_idle_check() on an idle connection. */
unsigned long long tls_tickets_received(void);
unsigned long long tls_tickets_in_check(void);

/* The client handshake on a connected socket, which it makes non-blocking; waits at most
 * timeout_ms, and stops early when stop_fd becomes readable (-1: none). The SSL*, or
 * NULL with errno ETIMEDOUT, ECANCELED (stop) or ECONNRESET (any TLS failure). */
SSL *tls_connect(SSL_CTX *ctx, int fd, int timeout_ms, int stop_fd);

/* As net_send_all() and net_recv(), over TLS: 0 / -1, and > 0 bytes / 0 at the peer's
 * close_notify / -1, with errno ETIMEDOUT, ECANCELED or ECONNRESET. An EOF without
 * close_notify is an error: a TLS stream cut short is not a complete one. */
int tls_send_all(SSL *ssl, struct iovec *iov, int n, int timeout_ms, int stop_fd);
ssize_t tls_recv(SSL *ssl, void *buf, size_t len, int timeout_ms, int stop_fd);

/* For an event loop (the backend): one non-blocking step, as accept/recv/send.
 * tls_accept_nb: 1 when the handshake is done. tls_read_nb/tls_write_nb: > 0 bytes, 0 at
 * close_notify (read only). Otherwise -1 with errno EAGAIN (wait for the fd's next
 * readiness) or ECONNRESET. */
int tls_accept_nb(SSL *ssl);
ssize_t tls_read_nb(SSL *ssl, void *buf, size_t len);
ssize_t tls_write_nb(SSL *ssl, const void *buf, size_t len);

/* Server: send a session ticket now (best effort), as servers do that issue tickets after
 * the handshake rather than in it. */
void tls_send_ticket(SSL *ssl);

/* Is an idle client connection still usable? 0: healthy; 1: dead. For libconnpool's
 * check callback. Nothing waiting (one recv(MSG_PEEK | MSG_DONTWAIT), as the pool's default
 * check): healthy. Bytes waiting: one non-blocking SSL_peek(); records that are not
 * application data (a TLS 1.3 session ticket, a KeyUpdate) are processed inside OpenSSL
 * and the answer is "nothing to read" (SSL_ERROR_WANT_READ): healthy. The peer's
 * close_notify, an EOF, a reset or a TLS error: dead. Application data on an idle HTTP/1.1
 * connection: nobody asked for it, the stream is out of step: dead (peeked, never
 * consumed). Never blocks: the fd is non-blocking (tls_connect made it so). */
int tls_idle_check(SSL *ssl);

/* Free an SSL (NULL: nothing), first sending close_notify when notify is set and the
 * session is in a state to (never after a fatal error). It never waits for the peer's
 * close_notify and never closes the fd: the caller (or the pool) does. */
void tls_close(SSL *ssl, int notify);

#ifdef __cplusplus
}
#endif

#endif /* DEMO_TLS_H */
