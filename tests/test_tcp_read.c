/*
 * test_tcp_read.c — loom_read on TCP sockets, where a read that left the socket empty
 * (the kernel says so through TCP_INQ) makes the next read park without trying recv
 * (io.c).  Nothing may be lost or hang because of that shortcut:
 *  - ping-pong over loopback, the reader parked before each message arrives, every byte
 *    checked;
 *  - loom_fd_wait consumes the edge that announced new data: the next loom_read must
 *    still read it instead of parking for an edge that already came;
 *  - a read with a small buffer leaves bytes queued: the next reads get them all, in
 *    order, without any new arrival;
 *  - a FIN after an emptying read: the parked read returns 0, and so does the next one;
 *  - urgent (out-of-band) data stops a read at the mark with bytes left: nothing hangs;
 *  - the number of a connection that emptied closed with plain close() and reused for a
 *    new connection (behind loom's back: no loom_fd_close, no loom_accept): reads on it
 *    see the new connection's data, whether it arrived before the read or after the
 *    reader parked (then sysmon's check of stale registrations must find it; the wait
 *    may take a few ms; 30 s guards turn a hang into a failure).
 */
#include "t.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define MS 1000000LL

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits (sleeping, so the goroutine being waited for can run on any P) until *flag is set;
 * fails after 3 s, saying `what` hangs. */
/* A connected loopback pair, made with plain calls: c[0] the accepted end, c[1] the client. */
static void tcp_pair(int c[2])
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(ls >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    CHECK_OK(bind(ls, (struct sockaddr *)&a, sizeof a));
    CHECK_OK(listen(ls, 4));
    CHECK_OK(getsockname(ls, (struct sockaddr *)&a, &al));
    c[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(c[1] >= 0);
    CHECK_OK(connect(c[1], (struct sockaddr *)&a, sizeof a));
    c[0] = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    CHECK(c[0] >= 0);
    close(ls);
}

/* ---- ping-pong: the reader empties the socket and parks before each message */

struct pp {
    int fd, rounds;
    loom_waitgroup *wg;
};

static void echo_side(void *arg)
{
    struct pp *p = arg;
    char buf[64];
    for (int r = 0; r < p->rounds; r++) {
        size_t got = 0;
        while (got < 8) {
            ssize_t k = loom_read(p->fd, buf + got, sizeof buf - got);
            CHECK_GT(k, 0);
            got += (size_t)k;
        }
        CHECK_EQ(got, 8);
        uint64_t v;
        memcpy(&v, buf, 8);
        CHECK_EQU(v, (uint64_t)r * 2654435761u);
        v++;
        CHECK_EQ(loom_write(p->fd, &v, 8), 8);
    }
    loom_wg_done(p->wg);
}

static void test_pingpong(void)
{
    int c[2];
    tcp_pair(c);
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    CHECK_OK(loom_wg_add(&wg, 1));
    struct pp p = { c[0], 2000, &wg };
    loom_go(echo_side, &p);
    for (int r = 0; r < p.rounds; r++) {
        if (r % 50 == 0)
            loom_sleep(200000); /* let the echo side park first */
        uint64_t v = (uint64_t)r * 2654435761u;
        CHECK_EQ(loom_write(c[1], &v, 8), 8);
        uint64_t back = 0;
        size_t got = 0;
        while (got < 8) {
            ssize_t k = loom_read(c[1], (char *)&back + got, 8 - got);
            CHECK_GT(k, 0);
            got += (size_t)k;
        }
        CHECK_EQU(back, v + 1);
    }
    loom_wg_wait(&wg);
    CHECK_OK(loom_fd_close(c[0]));
    CHECK_OK(loom_fd_close(c[1]));
}

/* ---- loom_fd_wait between two reads */

struct waiter {
    int fd;
    int result;
    int64_t parked;
};

static void wait_then_read(void *arg)
{
    struct waiter *w = arg;
    char buf[16];
    CHECK_EQ(loom_write(w->fd, "x", 1), 1);
    /* empty it: the peer answers one byte per byte */
    CHECK_EQ(loom_read(w->fd, buf, sizeof buf), 1);
    __atomic_store_n(&w->parked, 1, __ATOMIC_SEQ_CST);
    int r = loom_fd_wait(w->fd, LOOM_READABLE, 30000 * MS); /* takes the edge of "y" (a hang guard) */
    CHECK_EQ(r, LOOM_READABLE);
    ssize_t k = loom_read(w->fd, buf, sizeof buf); /* must not park for another */
    CHECK_EQ(k, 1);
    CHECK_EQ(buf[0], 'y');
    __atomic_store_n(&w->result, 1, __ATOMIC_SEQ_CST);
}

static void test_wait_then_read(void)
{
    for (int round = 0; round < 20; round++) {
        int c[2];
        tcp_pair(c);
        struct waiter w = { c[0], 0, 0 };
        loom_go(wait_then_read, &w);
        char b;
        CHECK_EQ(loom_read(c[1], &b, 1), 1);
        CHECK_EQ(loom_write(c[1], "a", 1), 1);
        while (!__atomic_load_n(&w.parked, __ATOMIC_SEQ_CST))
            loom_yield();
        loom_sleep(MS); /* it parks in loom_fd_wait */
        CHECK_EQ(loom_write(c[1], "y", 1), 1);
        T_WAIT_UNTIL(t_get(&w.result), 30, "the read after loom_fd_wait hangs");
        CHECK_OK(loom_fd_close(c[0]));
        CHECK_OK(loom_fd_close(c[1]));
    }
}

/* ---- small buffers: bytes left queued are read without a new arrival */

static void test_small_reads(void)
{
    int c[2];
    tcp_pair(c);
    enum { N = 100000 };
    static unsigned char out[N], in[N];
    for (int i = 0; i < N; i++)
        out[i] = (unsigned char)(i * 7 + i / 251);
    CHECK_EQ(loom_write(c[1], out, N), N);
    size_t got = 0, step = 1;
    while (got < N) {
        size_t want = step < N - got ? step : N - got;
        ssize_t k = loom_read(c[0], in + got, want);
        CHECK_GT(k, 0);
        got += (size_t)k;
        step = step % 997 + 13;
    }
    CHECK_MEMEQ(in, out, N);
    CHECK_OK(loom_fd_close(c[0]));
    CHECK_OK(loom_fd_close(c[1]));
}

/* ---- FIN after an emptying read */

static void eof_reader(void *arg)
{
    struct waiter *w = arg;
    char buf[8];
    CHECK_EQ(loom_read(w->fd, buf, sizeof buf), 3); /* "abc": empties it */
    __atomic_store_n(&w->parked, 1, __ATOMIC_SEQ_CST);
    CHECK_EQ(loom_read(w->fd, buf, sizeof buf), 0); /* parks; the FIN wakes it */
    CHECK_EQ(loom_read(w->fd, buf, sizeof buf), 0); /* and stays readable */
    __atomic_store_n(&w->result, 1, __ATOMIC_SEQ_CST);
}

static void test_eof(void)
{
    int c[2];
    tcp_pair(c);
    struct waiter w = { c[0], 0, 0 };
    CHECK_EQ(loom_write(c[1], "abc", 3), 3);
    loom_go(eof_reader, &w);
    while (!__atomic_load_n(&w.parked, __ATOMIC_SEQ_CST))
        loom_yield();
    loom_sleep(MS);
    CHECK_OK(shutdown(c[1], SHUT_WR));
    T_WAIT_UNTIL(t_get(&w.result), 30, "the read after FIN hangs");
    CHECK_OK(loom_fd_close(c[0]));
    CHECK_OK(loom_fd_close(c[1]));
}

/* ---- urgent data: a read stops at the mark with bytes still queued */

static void test_urgent(void)
{
    int c[2];
    tcp_pair(c);
    char buf[16];
    CHECK_EQ(send(c[1], "ab", 2, 0), 2);
    CHECK_EQ(send(c[1], "c", 1, MSG_OOB), 1); /* 'c' goes out of band */
    CHECK_EQ(send(c[1], "de", 2, 0), 2);
    loom_sleep(MS); /* all of it queued */
    size_t got = 0;
    int64_t t0 = now_ns();
    while (got < 4) {
        ssize_t k = loom_fd_wait(c[0], LOOM_READABLE, 30000 * MS); /* a hang guard */
        CHECK_MSG(k > 0, "urgent data: only %zu of 4 bytes before the wait failed (%s)", got, t_errname(k));
        k = loom_read(c[0], buf + got, sizeof buf - got);
        CHECK_GT(k, 0);
        got += (size_t)k;
        CHECK_LT(now_ns() - t0, 30000 * MS); /* a hang guard */
    }
    CHECK_EQ(got, 4);
    CHECK_MEMEQ(buf, "abde", 4);
    CHECK_OK(loom_fd_close(c[0]));
    CHECK_OK(loom_fd_close(c[1]));
}

/* ---- a number reused behind loom's back */

struct reader {
    int fd;
    char buf[8];
    ssize_t result;
    int started;
};

static void one_read(void *arg)
{
    struct reader *r = arg;
    __atomic_store_n(&r->started, 1, __ATOMIC_SEQ_CST);
    ssize_t k = loom_read(r->fd, r->buf, sizeof r->buf);
    __atomic_store_n(&r->result, k, __ATOMIC_SEQ_CST);
}

static void test_reuse(void)
{
    int64_t worst = 0;
    for (int round = 0; round < 20; round++) {
        int a[2];
        tcp_pair(a);
        char buf[8];
        CHECK_ERR(loom_fd_wait(a[0], LOOM_READABLE, MS), ETIMEDOUT); /* registered */
        CHECK_EQ(loom_write(a[1], "old", 3), 3);
        CHECK_EQ(loom_read(a[0], buf, sizeof buf), 3); /* and emptied */
        close(a[0]);
        close(a[1]);
        int b[2];
        tcp_pair(b);
        if (b[0] != a[0]) {     /* give the new connection the old number */
            if (b[1] == a[0]) { /* (another fd opened meanwhile shifted the
                                                   numbers: keep the peer off it first) */
                int t = dup(b[1]);
                CHECK(t >= 0);
                close(b[1]);
                b[1] = t;
            }
            b[0] = t_fd_onto(b[0], a[0]);
            CHECK_EQ(b[0], a[0]);
        }
        bool before = round % 2 == 0; /* data already there, or after the park */
        if (before)
            CHECK_EQ(loom_write(b[1], "new", 3), 3);
        struct reader r = { .fd = b[0], .result = 1000 };
        loom_go(one_read, &r);
        while (!__atomic_load_n(&r.started, __ATOMIC_SEQ_CST))
            loom_yield();
        if (!before) {
            loom_sleep(MS); /* let it park */
            CHECK_EQ(loom_write(b[1], "new", 3), 3);
        }
        int64_t t0 = now_ns();
        while (__atomic_load_n(&r.result, __ATOMIC_SEQ_CST) == 1000) {
            CHECK_MSG(now_ns() - t0 < 30000 * MS, "a read on a reused number hangs (data %s the park)",
                      before ? "before" : "after");
            loom_sleep(MS / 2);
        }
        if (now_ns() - t0 > worst)
            worst = now_ns() - t0;
        CHECK_EQ(r.result, 3);
        CHECK_MEMEQ(r.buf, "new", 3);
        CHECK_OK(loom_fd_close(b[0]));
        CHECK_OK(loom_fd_close(b[1]));
    }
    printf("reuse: slowest read on a reused number took %.1f ms\n", (double)worst / 1e6);
}

static int main_fn(void *arg)
{
    (void)arg;
    test_pingpong();
    test_wait_then_read();
    test_small_reads();
    test_eof();
    test_urgent();
    test_reuse();
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    printf("test_tcp_read: ok\n");
    return 0;
}
