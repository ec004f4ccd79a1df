/*
 * test_sendfile.c — loom_sendfile, from a regular file to a socket or a pipe:
 *  - 3 MiB and a few bytes to a stream socketpair and to a pipe whose reader is slow: the
 *    sender parks on the full buffer (loom_stats counts it waiting), every byte arrives;
 *  - with an offset: the data from *offset on, *offset moved on by what was sent, the
 *    file's own offset left alone; without one (NULL): from the file's offset, which moves
 *    on;
 *  - short only at the end of the file: the rest, then 0 at the end; n == 0 sends nothing;
 *  - a closed reader: -EPIPE from a socket and from a pipe, and no SIGPIPE (left at its
 *    default action, which would kill the test);
 *  - from a plain pthread inside loom_run, on a socket loom has made non-blocking: the
 *    whole file, polling between partial sends, to a goroutine reader;
 *  - bad input: -EINVAL for negative fds and for an in_fd that is not a regular file
 *    (a pipe), the kernel's -EBADF for numbers that are not open.
 */
#include "t.h"
#include <pthread.h>
#include <sys/socket.h>

#define MS 1000000LL

enum { FILE_SIZE = (3 << 20) + 4321 };

static unsigned char *content; /* the file's bytes */

static uint64_t waiting(void)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st.waiting;
}

/* A temporary regular file holding content, its offset at 0. */
static int make_file(void)
{
    char path[] = "/tmp/loom-sendfile-XXXXXX";
    int fd = mkstemp(path);
    CHECK_GE(fd, 0);
    unlink(path);
    size_t at = 0;
    while (at < FILE_SIZE) {
        ssize_t k = write(fd, content + at, FILE_SIZE - at);
        CHECK_GT(k, 0);
        at += (size_t)k;
    }
    CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* Reads exactly n bytes from fd into in, sleeping every few reads. */
static void slow_read(int fd, unsigned char *in, size_t n)
{
    size_t got = 0;
    int reads = 0;
    while (got < n) {
        size_t want = n - got < 16384 ? n - got : 16384;
        ssize_t k = loom_read(fd, in + got, want);
        CHECK_GT(k, 0);
        got += (size_t)k;
        if (++reads % 8 == 0)
            loom_sleep(50000);
    }
}

struct sender {
    int out, in;
    off_t *off;
    size_t n;
    ssize_t r;
    int done;
};

static void send_side(void *arg)
{
    struct sender *s = arg;
    s->r = loom_sendfile(s->out, s->in, s->off, s->n);
    __atomic_store_n(&s->done, 1, __ATOMIC_SEQ_CST);
}

/* loom_sendfile(out, file, off, n) in a goroutine that must park, read slowly from rfd:
 * the bytes from `from` on, n of them. */
static void send_slowly(int out, int rfd, int file, off_t *off, off_t from, size_t n)
{
    unsigned char *in = malloc(n);
    CHECK(in != NULL);
    struct sender s = { out, file, off, n, 0, 0 };
    uint64_t before = waiting();
    loom_go(send_side, &s);
    T_WAIT_UNTIL(waiting() == before + 1, 30, "the sender to park on a full buffer");
    CHECK_EQ(t_get(&s.done), 0);
    slow_read(rfd, in, n);
    T_WAIT_UNTIL(t_get(&s.done), 60, "the sender to finish");
    CHECK_EQ(s.r, (ssize_t)n);
    CHECK_MEMEQ(in, content + from, n);
    free(in);
}

static void test_big(void)
{
    int file = make_file();
    int sp[2], pp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    CHECK_OK(pipe2(pp, O_CLOEXEC));

    /* with an offset: the file's own stays where it was */
    CHECK_EQ(lseek(file, 123, SEEK_SET), 123);
    off_t off = 0;
    send_slowly(sp[1], sp[0], file, &off, 0, FILE_SIZE);
    CHECK_EQ(off, FILE_SIZE);
    CHECK_EQ(lseek(file, 0, SEEK_CUR), 123);
    off = 1000;
    send_slowly(pp[1], pp[0], file, &off, 1000, FILE_SIZE - 2000);
    CHECK_EQ(off, FILE_SIZE - 1000);
    CHECK_EQ(lseek(file, 0, SEEK_CUR), 123);

    /* without: from the file's offset, which moves on */
    send_slowly(sp[1], sp[0], file, NULL, 123, (2 << 20) + 1);
    CHECK_EQ(lseek(file, 0, SEEK_CUR), 123 + (2 << 20) + 1);
    CHECK_EQ(lseek(file, 5, SEEK_SET), 5);
    send_slowly(pp[1], pp[0], file, NULL, 5, FILE_SIZE - 5); /* to the end */
    CHECK_EQ(lseek(file, 0, SEEK_CUR), FILE_SIZE);

    /* short only at the end of the file */
    unsigned char b[256];
    off = FILE_SIZE - 100;
    CHECK_EQ(loom_sendfile(sp[1], file, &off, 1000), 100);
    CHECK_EQ(off, FILE_SIZE);
    CHECK_EQ(loom_read(sp[0], b, sizeof b), 100);
    CHECK_MEMEQ(b, content + FILE_SIZE - 100, 100);
    CHECK_EQ(loom_sendfile(sp[1], file, &off, 1000), 0);
    CHECK_EQ(off, FILE_SIZE);
    CHECK_EQ(lseek(file, FILE_SIZE - 10, SEEK_SET), FILE_SIZE - 10);
    CHECK_EQ(loom_sendfile(pp[1], file, NULL, 1000), 10);
    CHECK_EQ(loom_read(pp[0], b, sizeof b), 10);
    CHECK_MEMEQ(b, content + FILE_SIZE - 10, 10);
    CHECK_EQ(loom_sendfile(pp[1], file, NULL, 1000), 0);
    /* nothing asked: nothing sent, offsets unmoved */
    off = 7;
    CHECK_EQ(loom_sendfile(sp[1], file, &off, 0), 0);
    CHECK_EQ(off, 7);
    CHECK_ERR(loom_recvfrom(sp[0], b, 1, MSG_DONTWAIT, NULL, NULL), EAGAIN);

    CHECK_OK(loom_fd_close(sp[0]));
    CHECK_OK(loom_fd_close(sp[1]));
    CHECK_OK(loom_fd_close(pp[0]));
    CHECK_OK(loom_fd_close(pp[1]));
    CHECK_OK(loom_fd_close(file));
}

/* ---- a closed reader: -EPIPE, no SIGPIPE */

static void test_epipe(void)
{
    int file = make_file();
    int sp[2], pp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    CHECK_OK(loom_fd_close(sp[0]));
    CHECK_OK(loom_fd_close(pp[0]));
    off_t off = 0;
    CHECK_ERR(loom_sendfile(sp[1], file, &off, 1000), EPIPE);
    CHECK_ERR(loom_sendfile(pp[1], file, &off, 1000), EPIPE);
    CHECK_ERR(loom_sendfile(pp[1], file, NULL, FILE_SIZE), EPIPE);
    CHECK_OK(loom_fd_close(sp[1]));
    CHECK_OK(loom_fd_close(pp[1]));

    /* the reader goes away while the sender is parked */
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    off = 0;
    struct sender s = { sp[1], file, &off, FILE_SIZE, 0, 0 };
    uint64_t before = waiting();
    loom_go(send_side, &s);
    T_WAIT_UNTIL(waiting() == before + 1, 30, "the sender to park on a full buffer");
    CHECK_OK(loom_fd_close(sp[0]));
    T_WAIT_UNTIL(t_get(&s.done), 30, "the sender to see the closed peer");
    CHECK_ERR(s.r, EPIPE);
    CHECK_GT(off, 0);
    CHECK_LT(off, FILE_SIZE);
    CHECK_OK(loom_fd_close(sp[1]));
    CHECK_OK(loom_fd_close(file));
}

/* ---- from a plain pthread */

static void *thread_send(void *arg)
{
    struct sender *s = arg;
    CHECK_EQ(loom_can_park(), 0);
    send_side(s);
    return NULL;
}

static void test_thread(void)
{
    int file = make_file();
    int sp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    CHECK_EQ(loom_fd_wait(sp[1], LOOM_WRITABLE, 0), LOOM_WRITABLE);
    CHECK(fcntl(sp[1], F_GETFL) & O_NONBLOCK);
    off_t off = 0;
    struct sender s = { sp[1], file, &off, FILE_SIZE, 0, 0 };
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, thread_send, &s));
    unsigned char *in = malloc(FILE_SIZE);
    CHECK(in != NULL);
    slow_read(sp[0], in, FILE_SIZE);
    CHECK_OK(pthread_join(th, NULL));
    CHECK_EQ(s.r, FILE_SIZE);
    CHECK_EQ(off, FILE_SIZE);
    CHECK_MEMEQ(in, content, FILE_SIZE);
    free(in);
    CHECK_OK(loom_fd_close(sp[0]));
    CHECK_OK(loom_fd_close(sp[1]));
    CHECK_OK(loom_fd_close(file));
}

/* ---- bad input */

static void test_bad(void)
{
    int file = make_file();
    int sp[2], pp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    off_t off = 0;
    CHECK_ERR(loom_sendfile(-1, file, &off, 10), EINVAL);
    CHECK_ERR(loom_sendfile(sp[1], -1, &off, 10), EINVAL);
    CHECK_ERR(loom_sendfile(sp[1], pp[0], NULL, 10), EINVAL); /* not a regular file */
    CHECK_ERR(loom_sendfile(sp[1], sp[0], NULL, 10), EINVAL);
    int dead = dup(file);
    CHECK_GE(dead, 0);
    close(dead);
    CHECK_ERR(loom_sendfile(sp[1], dead, &off, 10), EBADF);
    CHECK_ERR(loom_sendfile(dead, file, &off, 10), EBADF);
    CHECK_ERR(loom_sendfile(dead, file, &off, 0), EBADF);
    off = -1;
    CHECK_ERR(loom_sendfile(sp[1], file, &off, 10), EINVAL); /* the kernel's */
    CHECK_EQ(off, -1);
    CHECK_OK(loom_fd_close(sp[0]));
    CHECK_OK(loom_fd_close(sp[1]));
    CHECK_OK(loom_fd_close(pp[0]));
    CHECK_OK(loom_fd_close(pp[1]));
    CHECK_OK(loom_fd_close(file));
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("big"))
        test_big();
    if (t_want("epipe"))
        test_epipe();
    if (t_want("thread"))
        test_thread();
    if (t_want("bad"))
        test_bad();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE raised would end the test */
    content = malloc(FILE_SIZE);
    CHECK(content != NULL);
    t_rng r;
    t_rng_seed(&r, 42);
    for (size_t i = 0; i < FILE_SIZE; i++)
        content[i] = (unsigned char)t_rng_next(&r);
    setenv("LOOM_PROCS", "2", 1);
    T_RUN(main_fn, NULL);
    free(content);
    printf("test_sendfile: ok\n");
    return 0;
}
