/*
 * test_netpoll.c — goroutines waiting on fds through the netpoller:
 *  - 300 reader/writer pairs over pipes move checked data; the readers park in the poller,
 *    not in threads (the process keeps few threads);
 *  - loom_fd_wait: timeout 0 gives -EAGAIN, a timeout gives -ETIMEDOUT no earlier than
 *    asked, readiness is a level (asking twice without reading says readable twice), and
 *    both events at once;
 *  - loom_fd_close wakes a parked reader and a parked writer with -ECANCELED;
 *  - a second goroutine waiting on the same fd and direction gets -EBUSY;
 *  - an fd closed with plain close() and its number reused by a new pipe still works;
 *  - an fd closed with loom_fd_close and its number reused at once: the old waiter gets
 *    -ECANCELED and the new waiter still wakes;
 *  - a thread outside the runtime wakes a goroutine parked on a pipe while every P idles
 *    (it writes once loom_stats shows that);
 *  - regular files take the blocking path; EOF, EPIPE, -EBADF and -EINVAL.
 */
#include "t.h"
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#define MS 1000000LL

/* ---- many pipes */

struct pipe_pair {
    int fd;
    int chunks;
    uint64_t sum;
    loom_waitgroup *wg;
};

static void pipe_writer(void *arg)
{
    struct pipe_pair *pp = arg;
    unsigned char buf[700];
    for (int c = 0; c < pp->chunks; c++) {
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (unsigned char)(c + i);
        CHECK_EQ(loom_write(pp->fd, buf, sizeof buf), (long long)sizeof buf);
        if (c % 3 == 0)
            loom_sleep(100000); /* let the reader drain and park */
    }
    CHECK_OK(loom_fd_close(pp->fd));
    loom_wg_done(pp->wg);
}

static void pipe_reader(void *arg)
{
    struct pipe_pair *pp = arg;
    unsigned char buf[256];
    uint64_t sum = 0, n = 0;
    for (;;) {
        ssize_t k = loom_read(pp->fd, buf, sizeof buf);
        CHECK_GE(k, 0);
        if (k == 0)
            break;
        for (ssize_t i = 0; i < k; i++)
            sum += buf[i];
        n += (uint64_t)k;
    }
    CHECK_EQU(n, (uint64_t)pp->chunks * 700);
    pp->sum = sum;
    CHECK_OK(loom_fd_close(pp->fd));
    loom_wg_done(pp->wg);
}

static int max_threads;

static void watch_threads(void *arg)
{
    int *stop = arg;
    while (!__atomic_load_n(stop, __ATOMIC_SEQ_CST)) {
        int n = t_count_threads();
        if (n > max_threads)
            max_threads = n;
        loom_sleep(2 * MS);
    }
}

static void test_many_pipes(void)
{
    int pairs = (int)t_scale(300), chunks = 20;
    struct pipe_pair *w = calloc((size_t)pairs, sizeof *w), *r = calloc((size_t)pairs, sizeof *r);
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    loom_wg_add(&wg, 2 * pairs);
    int stop = 0;
    max_threads = 0;
    loom_go(watch_threads, &stop);
    for (int i = 0; i < pairs; i++) {
        int fds[2];
        CHECK_OK(pipe(fds));
        r[i] = (struct pipe_pair){ fds[0], chunks, 0, &wg };
        w[i] = (struct pipe_pair){ fds[1], chunks, 0, &wg };
        loom_go(pipe_reader, &r[i]);
        loom_go(pipe_writer, &w[i]);
    }
    loom_wg_wait(&wg);
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    uint64_t want = 0;
    for (int c = 0; c < chunks; c++)
        for (int i = 0; i < 700; i++)
            want += (unsigned char)(c + i);
    for (int i = 0; i < pairs; i++)
        CHECK_EQU(r[i].sum, want);
    /* parked readers cost no thread: procs + sysmon + loom_run's thread + a few spares */
    CHECK_MSG(max_threads <= loom_procs() + 6, "%d threads for %d pipes", max_threads, pairs);
    free(w);
    free(r);
}

/* ---- loom_fd_wait */

static void test_fd_wait(void)
{
    int fds[2];
    CHECK_OK(pipe(fds));
    CHECK_ERR(loom_fd_wait(fds[0], LOOM_READABLE, 0), EAGAIN);
    int64_t t0 = loom_now();
    CHECK_ERR(loom_fd_wait(fds[0], LOOM_READABLE, 20 * MS), ETIMEDOUT);
    CHECK_GE(loom_now() - t0, 20 * MS);
    CHECK_EQ(loom_fd_wait(fds[1], LOOM_WRITABLE, -1), LOOM_WRITABLE);
    CHECK_EQ(loom_write(fds[1], "x", 1), 1);
    CHECK_EQ(loom_fd_wait(fds[0], LOOM_READABLE, -1), LOOM_READABLE);
    CHECK_EQ(loom_fd_wait(fds[0], LOOM_READABLE, 5 * MS), LOOM_READABLE); /* a level */
    char c;
    CHECK_EQ(loom_read(fds[0], &c, 1), 1);
    CHECK_ERR(loom_fd_wait(fds[0], LOOM_READABLE, 0), EAGAIN);
    int sp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp));
    CHECK_EQ(loom_fd_wait(sp[0], LOOM_READABLE | LOOM_WRITABLE, -1), LOOM_WRITABLE);
    CHECK_EQ(loom_write(sp[1], "y", 1), 1);
    CHECK_EQ(loom_fd_wait(sp[0], LOOM_READABLE | LOOM_WRITABLE, -1), LOOM_READABLE | LOOM_WRITABLE);
    /* bad arguments */
    CHECK_ERR(loom_fd_wait(-1, LOOM_READABLE, 0), EINVAL);
    CHECK_ERR(loom_fd_wait(fds[0], 0, 0), EINVAL);
    CHECK_ERR(loom_fd_wait(fds[0], 8, 0), EINVAL);
    /* a closed fd: a high number, since the runtime's own threads (sysmon reading
     * /proc) may get a freed low number back at any moment */
    int hi = dup2(fds[0], 900);
    CHECK_EQ(hi, 900);
    CHECK_OK(loom_fd_close(hi));
    CHECK_ERR(loom_fd_wait(hi, LOOM_READABLE, 0), EBADF);
    for (int i = 0; i < 2; i++) {
        CHECK_OK(loom_fd_close(fds[i]));
        CHECK_OK(loom_fd_close(sp[i]));
    }
}

/* ---- loom_fd_close wakes waiters; a second waiter gets -EBUSY */

struct closer {
    int fd;
    long result;
    int started;
};

static void blocked_reader(void *arg)
{
    struct closer *c = arg;
    char buf[16];
    __atomic_store_n(&c->started, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->result, (long)loom_read(c->fd, buf, sizeof buf), __ATOMIC_SEQ_CST);
}

static void blocked_writer(void *arg)
{
    struct closer *c = arg;
    static char big[1 << 20];
    __atomic_store_n(&c->started, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->result, (long)loom_write(c->fd, big, sizeof big), __ATOMIC_SEQ_CST);
}

/* Until n goroutines are parked (a reader's loom_read has reached its park, not just
 * started): the cases below close an fd under a parked reader, and must not race with a
 * reader that has not got there yet. */
static void wait_parked(uint64_t n)
{
    int64_t dl = t_clock_ns() + 10000 * MS;
    for (;;) {
        struct loom_stats st;
        CHECK_OK(loom_stats(&st));
        if (st.waiting >= n)
            return;
        CHECK_MSG(t_clock_ns() < dl, "the reader never parked");
        loom_sleep(MS / 4);
    }
}

static void wait_result(struct closer *c)
{
    int64_t dl = t_clock_ns() + 10000 * MS;
    while (__atomic_load_n(&c->result, __ATOMIC_SEQ_CST) == 1) {
        CHECK_MSG(t_clock_ns() < dl, "waiter on fd %d never woke", c->fd);
        loom_sleep(MS);
    }
}

static void test_close_wakes(void)
{
    int sp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp));
    struct closer rd = { sp[0], 1, 0 }, wr = { sp[0], 1, 0 };
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    loom_go(blocked_reader, &rd);
    loom_go(blocked_writer, &wr); /* 1 MiB fills the socket buffer: it parks */
    wait_parked(st.waiting + 2);
    CHECK_EQ(__atomic_load_n(&rd.result, __ATOMIC_SEQ_CST), 1); /* still parked */
    CHECK_EQ(__atomic_load_n(&wr.result, __ATOMIC_SEQ_CST), 1);
    /* a second reader on the same fd while the first waits */
    char b;
    CHECK_ERR(loom_read(sp[0], &b, 1), EBUSY);
    CHECK_OK(loom_fd_close(sp[0]));
    wait_result(&rd);
    wait_result(&wr);
    CHECK_ERR(rd.result, ECANCELED);
    CHECK_ERR(wr.result, ECANCELED);
    CHECK_OK(loom_fd_close(sp[1]));
}

/* ---- an fd number reused behind loom's back */

static void test_reuse_after_plain_close(void)
{
    for (int round = 0; round < 20; round++) {
        int a[2];
        CHECK_OK(pipe(a));
        CHECK_ERR(loom_fd_wait(a[0], LOOM_READABLE, MS), ETIMEDOUT); /* registered */
        close(a[0]);
        close(a[1]);
        int b[2];
        CHECK_OK(pipe(b)); /* most likely the same two numbers */
        struct closer rd = { b[0], 1, 0 };
        loom_go(blocked_reader, &rd);
        while (!__atomic_load_n(&rd.started, __ATOMIC_SEQ_CST))
            loom_yield();
        loom_sleep(MS); /* let it park */
        CHECK_EQ(loom_write(b[1], "hello", 5), 5);
        wait_result(&rd);
        CHECK_EQ(rd.result, 5);
        CHECK_OK(loom_fd_close(b[0]));
        CHECK_OK(loom_fd_close(b[1]));
    }
}

/* ---- loom_fd_close, then the number reused at once by a new waiter: the closed fd's
 * waiter, woken with -ECANCELED but run only after the new one parked (one P: it sits
 * behind the new goroutine in runnext), must leave the new waiter's words alone. */

static void test_reuse_after_fd_close(void)
{
    for (int round = 0; round < 20; round++) {
        int a[2], b[2];
        CHECK_OK(pipe(a));
        struct closer old = { a[0], 1, 0 };
        loom_go(blocked_reader, &old);
        while (!__atomic_load_n(&old.started, __ATOMIC_SEQ_CST))
            loom_yield();
        wait_parked(1);
        CHECK_OK(loom_fd_close(a[0])); /* readies it */
        CHECK_OK(pipe(b));
        b[0] = t_fd_onto(b[0], a[0]); /* (another thread took the number) */
        CHECK_EQ(b[0], a[0]);
        struct closer nw = { b[0], 1, 0 };
        loom_go(blocked_reader, &nw);
        loom_sleep(MS); /* the new reader parks, then the old runs */
        wait_result(&old);
        CHECK_ERR(old.result, ECANCELED);
        CHECK_EQ(__atomic_load_n(&nw.result, __ATOMIC_SEQ_CST), 1); /* still parked */
        CHECK_EQ(loom_write(b[1], "hello", 5), 5);
        wait_result(&nw);
        CHECK_EQ(nw.result, 5);
        CHECK_OK(loom_fd_close(b[0]));
        CHECK_OK(loom_fd_close(b[1]));
        CHECK_OK(loom_fd_close(a[1]));
    }
}

static int reuse_main(void *arg)
{
    (void)arg;
    test_reuse_after_fd_close();
    return 0;
}

/* ---- a thread outside the runtime is the only waker */

/* Every P idle, and the reader parked: the writer thread waits for that before it writes. */
static bool all_idle(void)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st.idle_procs == st.procs && st.waiting >= 1 && st.running == 0 && st.runnable == 0;
}

static void *late_writer(void *arg)
{
    int fd = *(int *)arg;
    T_WAIT_UNTIL(all_idle(), 30, "every P to idle with the reader parked");
    if (write(fd, "z", 1) != 1)
        abort();
    return NULL;
}

static void test_foreign_waker(void)
{
    int fds[2];
    CHECK_OK(pipe(fds));
    alarm(60); /* a wakeup lost for good hangs the read */
    pthread_t t;
    CHECK_OK(pthread_create(&t, NULL, late_writer, &fds[1]));
    char c = 0;
    CHECK_EQ(loom_read(fds[0], &c, 1), 1); /* every P idles meanwhile */
    CHECK_EQ(c, 'z');
    alarm(0);
    pthread_join(t, NULL);
    CHECK_OK(loom_fd_close(fds[0]));
    CHECK_OK(loom_fd_close(fds[1]));
}

/* ---- regular files and errors */

static void test_files_and_errors(void)
{
    char path[] = "/tmp/loom-netpoll-XXXXXX";
    int fd = mkstemp(path);
    CHECK_GE(fd, 0);
    unlink(path);
    char buf[8192];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)(i * 7);
    CHECK_EQ(loom_write(fd, buf, sizeof buf), (long long)sizeof buf);
    CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
    char back[8192];
    size_t got = 0;
    while (got < sizeof back) {
        ssize_t k = loom_read(fd, back + got, sizeof back - got);
        CHECK_GT(k, 0);
        got += (size_t)k;
    }
    CHECK_MEMEQ(buf, back, sizeof buf);
    CHECK_EQ(loom_read(fd, back, 10), 0);         /* EOF */
    CHECK_EQ(fcntl(fd, F_GETFL) & O_NONBLOCK, 0); /* files left alone */
    CHECK_OK(loom_fd_close(fd));

    int fds[2];
    CHECK_OK(pipe(fds));
    CHECK_OK(loom_fd_close(fds[0]));
    CHECK_ERR(loom_write(fds[1], "x", 1), EPIPE); /* and no SIGPIPE */
    CHECK_OK(loom_fd_close(fds[1]));
    CHECK_EQ(dup2(1, 901), 901); /* a closed number nobody takes back */
    CHECK_OK(loom_fd_close(901));
    CHECK_ERR(loom_read(901, buf, 1), EBADF);
    CHECK_ERR(loom_read(-1, buf, 1), EINVAL);
    CHECK_ERR(loom_write(-3, buf, 1), EINVAL);
    CHECK_ERR(loom_read(0, NULL, 5), EINVAL);
    CHECK_ERR(loom_fd_close(-1), EINVAL);
    CHECK_ERR(loom_accept(-1, NULL, NULL), EINVAL);
    CHECK_ERR(loom_connect(3, NULL, 0), EINVAL);
}

static int main_fn(void *arg)
{
    (void)arg;
    test_fd_wait();
    test_close_wakes();
    test_reuse_after_plain_close();
    test_reuse_after_fd_close();
    test_foreign_waker();
    test_files_and_errors();
    test_many_pipes();
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    setenv("LOOM_PROCS", "1", 1);
    T_RUN(reuse_main, NULL);
    printf("test_netpoll: ok\n");
    return 0;
}
