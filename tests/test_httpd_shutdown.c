/*
 * test_httpd_shutdown.c — examples/httpd.c's deadlines and graceful shutdown.
 *
 * Each case starts the server (t_server.h) with its options in the environment
 * (READ_TIMEOUT, WRITE_TIMEOUT, IDLE_TIMEOUT, SHUTDOWN_GRACE) and drives it from
 * goroutines, which check every byte they receive: a response is whole (status line,
 * headers, exactly Content-Length bytes of body) or its connection ends (EOF or a reset);
 * a response cut short is told apart by its Content-Length.
 *   load       64 keep-alive clients (/ LOOM_TEST_SCALE) send requests in a loop, some
 *              pipelined, and the server gets SIGTERM mid-load.  Every response is whole;
 *              the server closes no connection and says "Connection: close" to no one
 *              before the signal; after "Connection: close" comes EOF; each client ends
 *              refused (ECONNREFUSED); the server exits 0, having cut nothing.
 *   inflight   SIGTERM with a request half sent on one connection, an idle keep-alive
 *              connection and a silent new one: the idle ones are closed, connecting is
 *              refused while the server still runs, and the half-sent request, finished
 *              after the signal, gets its whole response with "Connection: close", then EOF.
 *   grace      the same half-sent request never finished: the server cuts it when
 *              SHUTDOWN_GRACE (1 s) is over, long before READ_TIMEOUT, and exits 0.
 *   deadlines  short timeouts (READ 2 s, WRITE and IDLE 1 s), no shutdown: a client that
 *              sends nothing is closed; a keep-alive connection is closed once idle; a
 *              request head sent a line every 0.1 s, well within READ_TIMEOUT of the last,
 *              is still cut (its deadline counts from its first byte); a client that sends
 *              requests and reads nothing is cut at WRITE_TIMEOUT, with whole responses in
 *              its buffer and maybe one visibly cut short.
 *   renew      READ_TIMEOUT 1 s, IDLE_TIMEOUT 600 s: a silent new connection is closed, but
 *              one that has had a response and then waits longer than READ_TIMEOUT since its
 *              accept is not (its idle deadline, first READ_TIMEOUT from the accept, moved
 *              on with the response), and answers its next request.
 *   stall      a client that reads nothing when SIGTERM comes, with a 600 s WRITE_TIMEOUT:
 *              the server still exits 0, within the grace period (1 s) + a hang guard,
 *              having cut it or closed it after a last whole response.
 * Durations in the checks are hang guards only, never bounds on how fast the server is.
 *
 *   test_httpd_shutdown [CASE...]    runs the cases named (all by default)
 */
#include "t_server.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

enum { GUARD_S = 60 }; /* hang guard for a wait the server should end soon */
#define SEC 1000000000LL

static const char GET[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
static const char BODY[] = "Hello, World!\n";
static struct sockaddr_in server_addr;
static t_server srv;

/* ---- a client connection, and the responses it reads */
typedef struct client {
    const char *name;
    int fd;
    int over;   /* the connection is known to have ended: read what is left without waiting */
    size_t len; /* bytes in buf not consumed yet */
    char buf[16384];
} client;

/* Connects (rcvbuf > 0: with that SO_RCVBUF, set first); 0 or -errno. */
static int dial(client *c, const char *name, int rcvbuf)
{
    c->name = name;
    c->len = 0;
    c->over = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_MSG(c->fd >= 0, "%s: socket: %s", name, strerror(errno));
    if (rcvbuf > 0)
        CHECK_OK(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf));
    int r = loom_connect(c->fd, (struct sockaddr *)&server_addr, sizeof server_addr);
    if (r != 0) {
        loom_fd_close(c->fd);
        c->fd = -1;
        return r;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

static void hang_up(client *c)
{
    CHECK_OK(loom_fd_close(c->fd));
    c->fd = -1;
}

/* Sends all of p[0..n); 0, or -EPIPE / -ECONNRESET when the server has closed. */
static int send_all(client *c, const char *p, size_t n)
{
    ssize_t w = loom_write(c->fd, p, n);
    if (w == -EPIPE || w == -ECONNRESET)
        return (int)w;
    CHECK_MSG(w == (ssize_t)n, "%s: loom_write(%zu bytes) returned %s", c->name, n, t_errname(w));
    return 0;
}

/* Reads more into c->buf: the count, or 0 at the connection's end (EOF or a reset). */
static ssize_t fill(client *c)
{
    CHECK_MSG(c->len < sizeof c->buf, "%s: response too long", c->name);
    ssize_t k =
            c->over ? loom_recvfrom(c->fd, c->buf + c->len, sizeof c->buf - c->len, MSG_DONTWAIT, NULL, NULL)
                    : loom_read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
    if (k == -ECONNRESET)
        return 0;
    CHECK_MSG(k >= 0, "%s: loom_read returned %s%s", c->name, t_errname(k),
              k == -ETIMEDOUT ? " (the hang guard's context ended)" : "");
    c->len += (size_t)k;
    return k;
}

enum { WHOLE, NOTHING, PARTIAL }; /* what read_response found */

/* Reads one response to GET / and checks all of it: "HTTP/1.1 200 OK", Content-Type,
 * Content-Length, Date and maybe Connection (no other header), then exactly
 * Content-Length bytes of body.  WHOLE (then *closing: it said "Connection: close"), or the
 * connection ended before its first byte (NOTHING) or inside it (PARTIAL). */
static int read_response(client *c, int *closing)
{
    char *hend;
    while (!(hend = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (fill(c) == 0)
            return c->len ? PARTIAL : NOTHING;
    size_t head_len = (size_t)(hend - c->buf) + 4;
    static const char status[] = "HTTP/1.1 200 OK\r\n";
    CHECK_MSG(strncmp(c->buf, status, sizeof status - 1) == 0,
              "%s: expected \"HTTP/1.1 200 OK\", got \"%.*s\"", c->name, (int)strcspn(c->buf, "\r"), c->buf);
    long body_len = -1;
    int seen_type = 0, seen_date = 0, seen_conn = 0;
    *closing = 0;
    for (char *line = c->buf + sizeof status - 1; line < hend + 2;) {
        char *eol = memmem(line, (size_t)(hend + 2 - line), "\r\n", 2);
        char *colon = memchr(line, ':', (size_t)(eol - line));
        CHECK_MSG(colon && colon[1] == ' ', "%s: bad header line \"%.*s\"", c->name, (int)(eol - line), line);
        size_t nl = (size_t)(colon - line);
        const char *v = colon + 2;
        int vl = (int)(eol - v);
        if (nl == 14 && strncmp(line, "Content-Length", nl) == 0) {
            CHECK_MSG(body_len < 0, "%s: two Content-Length headers", c->name);
            body_len = atol(v);
            CHECK_MSG(body_len == (long)strlen(BODY), "%s: Content-Length: %.*s", c->name, vl, v);
        } else if (nl == 12 && strncmp(line, "Content-Type", nl) == 0) {
            CHECK_MSG(!seen_type++, "%s: two Content-Type headers", c->name);
        } else if (nl == 4 && strncmp(line, "Date", nl) == 0) {
            CHECK_MSG(!seen_date++, "%s: two Date headers", c->name);
        } else if (nl == 10 && strncmp(line, "Connection", nl) == 0) {
            CHECK_MSG(!seen_conn++ && vl == 5 && strncmp(v, "close", 5) == 0, "%s: Connection: %.*s", c->name,
                      vl, v);
            *closing = 1;
        } else {
            FAIL("%s: unexpected header \"%.*s\"", c->name, (int)(eol - line), line);
        }
        line = eol + 2;
    }
    CHECK_MSG(body_len >= 0 && seen_type && seen_date, "%s: a header is missing in \"%.*s\"", c->name,
              (int)head_len, c->buf);
    while (c->len < head_len + (size_t)body_len)
        if (fill(c) == 0)
            return PARTIAL; /* fewer bytes than Content-Length: visibly cut */
    CHECK_MSG(memcmp(c->buf + head_len, BODY, (size_t)body_len) == 0, "%s: body \"%.*s\"", c->name,
              (int)body_len, c->buf + head_len);
    size_t used = head_len + (size_t)body_len;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
    return WHOLE;
}

/* The connection must end (EOF or a reset) with no byte of another response. */
static void expect_end(client *c, const char *what)
{
    int closing;
    int r = read_response(c, &closing);
    CHECK_MSG(r == NOTHING, "%s: %s: expected the connection to end, got %s", c->name, what,
              r == WHOLE ? "another response" : "part of one");
}

/* A hang guard: the calling goroutine's loom calls return -ETIMEDOUT once it ends.  Its
 * context becomes a child of its current one, which unguard gives back. */
typedef struct guard {
    loom_ctx *ctx, *old;
} guard;

static guard guard_for(int seconds)
{
    guard g = { loom_ctx_with_timeout(loom_ctx_current(), seconds * SEC), NULL };
    CHECK(g.ctx);
    g.old = loom_ctx_set(g.ctx);
    return g;
}

static void unguard(guard g)
{
    loom_ctx_set(g.old);
    loom_ctx_free(g.ctx);
}

/* ---- starting and stopping the server with its options */

static void start(const char *read_s, const char *write_s, const char *idle_s, const char *grace_s,
                  const char *path)
{
    setenv("READ_TIMEOUT", read_s, 1);
    setenv("WRITE_TIMEOUT", write_s, 1);
    setenv("IDLE_TIMEOUT", idle_s, 1);
    setenv("SHUTDOWN_GRACE", grace_s, 1);
    t_server_start(&srv, path, "httpd");
    server_addr = (struct sockaddr_in){ .sin_family = AF_INET,
                                        .sin_port = htons((uint16_t)srv.port),
                                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
}

static int term_sent; /* set just before the SIGTERM */

static void term(void)
{
    __atomic_store_n(&term_sent, 1, __ATOMIC_SEQ_CST);
    CHECK_OK(kill(srv.pid, SIGTERM));
}

/* After the server's exit (t_server_wait): how many connections it says it cut. */
static long cut_count(void)
{
    return t_server_cut_count(&srv, "httpd");
}

/* ---- load: SIGTERM under many keep-alive clients */

static struct {
    int target; /* responses before the SIGTERM */
    int responses, after_term, closes, ended, refused;
    loom_waitgroup done;
} load = { .done = LOOM_WAITGROUP_INIT };

static void add(int *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
}

static void load_client(void *arg)
{
    int id = (int)(intptr_t)arg;
    char name[32], reqs[3 * sizeof GET];
    snprintf(name, sizeof name, "load client %d", id);
    client *c = malloc(sizeof *c);
    CHECK(c);
    t_rng rng;
    t_rng_seed(&rng, (uint64_t)id + 1);
    guard g = guard_for(120);
    for (;;) {
        int r = dial(c, name, 0);
        if (r == -ECONNREFUSED) { /* the listener is closed: done */
            CHECK_MSG(t_get(&term_sent), "%s: connection refused before the SIGTERM", name);
            add(&load.refused);
            break;
        }
        if (r == -ECONNRESET) { /* the listener closed during the handshake */
            CHECK_MSG(t_get(&term_sent), "%s: connection reset before the SIGTERM", name);
            continue;
        }
        CHECK_MSG(r == 0, "%s: loom_connect: %s", name, t_errname(r));
        /* requests until the connection ends: 1 to 3 at once */
        for (int ended = 0; !ended;) {
            int k = 1 + (int)t_rng_below(&rng, 3);
            for (int i = 0; i < k; i++)
                memcpy(reqs + i * (sizeof GET - 1), GET, sizeof GET - 1);
            if (send_all(c, reqs, (size_t)k * (sizeof GET - 1)) != 0) {
                CHECK_MSG(t_get(&term_sent), "%s: the server closed the connection before the SIGTERM", name);
                break;
            }
            for (int i = 0; i < k && !ended; i++) {
                int closing, res = read_response(c, &closing);
                CHECK_MSG(res != PARTIAL, "%s: a response cut short (%zu bytes, then the end)", name, c->len);
                int after = t_get(&term_sent);
                if (res == NOTHING) { /* closed (idle, or the request not read yet) */
                    CHECK_MSG(after, "%s: the server closed the connection before the SIGTERM", name);
                    add(&load.ended);
                    ended = 1;
                    break;
                }
                add(&load.responses);
                if (after)
                    add(&load.after_term);
                if (closing) { /* the last response: the end follows */
                    CHECK_MSG(after, "%s: \"Connection: close\" before the SIGTERM", name);
                    add(&load.closes);
                    expect_end(c, "after \"Connection: close\"");
                    ended = 1;
                }
            }
        }
        hang_up(c);
    }
    unguard(g);
    free(c);
    loom_wg_done(&load.done);
}

static int load_main(void *arg)
{
    int n = *(int *)arg;
    CHECK_OK(loom_wg_add(&load.done, n));
    for (int i = 0; i < n; i++)
        CHECK_MSG(loom_go(load_client, (void *)(intptr_t)i) != 0, "loom_go: %s", strerror(errno));
    T_WAIT_UNTIL(t_get(&load.responses) >= load.target, 120, "%d responses of %d", t_get(&load.responses),
                 load.target);
    term();
    loom_wg_wait(&load.done);
    return 0;
}

static void case_load(const char *path)
{
    /* long deadlines: only the shutdown may end a connection */
    start("600", "600", "600", "60", path);
    int n = (int)t_scale(64);
    load.target = 500 * n;
    term_sent = 0;
    T_RUN(load_main, &n);
    t_server_wait(&srv, GUARD_S);
    long cut = cut_count();
    printf("test_httpd_shutdown: load: %d clients, %d responses (%d after the SIGTERM, %d of them with "
           "\"Connection: close\"), %d connections closed without one, all refused at last\n",
           n, load.responses, load.after_term, load.closes, load.ended);
    CHECK_EQ(load.refused, n);
    CHECK_MSG(cut == 0, "the server cut %ld connections, with nothing slow to cut", cut);
}

/* ---- inflight and grace: a request half sent when SIGTERM comes */

/* Sends a whole request and half of a second in one write, and reads the first response:
 * the server has read the half (it came in the same segment), so it is in flight. */
static void half_request(client *a)
{
    static const char two[] =
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET / HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    int closing;
    CHECK_OK(dial(a, "half-sent request", 0));
    CHECK_OK(send_all(a, two, sizeof two - 1));
    CHECK_MSG(read_response(a, &closing) == WHOLE && !closing,
              "%s: no keep-alive response to the first request", a->name);
}

/* Connects until refused (the listener is closed), closing what it gets. */
static void until_refused(void)
{
    client *d = malloc(sizeof *d);
    CHECK(d);
    int r;
    while ((r = dial(d, "a late client", 0)) == 0 || r == -ECONNRESET) { /* reset: closed mid-handshake */
        if (r == 0)
            hang_up(d);
        loom_sleep(5 * 1000 * 1000);
    }
    CHECK_MSG(r == -ECONNREFUSED, "connecting after the SIGTERM: %s, not ECONNREFUSED", t_errname(r));
    free(d);
}

static int inflight_main(void *arg)
{
    (void)arg;
    guard g = guard_for(GUARD_S);
    client *a = malloc(sizeof *a), *b = malloc(sizeof *b), *s = malloc(sizeof *s);
    CHECK(a && b && s);
    int closing;
    half_request(a);
    CHECK_OK(dial(b, "idle keep-alive", 0));
    CHECK_OK(send_all(b, GET, sizeof GET - 1));
    CHECK_MSG(read_response(b, &closing) == WHOLE && !closing, "%s: no keep-alive response", b->name);
    CHECK_OK(dial(s, "silent new connection", 0));

    term();
    expect_end(b, "idle at the SIGTERM");
    expect_end(s, "idle at the SIGTERM");
    until_refused();
    CHECK_MSG(!t_server_exited(&srv), "the server exited with a request in flight (wait status 0x%x)",
              srv.status);

    CHECK_OK(send_all(a, "\r\n", 2)); /* the rest of the request */
    CHECK_MSG(read_response(a, &closing) == WHOLE, "%s: no whole response after the SIGTERM", a->name);
    CHECK_MSG(closing, "%s: the response after the SIGTERM lacks \"Connection: close\"", a->name);
    expect_end(a, "after \"Connection: close\"");
    hang_up(a);
    hang_up(b);
    hang_up(s);
    free(a);
    free(b);
    free(s);
    unguard(g);
    return 0;
}

static void case_inflight(const char *path)
{
    start("600", "600", "600", "600", path);
    term_sent = 0;
    T_RUN(inflight_main, NULL);
    t_server_wait(&srv, GUARD_S);
    CHECK_EQ(cut_count(), 0);
}

static int grace_main(void *arg)
{
    (void)arg;
    guard g = guard_for(GUARD_S);
    client *a = malloc(sizeof *a);
    CHECK(a);
    half_request(a);
    term();
    /* never finished: cut when the grace period is over (its READ_TIMEOUT is 600 s) */
    expect_end(a, "a request left half sent after the SIGTERM");
    hang_up(a);
    free(a);
    unguard(g);
    return 0;
}

static void case_grace(const char *path)
{
    start("600", "600", "600", "1", path);
    term_sent = 0;
    T_RUN(grace_main, NULL);
    t_server_wait(&srv, GUARD_S);
    CHECK_EQ(cut_count(), 1);
}

/* ---- deadlines: short timeouts, no shutdown */

static void silent(void)
{
    guard g = guard_for(GUARD_S);
    client *c = malloc(sizeof *c);
    CHECK(c);
    CHECK_OK(dial(c, "silent client", 0));
    expect_end(c, "sending nothing");
    hang_up(c);
    free(c);
    unguard(g);
}

static void idle(void)
{
    guard g = guard_for(GUARD_S);
    client *c = malloc(sizeof *c);
    CHECK(c);
    int closing = 0, r = NOTHING;
    /* a machine slower than READ_TIMEOUT between the connect and the request sees the
     * connection closed first: try again */
    for (int tries = 0; tries < 10; tries++) {
        CHECK_OK(dial(c, "idle keep-alive", 0));
        if (send_all(c, GET, sizeof GET - 1) == 0 && (r = read_response(c, &closing)) == WHOLE)
            break;
        CHECK_MSG(r != PARTIAL, "%s: a response cut short", c->name);
        hang_up(c);
    }
    CHECK_MSG(r == WHOLE && !closing, "%s: no keep-alive response in 10 tries", c->name);
    expect_end(c, "idle after a response");
    hang_up(c);
    free(c);
    unguard(g);
}

/* A request head that never ends, a line every 0.1 s: each read gets bytes well within
 * READ_TIMEOUT of the last, but the request as a whole does not arrive within it. */
static void slowloris(void)
{
    guard g = guard_for(GUARD_S);
    client *c = malloc(sizeof *c);
    CHECK(c);
    CHECK_OK(dial(c, "slow request head", 0));
    int lines = 0;
    for (int r = send_all(c, "GET / HTTP/1.1\r\n", 16); r == 0; r = send_all(c, "X: 1\r\n", 6), lines++) {
        loom_sleep(100 * 1000 * 1000);
        char b;
        ssize_t k = loom_recvfrom(c->fd, &b, 1, MSG_DONTWAIT | MSG_PEEK, NULL, NULL);
        if (k == 0 || k == -ECONNRESET)
            break; /* cut */
        CHECK_MSG(k == -EAGAIN, "%s: recv: %s (a response to a request not sent whole?)", c->name,
                  k > 0 ? "bytes" : t_errname(k));
        CHECK_MSG(lines < GUARD_S * 10, "%s: not cut after %d header lines", c->name, lines);
    }
    hang_up(c);
    free(c);
    unguard(g);
}

/* ---- a client that sends requests and reads nothing */

typedef struct stall {
    client c;
    loom_waitgroup done;
    long written; /* requests */
    int err;      /* how the writer's last write failed */
} stall;

/* Writes pipelined requests until the server cuts the connection. */
static void stall_writer(void *arg)
{
    stall *s = arg;
    enum { N = 1000 };
    char *reqs = malloc(N * (sizeof GET - 1));
    CHECK(reqs);
    for (int i = 0; i < N; i++)
        memcpy(reqs + i * (sizeof GET - 1), GET, sizeof GET - 1);
    guard g = guard_for(GUARD_S); /* the cut must come before this ends */
    while ((s->err = send_all(&s->c, reqs, N * (sizeof GET - 1))) == 0)
        s->written += N;
    unguard(g);
    free(reqs);
    loom_wg_done(&s->done);
}

static stall *stall_start(void)
{
    stall *s = calloc(1, sizeof *s);
    CHECK(s);
    s->done = (loom_waitgroup)LOOM_WAITGROUP_INIT;
    CHECK_OK(dial(&s->c, "client that does not read", 4096));
    CHECK_OK(loom_wg_add(&s->done, 1));
    CHECK(loom_go(stall_writer, s) != 0);
    return s;
}

/* Once the server has cut it (the writer's write failed: the connection was reset, so all
 * it got is there): what the client got is whole responses, maybe one cut short (visibly:
 * fewer bytes than its Content-Length), then the end.  Returns how many whole ones. */
static long stall_check(stall *s)
{
    loom_wg_wait(&s->done);
    s->c.over = 1;
    long got = 0;
    int closing, r;
    while ((r = read_response(&s->c, &closing)) == WHOLE)
        got++;
    hang_up(&s->c);
    return got;
}

static void stall_at_deadline(void)
{
    stall *s = stall_start();
    long got = stall_check(s);
    printf("test_httpd_shutdown: deadlines: a client that read nothing was cut after %ld requests, with %ld "
           "whole responses in its buffer\n",
           s->written, got);
    free(s);
}

static int deadlines_main(void *arg)
{
    (void)arg;
    silent();
    idle();
    slowloris();
    stall_at_deadline();
    return 0;
}

static void case_deadlines(const char *path)
{
    start("2", "1", "1", "60", path);
    term_sent = 0;
    T_RUN(deadlines_main, NULL);
    term();
    t_server_wait(&srv, GUARD_S);
    printf("test_httpd_shutdown: deadlines: the server cut %ld connections\n", cut_count());
}

/* ---- renew: an idle deadline that moves on */

static int renew_main(void *arg)
{
    (void)arg;
    guard g = guard_for(GUARD_S);
    client *c = malloc(sizeof *c), *s = malloc(sizeof *s);
    CHECK(c && s);
    int closing = 0, r = NOTHING;
    /* (a machine slower than READ_TIMEOUT between the connect and the request sees the
     * connection closed first: try again) */
    for (int tries = 0; tries < 10; tries++) {
        CHECK_OK(dial(c, "keep-alive past READ_TIMEOUT", 0));
        if (send_all(c, GET, sizeof GET - 1) == 0 && (r = read_response(c, &closing)) == WHOLE)
            break;
        CHECK_MSG(r != PARTIAL, "%s: a response cut short", c->name);
        hang_up(c);
    }
    CHECK_MSG(r == WHOLE && !closing, "%s: no keep-alive response in 10 tries", c->name);
    CHECK_OK(dial(s, "silent client", 0));
    expect_end(s, "sending nothing"); /* READ_TIMEOUT after its accept, so after c's too */
    loom_sleep(500 * 1000 * 1000);
    CHECK_OK(send_all(c, GET, sizeof GET - 1));
    CHECK_MSG(read_response(c, &closing) == WHOLE && !closing,
              "%s: closed at READ_TIMEOUT, though it had a response since and IDLE_TIMEOUT is 600 s",
              c->name);
    hang_up(c);
    hang_up(s);
    free(c);
    free(s);
    unguard(g);
    return 0;
}

static void case_renew(const char *path)
{
    start("1", "600", "600", "60", path);
    term_sent = 0;
    T_RUN(renew_main, NULL);
    term();
    t_server_wait(&srv, GUARD_S);
    CHECK_EQ(cut_count(), 0);
}

/* ---- stall: SIGTERM with a client that reads nothing */

static int stall_main(void *arg)
{
    (void)arg;
    stall *s = stall_start();
    int avail = 0;
    /* the server has begun to answer */
    T_WAIT_UNTIL(ioctl(s->c.fd, FIONREAD, &avail) == 0 && avail > 0, GUARD_S, "no response bytes");
    term();
    stall_check(s); /* cut at the grace period's end, or closed after one last response */
    free(s);
    T_WAIT_UNTIL(t_server_exited(&srv), GUARD_S, "the server's exit");
    return 0;
}

static void case_stall(const char *path)
{
    start("600", "600", "600", "1", path);
    term_sent = 0;
    T_RUN(stall_main, NULL);
    t_server_wait(&srv, GUARD_S);
    long cut = cut_count();
    CHECK_LE(cut, 1);
    printf("test_httpd_shutdown: stall: %s\n",
           cut ? "cut when the grace period was over"
               : "closed after its last response, before the grace period was over");
}

int main(int argc, char **argv)
{
    const char *path = NULL;
#ifdef LOOM_EXAMPLE_BIN
    path = LOOM_EXAMPLE_BIN;
#endif
    if (!path) {
        printf("test_httpd_shutdown: skipped: examples not built (LOOM_BUILD_EXAMPLES=OFF)\n");
        return 77; /* ctest: skipped (SKIP_RETURN_CODE) */
    }
    t_cases(argc, argv);
    t_server_watchdog(270); /* ctest's limit is 300 s */
    t_raise_nofile();
    static const struct {
        const char *name;
        void (*fn)(const char *path);
    } cases[] = {
        { "load", case_load },           { "inflight", case_inflight }, { "grace", case_grace },
        { "deadlines", case_deadlines }, { "renew", case_renew },       { "stall", case_stall },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!t_want(cases[i].name))
            continue;
        int64_t t0 = t_clock_ns();
        cases[i].fn(path);
        printf("test_httpd_shutdown: %s: ok (%.1f s)\n", cases[i].name, (double)(t_clock_ns() - t0) / 1e9);
        fflush(stdout);
    }
    printf("test_httpd_shutdown: ok\n");
    return 0;
}
