/*
 * test_hook_many.c — 1000 goroutines at LOOM_PROCS=2 in plain blocking calls at once,
 * through libloom_hook: socketpair reads and writes (echo pairs), poll with timeouts (some
 * woken by data, some timing out), usleep loops, and blocking connect and accept (many
 * acceptors on one listener); every reply checked, the process never above the thread
 * bound (LOOM_PROCS + 4) and no spare P lent.
 */
#include "t_hook.h"

enum { ROUNDS = 10 };
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;
static int errors;

static void fail_if(bool bad, const char *what)
{
    if (bad) {
        fprintf(stderr, "test_hook_many: %s (errno %d)\n", what, t_errno());
        __atomic_fetch_add(&errors, 1, __ATOMIC_SEQ_CST);
    }
}

static bool read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k <= 0)
            return false;
        got += (size_t)k;
    }
    return true;
}

/* ---- echo pairs over socketpairs */
static void echo_server(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[256];
    for (;;) {
        ssize_t k = read(fd, buf, sizeof buf);
        if (k <= 0)
            break;
        fail_if(write(fd, buf, (size_t)k) != k, "echo write");
    }
    close(fd);
    loom_wg_done(&wg);
}

static void echo_client(void *arg)
{
    int fd = (int)(intptr_t)arg;
    for (int r = 0; r < ROUNDS; r++) {
        char msg[100], back[100];
        for (int i = 0; i < 100; i++)
            msg[i] = (char)(fd + r + i);
        fail_if(write(fd, msg, sizeof msg) != (ssize_t)sizeof msg, "client write");
        fail_if(!read_full(fd, back, sizeof back) || memcmp(msg, back, sizeof msg) != 0, "echo reply");
    }
    close(fd);
    loom_wg_done(&wg);
}

/* ---- pollers: odd ones are fed, even ones time out */
struct pol {
    int fd, feed, peer;
}; /* feed: where the feeder writes, -1: none */

static void poller(void *arg)
{
    struct pol *p = arg;
    bool fed = p->feed >= 0;
    for (int got = 0, timeouts = 0; fed ? got < ROUNDS : timeouts < ROUNDS;) {
        struct pollfd pf = { p->fd, POLLIN, 0 };
        int64_t t0 = loom_now();
        int n = poll(&pf, 1, 10);
        if (n == 0) {
            fail_if(loom_now() - t0 < 10 * MS, "poll timed out early");
            timeouts++;
        } else {
            char c;
            fail_if(n != 1 || pf.revents != POLLIN || read(p->fd, &c, 1) != 1 || !fed, "poll woke");
            got++;
        }
    }
    close(p->fd);
    loom_wg_done(&wg);
}

static void feeder(void *arg)
{
    struct pol *p = arg;
    for (int r = 0; r < ROUNDS; r++) {
        usleep(3000);
        fail_if(write(p->feed, "f", 1) != 1, "feed");
    }
    loom_wg_done(&wg);
}

/* ---- sleepers */
static void sleeper(void *arg)
{
    int us = (int)(intptr_t)arg;
    for (int r = 0; r < ROUNDS; r++) {
        int64_t t0 = loom_now();
        fail_if(usleep((useconds_t)us) != 0 || loom_now() - t0 < us * 1000LL, "usleep");
    }
    loom_wg_done(&wg);
}

/* ---- connect / accept */
static int port, lfd;

static void acceptor(void *arg)
{
    (void)arg;
    int fd = accept(lfd, NULL, NULL);
    fail_if(fd < 0, "accept");
    if (fd >= 0) {
        char buf[64];
        for (int r = 0; r < ROUNDS; r++) {
            if (!read_full(fd, buf, sizeof buf)) {
                fail_if(true, "accepted read");
                break;
            }
            fail_if(write(fd, buf, sizeof buf) != (ssize_t)sizeof buf, "accepted write");
        }
        close(fd);
    }
    loom_wg_done(&wg);
}

static void connector(void *arg)
{
    int id = (int)(intptr_t)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = t_loopback(port);
    fail_if(connect(fd, (struct sockaddr *)&a, sizeof a) != 0, "connect");
    for (int r = 0; r < ROUNDS; r++) {
        char msg[64], back[64];
        memset(msg, id + r, sizeof msg);
        fail_if(write(fd, msg, sizeof msg) != (ssize_t)sizeof msg, "connector write");
        fail_if(!read_full(fd, back, sizeof back) || memcmp(msg, back, sizeof msg) != 0, "connector reply");
    }
    close(fd);
    loom_wg_done(&wg);
}

static int main_fn(void *arg)
{
    (void)arg;
    int quarter = (int)t_scale(250);
    struct t_watch w;
    t_watch_start(&w);
    lfd = t_listen_tcp(&port, 512);
    struct pol *pols = calloc((size_t)quarter, sizeof *pols);
    int64_t t0 = loom_now();
    int pairs = quarter / 2;
    loom_wg_add(&wg, 4 * pairs + 2 * quarter + quarter / 2); /* (2 echo, acceptor, connector) per pair,
                                                                 poller, sleeper, a feeder per odd poller */
    for (int i = 0; i < pairs; i++) {
        int sv[2];
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
        loom_go(echo_server, (void *)(intptr_t)sv[0]);
        loom_go(echo_client, (void *)(intptr_t)sv[1]);
        loom_go(acceptor, NULL);
        loom_go(connector, (void *)(intptr_t)i);
    }
    for (int i = 0; i < quarter; i++) {
        int sv[2];
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
        pols[i] = (struct pol){ sv[0], i % 2 ? sv[1] : -1, sv[1] };
        loom_go(poller, &pols[i]);
        loom_go(sleeper, (void *)(intptr_t)(1000 + i % 4000));
    }
    for (int i = 1; i < quarter; i += 2)
        loom_go(feeder, &pols[i]);
    loom_wg_wait(&wg);
    int64_t took = loom_now() - t0;
    t_watch_check(&w, "1000 goroutines");
    CHECK_EQ(t_get(&errors), 0);
    for (int i = 0; i < quarter; i++)
        close(pols[i].peer);
    CHECK_OK(close(lfd));
    free(pols);
    printf("test_hook_many: %d goroutines in %.0f ms, at most %d threads\n",
           4 * pairs + 2 * quarter + quarter / 2, took / 1e6, w.max_threads);
    return 0;
}

int main(void)
{
    t_hook_require("test_hook_many");
    t_hook_watchdog(240);
    signal(SIGPIPE, SIG_IGN);
    t_prepare_fds(8192);
    t_hook_run(2, main_fn, NULL);
    printf("test_hook_many: ok\n");
    return 0;
}
