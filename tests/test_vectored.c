/*
 * test_vectored.c — loom_readv and loom_writev:
 *  - 4 MiB in 64 iovecs of uneven sizes (some empty) written by one loom_writev over a
 *    stream socketpair and over a pipe, while the reader (loom_readv into three iovecs of
 *    odd sizes) is slow: the writer parks on the full buffer (loom_stats counts it waiting),
 *    the call returns the total, every byte arrives in order, and the caller's iovec array
 *    is unchanged;
 *  - IOV_MAX small iovecs, so partial writes land inside entries with many after them;
 *  - a reader parked in loom_readv before anything is written is woken;
 *  - a regular file (the blocking path): written with loom_writev, read back with
 *    loom_readv, byte-exact, and its offset moved on by both;
 *  - from a plain pthread inside loom_run, on a pipe loom has made non-blocking: 1 MiB
 *    with loom_writev (partial writes, polls between them) to a goroutine reader, and a
 *    loom_readv that blocks until a goroutine writes;
 *  - a closed reader: -EPIPE from a pipe and from a socket, and no SIGPIPE (left at its
 *    default action, which would kill the test);
 *  - bad input: -EINVAL for a negative fd, iovcnt < 0 or > IOV_MAX, a NULL array with
 *    iovcnt > 0, lengths whose sum overflows ssize_t; nothing to move returns 0.
 */
#include "t.h"
#include <limits.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define MS 1000000LL

static uint64_t waiting(void)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st.waiting;
}

static unsigned char *pattern(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    t_rng r;
    t_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)t_rng_next(&r);
    return p;
}

/* Cuts buf (n bytes) into cnt iovecs of uneven sizes, every seventh empty. */
static void cut(struct iovec *v, int cnt, unsigned char *buf, size_t n, uint64_t seed)
{
    t_rng r;
    t_rng_seed(&r, seed);
    size_t at = 0;
    for (int i = 0; i < cnt; i++) {
        size_t left = n - at, len;
        if (i == cnt - 1)
            len = left;
        else if (i % 7 == 3)
            len = 0;
        else
            len = t_rng_below(&r, 2 * n / (size_t)cnt + 1) % (left + 1);
        v[i] = (struct iovec){ buf + at, len };
        at += len;
    }
}

/* ---- a big writev against a slow reader */

struct writer {
    int fd;
    const struct iovec *iov;
    int cnt;
    ssize_t r;
    int done;
};

static void writev_side(void *arg)
{
    struct writer *w = arg;
    w->r = loom_writev(w->fd, w->iov, w->cnt);
    __atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
}

/* Reads n bytes from fd with loom_readv into odd-sized iovecs, sleeping every few reads. */
static void slow_readv(int fd, unsigned char *in, size_t n)
{
    size_t got = 0;
    int reads = 0;
    while (got < n) {
        size_t left = n - got;
        size_t a = left < 1000 ? left : 1000;
        size_t b = left - a < 7 ? left - a : 7;
        size_t c = left - a - b < 30000 ? left - a - b : 30000;
        struct iovec v[3] = { { in + got, a }, { in + got + a, b }, { in + got + a + b, c } };
        ssize_t k = loom_readv(fd, v, 3);
        CHECK_GT(k, 0);
        CHECK_LE((size_t)k, a + b + c);
        got += (size_t)k;
        if (++reads % 8 == 0)
            loom_sleep(50000);
    }
}

static void big_writev(int wfd, int rfd, int cnt, size_t n, uint64_t seed)
{
    unsigned char *out = pattern(n, seed), *in = malloc(n);
    CHECK(in != NULL);
    struct iovec *v = calloc((size_t)cnt, sizeof *v), *copy = calloc((size_t)cnt, sizeof *v);
    CHECK(v && copy);
    cut(v, cnt, out, n, seed + 1);
    memcpy(copy, v, (size_t)cnt * sizeof *v);
    struct writer w = { wfd, v, cnt, 0, 0 };
    uint64_t before = waiting();
    loom_go(writev_side, &w);
    T_WAIT_UNTIL(waiting() == before + 1, 30, "the writer to park on a full buffer");
    CHECK_EQ(t_get(&w.done), 0);
    slow_readv(rfd, in, n);
    T_WAIT_UNTIL(t_get(&w.done), 60, "the writer to finish");
    CHECK_EQ(w.r, (ssize_t)n);
    CHECK_MEMEQ(in, out, n);
    CHECK_MEMEQ(v, copy, (size_t)cnt * sizeof *v); /* the caller's array, untouched */
    free(out);
    free(in);
    free(v);
    free(copy);
}

static void test_big(void)
{
    int sp[2], pp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    big_writev(sp[1], sp[0], 64, 4 << 20, 1);
    big_writev(sp[0], sp[1], IOV_MAX, 1 << 20, 2); /* the other way, IOV_MAX small ones */
    CHECK_OK(loom_fd_close(sp[0]));
    CHECK_OK(loom_fd_close(sp[1]));
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    big_writev(pp[1], pp[0], 64, 4 << 20, 3);
    big_writev(pp[1], pp[0], IOV_MAX, 1 << 20, 4);
    CHECK_OK(loom_fd_close(pp[0]));
    CHECK_OK(loom_fd_close(pp[1]));
}

/* ---- a parked reader is woken */

struct reader {
    int fd;
    ssize_t r;
    char a[3], b[10];
    int done;
};

static void readv_side(void *arg)
{
    struct reader *r = arg;
    struct iovec v[2] = { { r->a, sizeof r->a }, { r->b, sizeof r->b } };
    r->r = loom_readv(r->fd, v, 2);
    __atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
}

static void test_park(void)
{
    int types[2] = { 0, 1 };
    for (int t = 0; t < 2; t++) {
        int p[2];
        if (types[t] == 0)
            CHECK_OK(pipe2(p, O_CLOEXEC));
        else
            CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p));
        int rfd = p[0], wfd = p[1];
        struct reader r = { .fd = rfd };
        uint64_t before = waiting();
        loom_go(readv_side, &r);
        T_WAIT_UNTIL(waiting() == before + 1, 30, "the reader to park");
        CHECK_EQ(t_get(&r.done), 0);
        struct iovec w[2] = { { "abcd", 4 }, { "efgh", 4 } };
        CHECK_EQ(loom_writev(wfd, w, 2), 8);
        T_WAIT_UNTIL(t_get(&r.done), 30, "the parked reader to wake");
        CHECK_EQ(r.r, 8);
        CHECK_MEMEQ(r.a, "abc", 3);
        CHECK_MEMEQ(r.b, "defgh", 5);
        CHECK_OK(loom_fd_close(rfd));
        CHECK_OK(loom_fd_close(wfd));
    }
}

/* ---- a regular file */

static void test_file(void)
{
    char path[] = "/tmp/loom-vectored-XXXXXX";
    int fd = mkstemp(path);
    CHECK_GE(fd, 0);
    unlink(path);
    enum { N = 300000 };
    unsigned char *out = pattern(N, 5), *in = malloc(N);
    CHECK(in != NULL);
    struct iovec v[20];
    cut(v, 20, out, N, 6);
    CHECK_EQ(loom_writev(fd, v, 20), N);
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), N);
    CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
    struct iovec r[3] = { { in, 10 }, { in + 10, 0 }, { in + 10, N - 10 } };
    CHECK_EQ(loom_readv(fd, r, 3), N); /* a regular file gives all there is */
    CHECK_MEMEQ(in, out, N);
    CHECK_EQ(loom_readv(fd, r, 3), 0); /* end of file */
    CHECK_OK(loom_fd_close(fd));
    free(out);
    free(in);
}

/* ---- from a plain pthread */

struct thr {
    int wfd, rfd;
    const struct iovec *iov;
    int cnt;
    ssize_t wr, rr;
    char got[8];
    int started;
};

static void *thread_side(void *arg)
{
    struct thr *t = arg;
    CHECK_EQ(loom_can_park(), 0);
    t->wr = loom_writev(t->wfd, t->iov, t->cnt); /* the goroutine reads it slowly */
    __atomic_store_n(&t->started, 1, __ATOMIC_SEQ_CST);
    struct iovec v[2] = { { t->got, 2 }, { t->got + 2, 6 } };
    t->rr = loom_readv(t->rfd, v, 2); /* blocks until the goroutine writes */
    return NULL;
}

static void test_thread(void)
{
    int a[2], b[2];
    CHECK_OK(pipe2(a, O_CLOEXEC));
    CHECK_OK(pipe2(b, O_CLOEXEC));
    /* loom waits on both ends first: they are non-blocking from then on */
    CHECK_EQ(loom_fd_wait(a[1], LOOM_WRITABLE, 0), LOOM_WRITABLE);
    CHECK_ERR(loom_fd_wait(b[0], LOOM_READABLE, 0), EAGAIN);
    CHECK(fcntl(a[1], F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(b[0], F_GETFL) & O_NONBLOCK);
    enum { N = 1 << 20 };
    unsigned char *out = pattern(N, 9), *in = malloc(N);
    CHECK(in != NULL);
    struct iovec v[33];
    cut(v, 33, out, N, 10);
    struct thr t = { .wfd = a[1], .rfd = b[0], .iov = v, .cnt = 33 };
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, thread_side, &t));
    slow_readv(a[0], in, N);
    T_WAIT_UNTIL(t_get(&t.started), 30, "the thread's writev to return");
    CHECK_EQ(t.wr, N);
    CHECK_MEMEQ(in, out, N);
    loom_sleep(2 * MS); /* it blocks in readv, most likely */
    struct iovec w[3] = { { "lo", 2 }, { "", 0 }, { "omiov", 5 } };
    CHECK_EQ(loom_writev(b[1], w, 3), 7);
    CHECK_OK(pthread_join(th, NULL));
    CHECK_EQ(t.rr, 7);
    CHECK_MEMEQ(t.got, "loomiov", 7);
    for (int i = 0; i < 2; i++) {
        CHECK_OK(loom_fd_close(a[i]));
        CHECK_OK(loom_fd_close(b[i]));
    }
    free(out);
    free(in);
}

/* ---- a closed reader: -EPIPE, no SIGPIPE */

static void test_epipe(void)
{
    int pp[2], sp[2];
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    CHECK_OK(loom_fd_close(pp[0]));
    CHECK_OK(loom_fd_close(sp[0]));
    struct iovec v[2] = { { "a", 1 }, { "b", 1 } };
    CHECK_ERR(loom_writev(pp[1], v, 2), EPIPE);
    CHECK_ERR(loom_writev(sp[1], v, 2), EPIPE);
    CHECK_OK(loom_fd_close(pp[1]));
    CHECK_OK(loom_fd_close(sp[1]));
}

/* ---- bad input */

static void test_einval(void)
{
    int pp[2];
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    char b[4];
    struct iovec v[2] = { { b, 2 }, { b + 2, 2 } };
    CHECK_ERR(loom_readv(-1, v, 2), EINVAL);
    CHECK_ERR(loom_writev(-1, v, 2), EINVAL);
    CHECK_ERR(loom_readv(pp[0], v, -1), EINVAL);
    CHECK_ERR(loom_writev(pp[1], v, -1), EINVAL);
    CHECK_ERR(loom_readv(pp[0], v, IOV_MAX + 1), EINVAL);
    CHECK_ERR(loom_writev(pp[1], v, IOV_MAX + 1), EINVAL);
    CHECK_ERR(loom_readv(pp[0], NULL, 1), EINVAL);
    CHECK_ERR(loom_writev(pp[1], NULL, 1), EINVAL);
    struct iovec huge[2] = { { b, (size_t)SSIZE_MAX }, { b, 2 } };
    CHECK_ERR(loom_writev(pp[1], huge, 2), EINVAL);
    CHECK_EQ(loom_writev(pp[1], NULL, 0), 0);
    struct iovec empty[2] = { { NULL, 0 }, { b, 0 } };
    CHECK_EQ(loom_writev(pp[1], empty, 2), 0);
    CHECK_EQ(loom_readv(pp[0], empty, 2), 0); /* nothing asked: nothing read, no wait */
    /* the kernel's errors */
    int dead = dup(pp[0]);
    CHECK_GE(dead, 0);
    close(dead);
    CHECK_ERR(loom_readv(dead, v, 2), EBADF);
    CHECK_ERR(loom_writev(dead, v, 2), EBADF);
    CHECK_ERR(loom_readv(pp[1], v, 2), EBADF); /* the write end */
    CHECK_OK(loom_fd_close(pp[0]));
    CHECK_OK(loom_fd_close(pp[1]));
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("big"))
        test_big();
    if (t_want("park"))
        test_park();
    if (t_want("file"))
        test_file();
    if (t_want("thread"))
        test_thread();
    if (t_want("epipe"))
        test_epipe();
    if (t_want("einval"))
        test_einval();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE raised would end the test */
    setenv("LOOM_PROCS", "2", 1);
    T_RUN(main_fn, NULL);
    printf("test_vectored: ok\n");
    return 0;
}
