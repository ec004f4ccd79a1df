/*
 * test_echo_shutdown.c — examples/echo.c's deadlines and graceful shutdown.
 *
 * Each case starts the server (t_server.h) with its options in the environment
 * (WRITE_TIMEOUT, IDLE_TIMEOUT, SHUTDOWN_GRACE) and drives it from goroutines that check
 * every byte echoed: what a client gets back is always a prefix of what it sent.
 *   load       32 clients (/ LOOM_TEST_SCALE) each send messages of 1 byte to 4 KiB and read
 *              their echoes, and the server gets SIGTERM mid-load.  No connection ends
 *              before the signal; after it each ends (EOF or a reset) with its echoes
 *              correct so far, and each client ends refused (ECONNREFUSED); the server
 *              exits 0, having cut nothing.
 *   deadlines  1 s timeouts, no shutdown: a client that sends nothing, and one that goes
 *              quiet after an echo, are closed; one that sends and reads nothing is cut
 *              at WRITE_TIMEOUT.
 *   stall      a client that reads nothing when SIGTERM comes, with a 600 s WRITE_TIMEOUT:
 *              the server still exits 0, within the grace period (1 s) + a hang guard.
 * Durations in the checks are hang guards only, never bounds on how fast the server is.
 *
 *   test_echo_shutdown [CASE...]     runs the cases named (all by default)
 */
#include "t_server.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

enum { GUARD_S = 60, POOL_SIZE = 1 << 20, MAX_MSG = 4096 };
#define SEC 1000000000LL

static unsigned char *pool; /* random bytes: what clients send, from offset 0 on */
static struct sockaddr_in server_addr;
static t_server srv;
static int term_sent; /* set just before the SIGTERM */

/* Connects (rcvbuf > 0: with that SO_RCVBUF, set first): the fd, or -errno. */
static int dial(int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_MSG(fd >= 0, "socket: %s", strerror(errno));
    if (rcvbuf > 0)
        CHECK_OK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf));
    int r = loom_connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr);
    if (r != 0) {
        loom_fd_close(fd);
        return r;
    }
    return fd;
}

/* A hang guard: the calling goroutine's loom calls return -ETIMEDOUT once it ends. */
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

/* Reads the echo of pool[off..off+n) (wait: 0 = only what is there already, the
 * connection being over); returns how many bytes came, all checked, before the end (EOF or
 * a reset). */
static size_t read_echo(int fd, size_t off, size_t n, int wait, const char *who)
{
    unsigned char buf[8192];
    size_t got = 0;
    while (got < n) {
        size_t want = n - got < sizeof buf ? n - got : sizeof buf;
        ssize_t k = wait ? loom_read(fd, buf, want) : loom_recvfrom(fd, buf, want, MSG_DONTWAIT, NULL, NULL);
        if (k == 0 || k == -ECONNRESET)
            break;
        CHECK_MSG(k > 0, "%s: reading the echo: %s%s", who, t_errname(k),
                  k == -ETIMEDOUT ? " (the hang guard's context ended)" : "");
        CHECK_MSG(memcmp(buf, pool + off + got, (size_t)k) == 0,
                  "%s: echoed bytes %zu..%zu differ from those sent", who, off + got, off + got + (size_t)k);
        got += (size_t)k;
    }
    return got;
}

static void start(const char *write_s, const char *idle_s, const char *grace_s, const char *path)
{
    setenv("WRITE_TIMEOUT", write_s, 1);
    setenv("IDLE_TIMEOUT", idle_s, 1);
    setenv("SHUTDOWN_GRACE", grace_s, 1);
    t_server_start(&srv, path, "echo");
    server_addr = (struct sockaddr_in){ .sin_family = AF_INET,
                                        .sin_port = htons((uint16_t)srv.port),
                                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    term_sent = 0;
}

static void term(void)
{
    __atomic_store_n(&term_sent, 1, __ATOMIC_SEQ_CST);
    CHECK_OK(kill(srv.pid, SIGTERM));
}

/* After the server's exit (t_server_wait): how many connections it says it cut. */
static long cut_count(void)
{
    return t_server_cut_count(&srv, "echo");
}

/* ---- load: SIGTERM under clients in a loop */

static struct {
    int target; /* echoes before the SIGTERM */
    int echoes, ended, refused;
    loom_waitgroup done;
} load = { .done = LOOM_WAITGROUP_INIT };

static void add(int *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
}

static void load_client(void *arg)
{
    int id = (int)(intptr_t)arg;
    char who[32];
    snprintf(who, sizeof who, "load client %d", id);
    t_rng rng;
    t_rng_seed(&rng, (uint64_t)id + 1);
    guard g = guard_for(120);
    for (;;) {
        int fd = dial(0);
        if (fd == -ECONNREFUSED) { /* the listener is closed: done */
            CHECK_MSG(t_get(&term_sent), "%s: connection refused before the SIGTERM", who);
            add(&load.refused);
            break;
        }
        if (fd == -ECONNRESET) { /* the listener closed during the handshake */
            CHECK_MSG(t_get(&term_sent), "%s: connection reset before the SIGTERM", who);
            continue;
        }
        CHECK_MSG(fd >= 0, "%s: loom_connect: %s", who, t_errname(fd));
        for (;;) { /* messages until the connection ends */
            size_t n = 1 + t_rng_below(&rng, MAX_MSG), off = t_rng_below(&rng, POOL_SIZE - n + 1);
            ssize_t w = loom_write(fd, pool + off, n);
            CHECK_MSG(w == (ssize_t)n || w == -EPIPE || w == -ECONNRESET, "%s: loom_write: %s", who,
                      t_errname(w));
            size_t got = w == (ssize_t)n ? read_echo(fd, off, n, 1, who) : 0;
            if (got == n) {
                add(&load.echoes);
                continue;
            }
            /* the end: after the SIGTERM only; the bytes that did come were checked */
            CHECK_MSG(t_get(&term_sent),
                      "%s: the connection ended before the SIGTERM (%zu of %zu bytes echoed)", who, got, n);
            add(&load.ended);
            break;
        }
        CHECK_OK(loom_fd_close(fd));
    }
    unguard(g);
    loom_wg_done(&load.done);
}

static int load_main(void *arg)
{
    int n = *(int *)arg;
    CHECK_OK(loom_wg_add(&load.done, n));
    for (int i = 0; i < n; i++)
        CHECK_MSG(loom_go(load_client, (void *)(intptr_t)i) != 0, "loom_go: %s", strerror(errno));
    T_WAIT_UNTIL(t_get(&load.echoes) >= load.target, 120, "%d echoes of %d", t_get(&load.echoes),
                 load.target);
    term();
    loom_wg_wait(&load.done);
    return 0;
}

static void case_load(const char *path)
{
    start("600", "600", "60", path); /* only the shutdown may end a connection */
    int n = (int)t_scale(32);
    load.target = 500 * n;
    T_RUN(load_main, &n);
    t_server_wait(&srv, GUARD_S);
    long cut = cut_count();
    printf("test_echo_shutdown: load: %d clients, %d echoes, %d connections ended by the shutdown, all "
           "refused at last\n",
           n, load.echoes, load.ended);
    CHECK_EQ(load.refused, n);
    CHECK_MSG(cut == 0, "the server cut %ld connections, with nothing slow to cut", cut);
}

/* ---- a client that sends and reads nothing */

typedef struct stall {
    int fd;
    size_t sent;
    loom_waitgroup done;
} stall;

/* Sends the pool, over and over, until the server cuts the connection. */
static void stall_writer(void *arg)
{
    stall *s = arg;
    guard g = guard_for(GUARD_S); /* the cut must come before this ends */
    for (;;) {
        ssize_t w = loom_write(s->fd, pool, POOL_SIZE);
        if (w == -EPIPE || w == -ECONNRESET)
            break;
        CHECK_MSG(w == POOL_SIZE, "the client that does not read: loom_write: %s%s", t_errname(w),
                  w == -ETIMEDOUT ? " (not cut within the hang guard)" : "");
        s->sent += POOL_SIZE;
    }
    unguard(g);
    loom_wg_done(&s->done);
}

static stall *stall_start(void)
{
    stall *s = calloc(1, sizeof *s);
    CHECK(s);
    s->done = (loom_waitgroup)LOOM_WAITGROUP_INIT;
    s->fd = dial(4096);
    CHECK_MSG(s->fd >= 0, "loom_connect: %s", t_errname(s->fd));
    CHECK_OK(loom_wg_add(&s->done, 1));
    CHECK(loom_go(stall_writer, s) != 0);
    return s;
}

/* Once the server has cut it (the writer's write failed: the connection was reset, so all
 * it got is there): what it got is a prefix of what it sent. */
static size_t stall_check(stall *s)
{
    loom_wg_wait(&s->done);
    size_t got = 0, k;
    do {
        k = read_echo(s->fd, 0, POOL_SIZE, 0, "the client that does not read");
        got += k;
    } while (k == POOL_SIZE);
    CHECK_OK(loom_fd_close(s->fd));
    return got;
}

/* ---- deadlines: 1 s timeouts, no shutdown */

static int deadlines_main(void *arg)
{
    (void)arg;
    guard g = guard_for(GUARD_S);
    int fd = dial(0);
    CHECK_MSG(fd >= 0, "loom_connect: %s", t_errname(fd));
    CHECK_EQ(read_echo(fd, 0, 1, 1, "a client that sends nothing"), 0);
    CHECK_OK(loom_fd_close(fd));

    /* (a machine slower than IDLE_TIMEOUT between the connect and the write sees the
     * connection closed first: try again) */
    size_t got = 0;
    for (int tries = 0; got < 100 && tries < 10; tries++) {
        CHECK_MSG((fd = dial(0)) >= 0, "loom_connect: %s", t_errname(fd));
        ssize_t w = loom_write(fd, pool, 100);
        got = w == 100 ? read_echo(fd, 0, 100, 1, "a client quiet after an echo") : 0;
        if (got < 100)
            CHECK_OK(loom_fd_close(fd));
    }
    CHECK_MSG(got == 100, "a client quiet after an echo: no echo in 10 tries");
    CHECK_EQ(read_echo(fd, 0, 1, 1, "a client quiet after an echo"), 0);
    CHECK_OK(loom_fd_close(fd));

    stall *s = stall_start();
    got = stall_check(s);
    printf("test_echo_shutdown: deadlines: a client that read nothing was cut after sending %zu bytes and "
           "getting %zu back\n",
           s->sent, got);
    free(s);
    unguard(g);
    return 0;
}

static void case_deadlines(const char *path)
{
    start("1", "1", "60", path);
    T_RUN(deadlines_main, NULL);
    term();
    t_server_wait(&srv, GUARD_S);
    printf("test_echo_shutdown: deadlines: the server cut %ld connections\n", cut_count());
}

/* ---- stall: SIGTERM with a client that reads nothing */

static int stall_main(void *arg)
{
    (void)arg;
    stall *s = stall_start();
    int avail = 0;
    /* the server has begun to echo */
    T_WAIT_UNTIL(ioctl(s->fd, FIONREAD, &avail) == 0 && avail > 0, GUARD_S, "no echo");
    term();
    stall_check(s); /* cut at the grace period's end, or closed after its last echo */
    free(s);
    T_WAIT_UNTIL(t_server_exited(&srv), GUARD_S, "the server's exit");
    return 0;
}

static void case_stall(const char *path)
{
    start("600", "600", "1", path);
    T_RUN(stall_main, NULL);
    t_server_wait(&srv, GUARD_S);
    long cut = cut_count();
    CHECK_LE(cut, 1);
    printf("test_echo_shutdown: stall: %s\n",
           cut ? "cut when the grace period was over" : "closed after its last echo");
}

int main(int argc, char **argv)
{
    const char *path = NULL;
#ifdef LOOM_EXAMPLE_BIN
    path = LOOM_EXAMPLE_BIN;
#endif
    if (!path) {
        printf("test_echo_shutdown: skipped: examples not built (LOOM_BUILD_EXAMPLES=OFF)\n");
        return 77; /* ctest: skipped (SKIP_RETURN_CODE) */
    }
    t_cases(argc, argv);
    t_server_watchdog(270); /* ctest's limit is 300 s */
    t_raise_nofile();
    pool = malloc(POOL_SIZE);
    CHECK(pool);
    t_rng g;
    t_rng_seed(&g, 42);
    for (size_t i = 0; i < POOL_SIZE; i += 8) {
        uint64_t v = t_rng_next(&g);
        memcpy(pool + i, &v, 8);
    }
    static const struct {
        const char *name;
        void (*fn)(const char *path);
    } cases[] = { { "load", case_load }, { "deadlines", case_deadlines }, { "stall", case_stall } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!t_want(cases[i].name))
            continue;
        int64_t t0 = t_clock_ns();
        cases[i].fn(path);
        printf("test_echo_shutdown: %s: ok (%.1f s)\n", cases[i].name, (double)(t_clock_ns() - t0) / 1e9);
        fflush(stdout);
    }
    free(pool);
    printf("test_echo_shutdown: ok\n");
    return 0;
}
