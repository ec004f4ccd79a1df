/*
 * test_httpd.c — examples/httpd.c under thousands of concurrent loom clients.
 *
 * Starts the server (t_server.h), then inside loom_run one goroutine per connection (2000,
 * / LOOM_TEST_SCALE) plays one of these scenarios and checks every response in full: the
 * status line, each header (Content-Type, Content-Length, Date, Connection, Allow; no
 * others), and the body byte for byte, and that the connection then stays open or is
 * closed by the server as HTTP says:
 *   keep-alive   2-10 GET / one after another on one connection;
 *   pipelined    up to 20 requests (GET /, GET /missing?q, HEAD /, POST with a body, some
 *                bigger than the server's buffer, HTTP/1.0 keep-alive, blank lines between)
 *                written at once in random pieces, then the answers read in order;
 *   dribble      one request written a few bytes at a time;
 *   404          a 404 and then a 200 on the same connection;
 *   garbage      a valid request then a malformed one: 200, then 400 and the server closes;
 *   refused      a 9 KB request head (431), a chunked body (501): the server closes;
 *   close        "Connection: close" (with another request behind it, never answered);
 *   http/1.0     without keep-alive (closed), and with it (kept open).
 * Last, the server must exit with status 0 on SIGTERM.
 */
#include "t_server.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/socket.h>

static struct sockaddr_in server_addr;
static loom_waitgroup clients_done = LOOM_WAITGROUP_INIT;
static int64_t responses_checked;

/* ---- what a response must be */
enum { R200, R404, R405, R400, R431, R501 };
static const struct {
    int status;
    const char *reason, *body;
} replies[] = {
    [R200] = { 200, "OK", "Hello, World!\n" },
    [R404] = { 404, "Not Found", "Not Found\n" },
    [R405] = { 405, "Method Not Allowed", "Method Not Allowed\n" },
    [R400] = { 400, "Bad Request", "Bad Request\n" },
    [R431] = { 431, "Request Header Fields Too Large", "Request Header Fields Too Large\n" },
    [R501] = { 501, "Not Implemented", "Not Implemented\n" },
};
enum { KEEP, CLOSE, KEEP10 }; /* no Connection header; "Connection: close"; "...: keep-alive" */

typedef struct expect {
    int reply, conn, head; /* head: a HEAD request (no body) */
} expect;

/* ---- one client connection */
typedef struct client {
    int id, fd;
    t_rng rng;
    size_t len; /* bytes in buf not consumed yet */
    char buf[16384];
} client;

static void client_dial(client *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_MSG(c->fd >= 0, "connection %d: socket: %s", c->id, strerror(errno));
    int r = loom_connect(c->fd, (struct sockaddr *)&server_addr, sizeof server_addr);
    CHECK_MSG(r == 0, "connection %d: loom_connect: %s", c->id, strerror(-r));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->len = 0;
}

static void send_all(client *c, const char *p, size_t n)
{
    ssize_t w = loom_write(c->fd, p, n);
    CHECK_MSG(w == (ssize_t)n, "connection %d: loom_write(%zu bytes) returned %s", c->id, n, t_errname(w));
}

/* Sends p[0..n) in pieces of 1..maxpiece bytes (each its own write and TCP segment). */
static void send_pieces(client *c, const char *p, size_t n, size_t maxpiece)
{
    while (n) {
        size_t k = 1 + t_rng_below(&c->rng, maxpiece);
        if (k > n)
            k = n;
        send_all(c, p, k);
        p += k;
        n -= k;
        if (t_rng_below(&c->rng, 4) == 0)
            loom_yield();
    }
}

/* Reads more into c->buf; 0 at EOF. */
static ssize_t fill(client *c, const char *what)
{
    CHECK_MSG(c->len < sizeof c->buf, "connection %d: %s: response too long", c->id, what);
    ssize_t k = loom_read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
    CHECK_MSG(k >= 0, "connection %d: %s: loom_read returned %s", c->id, what, t_errname(k));
    c->len += (size_t)k;
    return k;
}

static void check_date(client *c, const char *v, size_t n, const char *what)
{
    char s[64];
    struct tm tm = { 0 };
    CHECK_MSG(n == 29, "connection %d: %s: Date is %zu bytes long, not 29: %.*s", c->id, what, n, (int)n, v);
    memcpy(s, v, n);
    s[n] = 0;
    const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    CHECK_MSG(end && *end == 0, "connection %d: %s: Date is not an IMF-fixdate: %s", c->id, what, s);
    time_t t = timegm(&tm), now = time(NULL);
    CHECK_MSG(t > now - 600 && t < now + 600, "connection %d: %s: Date is %s, not now", c->id, what, s);
}

/* Reads one response and checks it against *e, all of it; the bytes after it (the next
 * pipelined response) stay in c->buf. */
static void read_response(client *c, const expect *e, const char *what)
{
    char *hend;
    while (!(hend = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        CHECK_MSG(fill(c, what) > 0, "connection %d: %s: EOF %s", c->id, what,
                  c->len ? "inside the response head" : "instead of a response");
    size_t head_len = (size_t)(hend - c->buf) + 4;
    int rep = e->reply;

    /* status line */
    char want[128];
    int n = snprintf(want, sizeof want, "HTTP/1.1 %d %s\r\n", replies[rep].status, replies[rep].reason);
    CHECK_MSG(strncmp(c->buf, want, (size_t)n) == 0, "connection %d: %s: expected \"%.*s\", got \"%.*s\"",
              c->id, what, n - 2, want, (int)strcspn(c->buf, "\r"), c->buf);

    /* headers: each one expected, each expected one once */
    size_t body_len = strlen(replies[rep].body);
    int seen_type = 0, seen_len = 0, seen_date = 0, seen_conn = 0, seen_allow = 0;
    for (char *line = c->buf + n; line < hend + 2;) {
        char *eol = memmem(line, (size_t)(hend + 2 - line), "\r\n", 2);
        char *colon = memchr(line, ':', (size_t)(eol - line));
        CHECK_MSG(colon && colon[1] == ' ', "connection %d: %s: bad header line \"%.*s\"", c->id, what,
                  (int)(eol - line), line);
        size_t nl = (size_t)(colon - line), vl = (size_t)(eol - colon - 2);
        const char *v = colon + 2;
#define IS(name) (nl == strlen(name) && strncmp(line, name, nl) == 0)
#define VALUE(s) (vl == strlen(s) && strncmp(v, s, vl) == 0)
        if (IS("Content-Type")) {
            CHECK_MSG(!seen_type++ && VALUE("text/plain; charset=utf-8"),
                      "connection %d: %s: Content-Type: %.*s", c->id, what, (int)vl, v);
        } else if (IS("Content-Length")) {
            char len_s[32];
            snprintf(len_s, sizeof len_s, "%zu", body_len);
            CHECK_MSG(!seen_len++ && VALUE(len_s), "connection %d: %s: Content-Length: %.*s, expected %s",
                      c->id, what, (int)vl, v, len_s);
        } else if (IS("Date")) {
            CHECK_MSG(!seen_date++, "connection %d: %s: two Date headers", c->id, what);
            check_date(c, v, vl, what);
        } else if (IS("Connection")) {
            const char *wantc = e->conn == CLOSE ? "close" : "keep-alive";
            CHECK_MSG(!seen_conn++ && e->conn != KEEP && VALUE(wantc),
                      "connection %d: %s: unexpected Connection: %.*s", c->id, what, (int)vl, v);
        } else if (IS("Allow")) {
            CHECK_MSG(!seen_allow++ && rep == R405 && VALUE("GET, HEAD"),
                      "connection %d: %s: unexpected Allow: %.*s", c->id, what, (int)vl, v);
        } else {
            FAIL("connection %d: %s: unexpected header \"%.*s\"", c->id, what, (int)(eol - line), line);
        }
#undef IS
#undef VALUE
        line = eol + 2;
    }
    CHECK_MSG(seen_type && seen_len && seen_date,
              "connection %d: %s: a header is missing (type %d, length %d, date %d)", c->id, what, seen_type,
              seen_len, seen_date);
    CHECK_MSG(seen_conn == (e->conn != KEEP), "connection %d: %s: Connection header %s", c->id, what,
              seen_conn ? "not expected" : "missing");
    CHECK_MSG(seen_allow == (rep == R405), "connection %d: %s: Allow header missing", c->id, what);

    /* body */
    size_t total = head_len + (e->head ? 0 : body_len);
    while (c->len < total)
        CHECK_MSG(fill(c, what) > 0, "connection %d: %s: EOF inside the body", c->id, what);
    CHECK_MSG(memcmp(c->buf + head_len, replies[rep].body, total - head_len) == 0,
              "connection %d: %s: body \"%.*s\", expected \"%s\"", c->id, what, (int)(total - head_len),
              c->buf + head_len, replies[rep].body);
    memmove(c->buf, c->buf + total, c->len - total);
    c->len -= total;
    __atomic_fetch_add(&responses_checked, 1, __ATOMIC_RELAXED);
}

/* After the last response: the server must close the connection (nothing more), or, if it
 * keeps it open, close it when we close ours. */
static void expect_eof(client *c, const char *what)
{
    CHECK_MSG(c->len == 0, "connection %d: %s: %zu unexpected bytes after the last response", c->id, what,
              c->len);
    ssize_t k = fill(c, what);
    CHECK_MSG(k == 0, "connection %d: %s: expected EOF, got %zd more bytes", c->id, what, k);
}

static void finish(client *c, int server_closes, const char *what)
{
    if (!server_closes)
        CHECK_OK(shutdown(c->fd, SHUT_WR)); /* we are done: on our EOF the server closes */
    expect_eof(c, what);
    CHECK_OK(loom_fd_close(c->fd));
}

static char post_body[20000]; /* filled before loom_run */

static const char GET[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test_httpd\r\n\r\n";

/* ---- scenarios */
static void keep_alive(client *c)
{
    int n = 2 + (int)t_rng_below(&c->rng, 9);
    for (int i = 0; i < n; i++) {
        send_all(c, GET, sizeof GET - 1);
        read_response(c, &(expect){ R200, KEEP, 0 }, "keep-alive GET /");
    }
    finish(c, 0, "keep-alive");
}

static void pipelined(client *c)
{
    static const struct {
        const char *req;
        expect e;
    } kinds[] = {
        { "GET / HTTP/1.1\r\nHost: x\r\n\r\n", { R200, KEEP, 0 } },
        { "GET /missing?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", { R404, KEEP, 0 } },
        { "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", { R200, KEEP, 1 } },
        { "HEAD /nope HTTP/1.1\r\n\r\n", { R404, KEEP, 1 } },
        { "GET /?a=b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", { R200, KEEP10, 0 } },
        { "\r\nGET / HTTP/1.1\r\nconnection: keep-alive\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
          { R200, KEEP, 0 } },
        { NULL, { R405, KEEP, 0 } }, /* POST with a body of random length */
    };
    enum { NKINDS = sizeof kinds / sizeof kinds[0] };
    int n = 2 + (int)t_rng_below(&c->rng, 19);
    int kind[20];
    size_t cap = 20 * (sizeof post_body + 256), len = 0;
    char *out = malloc(cap);
    CHECK(out);
    for (int i = 0; i < n; i++) {
        kind[i] = (int)t_rng_below(&c->rng, NKINDS);
        if (kinds[kind[i]].req) {
            size_t l = strlen(kinds[kind[i]].req);
            memcpy(out + len, kinds[kind[i]].req, l);
            len += l;
        } else {
            /* mostly small; sometimes bigger than the server's 8 KiB buffer */
            size_t bl = t_rng_below(&c->rng, 4) == 0 ? 8192 + t_rng_below(&c->rng, 10000)
                                                     : t_rng_below(&c->rng, 100);
            len += (size_t)sprintf(out + len, "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                                   bl);
            memcpy(out + len, post_body, bl);
            len += bl;
        }
    }
    if (t_rng_below(&c->rng, 2))
        send_all(c, out, len); /* all at once */
    else
        send_pieces(c, out, len, 200); /* split anywhere */
    free(out);
    for (int i = 0; i < n; i++)
        read_response(c, &kinds[kind[i]].e, "pipelined");
    finish(c, 0, "pipelined");
}

static void dribble(client *c)
{
    for (int i = 0; i < 2; i++) {
        send_pieces(c, GET, sizeof GET - 1, 7);
        read_response(c, &(expect){ R200, KEEP, 0 }, "GET / written a few bytes at a time");
    }
    finish(c, 0, "dribble");
}

static void not_found(client *c)
{
    static const char req[] = "GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    send_all(c, req, sizeof req - 1);
    read_response(c, &(expect){ R404, KEEP, 0 }, "GET /favicon.ico");
    send_all(c, GET, sizeof GET - 1);
    read_response(c, &(expect){ R200, KEEP, 0 }, "GET / after a 404");
    finish(c, 0, "404");
}

static void garbage(client *c)
{
    static const char *const bad[] = {
        "this is not http\r\n\r\n",
        "GET /\r\n\r\n", /* HTTP/0.9 */
        "GET / HTTP/2.0\r\n\r\n",
        "get / HTTP/1.1\r\n\r\n",
        "GET index.html HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "\x16\x03\x01\x02\x05\x01\x01\x01\xfc\x03\x03\r\n\r\n", /* TLS */
    };
    const char *g = bad[t_rng_below(&c->rng, sizeof bad / sizeof bad[0])];
    char req[256];
    int n = snprintf(req, sizeof req, "%s%s%s", GET, g, GET); /* the last GET must go unanswered */
    send_all(c, req, (size_t)n);
    read_response(c, &(expect){ R200, KEEP, 0 }, "GET / before garbage");
    read_response(c, &(expect){ R400, CLOSE, 0 }, "garbage");
    finish(c, 1, "after a 400");
}

/* What the server refuses and then closes: a head bigger than its 8 KiB buffer (431), a
 * chunked body (501: it cannot tell where the body ends). */
static void refused(client *c)
{
    if (t_rng_below(&c->rng, 2)) {
        size_t n = 0;
        char *big = malloc(12000);
        CHECK(big);
        n += (size_t)sprintf(big, "GET / HTTP/1.1\r\nX-Big: ");
        memset(big + n, 'x', 9000);
        n += 9000;
        memcpy(big + n, "\r\n\r\n", 4);
        send_all(c, big, n + 4);
        free(big);
        read_response(c, &(expect){ R431, CLOSE, 0 }, "a 9 KB request head");
        finish(c, 1, "431");
    } else {
        static const char req[] = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "5\r\nhello\r\n0\r\n\r\n";
        send_all(c, GET, sizeof GET - 1);
        send_all(c, req, sizeof req - 1);
        read_response(c, &(expect){ R200, KEEP, 0 }, "GET / before a chunked POST");
        read_response(c, &(expect){ R501, CLOSE, 0 }, "a chunked POST");
        finish(c, 1, "501");
    }
}

static void conn_close(client *c)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    send_all(c, req, sizeof req - 1);
    if (t_rng_below(&c->rng, 2))
        send_all(c, GET, sizeof GET - 1); /* after "close": must be ignored */
    read_response(c, &(expect){ R200, CLOSE, 0 }, "GET / with Connection: close");
    finish(c, 1, "Connection: close");
}

static void http10(client *c)
{
    static const char keep[] = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                      once[] = "GET / HTTP/1.0\r\n\r\n";
    send_all(c, keep, sizeof keep - 1);
    read_response(c, &(expect){ R200, KEEP10, 0 }, "HTTP/1.0 keep-alive");
    send_all(c, once, sizeof once - 1);
    read_response(c, &(expect){ R200, CLOSE, 0 }, "HTTP/1.0");
    finish(c, 1, "HTTP/1.0");
}

static void (*const scenarios[])(client *) = { keep_alive, pipelined,  dribble, not_found,  garbage,
                                               refused,    conn_close, http10,  keep_alive, pipelined };
enum { NSCEN = sizeof scenarios / sizeof scenarios[0] };

static void client_main(void *arg)
{
    client *c = malloc(sizeof *c);
    CHECK(c);
    c->id = (int)(intptr_t)arg;
    t_rng_seed(&c->rng, (uint64_t)c->id + 1000);
    client_dial(c);
    scenarios[c->id % NSCEN](c);
    free(c);
    loom_wg_done(&clients_done);
}

static int nconns;

static int main_fn(void *arg)
{
    (void)arg;
    int64_t t0 = t_clock_ns();
    CHECK_OK(loom_wg_add(&clients_done, nconns));
    for (int i = 0; i < nconns; i++)
        CHECK_MSG(loom_go(client_main, (void *)(intptr_t)i) != 0, "loom_go: %s", strerror(errno));
    loom_wg_wait(&clients_done);
    printf("test_httpd: %d connections, %lld responses checked in %.2f s\n", nconns,
           (long long)responses_checked, (double)(t_clock_ns() - t0) / 1e9);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = t_server_path(argc, argv);
    if (!path) {
        printf("test_httpd: skipped: examples not built (LOOM_BUILD_EXAMPLES=OFF)\n");
        return 77; /* ctest: skipped (SKIP_RETURN_CODE) */
    }
    t_server_watchdog(270); /* ctest's limit is 300 s */
    t_raise_nofile();
    nconns = (int)t_scale(2000);
    memset(post_body, 'b', sizeof post_body);
    if (nconns < NSCEN)
        nconns = NSCEN; /* every scenario at least once */

    t_server srv;
    t_server_start(&srv, path, "httpd");
    server_addr = (struct sockaddr_in){ .sin_family = AF_INET,
                                        .sin_port = htons((uint16_t)srv.port),
                                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    T_RUN(main_fn, NULL);
    t_server_stop(&srv);
    printf("test_httpd: ok\n");
    return 0;
}
