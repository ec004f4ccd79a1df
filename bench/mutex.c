/* mutex: 100 goroutines contending for one loom_mutex at all Ps (ns per
 * critical section).  Twin of go/mutex/main.go. */
#include <loom.h>
#include "bench.h"

static int64_t g, k, counter;
static loom_mutex mu = LOOM_MUTEX_INIT;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

static void worker(void *arg)
{
    (void)arg;
    for (int64_t j = 0; j < k; j++) {
        loom_mutex_lock(&mu);
        counter++;
        if (loom_mutex_unlock(&mu) != 0)
            bench_fail("unlock of a held mutex failed");
    }
    loom_wg_done(&wg);
}

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    if (loom_wg_add(&wg, g) != 0)
        bench_fail("loom_wg_add");
    int64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < g; i++)
        if (!loom_go(worker, NULL))
            bench_fail("loom_go: %s", strerror(errno));
    loom_wg_wait(&wg);
    int64_t el = bench_now_ns() - t0;
    if (counter != g * k)
        bench_fail("counter %" PRId64 ", want %" PRId64 " (mutual exclusion broken)", counter, g * k);
    bench_result("ns_per_cs", (double)el / (double)(g * k), "ns", procs);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "mutex");
    g = bench_param("goroutines", 100, 10);
    k = bench_param("iters", 50000, 1000);
    if (g < 1 || k < 1)
        bench_fail("bad parameters");
    bench_watchdog(300, "did not finish in 300 s");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
