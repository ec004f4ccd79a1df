/*
 * test_echo.c — examples/echo.c under thousands of concurrent loom clients.
 *
 * Starts the echo server (t_server.h), then inside loom_run one goroutine per connection
 * connects with loom_connect on a non-blocking socket and streams messages of random sizes
 * (1 byte to 4 KiB, and some of 64-256 KiB, so that writes and reads on both sides are
 * partial) through it: a writer goroutine sends while the connection's goroutine reads the
 * echo in reads of random sizes and checks every byte.  Then it half-closes and expects
 * the server to close too (EOF).
 *
 *   1. mixed:   2000 connections (/ LOOM_TEST_SCALE), large messages included;
 *   2. 10k:     10,000 connections open at once (each connects, then all wait at a barrier
 *               before any sends), small messages.  Plain builds only (not under
 *               sanitizers or LOOM_TEST_SCALE), and only if RLIMIT_NOFILE allows it.
 * Last, the server must exit with status 0 on SIGTERM.
 */
#include "t_server.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

enum { POOL_SIZE = 1 << 20, MAX_LARGE = 256 * 1024 };

static unsigned char *pool; /* random bytes; a message is a slice of it */
static struct sockaddr_in server_addr;

/* What one connection sends: derived from its id alone, so the writer and the reader can
 * each replay it without sharing anything. */
typedef struct plan {
    t_rng rng;
    int nmsgs, next, small_only, force_large;
} plan;

static void plan_init(plan *p, int id, int small_only)
{
    t_rng_seed(&p->rng, (uint64_t)id + 1);
    p->nmsgs = 1 + (int)t_rng_below(&p->rng, small_only ? 2 : 4);
    p->next = 0;
    p->small_only = small_only;
    p->force_large = !small_only && id % 16 == 0; /* at least these have a large message */
}

/* The next message: pool[*off .. *off + *len).  0 when there are no more. */
static int plan_next(plan *p, size_t *off, size_t *len)
{
    if (p->next == p->nmsgs)
        return 0;
    int large = !p->small_only && ((p->next == 0 && p->force_large) || t_rng_below(&p->rng, 8) == 0);
    if (large)
        *len = 64 * 1024 + 1 + t_rng_below(&p->rng, MAX_LARGE - 64 * 1024);
    else
        *len = 1 + t_rng_below(&p->rng, p->small_only ? 512 : 4096);
    *off = t_rng_below(&p->rng, POOL_SIZE - *len + 1);
    p->next++;
    return 1;
}

typedef struct conn {
    int id, fd, small_only;
    loom_waitgroup writer_done;
} conn;

static loom_waitgroup clients_done = LOOM_WAITGROUP_INIT;
static loom_waitgroup connected = LOOM_WAITGROUP_INIT; /* the 10k phase's barrier */
static int use_barrier;
static int64_t bytes_checked;

static void writer(void *arg)
{
    conn *c = arg;
    plan p;
    size_t off, len;
    plan_init(&p, c->id, c->small_only);
    for (int m = 0; plan_next(&p, &off, &len); m++) {
        ssize_t w = loom_write(c->fd, pool + off, len);
        CHECK_MSG(w == (ssize_t)len, "connection %d: message %d: loom_write(%zu bytes) returned %s", c->id, m,
                  len, t_errname(w));
    }
    loom_wg_done(&c->writer_done);
}

static void client(void *arg)
{
    conn c = { .id = (int)(intptr_t)arg & 0xffffff,
               .small_only = (int)((intptr_t)arg >> 24),
               .writer_done = LOOM_WAITGROUP_INIT };
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_MSG(c.fd >= 0, "connection %d: socket: %s (RLIMIT_NOFILE too low?)", c.id, strerror(errno));
    int r = loom_connect(c.fd, (struct sockaddr *)&server_addr, sizeof server_addr);
    CHECK_MSG(r == 0, "connection %d: loom_connect: %s", c.id, strerror(-r));
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (use_barrier) { /* every connection is open before any data flows */
        loom_wg_done(&connected);
        loom_wg_wait(&connected);
    }

    loom_wg_add(&c.writer_done, 1);
    CHECK_MSG(loom_go(writer, &c) != 0, "loom_go: %s", strerror(errno));

    /* read the echo back in reads of random sizes; compare with what the plan says */
    unsigned char buf[8192];
    t_rng rr;
    t_rng_seed(&rr, (uint64_t)c.id * 7919 + 13);
    plan p;
    size_t off = 0, len = 0, got = 0; /* the message being received, and how much of it */
    int m = -1;
    int64_t total = 0;
    plan_init(&p, c.id, c.small_only);
    for (;;) {
        if (got == len) {
            if (!plan_next(&p, &off, &len))
                break;
            got = 0;
            m++;
        }
        size_t want = 1 + t_rng_below(&rr, sizeof buf);
        if (want > len - got)
            want = len - got;
        ssize_t k = loom_read(c.fd, buf, want);
        CHECK_MSG(k > 0, "connection %d: message %d: loom_read returned %s after %zu of %zu bytes", c.id, m,
                  k == 0 ? "EOF" : t_errname(k), got, len);
        if (memcmp(buf, pool + off + got, (size_t)k) != 0) {
            size_t i = 0;
            while (buf[i] == pool[off + got + i])
                i++;
            FAIL("connection %d: message %d (%zu bytes): byte %zu echoed as 0x%02x, sent 0x%02x", c.id, m,
                 len, got + i, buf[i], pool[off + got + i]);
        }
        got += (size_t)k;
        total += k;
    }
    loom_wg_wait(&c.writer_done); /* the writer no longer uses `c` */

    /* nothing more may come; on our EOF the server closes its side */
    CHECK_OK(shutdown(c.fd, SHUT_WR));
    ssize_t k = loom_read(c.fd, buf, sizeof buf);
    CHECK_MSG(k == 0, "connection %d: expected EOF after the last echo, loom_read returned %s", c.id,
              k > 0 ? "extra bytes" : t_errname(k));
    CHECK_OK(loom_fd_close(c.fd));
    __atomic_fetch_add(&bytes_checked, total, __ATOMIC_RELAXED);
    loom_wg_done(&clients_done);
}

static void run_phase(const char *what, int nconns, int small_only, int barrier)
{
    int64_t t0 = t_clock_ns();
    bytes_checked = 0;
    use_barrier = barrier;
    CHECK_OK(loom_wg_add(&clients_done, nconns));
    if (barrier)
        CHECK_OK(loom_wg_add(&connected, nconns));
    for (int i = 0; i < nconns; i++)
        CHECK_MSG(loom_go(client, (void *)(intptr_t)(i | (intptr_t)small_only << 24)) != 0, "loom_go: %s",
                  strerror(errno));
    loom_wg_wait(&clients_done);
    printf("test_echo: %s: %d connections, %.1f MiB echoed and checked in %.2f s\n", what, nconns,
           (double)bytes_checked / (1 << 20), (double)(t_clock_ns() - t0) / 1e9);
    fflush(stdout);
}

static int n_mixed, n_big;

static int main_fn(void *arg)
{
    (void)arg;
    run_phase("mixed sizes", n_mixed, 0, 0);
    if (n_big)
        run_phase("10k concurrent", n_big, 1, 1);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = t_server_path(argc, argv);
    if (!path) {
        printf("test_echo: skipped: examples not built (LOOM_BUILD_EXAMPLES=OFF)\n");
        return 77; /* ctest: skipped (SKIP_RETURN_CODE) */
    }
    t_server_watchdog(270); /* ctest's limit is 300 s */
    long nofile = t_raise_nofile();

    n_mixed = (int)t_scale(2000);
    n_big = 10000;
    const char *why_not = NULL;
#if defined(LOOM_TSAN) || defined(LOOM_ASAN)
    why_not = "a sanitizer build";
#endif
    if (!why_not && t_scale(1000) != 1000)
        why_not = "LOOM_TEST_SCALE is set";
    if (!why_not && nofile < n_big + 200)
        why_not = "RLIMIT_NOFILE's hard limit is below 10,200";
    if (why_not) {
        printf("test_echo: 10k concurrent connections: skipped (%s)\n", why_not);
        n_big = 0;
    }

    pool = malloc(POOL_SIZE);
    CHECK(pool);
    t_rng g;
    t_rng_seed(&g, 42);
    for (size_t i = 0; i < POOL_SIZE; i += 8) {
        uint64_t v = t_rng_next(&g);
        memcpy(pool + i, &v, 8);
    }

    t_server srv;
    t_server_start(&srv, path, "echo");
    server_addr = (struct sockaddr_in){ .sin_family = AF_INET,
                                        .sin_port = htons((uint16_t)srv.port),
                                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    T_RUN(main_fn, NULL);
    t_server_stop(&srv);
    free(pool);
    printf("test_echo: ok\n");
    return 0;
}
