/*
 * test_hook_poll.c — poll, ppoll, select, pselect and epoll_wait through libloom_hook, from
 * goroutines:
 *  - a timeout passes (0 returned, no earlier than asked), zero timeouts look and return;
 *  - one fd and several fds (a socketpair, a pipe, an eventfd) wake the poller when one
 *    becomes ready, with the kernel's exact revents (POLLIN, POLLHUP, POLLNVAL at once);
 *  - poll(NULL, 0, ms) and select(0, ..., tv) sleep; select leaves the time not slept in
 *    its timeval; a signal mask (ppoll, pselect) takes the blocking path and still works;
 *  - epoll_wait on the program's own epoll set parks and wakes;
 *  - two goroutines polling the same fd both wake;
 *  - polling leaves the program's blocking fds blocking in the kernel;
 *  - 300 goroutines poll at once with timeouts, half woken by data, within the thread bound.
 */
#include "t_hook.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>

struct later {
    int fd;
    int64_t ns;
    const char *what;
};

/* (a copy: the caller reuses its struct once the write has woken it) */
static void write_later(void *arg)
{
    struct later l = *(struct later *)arg;
    loom_sleep(l.ns);
    CHECK_EQ(write(l.fd, l.what, strlen(l.what)), (long long)strlen(l.what));
}

static void close_later(void *arg)
{
    struct later *l = arg;
    loom_sleep(l->ns);
    CHECK_OK(close(l->fd));
}

static void test_poll(void)
{
    int sv[2], pp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    CHECK_OK(pipe(pp));
    struct pollfd p[3] = { { sv[0], POLLIN, 0 }, { pp[0], POLLIN, 0 }, { -1, POLLIN, 0 } };
    CHECK_EQ(poll(p, 3, 0), 0);
    int64_t t0 = loom_now();
    CHECK_EQ(poll(p, 1, 25), 0);
    CHECK_GE(loom_now() - t0, 25 * MS);
    t0 = loom_now();
    CHECK_EQ(poll(p, 3, 25), 0);
    CHECK_GE(loom_now() - t0, 25 * MS);
    CHECK(!t_kernel_nonblock(pp[0])); /* a poll changes no flag */
    /* the second fd wakes the set */
    struct later l = { pp[1], 10 * MS, "x" };
    loom_go(write_later, &l);
    t0 = loom_now();
    CHECK_EQ(poll(p, 3, 5000), 1);
    CHECK_LT(loom_now() - t0, 4000 * MS);
    CHECK_EQ(p[0].revents, 0);
    CHECK_EQ(p[1].revents, POLLIN);
    CHECK_EQ(p[2].revents, 0);
    char c;
    CHECK_EQ(read(pp[0], &c, 1), 1);
    /* one fd, forever, woken by data */
    l = (struct later){ sv[1], 10 * MS, "y" };
    loom_go(write_later, &l);
    CHECK_EQ(poll(p, 1, -1), 1);
    CHECK_EQ(p[0].revents, POLLIN);
    CHECK_EQ(read(sv[0], &c, 1), 1);
    /* the peer hangs up while we wait */
    l = (struct later){ sv[1], 10 * MS, NULL };
    loom_go(close_later, &l);
    struct pollfd h = { sv[0], POLLIN | POLLRDHUP, 0 };
    CHECK_EQ(poll(&h, 1, 5000), 1);
    CHECK(h.revents & (POLLRDHUP | POLLHUP | POLLIN));
    /* a closed fd in the set: POLLNVAL at once */
    struct pollfd bad[2] = { { pp[0], POLLIN, 0 }, { 977, POLLIN, 0 } };
    CHECK_EQ(poll(bad, 2, 5000), 1);
    CHECK_EQ(bad[1].revents, POLLNVAL);
    /* POLLOUT on a socket with room */
    int sv2[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2));
    struct pollfd o = { sv2[0], POLLOUT, 0 };
    CHECK_EQ(poll(&o, 1, 1000), 1);
    CHECK_EQ(o.revents, POLLOUT);
    /* an eventfd and POLLPRI interest (the temporary epoll set) */
    int ev = eventfd(0, EFD_CLOEXEC);
    struct pollfd e2[2] = { { ev, POLLIN, 0 }, { sv2[0], POLLPRI, 0 } };
    uint64_t one = 1;
    t0 = loom_now();
    CHECK_EQ(poll(e2, 2, 20), 0);
    CHECK_GE(loom_now() - t0, 20 * MS);
    CHECK_EQ(write(ev, &one, 8), 8);
    CHECK_EQ(poll(e2, 2, 1000), 1);
    CHECK_EQ(e2[0].revents, POLLIN);
    /* sleeps */
    t0 = loom_now();
    CHECK_EQ(poll(NULL, 0, 20), 0);
    CHECK_GE(loom_now() - t0, 20 * MS);
    /* ppoll, with and without a mask */
    struct timespec ts = { 0, 20 * MS };
    t0 = loom_now();
    CHECK_EQ(ppoll(&p[1], 1, &ts, NULL), 0); /* (sv[0] is hung up by now) */
    CHECK_GE(loom_now() - t0, 20 * MS);
    CHECK_EQ(ts.tv_nsec, 20 * MS); /* left alone */
    sigset_t mask;
    sigemptyset(&mask);
    l = (struct later){ pp[1], 10 * MS, "m" };
    loom_go(write_later, &l);
    ts.tv_sec = 5;
    CHECK_EQ(ppoll(&p[1], 1, &ts, &mask), 1); /* the blocking path */
    CHECK_EQ(p[1].revents, POLLIN);
    CHECK_EQ(read(pp[0], &c, 1), 1);
    CHECK_OK(close(ev));
    CHECK_OK(close(sv2[0]));
    CHECK_OK(close(sv2[1]));
    CHECK_OK(close(sv[0]));
    CHECK_OK(close(pp[0]));
    CHECK_OK(close(pp[1]));
}

static void test_select(void)
{
    int sv[2], pp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    CHECK_OK(pipe(pp));
    int nfds = (sv[0] > pp[0] ? sv[0] : pp[0]) + 1;
    fd_set r;
    FD_ZERO(&r);
    FD_SET(sv[0], &r);
    FD_SET(pp[0], &r);
    struct timeval tv = { 0, 25000 };
    int64_t t0 = loom_now();
    CHECK_EQ(select(nfds, &r, NULL, NULL, &tv), 0);
    CHECK_GE(loom_now() - t0, 25 * MS);
    CHECK(!FD_ISSET(sv[0], &r) && !FD_ISSET(pp[0], &r));
    CHECK(tv.tv_sec == 0 && tv.tv_usec == 0);
    FD_SET(sv[0], &r);
    FD_SET(pp[0], &r);
    struct later l = { sv[1], 10 * MS, "s" };
    loom_go(write_later, &l);
    tv = (struct timeval){ 5, 0 };
    CHECK_EQ(select(nfds, &r, NULL, NULL, &tv), 1);
    CHECK(FD_ISSET(sv[0], &r) && !FD_ISSET(pp[0], &r));
    CHECK(tv.tv_sec >= 3 && tv.tv_sec <= 4); /* the time not slept */
    char c;
    CHECK_EQ(read(sv[0], &c, 1), 1);
    /* writable at once */
    fd_set w;
    FD_ZERO(&w);
    FD_SET(pp[1], &w);
    CHECK_EQ(select(pp[1] + 1, NULL, &w, NULL, NULL), 1);
    CHECK(FD_ISSET(pp[1], &w));
    /* a sleep */
    tv = (struct timeval){ 0, 20000 };
    t0 = loom_now();
    CHECK_EQ(select(0, NULL, NULL, NULL, &tv), 0);
    CHECK_GE(loom_now() - t0, 20 * MS);
    /* pselect, no mask and a mask */
    FD_ZERO(&r);
    FD_SET(pp[0], &r);
    struct timespec ts = { 0, 20 * MS };
    t0 = loom_now();
    CHECK_EQ(pselect(pp[0] + 1, &r, NULL, NULL, &ts, NULL), 0);
    CHECK_GE(loom_now() - t0, 20 * MS);
    CHECK_EQ(ts.tv_nsec, 20 * MS);
    FD_SET(pp[0], &r);
    sigset_t mask;
    sigemptyset(&mask);
    l = (struct later){ pp[1], 10 * MS, "p" };
    loom_go(write_later, &l);
    ts = (struct timespec){ 5, 0 };
    CHECK_EQ(pselect(pp[0] + 1, &r, NULL, NULL, &ts, &mask), 1);
    CHECK(FD_ISSET(pp[0], &r));
    CHECK_EQ(read(pp[0], &c, 1), 1);
    /* a bad fd: EBADF */
    FD_ZERO(&r);
    FD_SET(979, &r);
    CHECK_EQ(select(980, &r, NULL, NULL, NULL), -1);
    CHECK_EQ(t_errno(), EBADF);
    for (int i = 0; i < 2; i++) {
        CHECK_OK(close(sv[i]));
        CHECK_OK(close(pp[i]));
    }
}

static void test_epoll(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int pp[2];
    CHECK_OK(pipe(pp));
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 7 }, out[4];
    CHECK_OK(epoll_ctl(ep, EPOLL_CTL_ADD, pp[0], &ev));
    CHECK_EQ(epoll_wait(ep, out, 4, 0), 0);
    int64_t t0 = loom_now();
    CHECK_EQ(epoll_wait(ep, out, 4, 25), 0);
    CHECK_GE(loom_now() - t0, 25 * MS);
    struct later l = { pp[1], 10 * MS, "e" };
    loom_go(write_later, &l);
    CHECK_EQ(epoll_wait(ep, out, 4, -1), 1);
    CHECK_EQ(out[0].data.u32, 7);
    CHECK_EQ(fcntl(ep, F_GETFL) & O_NONBLOCK, 0); /* the program's view */
    char c;
    CHECK_EQ(read(pp[0], &c, 1), 1);
    loom_go(write_later, &l);
    CHECK_EQ(epoll_pwait(ep, out, 4, 5000, NULL), 1);
    CHECK_EQ(read(pp[0], &c, 1), 1);
    CHECK_OK(close(ep));
    CHECK_OK(close(pp[0]));
    CHECK_OK(close(pp[1]));
}

/* ---- two pollers on one fd, and many pollers */

struct poller {
    int fd;
    int ms;
    int want;
    int got;
    int64_t took;
    loom_waitgroup *wg;
};

static void poller(void *arg)
{
    struct poller *p = arg;
    struct pollfd pf = { p->fd, POLLIN, 0 };
    int64_t t0 = loom_now();
    p->got = poll(&pf, 1, p->ms);
    p->took = loom_now() - t0;
    loom_wg_done(p->wg);
}

static void test_shared_fd(void)
{
    int pp[2];
    CHECK_OK(pipe(pp));
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    loom_wg_add(&wg, 2);
    struct poller a = { pp[0], 5000, 1, 0, 0, &wg }, b = a;
    loom_go(poller, &a);
    loom_go(poller, &b);
    loom_sleep(10 * MS);
    CHECK_EQ(write(pp[1], "!", 1), 1);
    loom_wg_wait(&wg);
    CHECK_EQ(a.got, 1);
    CHECK_EQ(b.got, 1);
    CHECK_OK(close(pp[0]));
    CHECK_OK(close(pp[1]));
}

static void test_many_pollers(void)
{
    int n = (int)t_scale(300);
    struct poller *ps = calloc((size_t)n, sizeof *ps);
    int(*fds)[2] = calloc((size_t)n, sizeof *fds);
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    loom_wg_add(&wg, n);
    struct t_watch w;
    t_watch_start(&w);
    for (int i = 0; i < n; i++) {
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i]));
        ps[i] = (struct poller){ fds[i][0], i % 2 ? 5000 : 30, i % 2, 0, 0, &wg };
        loom_go(poller, &ps[i]);
    }
    loom_sleep(10 * MS);
    for (int i = 1; i < n; i += 2)
        CHECK_EQ(write(fds[i][1], "d", 1), 1);
    loom_wg_wait(&wg);
    t_watch_check(&w, "300 pollers");
    for (int i = 0; i < n; i++) {
        CHECK_EQ(ps[i].got, ps[i].want);
        if (!ps[i].want)
            CHECK_GE(ps[i].took, 30 * MS);
        CHECK_OK(close(fds[i][0]));
        CHECK_OK(close(fds[i][1]));
    }
    free(ps);
    free(fds);
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("poll"))
        test_poll();
    if (t_want("select"))
        test_select();
    if (t_want("epoll"))
        test_epoll();
    if (t_want("shared"))
        test_shared_fd();
    if (t_want("many"))
        test_many_pollers();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    t_hook_require("test_hook_poll");
    t_prepare_fds(4096);
    t_hook_run(2, main_fn, NULL);
    printf("test_hook_poll: ok\n");
    return 0;
}
