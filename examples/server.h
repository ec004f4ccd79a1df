/*
 * server.h — what echo.c and httpd.c share: listening on 127.0.0.1, an accept loop that
 * starts a goroutine per connection, deadlines, and a graceful shutdown on SIGINT or SIGTERM.
 *
 *   return server_run(argc, argv, "echo", "7000", serve);
 *
 * listens on 127.0.0.1:PORT (argv[1], else $PORT, else the default; 0 picks a free port),
 * prints "NAME: listening on 127.0.0.1:PORT", and runs serve(fd) in a goroutine for each
 * connection (serve closes fd, with server_close).  Options come from the environment, as
 * PORT does, in seconds (fractions allowed; 0: no limit):
 *
 *   READ_TIMEOUT    10  httpd: a request must arrive whole within this of its first byte
 *                       (and a new connection's first byte within this of the accept)
 *   WRITE_TIMEOUT   10  an answer must be written within this (a client that does not read
 *                       cannot hold its goroutine)
 *   IDLE_TIMEOUT    60  a connection with nothing in flight is closed after this
 *   SHUTDOWN_GRACE   5  how long a shutdown lets the work in flight finish
 *
 * Each deadline is a context (loom_ctx_with_deadline) made current around the loom calls it
 * bounds: once it ends they return its cause (-ETIMEDOUT) at once.  Two contexts are their
 * parents: server.stop, which SIGINT or SIGTERM ends, and server.halt, which ends when the
 * grace period after it is over.  A wait with nothing in flight (an idle connection waiting
 * for its next request, the accept loop) runs under server.stop; finishing work in flight
 * (reading the rest of a request, writing an answer) runs under server.halt.  So a shutdown
 * goes as Go's http.Server.Shutdown does:
 *
 *   1. server.stop ends: the accept loop closes the listener (connecting is refused from
 *      then on) and idle connections close;
 *   2. connections with work in flight finish it and close (httpd answers with
 *      "Connection: close");
 *   3. when SHUTDOWN_GRACE is over, server.halt ends: what is still in flight is cut (the
 *      connection is reset, so that a client never takes a cut answer for a whole one);
 *   4. once every connection's goroutine has returned, the server prints how many
 *      connections it served and cut, and exits with status 0.
 *
 * Header-only: each example is one program, and this file is included once.
 */
#ifndef LOOM_EXAMPLE_SERVER_H
#define LOOM_EXAMPLE_SERVER_H
#include <loom.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static struct {
    const char *name;
    void (*serve)(int fd);
    int listen_fd;
    int signal_fd;                                            /* SIGINT and SIGTERM arrive here, as data */
    loom_ctx *stop;                                           /* ends on SIGINT or SIGTERM */
    loom_ctx *halt;                                           /* ends when the grace period is over */
    loom_waitgroup running;                                   /* the accept loop and each connection */
    int64_t read_timeout, write_timeout, idle_timeout, grace; /* ns */
    long accepted, cut;                                       /* connections; cut: atomic */
} server = { .running = LOOM_WAITGROUP_INIT };

/* A connection's deadline for reading, one that moves: each answer puts the idle deadline
 * IDLE_TIMEOUT after it.  A context for every request's read and write (an allocation, a
 * timer and locks each) cost httpd a fifth of its throughput under wrk, so this one stays
 * while the deadline moves later: when it ends before the deadline now wanted (d->at),
 * server_read makes a new one and waits on.  d->parent's end (a shutdown, for server.stop)
 * ends the wait too. */
typedef struct server_deadline {
    loom_ctx *parent, *ctx; /* ctx: ends at ctx_at, or with parent; NULL until needed */
    int64_t ctx_at, at;     /* on the loom_now() clock */
} server_deadline;

/* loom_read by d->at: returns what it returns (-ETIMEDOUT: the deadline has passed). */
static ssize_t server_read(server_deadline *d, int fd, void *buf, size_t n) {
    for (;;) {
        if (d->ctx && d->ctx_at > d->at) { /* the deadline moved earlier: a new context */
            loom_ctx_free(d->ctx);
            d->ctx = NULL;
        }
        if (!d->ctx) {
            if (!(d->ctx = loom_ctx_with_deadline(d->parent, d->at))) return -ENOMEM;
            d->ctx_at = d->at;
        }
        loom_ctx *old = loom_ctx_set(d->ctx);
        ssize_t r = loom_read(fd, buf, n);
        loom_ctx_set(old);
        if (r >= 0) return r;
        if (loom_ctx_err(d->parent)) { /* a shutdown: bytes that came before it are answered */
            ssize_t k = loom_recvfrom(fd, buf, n, MSG_DONTWAIT, NULL, NULL);
            return k > 0 ? k : r;
        }
        if (r != -ETIMEDOUT || loom_now() >= d->at) return r;
        loom_ctx_free(d->ctx); /* an earlier deadline's: the read had no effect, so wait on */
        d->ctx = NULL;
    }
}

/* loom_write within `timeout` ns, or until parent ends.  Most writes fit in the socket's
 * buffer at once: only one that has to wait gets a deadline (a context).  Returns n, or
 * what loom_write returns (cut short by the deadline: the bytes written). */
static ssize_t server_write(loom_ctx *parent, int64_t timeout, int fd, const void *buf, size_t n) {
    ssize_t done = loom_sendto(fd, buf, n, MSG_DONTWAIT, NULL, 0); /* one try, no wait */
    if (done == (ssize_t)n || (done < 0 && done != -EAGAIN)) return done;
    if (done < 0) done = 0;
    loom_ctx *deadline = loom_ctx_with_timeout(parent, timeout);
    if (!deadline) return -ENOMEM;
    loom_ctx *old = loom_ctx_set(deadline);
    ssize_t r = loom_write(fd, (const char *)buf + done, n - (size_t)done);
    loom_ctx_set(old);
    loom_ctx_free(deadline);
    return r < 0 ? (done ? done : r) : done + r;
}

/* Has a shutdown begun? (Work in flight is finished, then the connection closes.) */
static int server_stopping(void) { return loom_ctx_err(server.stop) != 0; }

/* Closes a connection.  cut: work was in flight (a request half read, an answer half
 * written): reset the connection (RST) rather than end it with a FIN that could make a
 * partial answer look whole, and count it. */
static void server_close(int fd, int cut) {
    if (cut) {
        struct linger now = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
        __atomic_fetch_add(&server.cut, 1, __ATOMIC_RELAXED);
    }
    loom_fd_close(fd);
}

static void server_conn(void *fd) {
    loom_ctx_set(server.halt); /* work in flight is cut only when the grace period is over */
    server.serve((int)(intptr_t)fd);
    loom_wg_done(&server.running);
}

static void server_accept_loop(void *arg) {
    (void)arg;
    loom_ctx_set(server.stop); /* a shutdown ends loom_accept's wait with -ECANCELED */
    while (!server_stopping()) {
        int fd = loom_accept(server.listen_fd, NULL, NULL);
        if (fd < 0) {
            if (fd == -ECANCELED) break;
            /* out of fds or memory: wait for connections to end rather than spin */
            fprintf(stderr, "%s: accept: %s\n", server.name, strerror(-fd));
            loom_sleep(10 * 1000 * 1000);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        server.accepted++;
        loom_wg_add(&server.running, 1); /* while this loop runs, the count is not 0 */
        if (!loom_go(server_conn, (void *)(intptr_t)fd)) {
            fprintf(stderr, "%s: loom_go: %s\n", server.name, strerror(errno));
            loom_wg_done(&server.running);
            server_close(fd, 0);
        }
    }
    loom_fd_close(server.listen_fd); /* from here on, connecting is refused */
    loom_wg_done(&server.running);
}

static int server_main(void *arg) {
    (void)arg;
    server.stop = loom_ctx_with_cancel(NULL);
    server.halt = loom_ctx_with_cancel(NULL);
    loom_wg_add(&server.running, 1);
    if (!server.stop || !server.halt || !loom_go(server_accept_loop, NULL)) {
        fprintf(stderr, "%s: cannot start: %s\n", server.name, strerror(errno));
        return 1;
    }
    struct signalfd_siginfo si;
    loom_read(server.signal_fd, &si, sizeof si); /* parks goroutine 1 until SIGINT or SIGTERM */

    /* stop accepting and close idle connections; the others finish what is in flight... */
    loom_ctx_cancel(server.stop, -ECANCELED);
    loom_ctx *grace = loom_ctx_with_timeout(NULL, server.grace);
    loom_ctx *old = loom_ctx_set(grace); /* NULL (out of memory): background, no limit */
    loom_wg_wait(&server.running);       /* returns early when the grace period ends */
    loom_ctx_set(old);
    /* ...until the grace period is over: then cut the rest, and wait for their goroutines */
    loom_ctx_cancel(server.halt, -ETIMEDOUT);
    loom_wg_wait(&server.running);

    printf("%s: stopped: %ld connections, %ld cut\n", server.name, server.accepted, server.cut);
    fflush(stdout);
    loom_ctx_free(grace);
    loom_ctx_free(server.stop);
    loom_ctx_free(server.halt);
    return 0;
}

/* $name in seconds (fractions allowed), else dflt; in ns.  0 (no limit) becomes 30 years,
 * which loom_now() + it cannot overflow. */
static int64_t server_seconds(const char *name, double dflt) {
    const char *v = getenv(name);
    char *end = NULL;
    double s = v && *v ? strtod(v, &end) : dflt;
    if (end && (*end || !(s >= 0))) {
        fprintf(stderr, "%s: %s=%s is not a number of seconds; using %g\n", server.name, name, v, dflt);
        s = dflt;
    }
    return s == 0 || s > 1e9 ? (int64_t)1e18 : (int64_t)(s * 1e9);
}

static int server_run(int argc, char **argv, const char *name, const char *default_port,
                      void (*serve)(int fd)) {
    server.name = name;
    server.serve = serve;
    server.read_timeout = server_seconds("READ_TIMEOUT", 10);
    server.write_timeout = server_seconds("WRITE_TIMEOUT", 10);
    server.idle_timeout = server_seconds("IDLE_TIMEOUT", 60);
    server.grace = server_seconds("SHUTDOWN_GRACE", 5);
    const char *port = getenv("PORT");
    if (argc > 1 && argv[1][0] != '-') port = argv[1];
    if (!port || !*port) port = default_port;

    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_port = htons((uint16_t)atoi(port)),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof addr;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    server.listen_fd = fd;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        fprintf(stderr, "%s: cannot listen on 127.0.0.1:%s: %s\n", name, port, strerror(errno));
        return 1;
    }

    /* Blocked here, before loom_run starts its threads, SIGINT and SIGTERM are blocked in
     * every thread: they wait in the signalfd for goroutine 1 to read them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    if ((server.signal_fd = signalfd(-1, &stop, SFD_CLOEXEC)) < 0) {
        fprintf(stderr, "%s: signalfd: %s\n", name, strerror(errno));
        return 1;
    }

    printf("%s: listening on 127.0.0.1:%d\n", name, ntohs(addr.sin_port));
    fflush(stdout);
    int rc = loom_run(server_main, NULL);
    if (rc != 0) fprintf(stderr, "%s: loom_run: %d\n", name, rc);
    return rc == 0 ? 0 : 1;
}
#endif
