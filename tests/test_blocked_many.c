/*
 * test_blocked_many.c — any number of goroutines may block in plain, unannotated calls:
 *  - 100 goroutines each block in a plain read() on a pipe of their own at LOOM_PROCS=2
 *    (loom is never told): the main goroutine keeps running, sees them all inside their
 *    calls, then writes to each pipe, and every reader finishes.  Spare Ps stand in for
 *    blocked threads, and for blocked spares in turn, with threads added as needed;
 *  - past LOOM_MAX_THREADS loom lends no more spares and says so on stderr (a child run
 *    with a limit of 4 and 6 goroutines in plain blocking reads, which the parent answers
 *    once it has read that: they all finish).
 */
#include "t.h"
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static int nblock;
static int pipes[128][2];
static int inside;   /* readers about to enter read(); atomic */
static int finished; /* readers done; atomic */

static void reader(void *arg)
{
    int i = (int)(intptr_t)arg;
    char c = 0;
    __atomic_add_fetch(&inside, 1, __ATOMIC_SEQ_CST);
    ssize_t r = read(pipes[i][0], &c, 1); /* plain: loom does not know */
    CHECK_EQ(r, 1);
    CHECK_EQ(c, (char)('a' + i % 26));
    __atomic_add_fetch(&finished, 1, __ATOMIC_SEQ_CST);
}

/* Threads of this process in state S or D (asleep in the kernel). */
static bool count_asleep(long tid, char *stat, void *arg)
{
    (void)tid;
    const char *rp = strrchr(stat, ')');
    if (rp && (rp[2] == 'S' || rp[2] == 'D'))
        (*(int *)arg)++;
    return true;
}

static int main_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < nblock; i++) {
        CHECK_EQ(pipe(pipes[i]), 0);
        CHECK_NE(loom_go(reader, (void *)(intptr_t)i), 0);
    }
    /* main runs on: every reader gets into its read(), and their threads fall asleep */
    int64_t t0 = loom_now();
    int asleep = 0;
    for (;;) {
        asleep = 0;
        t_each_thread_stat(count_asleep, &asleep);
        if (__atomic_load_n(&inside, __ATOMIC_SEQ_CST) == nblock && asleep >= nblock)
            break;
        loom_sleep(2000000);
        CHECK_MSG(loom_now() - t0 < 60000000000LL, "only %d of %d readers got in, %d threads asleep",
                  __atomic_load_n(&inside, __ATOMIC_SEQ_CST), nblock, asleep);
    }
    printf("%d readers blocked in plain read(); main still runs (%.0f ms to get there)\n", nblock,
           (double)(loom_now() - t0) / 1e6);
    for (int i = 0; i < nblock; i++) {
        char c = (char)('a' + i % 26);
        CHECK_EQ(write(pipes[i][1], &c, 1), 1);
    }
    while (__atomic_load_n(&finished, __ATOMIC_SEQ_CST) < nblock) {
        loom_sleep(1000000);
        CHECK_MSG(loom_now() - t0 < 120000000000LL, "%d of %d readers finished",
                  __atomic_load_n(&finished, __ATOMIC_SEQ_CST), nblock);
    }
    for (int i = 0; i < nblock; i++) {
        close(pipes[i][0]);
        close(pipes[i][1]);
    }
    return 0;
}

/* The limit: LOOM_MAX_THREADS=4 at LOOM_PROCS=2 leaves room for 2 spares.  Six goroutines
 * block in plain reads on a pipe (its read end's number in argv) that the parent writes
 * six bytes to once loom has said it lends no more; all of them then end. */
static int sleepers_done;
static int limit_fd = -1;

static void sleeper(void *arg)
{
    (void)arg;
    char c;
    CHECK_EQ(read(limit_fd, &c, 1), 1); /* plain: loom does not know */
    __atomic_add_fetch(&sleepers_done, 1, __ATOMIC_SEQ_CST);
}

static int main_limit(void *arg)
{
    (void)arg;
    for (int i = 0; i < 6; i++)
        CHECK_NE(loom_go(sleeper, NULL), 0);
    while (__atomic_load_n(&sleepers_done, __ATOMIC_SEQ_CST) < 6)
        loom_sleep(5000000);
    return 0;
}

int main(int argc, char **argv)
{
    alarm(240);
    if (argc > 2 && !strcmp(argv[1], "limit")) {
        limit_fd = atoi(argv[2]);
        setenv("LOOM_PROCS", "2", 1);
        setenv("LOOM_MAX_THREADS", "4", 1);
        return loom_run(main_limit, NULL);
    }
    setenv("LOOM_PROCS", "2", 1);
    nblock = 100; /* threads are cheap enough under the sanitizers too */
    CHECK_EQ(loom_run(main_many, NULL), 0);

    /* the limit, in a child whose stderr we read, and whose readers we answer once it has
     * said it lends no more (a 60 s guard) */
    int errp[2], rel[2];
    CHECK_EQ(pipe(errp), 0);
    CHECK_EQ(pipe(rel), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(errp[1], 2);
        close(errp[0]);
        close(rel[1]);
        char fd[16];
        snprintf(fd, sizeof fd, "%d", rel[0]);
        execl("/proc/self/exe", argv[0], "limit", fd, (char *)NULL);
        _exit(127);
    }
    close(errp[1]);
    close(rel[0]);
    char out[8192] = "";
    size_t n = 0;
    ssize_t k;
    bool answered = false;
    int64_t dl = t_clock_ns() + 60000000000LL;
    for (;;) {
        struct pollfd pf = { errp[0], POLLIN, 0 };
        int r = poll(&pf, 1, 1000);
        if (!answered && strstr(out, "LOOM_MAX_THREADS=4")) {
            CHECK_EQ(write(rel[1], "abcdef", 6), 6);
            answered = true;
        }
        CHECK_MSG(answered || t_clock_ns() < dl, "no word at the limit in 60 s; stderr:\n%s", out);
        if (r <= 0)
            continue;
        if (n == sizeof out - 1 || (k = read(errp[0], out + n, sizeof out - 1 - n)) <= 0)
            break;
        n += (size_t)k;
        out[n] = 0;
    }
    close(rel[1]);
    out[n] = 0;
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "limit child: status %#x, stderr:\n%s", st, out);
    CHECK_MSG(strstr(out, "LOOM_MAX_THREADS=4") != NULL, "no word at the limit; stderr:\n%s", out);
    printf("at the limit: %s", out);
    printf("test_blocked_many: ok\n");
    return 0;
}
