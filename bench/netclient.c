/* netclient: a loom load generator for the echo servers (examples/echo.c and its
 * Go twin go/echo/main.go).  Each of --conns goroutines keeps one TCP connection
 * and sends --msg-byte messages one at a time for --duration_ms, checking that
 * every echo matches what it sent (req/s, p50 and p99 latency).
 *   bench_netclient --port=P [--host=127.0.0.1] [--conns=64] [--duration_ms=5000]
 *                   [--msg=64] [--name=echo]
 *   bench_netclient --smoke      (serves itself: an in-process loom echo server)
 */
#include <loom.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include "bench.h"

static int64_t conns, duration_ns, msg_len;
static struct sockaddr_in addr;
static int64_t start_ns;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

struct stats { int64_t *lat; size_t n, cap; };
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

static void client(void *arg)
{
    struct stats *s = &st[(intptr_t)arg];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        bench_fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = loom_connect(fd, (struct sockaddr *)&addr, sizeof addr);
    if (r != 0)
        bench_fail("connect: %s", strerror(-r));
    char *out = malloc((size_t)msg_len), *in = malloc((size_t)msg_len);
    if (!out || !in)
        bench_fail("out of memory");
    uint64_t seq = (uint64_t)(intptr_t)arg << 40;
    while (bench_now_ns() - start_ns < duration_ns) {
        seq++;
        for (int64_t i = 0; i < msg_len; i++)
            out[i] = (char)(seq >> (8 * (i % 8)));
        int64_t t0 = bench_now_ns();
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
        int64_t t1 = bench_now_ns();
        if (memcmp(in, out, (size_t)msg_len) != 0)
            bench_fail("the echo differs from the message sent");
        record(s, t1 - t0);
    }
    close(fd);
    free(out);
    free(in);
    loom_wg_done(&wg);
}

/* --smoke: an in-process echo server, a goroutine per connection. */
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

static void echo_server(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = loom_accept(lfd, NULL, NULL);
        if (fd < 0)
            return;
        if (!loom_go(echo_conn, (void *)(intptr_t)fd))
            bench_fail("loom_go: %s", strerror(errno));
    }
}

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs(), lfd = -1;
    if (bench_is_smoke() && !bench_param_str("port")) {
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t al = sizeof a;
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 128) != 0 ||
            getsockname(lfd, (struct sockaddr *)&a, &al) != 0)
            bench_fail("listen: %s", strerror(errno));
        addr.sin_port = a.sin_port;
        if (!loom_go(echo_server, (void *)(intptr_t)lfd))
            bench_fail("loom_go: %s", strerror(errno));
    }
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
    if (lfd >= 0)
        loom_fd_close(lfd); /* ends the smoke server's accept loop */
    size_t total = 0;
    for (int64_t i = 0; i < conns; i++)
        total += st[i].n;
    if (total == 0)
        bench_fail("no request completed");
    int64_t *all = malloc(total * sizeof *all);
    if (!all)
        bench_fail("out of memory");
    for (int64_t i = 0, k = 0; i < conns; k += (int64_t)st[i].n, i++)
        memcpy(all + k, st[i].lat, st[i].n * sizeof *all);
    bench_result("req_per_s", (double)total / ((double)el / 1e9), "req/s", procs);
    bench_result("p50_ms", (double)bench_quantile(all, total, 0.50) / 1e6, "ms", procs);
    bench_result("p99_ms", (double)bench_quantile(all, total, 0.99) / 1e6, "ms", procs);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "echo");
    const char *name = bench_param_str("name");
    if (name)
        bench_init(argc, argv, name);
    conns = bench_param("conns", 64, 4);
    duration_ns = bench_param("duration_ms", 5000, 200) * 1000000;
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
    bench_watchdog((unsigned)(duration_ns / 1000000000) + 60, "did not finish");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
