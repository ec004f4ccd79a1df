/* prio: how late a high-priority goroutine's 1 ms sleeps wake up while 100
 * low-priority goroutines per P spin without calls, at all Ps.  With priority
 * scheduling the sleeper runs as soon as its timer fires (the spinner on its P
 * is switched out); without it the sleeper waits its turn behind the spinners.
 * Every goroutine first waits for a start channel to close, so that the
 * spawning goroutine is not left queued behind the spinners (on a loaded or
 * oversubscribed machine it could take seconds per hundred spawns).  The
 * sleeper stops after `iters` sleeps or `budget_ms` of sleeping, whichever
 * comes first, so the program finishes either way; the quantiles cover the
 * sleeps done.  Twin of go/prio/main.go (Go has no priorities: same workload). */
#include <loom.h>
#include "bench.h"

enum { SPINNERS_PER_P = 100 };

static int stop;
static int64_t iters, budget_ns, done, *delays, *spins, nspinners;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;
static loom_chan *start; /* closed once every goroutine is spawned */

static void wait_start(void)
{
    int rc = loom_recv(start, NULL);
    if (rc != -EPIPE)
        bench_fail("loom_recv(start) returned %d, not -EPIPE (closed)", rc);
}

static void spinner(void *arg)
{
    int64_t *out = arg;
    volatile int64_t n = 0;
    wait_start();
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
        n++;
    *out = n;
    loom_wg_done(&wg);
}

static void sleeper(void *arg)
{
    (void)arg;
    wait_start();
    int64_t t_start = bench_now_ns(), k;
    for (k = 0; k < iters && bench_now_ns() - t_start < budget_ns; k++) {
        int64_t t0 = bench_now_ns();
        loom_sleep(1000000);
        delays[k] = bench_now_ns() - t0 - 1000000;
    }
    done = k;
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    loom_wg_done(&wg);
}

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    nspinners = (int64_t)SPINNERS_PER_P * procs;
    if (!(delays = calloc((size_t)iters, sizeof *delays)) ||
        !(spins = calloc((size_t)nspinners, sizeof *spins)))
        bench_fail("out of memory");
    if (!(start = loom_chan_new(0, 0)))
        bench_fail("loom_chan_new: %s", strerror(errno));
    if (loom_wg_add(&wg, (long)nspinners + 1) != 0)
        bench_fail("loom_wg_add");
    for (int64_t i = 0; i < nspinners; i++)
        if (!loom_go_attr(spinner, &spins[i], &(loom_attr){ .priority = LOOM_PRIO_LOW }))
            bench_fail("loom_go_attr (low): %s", strerror(errno));
    if (!loom_go_attr(sleeper, NULL, &(loom_attr){ .priority = LOOM_PRIO_HIGH }))
        bench_fail("loom_go_attr (high): %s", strerror(errno));
    if (loom_close(start) != 0)
        bench_fail("loom_close(start)");
    loom_wg_wait(&wg);
    loom_chan_free(start);
    if (done < 1)
        bench_fail("the sleeper finished no sleep");
    int64_t ran = 0;
    for (int64_t i = 0; i < nspinners; i++)
        ran += spins[i] != 0;
    if (ran == 0)
        bench_fail("no spinner ran");
    for (int64_t k = 0; k < done; k++)
        if (delays[k] < 0)
            bench_fail("sleep %" PRId64 " returned %" PRId64 " ns early", k, -delays[k]);
    if (done < iters)
        bench_note("the %" PRId64 " ms budget ran out after %" PRId64 " of %" PRId64 " sleeps",
                   budget_ns / 1000000, done, iters);
    bench_note("%" PRId64 " of %" PRId64 " spinners ran before the stop", ran, nspinners);
    int64_t p50 = bench_quantile(delays, (size_t)done, 0.5);
    int64_t p99 = bench_quantile(delays, (size_t)done, 0.99);
    int64_t worst = delays[done - 1];
    bench_result("worst_ms", (double)worst / 1e6, "ms", procs);
    bench_result("p50_ms", (double)p50 / 1e6, "ms", procs);
    bench_result("p99_ms", (double)p99 / 1e6, "ms", procs);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "prio");
    iters = bench_param("iters", 1000, 50);
    budget_ns = bench_param("budget_ms", 30000, 1000) * 1000000;
    if (iters < 1)
        bench_fail("iters must be >= 1");
    if (budget_ns < 1)
        bench_fail("budget_ms must be >= 1");
    bench_watchdog(bench_is_smoke() ? 20 : 120,
                   "the high-priority sleeper never woke beside the spinners (no preemption?)");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
