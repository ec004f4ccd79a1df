#define _GNU_SOURCE 1
/* fanout: fork-join fib(35), a goroutine per split while n > 20, at one P and at
 * all Ps (ms, speedup).  Each P count runs in its own forked process, so the
 * measurement never depends on loom re-reading LOOM_PROCS between loom_run calls.
 * Twin of go/fanout/main.go. */
#include <loom.h>
#include <sched.h>
#include <sys/wait.h>
#include "bench.h"

static int64_t n, cutoff;

struct split {
    int64_t n;
    loom_chan *done;
};

static int64_t sfib(int64_t k)
{
    return k < 2 ? k : sfib(k - 1) + sfib(k - 2);
}

static int64_t pfib(int64_t k);

static void pfib_go(void *arg)
{
    struct split *s = arg; /* in the parent's frame, which waits for our send */
    int64_t r = pfib(s->n);
    if (loom_send(s->done, &r) != 0)
        bench_fail("send failed");
}

static int64_t pfib(int64_t k)
{
    if (k <= cutoff)
        return sfib(k);
    struct split s = { k - 1, loom_chan_new(sizeof(int64_t), 1) };
    if (!s.done || !loom_go(pfib_go, &s))
        bench_fail("spawn failed: %s", strerror(errno));
    int64_t b = pfib(k - 2), a = 0;
    if (loom_recv(s.done, &a) != 0)
        bench_fail("recv failed");
    loom_chan_free(s.done);
    return a + b;
}

struct child {
    int procs;
    int64_t want;
    double ms;
};

static int child_main(void *arg)
{
    struct child *c = arg;
    if (loom_procs() != c->procs)
        bench_fail("loom_procs() = %d with LOOM_PROCS=%d", loom_procs(), c->procs);
    if (pfib(n) != c->want) /* warm-up */
        bench_fail("fib(%" PRId64 ") wrong in warm-up", n);
    int64_t t0 = bench_now_ns();
    int64_t r = pfib(n);
    c->ms = (double)(bench_now_ns() - t0) / 1e6;
    if (r != c->want)
        bench_fail("fib(%" PRId64 ") = %" PRId64 ", want %" PRId64, n, r, c->want);
    return 0;
}

static double run_at(int procs, int64_t want)
{
    int p[2];
    if (pipe(p) != 0)
        bench_fail("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        bench_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        char buf[16];
        snprintf(buf, sizeof buf, "%d", procs);
        setenv("LOOM_PROCS", buf, 1);
        struct child c = { procs, want, 0 };
        int rc = loom_run(child_main, &c);
        if (rc != 0)
            bench_fail("loom_run returned %d", rc);
        if (write(p[1], &c.ms, sizeof c.ms) != (ssize_t)sizeof c.ms)
            _exit(1);
        _exit(0);
    }
    close(p[1]);
    double ms = 0;
    ssize_t got = read(p[0], &ms, sizeof ms);
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (got != (ssize_t)sizeof ms || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        bench_fail("the run at %d P failed (status %d)", procs, st);
    return ms;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "fanout");
    n = bench_param("n", 35, 24);
    cutoff = bench_param("cutoff", 20, 20);
    if (n < 0 || n > 60)
        bench_fail("n must be 0..60");
    int all = 0;
    const char *env = getenv("LOOM_PROCS");
    if (env && atoi(env) > 0)
        all = atoi(env);
    if (all == 0) {
        cpu_set_t set;
        all = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    }
    bench_watchdog(300, "did not finish in 300 s");
    int64_t want = sfib(n);
    double ms1 = run_at(1, want);
    double msn = run_at(all, want);
    bench_result("ms_1p", ms1, "ms", 1);
    bench_result("ms", msn, "ms", all);
    bench_result("speedup", ms1 / msn, "x", all);
    return 0;
}
