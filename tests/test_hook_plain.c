/*
 * test_hook_plain.c — where libloom_hook is the plain call, and stays correct:
 *  - a thread that runs no goroutine reads a blocking pipe: the plain blocking read;
 *  - it reads a socket that a goroutine's hooked call made non-blocking in the kernel
 *    (the program still sees it blocking): it blocks until data comes, no EAGAIN; so does
 *    main after loom_run has returned, and a fork()ed child of a goroutine;
 *  - a goroutine between loom_block_begin and loom_block_end blocks its thread in read
 *    (loom_stats counts it in a syscall) instead of parking;
 *  - getaddrinfo from goroutines answers (the blocking path);
 *  - LOOM_HOOK=0 (this program run again with it): loom_hook_active() is 0 and a goroutine's
 *    read is the plain call, which leaves the kernel's flag alone.
 */
#include "t_hook.h"
#include <netdb.h>
#include <pthread.h>

static void *thread_reader(void *arg)
{
    int fd = *(int *)arg;
    char buf[8] = { 0 };
    ssize_t k = read(fd, buf, sizeof buf);
    return (void *)(intptr_t)(k == 5 && memcmp(buf, "hello", 5) == 0);
}

static void *thread_writer(void *arg)
{
    int fd = *(int *)arg;
    struct timespec ts = { 0, 30 * MS };
    nanosleep(&ts, NULL);
    return (void *)(intptr_t)(write(fd, "hello", 5) == 5);
}

static int sv[2]; /* a socket the hook made non-blocking, used after loom_run */

static void test_threads(void)
{
    int pp[2];
    CHECK_OK(pipe(pp));
    pthread_t t;
    CHECK_OK(pthread_create(&t, NULL, thread_reader, &pp[0]));
    loom_sleep(20 * MS);
    CHECK_EQ(write(pp[1], "hello", 5), 5);
    void *ok;
    CHECK_OK(pthread_join(t, &ok));
    CHECK(ok);
    CHECK(!t_kernel_nonblock(pp[0])); /* no goroutine used it */
    /* a socket a goroutine used: a thread's read still blocks */
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    char c;
    CHECK_EQ(write(sv[1], "a", 1), 1);
    CHECK_EQ(read(sv[0], &c, 1), 1);
    CHECK(t_kernel_nonblock(sv[0]));
    CHECK_OK(pthread_create(&t, NULL, thread_reader, &sv[0]));
    loom_sleep(30 * MS);
    CHECK_EQ(write(sv[1], "hello", 5), 5);
    CHECK_OK(pthread_join(t, &ok));
    CHECK(ok);
    CHECK_OK(close(pp[0]));
    CHECK_OK(close(pp[1]));
}

static void test_block_section(void)
{
    int pp[2];
    CHECK_OK(pipe(pp));
    char c;
    CHECK_EQ(write(pp[1], "a", 1), 1);
    CHECK_EQ(read(pp[0], &c, 1), 1); /* non-blocking in the kernel now */
    pthread_t t;
    CHECK_OK(pthread_create(&t, NULL, thread_writer, &pp[1]));
    loom_block_begin();
    char buf[8];
    ssize_t k = read(pp[0], buf, sizeof buf); /* blocks this thread: no P to give back */
    loom_block_end();
    CHECK_EQ(k, 5);
    void *ok;
    CHECK_OK(pthread_join(t, &ok));
    CHECK(ok);
    CHECK_OK(close(pp[0]));
    CHECK_OK(close(pp[1]));
}

static void test_fork(void)
{
    char c;
    int fds[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds));
    CHECK_EQ(write(fds[1], "a", 1), 1);
    CHECK_EQ(read(fds[0], &c, 1), 1);
    CHECK(t_kernel_nonblock(fds[0]));
    fflush(NULL);
    pid_t pid = fork();
    CHECK_GE(pid, 0);
    if (pid == 0) {
        char buf[8] = { 0 };
        ssize_t k = read(fds[0], buf, sizeof buf); /* blocks, as the program expects */
        _exit(k == 5 && memcmp(buf, "hello", 5) == 0 ? 0 : 1);
    }
    loom_sleep(30 * MS);
    CHECK_EQ(write(fds[1], "hello", 5), 5);
    int st;
    while (waitpid(pid, &st, WNOHANG) == 0)
        loom_sleep(MS);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_OK(close(fds[0]));
    CHECK_OK(close(fds[1]));
}

struct gai {
    int ok;
    loom_waitgroup *wg;
};

static void resolver(void *arg)
{
    struct gai *g = arg;
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;
    if (getaddrinfo("localhost", "80", &hints, &res) == 0) {
        g->ok = ((struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
        freeaddrinfo(res);
    }
    loom_wg_done(g->wg);
}

static void test_getaddrinfo(void)
{
    struct gai g[20];
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    loom_wg_add(&wg, 20);
    for (int i = 0; i < 20; i++) {
        g[i] = (struct gai){ 0, &wg };
        loom_go(resolver, &g[i]);
    }
    loom_wg_wait(&wg);
    for (int i = 0; i < 20; i++)
        CHECK(g[i].ok);
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("threads"))
        test_threads();
    if (t_want("block"))
        test_block_section();
    if (t_want("fork"))
        test_fork();
    if (t_want("getaddrinfo"))
        test_getaddrinfo();
    return 0;
}

/* ---- LOOM_HOOK=0, in a child */

static int off_main(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_hook_active(), 0);
    int fds[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds));
    CHECK_EQ(write(fds[1], "abc", 3), 3);
    char buf[8];
    CHECK_EQ(read(fds[0], buf, sizeof buf), 3);
    CHECK(!t_kernel_nonblock(fds[0]));
    CHECK_EQ(fcntl(fds[0], F_GETFL) & O_NONBLOCK, 0);
    CHECK_OK(close(fds[0]));
    CHECK_OK(close(fds[1]));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "off") == 0) {
        t_hook_run(2, off_main, NULL);
        printf("off: ok\n");
        return 0;
    }
    t_cases(argc, argv);
    t_hook_require("test_hook_plain");
    t_hook_run(2, main_fn, NULL);
    if (t_want("threads")) {
        /* after loom_run: main is a thread without goroutines */
        pthread_t t;
        CHECK_OK(pthread_create(&t, NULL, thread_writer, &sv[1]));
        char buf[8];
        CHECK_EQ(read(sv[0], buf, sizeof buf), 5);
        CHECK_OK(pthread_join(t, NULL));
        CHECK_OK(close(sv[0]));
        CHECK_OK(close(sv[1]));
    }
    if (t_want("off")) {
        const char *args[] = { "off", NULL }, *env[] = { "LOOM_HOOK=0", NULL };
        t_child_opts o = { .env = env };
        t_child c = t_child_run(args, &o, 60);
        CHECK_MSG(!c.late && WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0 && strstr(c.out, "off: ok"),
                  "LOOM_HOOK=0 child: %s", c.out);
        free(c.out);
    }
    printf("test_hook_plain: ok\n");
    return 0;
}
