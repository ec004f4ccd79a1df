/*
 * test_hook_io.c — libloom_hook's reads and writes from goroutines, on sockets and pipes
 * the program left blocking:
 *  - a read parks the goroutine (loom_stats: waiting, not in a syscall) and returns what
 *    is there (a partial read), 0 at end of file;
 *  - a write larger than the socket buffer returns only when all of it is written, while
 *    the reader drains it slowly; EPIPE once the peer is gone;
 *  - recv with MSG_WAITALL fills the buffer from several sends; MSG_DONTWAIT is the plain
 *    call (EAGAIN); readv/writev, recvmsg/sendmsg, recvfrom/sendto on a datagram socket;
 *  - errors as the kernel gives them (EBADF);
 *  - 200 reader/writer pairs over socketpairs and pipes, every byte checked, within the
 *    thread bound and with no spare P lent.
 */
#include "t_hook.h"
#include <sys/uio.h>

struct parked {
    int fd;
    ssize_t got;
    char buf[64];
    int done;
};

static void reader(void *arg)
{
    struct parked *p = arg;
    p->got = read(p->fd, p->buf, sizeof p->buf);
    __atomic_store_n(&p->done, 1, __ATOMIC_SEQ_CST);
}

static void wait_waiting(uint64_t n)
{
    T_WAIT_UNTIL(({
                     struct loom_stats s;
                     loom_stats(&s);
                     s.waiting >= n;
                 }),
                 10, "goroutines to park");
}

static void test_read_parks(void)
{
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    struct parked p = { .fd = sv[0] };
    loom_go(reader, &p);
    loom_sleep(20 * MS);
    CHECK_EQ(__atomic_load_n(&p.done, __ATOMIC_SEQ_CST), 0);
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    CHECK_EQ(st.syscall, 0);               /* parked, not blocked in the kernel */
    CHECK_EQ(write(sv[1], "hello", 5), 5); /* a partial read: 5 of 64 */
    T_WAIT_UNTIL(t_get(&p.done), 10, "the reader to wake");
    CHECK_EQ(p.got, 5);
    CHECK_MEMEQ(p.buf, "hello", 5);
    CHECK(t_kernel_nonblock(sv[0]));                 /* the hook made it non-blocking... */
    CHECK_EQ(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0); /* ...where the program cannot see */
    /* end of file */
    p.done = 0;
    loom_go(reader, &p);
    loom_sleep(5 * MS);
    CHECK_OK(close(sv[1]));
    T_WAIT_UNTIL(t_get(&p.done), 10, "the reader to see EOF");
    CHECK_EQ(p.got, 0);
    CHECK_OK(close(sv[0]));

    /* a pipe */
    int pp[2];
    CHECK_OK(pipe(pp));
    p = (struct parked){ .fd = pp[0] };
    loom_go(reader, &p);
    wait_waiting(1);
    CHECK_EQ(write(pp[1], "abc", 3), 3);
    T_WAIT_UNTIL(t_get(&p.done), 10, "the pipe reader to wake");
    CHECK_EQ(p.got, 3);
    CHECK_OK(close(pp[0]));
    CHECK_OK(close(pp[1]));
}

/* ---- a write that fills the socket buffer */

struct drain {
    int fd;
    size_t want;
    size_t got;
    uint64_t sum;
    int done;
};

static void slow_drain(void *arg)
{
    struct drain *d = arg;
    char buf[4096];
    while (d->got < d->want) {
        ssize_t k = read(d->fd, buf, sizeof buf);
        CHECK_GT(k, 0);
        for (ssize_t i = 0; i < k; i++)
            d->sum += (unsigned char)buf[i];
        d->got += (size_t)k;
        if ((d->got / 4096) % 64 == 0)
            usleep(200);
    }
    __atomic_store_n(&d->done, 1, __ATOMIC_SEQ_CST);
}

static void test_write_all(void)
{
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    size_t n = 4 << 20;
    unsigned char *big = malloc(n);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += big[i] = (unsigned char)(i * 31 + 7);
    struct drain d = { .fd = sv[1], .want = n };
    loom_go(slow_drain, &d);
    CHECK_EQ(write(sv[0], big, n), (long long)n); /* all of it, as a blocking write */
    T_WAIT_UNTIL(t_get(&d.done), 30, "the drain");
    CHECK_EQU(d.sum, sum);
    /* writev and sendmsg, 2 MiB in three pieces each */
    struct iovec iov[3] = { { big, 1 << 20 },
                            { big + (1 << 20), 1 },
                            { big + (1 << 20) + 1, (1 << 20) - 1 } };
    d = (struct drain){ .fd = sv[1], .want = 4 << 20 };
    loom_go(slow_drain, &d);
    CHECK_EQ(writev(sv[0], iov, 3), 2 << 20);
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 3 };
    CHECK_EQ(sendmsg(sv[0], &mh, 0), 2 << 20);
    T_WAIT_UNTIL(t_get(&d.done), 30, "the second drain");
    uint64_t want = 0;
    for (size_t i = 0; i < (2u << 20); i++)
        want += 2 * big[i];
    CHECK_EQU(d.sum, want);
    /* the peer gone: EPIPE (SIGPIPE is ignored by main) */
    CHECK_OK(close(sv[1]));
    t_set_errno(0);
    CHECK_EQ(write(sv[0], big, 100), -1);
    CHECK_EQ(t_errno(), EPIPE);
    CHECK_EQ(send(sv[0], big, 100, MSG_NOSIGNAL), -1);
    CHECK_EQ(t_errno(), EPIPE);
    CHECK_OK(close(sv[0]));
    free(big);
}

/* ---- flags */

static void sender(void *arg)
{
    int fd = *(int *)arg;
    for (int i = 0; i < 4; i++) {
        usleep(2000);
        CHECK_EQ(send(fd, "0123456789", 10, 0), 10);
    }
}

static void test_flags(void)
{
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    char buf[64];
    t_set_errno(0);
    CHECK_EQ(recv(sv[0], buf, sizeof buf, MSG_DONTWAIT), -1); /* the plain call */
    CHECK_EQ(t_errno(), EAGAIN);
    loom_go(sender, &sv[1]);
    CHECK_EQ(recv(sv[0], buf, 40, MSG_WAITALL), 40); /* four sends' worth */
    CHECK_MEMEQ(buf + 30, "0123456789", 10);
    /* readv, recvmsg */
    CHECK_EQ(write(sv[1], "abcdef", 6), 6);
    char a[2], b[10];
    struct iovec iov[2] = { { a, 2 }, { b, 10 } };
    CHECK_EQ(readv(sv[0], iov, 2), 6);
    CHECK_MEMEQ(b, "cdef", 4);
    loom_go(sender, &sv[1]);
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
    CHECK_EQ(recvmsg(sv[0], &mh, 0), 10); /* parks for the first send */
    char rest[30];
    CHECK_EQ(recv(sv[0], rest, 30, MSG_WAITALL), 30);
    CHECK_OK(close(sv[0]));
    CHECK_OK(close(sv[1]));

    /* datagrams: recvfrom waits for one, whole */
    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a1 = t_loopback(0);
    CHECK_OK(bind(u1, (struct sockaddr *)&a1, sizeof a1));
    socklen_t l = sizeof a1;
    CHECK_OK(getsockname(u1, (struct sockaddr *)&a1, &l));
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    int peer = u2;
    loom_go(sender, &peer); /* (send on an unconnected UDP socket fails: connect it) */
    CHECK_OK(connect(u2, (struct sockaddr *)&a1, sizeof a1));
    CHECK_EQ(recvfrom(u1, buf, sizeof buf, MSG_WAITALL, (struct sockaddr *)&from, &fl), 10);
    CHECK_EQ(fl, (long long)sizeof from);
    CHECK_EQ(from.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    for (int i = 0; i < 3; i++)
        CHECK_EQ(recv(u1, buf, sizeof buf, 0), 10);
    CHECK_EQ(sendto(u1, "x", 1, 0, (struct sockaddr *)&from, fl), 1);
    CHECK_EQ(recv(u2, buf, sizeof buf, 0), 1);
    CHECK_OK(close(u1));
    CHECK_OK(close(u2));

    /* errors */
    t_set_errno(0);
    CHECK_EQ(read(987, buf, 1), -1);
    CHECK_EQ(t_errno(), EBADF);
    t_set_errno(0);
    CHECK_EQ(write(-1, buf, 1), -1);
    CHECK_EQ(t_errno(), EBADF);
}

/* ---- many pairs */

struct pair {
    int rfd, wfd;
    uint64_t sum;
    loom_waitgroup *wg;
};

static void pair_writer(void *arg)
{
    struct pair *p = arg;
    char buf[1500];
    for (int c = 0; c < 20; c++) {
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (char)(c * 7 + i);
        CHECK_EQ(write(p->wfd, buf, sizeof buf), (long long)sizeof buf);
        if (c % 4 == 0)
            usleep(300);
    }
    CHECK_OK(close(p->wfd));
    loom_wg_done(p->wg);
}

static void pair_reader(void *arg)
{
    struct pair *p = arg;
    unsigned char buf[700];
    for (;;) {
        ssize_t k = read(p->rfd, buf, sizeof buf);
        CHECK_GE(k, 0);
        if (k == 0)
            break;
        for (ssize_t i = 0; i < k; i++)
            p->sum += buf[i];
    }
    CHECK_OK(close(p->rfd));
    loom_wg_done(p->wg);
}

static void test_many_pairs(void)
{
    int n = (int)t_scale(200);
    struct pair *ps = calloc((size_t)n, sizeof *ps);
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    loom_wg_add(&wg, 2 * n);
    struct t_watch w;
    t_watch_start(&w);
    for (int i = 0; i < n; i++) {
        int fds[2];
        if (i % 2)
            CHECK_OK(pipe(fds));
        else
            CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds));
        ps[i] = (struct pair){ fds[0], fds[1], 0, &wg };
        loom_go(pair_reader, &ps[i]);
        loom_go(pair_writer, &ps[i]);
    }
    loom_wg_wait(&wg);
    t_watch_check(&w, "200 pairs");
    uint64_t want = 0;
    for (int c = 0; c < 20; c++)
        for (int i = 0; i < 1500; i++)
            want += (unsigned char)(c * 7 + i);
    for (int i = 0; i < n; i++)
        CHECK_EQU(ps[i].sum, want);
    free(ps);
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("read"))
        test_read_parks();
    if (t_want("write"))
        test_write_all();
    if (t_want("flags"))
        test_flags();
    if (t_want("many"))
        test_many_pairs();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    t_hook_require("test_hook_io");
    signal(SIGPIPE, SIG_IGN);
    t_prepare_fds(4096);
    t_hook_run(2, main_fn, NULL);
    printf("test_hook_io: ok\n");
    return 0;
}
