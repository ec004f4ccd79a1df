/*
 * test_deadlock.c — fatal conditions, each in a child process (this program re-exec'd
 * with a mode argument); the parent checks the child's stderr and how it died:
 *  - deadlock: goroutine 1 receives on a channel nobody sends to, and nothing else can
 *    run: stderr has a line starting "loom: fatal: all goroutines are asleep - deadlock!"
 *    followed by a goroutine dump, and the child dies of SIGABRT;
 *  - deadlock_sync: the same with goroutines parked on a mutex, a WaitGroup, a cond and
 *    a channel send, after some of them slept on timers first;
 *  - exit_main: loom_exit in goroutine 1 ends only it: another goroutine runs on, code
 *    after loom_exit never runs, and once nothing can run the deadlock report follows;
 *  - overflow: a goroutine with a 64 KiB stack recursing with 1 KiB frames: stderr has
 *    "loom: fatal: goroutine N overflowed its stack" (N its id) and the child dies of
 *    SIGABRT.  Skipped under ASan, which reports stack overflows itself.
 *  - overflow_signal: a goroutine that spins in plain code a few hundred bytes above the end
 *    of its stack, where the preemption signal's frame does not fit (the kernel then kills
 *    with SIGSEGV, no address): the same report, naming the signal's frame, and SIGABRT.
 *    Only where the preemption signal is on.
 */
#include "t.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#ifndef T_ASAN
#define T_ASAN 0
#endif
/* ThreadSanitizer also owns SIGSEGV and the alternate signal stack: skip overflow there */
#if defined(__SANITIZE_THREAD__)
#define T_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define T_TSAN 1
#endif
#endif
#ifndef T_TSAN
#define T_TSAN 0
#endif

/* ================================================================ children */

static loom_chan *nobody;

static int child_deadlock(void *arg)
{
    (void)arg;
    nobody = loom_chan_new(sizeof(int), 0);
    int v;
    fprintf(stderr, "child: main blocks\n");
    loom_recv(nobody, &v);
    fprintf(stderr, "child: UNREACHABLE recv returned\n");
    return 0;
}

static loom_mutex s_mu = LOOM_MUTEX_INIT;
static loom_waitgroup s_wg = LOOM_WAITGROUP_INIT;
static loom_cond s_cond = LOOM_COND_INIT;
static loom_mutex s_cmu = LOOM_MUTEX_INIT;

static void on_mutex(void *arg)
{
    (void)arg;
    loom_sleep(10 * 1000000);
    loom_mutex_lock(&s_mu); /* held by main forever */
    fprintf(stderr, "child: UNREACHABLE mutex acquired\n");
}

static void on_wg(void *arg)
{
    (void)arg;
    loom_sleep(20 * 1000000);
    loom_wg_wait(&s_wg); /* counter stays 1 */
    fprintf(stderr, "child: UNREACHABLE wg released\n");
}

static void on_cond(void *arg)
{
    (void)arg;
    loom_mutex_lock(&s_cmu);
    loom_cond_wait(&s_cond, &s_cmu); /* never signalled */
    fprintf(stderr, "child: UNREACHABLE cond woke\n");
}

static void on_send(void *arg)
{
    (void)arg;
    int v = 1;
    loom_sleep(5 * 1000000);
    loom_send(nobody, &v); /* main receives on another channel */
    fprintf(stderr, "child: UNREACHABLE send completed\n");
}

static int child_deadlock_sync(void *arg)
{
    (void)arg;
    nobody = loom_chan_new(sizeof(int), 0);
    loom_chan *other = loom_chan_new(sizeof(int), 0);
    loom_mutex_lock(&s_mu);
    loom_wg_add(&s_wg, 1);
    loom_go(on_mutex, NULL);
    loom_go(on_wg, NULL);
    loom_go(on_cond, NULL);
    loom_go(on_send, NULL);
    loom_sleep(50 * 1000000);
    fprintf(stderr, "child: main blocks\n");
    int v;
    loom_recv(other, &v);
    fprintf(stderr, "child: UNREACHABLE recv returned\n");
    return 0;
}

static void runs_on(void *arg)
{
    (void)arg;
    loom_sleep(50 * 1000000);
    fprintf(stderr, "child: other goroutine ran on\n");
}

static int child_exit_main(void *arg)
{
    (void)arg;
    loom_go(runs_on, NULL);
    fprintf(stderr, "child: main exits\n");
    loom_exit();
    fprintf(stderr, "child: UNREACHABLE after loom_exit\n");
    return 0;
}

/* A thread the program starts just before main blocks fills the channel 20 ms later: not
 * a deadlock (the thread could wake main, and does). */
static void *fill_later(void *arg)
{
    loom_chan *c = arg;
    usleep(20000);
    int v = 42;
    while (loom_try_send(c, &v) == -EAGAIN)
        usleep(1000);
    return NULL;
}

static int child_foreign_late(void *arg)
{
    (void)arg;
    loom_chan *c = loom_chan_new(sizeof(int), 0);
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, fill_later, c));
    int v = 0;
    CHECK_OK(loom_recv(c, &v));
    CHECK_EQ(v, 42);
    CHECK_OK(pthread_join(th, NULL));
    loom_chan_free(c);
    fprintf(stderr, "child: woken by the thread\n");
    return 0;
}

/* A thread that exits without waking anyone: once it is gone the report follows. */
static void *exit_quietly(void *arg)
{
    usleep(150000);
    return arg;
}

static int child_foreign_gone(void *arg)
{
    (void)arg;
    nobody = loom_chan_new(sizeof(int), 0);
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, exit_quietly, NULL));
    CHECK_OK(pthread_detach(th));
    fprintf(stderr, "child: main blocks\n");
    int v;
    loom_recv(nobody, &v);
    fprintf(stderr, "child: UNREACHABLE recv returned\n");
    return 0;
}

static volatile int sink;

__attribute__((noinline)) static int recurse(int depth)
{
    volatile char buf[1024];
    buf[0] = (char)depth;
    buf[1023] = (char)(depth >> 8);
    if (depth > 1000000)
        return buf[0];
    int r = recurse(depth + 1);
    return r + buf[0] + buf[1023];
}

static void overflower(void *arg)
{
    (void)arg;
    fprintf(stderr, "child: overflow goroutine %" PRIu64 " recurses\n", loom_id());
    sink = recurse(0);
    fprintf(stderr, "child: UNREACHABLE recursion returned\n");
}

/* The usable size of a 64 KiB slot (less its guard page and 64-byte header): asked for,
 * it is what the goroutine gets, so its stack ends STACK_USABLE below its first frame, give
 * or take the few hundred bytes of the frames that start a goroutine. */
#define STACK_USABLE (64 * 1024 - 4096 - 64)

static volatile int spin_stop;

/* Takes `below` bytes of stack under the caller's frame, then spins without a call. */
__attribute__((noinline)) static void spin_below(size_t below)
{
    volatile char pad[below];
    pad[0] = 1;
    while (!spin_stop) {}
    sink = pad[0];
}

static void edge_spinner(void *arg)
{
    (void)arg;
    char top;
    fprintf(stderr, "child: overflow goroutine %" PRIu64 " spins at the end of its stack (from %p)\n",
            loom_id(), (void *)&top);
    spin_below(STACK_USABLE - 1000); /* 1000 bytes above the end, less the starting frames */
    fprintf(stderr, "child: UNREACHABLE spin ended\n");
}

static int child_overflow_at(void (*fn)(void *), size_t size)
{
    loom_attr a = { size, 0, "overflower" };
    uint64_t id = loom_go_attr(fn, NULL, &a);
    if (id == 0) {
        fprintf(stderr, "child: loom_go_attr failed\n");
        return 3;
    }
    loom_sleep(30LL * 1000000000); /* the overflow must end the process before this */
    fprintf(stderr, "child: UNREACHABLE main woke\n");
    return 0;
}

static int child_overflow(void *arg)
{
    (void)arg;
    return child_overflow_at(overflower, 64 * 1024);
}

static int child_overflow_signal(void *arg)
{
    (void)arg;
    return child_overflow_at(edge_spinner, STACK_USABLE);
}

static int run_child(const char *mode)
{
    struct rlimit no_core = { 0, 0 };
    setrlimit(RLIMIT_CORE, &no_core);
    int (*fn)(void *) = NULL;
    if (strcmp(mode, "deadlock") == 0)
        fn = child_deadlock;
    else if (strcmp(mode, "deadlock_sync") == 0)
        fn = child_deadlock_sync;
    else if (strcmp(mode, "exit_main") == 0)
        fn = child_exit_main;
    else if (strcmp(mode, "foreign_late") == 0)
        fn = child_foreign_late;
    else if (strcmp(mode, "foreign_gone") == 0)
        fn = child_foreign_gone;
    else if (strcmp(mode, "overflow") == 0)
        fn = child_overflow;
    else if (strcmp(mode, "overflow_signal") == 0)
        fn = child_overflow_signal;
    else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    int rc = loom_run(fn, NULL);
    fprintf(stderr, "child: UNREACHABLE loom_run returned %d\n", rc);
    return 100 + rc;
}

/* ================================================================ parent */

/* Runs this program with `mode`; fails if it is still running after 60 s (and kills it). */
static t_child spawn(const char *mode)
{
    t_child r = t_child_run((const char *[]){ mode, NULL }, NULL, 60);
    if (r.late)
        FAIL("child '%s' still running after 60 s; its output so far:\n%s", mode, r.out);
    return r;
}

/* the line starting with prefix, or NULL */
static const char *find_line(const char *out, const char *prefix)
{
    const char *p = out;
    while (p && *p) {
        if (strncmp(p, prefix, strlen(prefix)) == 0)
            return p;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NULL;
}

static void expect_abort(const t_child *r, const char *mode)
{
    CHECK_MSG(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGABRT,
              "child '%s' should die of SIGABRT; status %#x (%s %d); output:\n%s", mode, r->status,
              WIFSIGNALED(r->status) ? "signal" : "exit",
              WIFSIGNALED(r->status) ? WTERMSIG(r->status) : WEXITSTATUS(r->status), r->out);
    CHECK_MSG(strstr(r->out, "UNREACHABLE") == NULL, "child '%s' ran unreachable code:\n%s", mode, r->out);
}

static void expect_deadlock_report(const t_child *r, const char *mode, const char *line)
{
    const char *l = find_line(r->out, line);
    CHECK_MSG(l != NULL, "child '%s': no line starting '%s' on stderr; output:\n%s", mode, line, r->out);
    /* one fatal line, then a goroutine dump */
    const char *nl = strchr(l, '\n');
    CHECK_MSG(nl && strstr(nl, "goroutine") != NULL,
              "child '%s': no goroutine dump after the fatal line; output:\n%s", mode, r->out);
}

static void test_deadlock(void)
{
    t_child r = spawn("deadlock");
    CHECK_MSG(strstr(r.out, "child: main blocks") != NULL, "child did not start:\n%s", r.out);
    expect_abort(&r, "deadlock");
    expect_deadlock_report(&r, "deadlock", "loom: fatal: all goroutines are asleep - deadlock!");
    free(r.out);
}

static void test_deadlock_sync(void)
{
    t_child r = spawn("deadlock_sync");
    CHECK_MSG(strstr(r.out, "child: main blocks") != NULL, "child did not start:\n%s", r.out);
    expect_abort(&r, "deadlock_sync");
    expect_deadlock_report(&r, "deadlock_sync", "loom: fatal: all goroutines are asleep - deadlock!");
    free(r.out);
}

static void test_exit_main(void)
{
    t_child r = spawn("exit_main");
    expect_abort(&r, "exit_main");
    const char *ran = strstr(r.out, "child: other goroutine ran on");
    CHECK_MSG(ran != NULL, "after loom_exit in goroutine 1 the other goroutine did not run:\n%s", r.out);
    /* the report comes after the others finished; its wording may say that main
     * called loom_exit (Go: "no goroutines (main called runtime.Goexit) - deadlock!") */
    const char *l = find_line(r.out, "loom: fatal:");
    CHECK_MSG(l != NULL && l > ran, "no 'loom: fatal:' line after the other goroutine ran:\n%s", r.out);
    const char *nl = strchr(l, '\n');
    size_t n = nl ? (size_t)(nl - l) : strlen(l);
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)(n < 511 ? n : 511), l);
    CHECK_MSG(strstr(line, "deadlock") != NULL, "fatal line is not a deadlock report: %s", line);
    free(r.out);
}

static void test_foreign_late(void)
{
    t_child r = spawn("foreign_late");
    /* (run_child returns 100 + loom_run's result: here the run ends normally) */
    CHECK_MSG(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 100 &&
                      strstr(r.out, "child: woken by the thread"),
              "a thread that could wake main was not waited for: status %#x; output:\n%s", r.status, r.out);
    free(r.out);
}

static void test_foreign_gone(void)
{
    t_child r = spawn("foreign_gone");
    expect_abort(&r, "foreign_gone");
    expect_deadlock_report(&r, "foreign_gone", "loom: fatal: all goroutines are asleep - deadlock!");
    free(r.out);
}

static void test_overflow(const char *mode, const char *how)
{
    t_child r = spawn(mode);
    expect_abort(&r, mode);
    unsigned long long id = 0;
    const char *s = strstr(r.out, "child: overflow goroutine ");
    CHECK_MSG(s && sscanf(s, "child: overflow goroutine %llu", &id) == 1, "overflow child did not start:\n%s",
              r.out);
    char want[128];
    snprintf(want, sizeof want, "loom: fatal: goroutine %llu overflowed its stack", id);
    const char *l = find_line(r.out, want);
    CHECK_MSG(l != NULL, "no line starting '%s' on stderr; output:\n%s", want, r.out);
    CHECK_MSG(!how || strstr(l, how), "the report does not say '%s': %s", how, l);
    free(r.out);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return run_child(argv[1]);

    test_deadlock();
    test_deadlock_sync();
    test_exit_main();
    test_foreign_late();
    test_foreign_gone();
    if (!T_ASAN && !T_TSAN) {
        test_overflow("overflow", NULL);
        if (t_async_preempt())
            test_overflow("overflow_signal", "a signal's frame did not fit");
        else
            fprintf(stderr,
                    "test_deadlock: signal-frame overflow case skipped: the preemption signal is off\n");
    } else
        fprintf(stderr, "test_deadlock: stack overflow case skipped under ASan\n");
    return 0;
}
