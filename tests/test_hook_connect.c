/*
 * test_hook_connect.c — blocking connect and accept through libloom_hook, from goroutines:
 *  - one acceptor goroutine and 200 clients, each a blocking connect to 127.0.0.1, an
 *    echo checked byte for byte, within the thread bound and with no spare P lent;
 *  - the accepted socket is blocking, as accept gives it (the program's view and the
 *    kernel's flag), and the listener still reads as blocking to the program;
 *  - a refused connect: -1 / ECONNREFUSED;
 *  - 50 goroutines blocked in accept on one listener all get a connection;
 *  - a Unix-domain listener with a full backlog: connects wait (the kernel's blocking
 *    connect does) until the acceptor makes room.
 */
#include "t_hook.h"

struct echo_conn {
    int fd;
    loom_waitgroup *wg;
};

static void echo_handler(void *arg)
{
    struct echo_conn *c = arg;
    char buf[512];
    for (;;) {
        ssize_t k = read(c->fd, buf, sizeof buf);
        CHECK_GE(k, 0);
        if (k == 0)
            break;
        CHECK_EQ(write(c->fd, buf, (size_t)k), k);
    }
    CHECK_OK(close(c->fd));
    free(c);
}

struct server {
    int lfd;
    int n;
};

static void acceptor(void *arg)
{
    struct server *s = arg;
    for (int i = 0; i < s->n; i++) {
        int fd = accept(s->lfd, NULL, NULL);
        CHECK_GE(fd, 0);
        CHECK_EQ(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
        struct echo_conn *c = malloc(sizeof *c);
        c->fd = fd;
        loom_go(echo_handler, c);
    }
}

struct client {
    int port;
    int id;
    int ok;
    loom_waitgroup *wg;
};

static void client(void *arg)
{
    struct client *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_GE(fd, 0);
    struct sockaddr_in a = t_loopback(c->port);
    CHECK_OK(connect(fd, (struct sockaddr *)&a, sizeof a));
    char msg[300], back[300];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (char)(c->id + i);
    for (int round = 0; round < 3; round++) {
        CHECK_EQ(write(fd, msg, sizeof msg), (long long)sizeof msg);
        size_t got = 0;
        while (got < sizeof back) {
            ssize_t k = read(fd, back + got, sizeof back - got);
            CHECK_GT(k, 0);
            got += (size_t)k;
        }
        CHECK_MEMEQ(msg, back, sizeof msg);
    }
    CHECK_OK(close(fd));
    c->ok = 1;
    loom_wg_done(c->wg);
}

static void test_clients(void)
{
    int n = (int)t_scale(200), port;
    int lfd = t_listen_tcp(&port, 128);
    struct server s = { lfd, n };
    struct t_watch w;
    t_watch_start(&w);
    loom_go(acceptor, &s);
    struct client *cs = calloc((size_t)n, sizeof *cs);
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    loom_wg_add(&wg, n);
    for (int i = 0; i < n; i++) {
        cs[i] = (struct client){ port, i, 0, &wg };
        loom_go(client, &cs[i]);
    }
    loom_wg_wait(&wg);
    t_watch_check(&w, "200 clients");
    for (int i = 0; i < n; i++)
        CHECK(cs[i].ok);
    CHECK_EQ(fcntl(lfd, F_GETFL) & O_NONBLOCK, 0);
    CHECK(t_kernel_nonblock(lfd));
    CHECK_OK(close(lfd));
    free(cs);
}

static void test_refused(void)
{
    int port;
    int lfd = t_listen_tcp(&port, 1);
    CHECK_OK(close(lfd)); /* nobody listens there now */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = t_loopback(port);
    CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof a), -1);
    CHECK_EQ(t_errno(), ECONNREFUSED);
    CHECK_OK(close(fd));
}

/* ---- many acceptors */

struct acc {
    int lfd;
    int fd;
    loom_waitgroup *wg;
};

static void one_accept(void *arg)
{
    struct acc *a = arg;
    a->fd = accept(a->lfd, NULL, NULL);
    loom_wg_done(a->wg);
}

static void test_many_acceptors(void)
{
    int n = (int)t_scale(50), port;
    int lfd = t_listen_tcp(&port, 128);
    struct acc *as = calloc((size_t)n, sizeof *as);
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    loom_wg_add(&wg, n);
    for (int i = 0; i < n; i++) {
        as[i] = (struct acc){ lfd, -1, &wg };
        loom_go(one_accept, &as[i]);
    }
    loom_sleep(20 * MS); /* all of them waiting */
    int *cfd = calloc((size_t)n, sizeof *cfd);
    struct sockaddr_in a = t_loopback(port);
    for (int i = 0; i < n; i++) {
        cfd[i] = socket(AF_INET, SOCK_STREAM, 0);
        CHECK_OK(connect(cfd[i], (struct sockaddr *)&a, sizeof a));
    }
    loom_wg_wait(&wg);
    for (int i = 0; i < n; i++) {
        CHECK_GE(as[i].fd, 0);
        CHECK_OK(close(as[i].fd));
        CHECK_OK(close(cfd[i]));
    }
    CHECK_OK(close(lfd));
    free(as);
    free(cfd);
}

/* ---- a full Unix-domain backlog */

struct unix_srv {
    int lfd;
    int n;
    loom_waitgroup *wg;
};

static void slow_acceptor(void *arg)
{
    struct unix_srv *s = arg;
    for (int i = 0; i < s->n; i++) {
        usleep(2000);
        int fd = accept(s->lfd, NULL, NULL);
        CHECK_GE(fd, 0);
        CHECK_OK(close(fd));
    }
    loom_wg_done(s->wg);
}

struct uclient {
    const char *path;
    loom_waitgroup *wg;
};

static void unix_client(void *arg)
{
    struct uclient *u = arg;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", u->path);
    CHECK_OK(connect(fd, (struct sockaddr *)&a, sizeof a));
    CHECK_OK(close(fd));
    loom_wg_done(u->wg);
}

static void test_unix_backlog(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/loom-hook-%d.sock", (int)getpid());
    unlink(path);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    CHECK_OK(bind(lfd, (struct sockaddr *)&a, sizeof a));
    CHECK_OK(listen(lfd, 1));
    int n = 20;
    /* the acceptor counts too: a client's connect returns once it is queued, so the last
     * clients may be done before their connections are accepted, and lfd must stay open
     * until then */
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    loom_wg_add(&wg, n + 1);
    struct unix_srv s = { lfd, n, &wg };
    loom_go(slow_acceptor, &s);
    struct uclient u = { path, &wg };
    for (int i = 0; i < n; i++)
        loom_go(unix_client, &u);
    loom_wg_wait(&wg);
    CHECK_OK(close(lfd));
    unlink(path);
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("clients"))
        test_clients();
    if (t_want("refused"))
        test_refused();
    if (t_want("acceptors"))
        test_many_acceptors();
    if (t_want("unix"))
        test_unix_backlog();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    t_hook_require("test_hook_connect");
    signal(SIGPIPE, SIG_IGN);
    t_prepare_fds(4096);
    t_hook_run(2, main_fn, NULL);
    printf("test_hook_connect: ok\n");
    return 0;
}
