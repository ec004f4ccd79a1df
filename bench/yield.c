/* yield: two goroutines switching with loom_yield at one P (ns per switch).
 * Twin of go/yield/main.go (runtime.Gosched, GOMAXPROCS=1). */
#include <loom.h>
#include "bench.h"

static int64_t iters;  /* per goroutine */
static int last = -1;  /* which goroutine yielded last */
static int64_t alt[2]; /* yields after which the other goroutine had run */
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

static void worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    int64_t a = 0;
    for (int64_t i = 0; i < iters; i++) {
        if (__atomic_load_n(&last, __ATOMIC_RELAXED) != me)
            a++;
        __atomic_store_n(&last, me, __ATOMIC_RELAXED);
        loom_yield();
    }
    alt[me] = a;
    loom_wg_done(&wg);
}

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    if (procs != 1)
        bench_fail("runs at one P, but loom_procs() = %d with LOOM_PROCS=1", procs);
    if (loom_wg_add(&wg, 2) != 0)
        bench_fail("loom_wg_add");
    int64_t t0 = bench_now_ns();
    if (!loom_go(worker, (void *)(intptr_t)0) || !loom_go(worker, (void *)(intptr_t)1))
        bench_fail("loom_go: %s", strerror(errno));
    loom_wg_wait(&wg);
    int64_t el = bench_now_ns() - t0;
    int64_t switches = 2 * iters;
    /* At one P every yield must hand the P to the other goroutine. */
    if (alt[0] + alt[1] < switches * 9 / 10)
        bench_fail("only %" PRId64 " of %" PRId64 " yields switched goroutines", alt[0] + alt[1], switches);
    bench_result("ns_per_switch", (double)el / (double)switches, "ns", procs);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "yield");
    iters = bench_param("iters", 5000000, 20000);
    setenv("LOOM_PROCS", "1", 1);
    bench_watchdog(300, "did not finish in 300 s");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
