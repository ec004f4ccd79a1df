/*
 * test_stats.c — loom_stats and LOOM_DEBUG=schedtrace:
 *  - loom_stats(NULL) is -EINVAL, outside loom_run -EPERM;
 *  - 100 goroutines parked on a channel and 10 sleeping show up as waiting goroutines and
 *    pending timers, and are gone once released; switches grow with yields; procs is
 *    loom_procs();
 *  - a blocking call annotated with loom_block_begin/end that lasts counts a handoff, and
 *    an unannotated one a spare P lent (50 ms calls, repeated until they are counted: a
 *    loaded machine can delay sysmon's look past one);
 *  - a plain loop beside a sleeper at one P counts asynchronous preemptions (plain builds);
 *  - LOOM_DEBUG=schedtrace=10 (run in a child process, which waits for the parent to have
 *    read them) prints "loom: SCHED" lines with the Ps and per-P queues, and
 *    scheddetail=1 adds P and M lines (plain builds).
 */
#include "t.h"
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#define MS 1000000LL

static void parked(void *arg)
{
    loom_chan *c = arg;
    int v;
    CHECK_OK(loom_recv(c, &v));
}

static int released; /* atomic: the sleepers may return */

/* Sleeps (a pending timer nearly all the time) until released. */
static void sleeper(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&released, __ATOMIC_SEQ_CST))
        loom_sleep(50 * MS);
}

/* loom_stats into st; true, for use in a T_WAIT_UNTIL condition. */
static bool stats(struct loom_stats *st)
{
    CHECK_OK(loom_stats(st));
    return true;
}

static int counts(void *arg)
{
    (void)arg;
    struct loom_stats st;
    CHECK_ERR(loom_stats(NULL), EINVAL);
    CHECK_OK(loom_stats(&st));
    CHECK_EQ(st.procs, loom_procs());
    CHECK_GE(st.threads, 1);
    uint64_t base_waiting = st.waiting, base_timers = st.timers, sw0 = st.switches;
    loom_chan *c = loom_chan_new(sizeof(int), 0);
    for (int i = 0; i < 100; i++)
        loom_go(parked, c);
    for (int i = 0; i < 10; i++)
        loom_go(sleeper, NULL);
    /* until all 110 have parked: 100 waiting on the channel, 10 with a timer pending */
    T_WAIT_UNTIL(stats(&st) && st.waiting >= base_waiting + 110 && st.timers >= base_timers + 10, 60,
                 "%llu waiting (base %llu), %llu timers (base %llu)", (unsigned long long)st.waiting,
                 (unsigned long long)base_waiting, (unsigned long long)st.timers,
                 (unsigned long long)base_timers);
    CHECK_GE(st.goroutines, 111);
    CHECK_GT(st.switches, sw0);
    for (int i = 0; i < 100; i++)
        CHECK_OK(loom_send(c, &i));
    __atomic_store_n(&released, 1, __ATOMIC_SEQ_CST);
    /* and until they are gone */
    T_WAIT_UNTIL(stats(&st) && st.goroutines <= 5 && st.waiting <= base_waiting + 4, 60,
                 "%llu goroutines, %llu waiting (base %llu)", (unsigned long long)st.goroutines,
                 (unsigned long long)st.waiting, (unsigned long long)base_waiting);
    /* each yield switches back to main at least (through the scheduler if nothing else
     * is runnable) */
    uint64_t sw1 = st.switches;
    for (int i = 0; i < 100; i++)
        loom_yield();
    CHECK_OK(loom_stats(&st));
    CHECK_GE(st.switches, sw1 + 100);
    CHECK_OK(loom_close(c));
    loom_chan_free(c);
    return 0;
}

static int stop;

static void spin(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {}
}

static void spin_yield(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
        loom_yield();
}

static int blocking(void *arg)
{
    (void)arg;
    struct loom_stats st;
    __atomic_store_n(&stop, 0, __ATOMIC_SEQ_CST);
    loom_go(spin_yield, NULL);
    /* annotated: sysmon hands the P on from a call that lasts; a loaded machine can delay
     * its look past one 50 ms call: calls until it is counted (a hang guard of 30 s) */
    int64_t dl = t_clock_ns() + 30000 * MS;
    int calls = 0;
    do {
        CHECK_MSG(t_clock_ns() < dl, "no handoff counted after %d annotated 50 ms calls", calls);
        loom_block_begin();
        usleep(50000);
        loom_block_end();
        calls++;
        CHECK_OK(loom_stats(&st));
    } while (st.handoffs < 1);
    /* not annotated: a spare P.  Sysmon lends one after four looks (the switch, a CPU
     * clock sample, the thread seen asleep twice), which a loaded machine (ctest -j2) can
     * delay past one 50 ms call (seen once in some 15 runs): calls until it is counted */
    int plain = 0;
    do {
        CHECK_MSG(t_clock_ns() < dl, "no spare P lent after %d plain 50 ms calls", plain);
        usleep(50000);
        plain++;
        CHECK_OK(loom_stats(&st));
    } while (st.spare_lends < 1);
    CHECK_GE(st.handoffs, 2);
    printf("blocking: a handoff after %d annotated 50 ms calls, a spare P after %d plain ones\n", calls,
           plain);
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    loom_sleep(10 * MS);
    return 0;
}

static int preempting(void *arg)
{
    (void)arg;
    __atomic_store_n(&stop, 0, __ATOMIC_SEQ_CST);
    loom_go(spin, NULL);
    for (int i = 0; i < 20; i++)
        loom_sleep(MS);
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    CHECK_GE(st.async_preemptions, 1);
    CHECK_GE(st.preemptions, st.async_preemptions);
    return 0;
}

static int go_fd = -1; /* the child's end of the pipe on which the parent says "go on" */

static int traced(void *arg)
{
    (void)arg;
    loom_chan *c = loom_chan_new(sizeof(int), 0);
    for (int i = 0; i < 5; i++)
        loom_go(parked, c);
    struct loom_stats st;
    T_WAIT_UNTIL(stats(&st) && st.waiting >= 5, 60, "%llu of 5 receivers parked",
                 (unsigned long long)st.waiting);
    /* schedtrace lines every 10 ms meanwhile, until the parent has read what it wants */
    char b;
    CHECK_EQ(loom_read(go_fd, &b, 1), 1);
    for (int i = 0; i < 5; i++)
        CHECK_OK(loom_send(c, &i));
    loom_chan_free(c);
    return 0;
}

/* What the parent waits for in the child's stderr before it lets the child go on. */
typedef bool (*enough_fn)(const char *out);

static int sched_lines(const char *out)
{
    int lines = 0;
    for (const char *p = out; (p = strstr(p, "loom: SCHED ")); p++)
        lines++;
    return lines;
}

static bool three_lines(const char *out)
{
    return sched_lines(out) >= 3;
}

static __attribute__((unused)) bool detail_lines(const char *out)
{
    return strstr(out, "  P0: status=") && strstr(out, "  P1: status=") && strstr(out, "  M") &&
           strstr(out, "[chan receive]=5");
}

/* Runs this program as `child` with LOOM_DEBUG=debug; once its stderr holds what enough()
 * looks for, lets it go on (a byte on a pipe it reads), and returns all of its stderr.
 * The guards: 60 s for what is wanted, 60 s without output. */
static char *run_child(const char *self, const char *debug, enough_fn enough)
{
    int pfd[2], gfd[2];
    CHECK_OK(pipe(pfd));
    CHECK_OK(pipe(gfd));
    pid_t pid = fork();
    CHECK_GE(pid, 0);
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(gfd[1]);
        char fd[16];
        snprintf(fd, sizeof fd, "%d", gfd[0]);
        setenv("LOOM_DEBUG", debug, 1);
        setenv("LOOM_PROCS", "2", 1);
        execl(self, self, "child", fd, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    close(gfd[0]);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    buf[0] = 0;
    bool told = false;
    int64_t dl = t_clock_ns() + 60000 * MS;
    for (;;) {
        struct pollfd pf = { pfd[0], POLLIN, 0 };
        CHECK_MSG(poll(&pf, 1, 60000) > 0, "child (%s): no output for 60 s:\n%s", debug, buf);
        CHECK_MSG(told || t_clock_ns() < dl,
                  "child (%s): 60 s on, its stderr still lacks what was wanted:\n%s", debug, buf);
        ssize_t k = read(pfd[0], buf + len, cap - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
        buf[len] = 0;
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        if (!told && enough(buf)) {
            CHECK_EQ(write(gfd[1], "g", 1), 1);
            told = true;
        }
    }
    close(pfd[0]);
    close(gfd[1]);
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %s", buf);
    return buf;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "child") == 0) {
        go_fd = atoi(argv[2]);
        T_RUN(traced, NULL);
        return 0;
    }
    struct loom_stats st;
    CHECK_ERR(loom_stats(&st), EPERM);
    T_RUN(counts, NULL);
    setenv("LOOM_PROCS", "1", 1);
    T_RUN(blocking, NULL);
    if (t_async_preempt())
        T_RUN(preempting, NULL);
    unsetenv("LOOM_PROCS");

    char *out = run_child(argv[0], "schedtrace=10", three_lines);
    CHECK_MSG(sched_lines(out) >= 3, "expected schedtrace lines every 10 ms, got:\n%s", out);
    CHECK_MSG(strstr(out, "procs=2 ") && strstr(out, "goroutines=") && strstr(out, "runqueue="),
              "schedtrace line lacks fields:\n%s", out);
    CHECK_MSG(!strstr(out, "  P0: "), "scheddetail lines without scheddetail:\n%s", out);
    free(out);
#if !defined(LOOM_TSAN) /* scheddetail reads other threads' fields without their locks */
    out = run_child(argv[0], "schedtrace=10,scheddetail=1", detail_lines);
    CHECK_MSG(strstr(out, "  P0: status=") && strstr(out, "  P1: status=") && strstr(out, "  M"),
              "scheddetail lacks P/M lines:\n%s", out);
    CHECK_MSG(strstr(out, "[chan receive]=5"), "scheddetail lacks the 5 parked receivers:\n%s", out);
    free(out);
#endif
    printf("test_stats: ok\n");
    return 0;
}
