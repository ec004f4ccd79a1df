/* netclient: a loom load generator for the servers of the benchmark suite —
 * examples/echo.c and examples/httpd.c, and their Go twins go/echo and go/httpd.
 * Each of --conns goroutines keeps one TCP connection and does one request at a
 * time for --duration_ms, checking every answer (req/s, p50 and p99 latency):
 *   --mode=echo  sends --msg bytes, expects the same bytes back;
 *   --mode=http  sends "GET / HTTP/1.1" (keep-alive), expects 200 with a
 *                Content-Length body; reconnects when the server closes.
 *   bench_netclient --port=P [--mode=echo|http] [--host=127.0.0.1] [--conns=64]
 *                   [--duration_ms=5000] [--msg=64] [--name=echo]
 *   bench_netclient --smoke   (serves itself: in-process loom echo and HTTP servers,
 *                              each mode in turn)
 */
#define _GNU_SOURCE 1 /* memmem */
#include <loom.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include "bench.h"

static int64_t conns, duration_ns, msg_len;
static int mode_http;
static struct sockaddr_in addr;
static int64_t start_ns;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

struct stats {
    int64_t *lat;
    size_t n, cap;
    int64_t reconnects;
};
static struct stats *st;

static void record(struct stats *s, int64_t v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 4096;
        if (!(s->lat = realloc(s->lat, s->cap * sizeof *s->lat)))
            bench_fail("out of memory");
    }
    s->lat[s->n++] = v;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        bench_fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = loom_connect(fd, (struct sockaddr *)&addr, sizeof addr);
    if (r != 0)
        bench_fail("connect: %s", strerror(-r));
    return fd;
}

/* ---- echo mode: one message, its echo checked byte for byte */
static void echo_roundtrip(int fd, char *out, char *in, uint64_t seq)
{
    for (int64_t i = 0; i < msg_len; i++)
        out[i] = (char)(seq >> (8 * (i % 8)));
    ssize_t w = loom_write(fd, out, (size_t)msg_len);
    if (w != msg_len)
        bench_fail("write returned %zd (%s)", w, w < 0 ? strerror((int)-w) : "short");
    for (int64_t got = 0; got < msg_len;) {
        ssize_t k = loom_read(fd, in + got, (size_t)(msg_len - got));
        if (k <= 0)
            bench_fail("read returned %zd (%s) after %" PRId64 " of %" PRId64 " bytes", k,
                       k < 0 ? strerror((int)-k) : "EOF", got, msg_len);
        got += k;
    }
    if (memcmp(in, out, (size_t)msg_len) != 0)
        bench_fail("the echo differs from the message sent");
}

/* ---- http mode */
struct hconn {
    int fd;
    size_t len;
    char buf[16384];
};

/* 0: a 200 response with a body; 1: the connection was closed before any byte of
 * the response (a keep-alive connection the server dropped: redial, retry);
 * 2: as 0, but the server said Connection: close. */
static int http_roundtrip(struct hconn *c)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    ssize_t w = loom_write(c->fd, req, sizeof req - 1);
    if (w == -EPIPE || w == -ECONNRESET)
        return 1;
    if (w != (ssize_t)sizeof req - 1)
        bench_fail("write returned %zd (%s)", w, w < 0 ? strerror((int)-w) : "short");
    size_t hdr_end;
    for (;;) {
        char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (e) {
            hdr_end = (size_t)(e - c->buf) + 4;
            break;
        }
        if (c->len == sizeof c->buf)
            bench_fail("response header longer than %zu bytes", sizeof c->buf);
        ssize_t k = loom_read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (k <= 0) {
            if (c->len == 0 && (k == 0 || k == -ECONNRESET))
                return 1;
            bench_fail("read returned %zd (%s) inside a response", k, k < 0 ? strerror((int)-k) : "EOF");
        }
        c->len += (size_t)k;
    }
    if (strncmp(c->buf, "HTTP/1.1 200", 12) != 0 && strncmp(c->buf, "HTTP/1.0 200", 12) != 0)
        bench_fail("not a 200 response: %.*s", (int)strcspn(c->buf, "\r"), c->buf);
    long clen = -1;
    int close_after = strncmp(c->buf, "HTTP/1.0", 8) == 0;
    for (char *line = memmem(c->buf, hdr_end, "\r\n", 2) + 2; line < c->buf + hdr_end - 2;) {
        char *eol = memmem(line, (size_t)(c->buf + hdr_end - line), "\r\n", 2);
        if (strncasecmp(line, "content-length:", 15) == 0)
            clen = strtol(line + 15, NULL, 10);
        else if (strncasecmp(line, "connection:", 11) == 0) {
            char *v = line + 11;
            while (*v == ' ')
                v++;
            if (strncasecmp(v, "close", 5) == 0)
                close_after = 1;
            else if (strncasecmp(v, "keep-alive", 10) == 0)
                close_after = 0;
        }
        line = eol + 2;
    }
    if (clen <= 0)
        bench_fail("response without a Content-Length body");
    size_t need = hdr_end + (size_t)clen;
    if (need > sizeof c->buf)
        bench_fail("response longer than %zu bytes", sizeof c->buf);
    while (c->len < need) {
        ssize_t k = loom_read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (k <= 0)
            bench_fail("read returned %zd inside a body", k);
        c->len += (size_t)k;
    }
    memmove(c->buf, c->buf + need, c->len - need);
    c->len -= need;
    return close_after ? 2 : 0;
}

static void client(void *arg)
{
    struct stats *s = &st[(intptr_t)arg];
    char *out = malloc((size_t)msg_len), *in = malloc((size_t)msg_len);
    struct hconn *h = malloc(sizeof *h);
    if (!out || !in || !h)
        bench_fail("out of memory");
    h->fd = dial();
    h->len = 0;
    uint64_t seq = (uint64_t)(intptr_t)arg << 40;
    while (bench_now_ns() - start_ns < duration_ns) {
        int64_t t0 = bench_now_ns();
        int r = 0;
        if (mode_http)
            r = http_roundtrip(h);
        else
            echo_roundtrip(h->fd, out, in, ++seq);
        int64_t t1 = bench_now_ns();
        if (r != 1)
            record(s, t1 - t0);
        if (r != 0) {
            close(h->fd);
            h->fd = dial();
            h->len = 0;
            if (++s->reconnects > 1000000)
                bench_fail("the server keeps closing connections");
        }
    }
    close(h->fd);
    free(out);
    free(in);
    free(h);
    loom_wg_done(&wg);
}

/* ---- --smoke: in-process servers, a goroutine per connection */
static void echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (;;) {
        ssize_t k = loom_read(fd, buf, sizeof buf);
        if (k <= 0 || loom_write(fd, buf, (size_t)k) != k)
            break;
    }
    close(fd);
}

static void http_conn(void *arg)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 14\r\n\r\nHello, World!\n";
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    size_t len = 0;
    for (;;) {
        ssize_t k = loom_read(fd, buf + len, sizeof buf - len);
        if (k <= 0)
            break;
        len += (size_t)k;
        char *e;
        while ((e = memmem(buf, len, "\r\n\r\n", 4))) {
            size_t used = (size_t)(e - buf) + 4;
            if (loom_write(fd, resp, sizeof resp - 1) != (ssize_t)sizeof resp - 1)
                goto out;
            memmove(buf, buf + used, len - used);
            len -= used;
        }
        if (len == sizeof buf)
            break;
    }
out:
    close(fd);
}

static int smoke_lfd = -1;

static void smoke_server(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = loom_accept(smoke_lfd, NULL, NULL);
        if (fd < 0)
            return;
        if (!loom_go(mode_http ? http_conn : echo_conn, (void *)(intptr_t)fd))
            bench_fail("loom_go: %s", strerror(errno));
    }
}

static void smoke_listen(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    smoke_lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (smoke_lfd < 0 || bind(smoke_lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(smoke_lfd, 128) != 0 || getsockname(smoke_lfd, (struct sockaddr *)&a, &al) != 0)
        bench_fail("listen: %s", strerror(errno));
    addr.sin_port = a.sin_port;
    if (!loom_go(smoke_server, NULL))
        bench_fail("loom_go: %s", strerror(errno));
}

static void run_phase(int procs)
{
    free(st);
    if (!(st = calloc((size_t)conns, sizeof *st)))
        bench_fail("out of memory");
    if (loom_wg_add(&wg, conns) != 0)
        bench_fail("loom_wg_add");
    start_ns = bench_now_ns();
    for (int64_t i = 0; i < conns; i++)
        if (!loom_go(client, (void *)(intptr_t)i))
            bench_fail("loom_go: %s", strerror(errno));
    loom_wg_wait(&wg);
    int64_t el = bench_now_ns() - start_ns;
    size_t total = 0;
    int64_t reconnects = 0;
    for (int64_t i = 0; i < conns; i++) {
        total += st[i].n;
        reconnects += st[i].reconnects;
    }
    if (total == 0)
        bench_fail("no request completed");
    int64_t *all = malloc(total * sizeof *all);
    if (!all)
        bench_fail("out of memory");
    for (int64_t i = 0, k = 0; i < conns; k += (int64_t)st[i].n, i++) {
        memcpy(all + k, st[i].lat, st[i].n * sizeof *all);
        free(st[i].lat);
    }
    if (reconnects)
        bench_note("%" PRId64 " reconnections (the server closed connections)", reconnects);
    bench_result("req_per_s", (double)total / ((double)el / 1e9), "req/s", procs);
    bench_result("p50_ms", (double)bench_quantile(all, total, 0.50) / 1e6, "ms", procs);
    bench_result("p99_ms", (double)bench_quantile(all, total, 0.99) / 1e6, "ms", procs);
    free(all);
}

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    if (bench_is_smoke() && !bench_param_str("port")) {
        for (mode_http = 0; mode_http <= 1; mode_http++) { /* each mode against its own server */
            smoke_listen();
            run_phase(procs);
            loom_fd_close(smoke_lfd); /* ends the accept loop */
        }
        return 0;
    }
    run_phase(procs);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "echo");
    const char *name = bench_param_str("name");
    if (name)
        bench_init(argc, argv, name);
    const char *mode = bench_param_str("mode");
    if (mode && strcmp(mode, "http") == 0)
        mode_http = 1;
    else if (mode && strcmp(mode, "echo") != 0)
        bench_fail("--mode must be echo or http");
    conns = bench_param("conns", 64, 4);
    duration_ns = bench_param("duration_ms", 5000, 100) * 1000000;
    msg_len = bench_param("msg", 64, 64);
    int64_t port = bench_param("port", 0, 0);
    const char *host = bench_param_str("host");
    if (conns < 1 || duration_ns < 1 || msg_len < 1)
        bench_fail("bad parameters");
    if (!bench_is_smoke() && (port < 1 || port > 65535))
        bench_fail("--port=P is required (or --smoke)");
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host ? host : "127.0.0.1", &addr.sin_addr) != 1)
        bench_fail("bad --host");
    bench_watchdog((unsigned)(duration_ns / 1000000000) * 2 + 60, "did not finish");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
