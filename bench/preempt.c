/* preempt: worst delay of a 1 ms sleep beside a goroutine spinning without
 * calls, at one P.  Without preemption the sleeper never runs again: the
 * watchdog then fails the program.  Twin of go/preempt/main.go. */
#include <loom.h>
#include "bench.h"

static int stop;
static uint64_t spins;
static int64_t iters, *delays;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

static void spinner(void *arg)
{
    (void)arg;
    uint64_t n = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
        n++;
    spins = n;
    loom_wg_done(&wg);
}

static void sleeper(void *arg)
{
    (void)arg;
    for (int64_t k = 0; k < iters; k++) {
        int64_t t0 = bench_now_ns();
        loom_sleep(1000000);
        delays[k] = bench_now_ns() - t0 - 1000000;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    loom_wg_done(&wg);
}

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    if (procs != 1)
        bench_fail("runs at one P, but loom_procs() = %d with LOOM_PROCS=1", procs);
    if (!(delays = calloc((size_t)iters, sizeof *delays)))
        bench_fail("out of memory");
    if (loom_wg_add(&wg, 2) != 0)
        bench_fail("loom_wg_add");
    if (!loom_go(spinner, NULL) || !loom_go(sleeper, NULL))
        bench_fail("loom_go: %s", strerror(errno));
    loom_wg_wait(&wg);
    if (spins == 0)
        bench_fail("the spinner never ran");
    for (int64_t k = 0; k < iters; k++)
        if (delays[k] < 0)
            bench_fail("sleep %" PRId64 " returned %" PRId64 " ns early", k, -delays[k]);
    int64_t p50 = bench_quantile(delays, (size_t)iters, 0.5);
    int64_t worst = delays[iters - 1];
    bench_result("worst_ms", (double)worst / 1e6, "ms", procs);
    bench_result("p50_ms", (double)p50 / 1e6, "ms", procs);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "preempt");
    iters = bench_param("iters", 100, 10);
    if (iters < 1)
        bench_fail("iters must be >= 1");
    setenv("LOOM_PROCS", "1", 1);
    bench_watchdog(bench_is_smoke() ? 20 : 60,
                   "the 1 ms sleeper never ran beside the spinner (no preemption?)");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
