/*
 * test_hook_fcntl.c — the program's view of O_NONBLOCK through libloom_hook, from goroutines:
 *  - once a hooked call has used a blocking socket, the kernel's flag is set but
 *    fcntl(F_GETFL) still says blocking, and a read blocks (parks) as the program expects;
 *  - the program sets O_NONBLOCK (fcntl or ioctl FIONBIO): reads say EAGAIN at once, as
 *    the kernel would; it clears it: reads block again; the kernel's flag stays set;
 *  - F_GETFL keeps the other flags (the access mode, O_APPEND);
 *  - dup and F_DUPFD share the file's view; accept4(SOCK_NONBLOCK) and
 *    socket(SOCK_NONBLOCK) are non-blocking to the program (connect says EINPROGRESS and
 *    leaves the dance to the caller);
 *  - fds 0-2 and regular files are left alone: their kernel flags never change.
 */
#include "t_hook.h"
#include <sys/ioctl.h>

struct later {
    int fd;
    int64_t ns;
};

static void write_later(void *arg)
{
    struct later l = *(struct later *)arg;
    loom_sleep(l.ns);
    CHECK_EQ(write(l.fd, "w", 1), 1);
}

static void test_view(void)
{
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    CHECK(!t_kernel_nonblock(sv[0]));
    struct later l = { sv[1], 10 * MS };
    loom_go(write_later, &l);
    char c;
    CHECK_EQ(read(sv[0], &c, 1), 1); /* parked */
    CHECK(t_kernel_nonblock(sv[0]));
    int fl = fcntl(sv[0], F_GETFL);
    CHECK_EQ(fl & O_NONBLOCK, 0);
    CHECK_EQ(fl & O_ACCMODE, O_RDWR);
    /* the program asks for non-blocking */
    CHECK_OK(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK));
    CHECK(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    t_set_errno(0);
    int64_t t0 = loom_now();
    CHECK_EQ(read(sv[0], &c, 1), -1);
    CHECK_EQ(t_errno(), EAGAIN);
    CHECK_LT(loom_now() - t0, 5 * MS);
    /* and blocking again */
    CHECK_OK(fcntl(sv[0], F_SETFL, fl & ~O_NONBLOCK));
    CHECK_EQ(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
    CHECK(t_kernel_nonblock(sv[0]));
    loom_go(write_later, &l);
    CHECK_EQ(read(sv[0], &c, 1), 1);
    /* ioctl(FIONBIO) */
    int on = 1;
    CHECK_OK(ioctl(sv[0], FIONBIO, &on));
    CHECK(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    CHECK_EQ(recv(sv[0], &c, 1, 0), -1);
    CHECK_EQ(t_errno(), EAGAIN);
    on = 0;
    CHECK_OK(ioctl(sv[0], FIONBIO, &on));
    CHECK_EQ(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
    CHECK(t_kernel_nonblock(sv[0]));
    /* dup and F_DUPFD share the view */
    int d = dup(sv[0]), d2 = fcntl(sv[0], F_DUPFD_CLOEXEC, 100);
    CHECK_GE(d2, 100);
    CHECK_EQ(fcntl(d, F_GETFL) & O_NONBLOCK, 0);
    CHECK_EQ(fcntl(d2, F_GETFL) & O_NONBLOCK, 0);
    CHECK_EQ(write(sv[1], "d", 1), 1); /* (ThreadSanitizer does not follow F_DUPFD) */
    CHECK_EQ(read(d2, &c, 1), 1);
    CHECK_OK(close(d));
    CHECK_OK(close(d2));
    CHECK_OK(close(sv[0]));
    CHECK_OK(close(sv[1]));
}

static void test_nonblocking_sockets(void)
{
    int port;
    int lfd = t_listen_tcp(&port, 8);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = t_loopback(port);
    int r = connect(fd, (struct sockaddr *)&a, sizeof a);
    CHECK(r == 0 || t_errno() == EINPROGRESS); /* the program's own dance */
    struct pollfd p = { fd, POLLOUT, 0 };
    CHECK_EQ(poll(&p, 1, 5000), 1);
    int afd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
    CHECK_GE(afd, 0);
    CHECK(fcntl(afd, F_GETFL) & O_NONBLOCK);
    char c;
    CHECK_EQ(read(afd, &c, 1), -1);
    CHECK_EQ(t_errno(), EAGAIN);
    CHECK_OK(close(afd));
    CHECK_OK(close(fd));
    CHECK_OK(close(lfd));
}

static void test_left_alone(void)
{
    int k1 = t_kernel_nonblock(1), k2 = t_kernel_nonblock(2);
    CHECK_EQ(write(1, "", 0), 0);
    CHECK_EQ(write(2, "", 0), 0);
    struct pollfd p = { 1, POLLOUT, 0 };
    poll(&p, 1, 10);
    CHECK_EQ(t_kernel_nonblock(1), k1);
    CHECK_EQ(t_kernel_nonblock(2), k2);
    char path[] = "/tmp/loom-hook-fcntl-XXXXXX";
    int fd = mkstemp(path);
    CHECK_GE(fd, 0);
    unlink(path);
    CHECK_EQ(write(fd, "abc", 3), 3);
    CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
    char buf[8];
    CHECK_EQ(read(fd, buf, sizeof buf), 3);
    CHECK_EQ(read(fd, buf, sizeof buf), 0);
    CHECK(!t_kernel_nonblock(fd));
    CHECK_OK(close(fd));
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("view"))
        test_view();
    if (t_want("nonblocking"))
        test_nonblocking_sockets();
    if (t_want("alone"))
        test_left_alone();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    t_hook_require("test_hook_fcntl");
    t_hook_run(2, main_fn, NULL);
    printf("test_hook_fcntl: ok\n");
    return 0;
}
