/* spawn: 1M goroutines parked on one channel, then released by closing it
 * (ns per spawn, RSS KiB per goroutine from getrusage ru_maxrss).
 * Twin of go/spawn/main.go. */
#include <loom.h>
#include "bench.h"

static loom_chan *gate;
static loom_waitgroup started = LOOM_WAITGROUP_INIT, done = LOOM_WAITGROUP_INIT;
static int64_t released;

static void parked(void *arg)
{
    (void)arg;
    char x;
    loom_wg_done(&started);
    if (loom_recv(gate, &x) == -EPIPE)
        __atomic_fetch_add(&released, 1, __ATOMIC_RELAXED);
    loom_wg_done(&done);
}

static int64_t n;

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    if (!(gate = loom_chan_new(0, 0)))
        bench_fail("loom_chan_new: %s", strerror(errno));
    long rss0 = bench_maxrss_kib();
    if (loom_wg_add(&started, n) != 0 || loom_wg_add(&done, n) != 0)
        bench_fail("loom_wg_add");
    int64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < n; i++)
        if (!loom_go(parked, NULL))
            bench_fail("loom_go failed at goroutine %" PRId64 ": %s", i, strerror(errno));
    loom_wg_wait(&started);
    int64_t t1 = bench_now_ns();
    long rss1 = bench_maxrss_kib();
    if (loom_close(gate) != 0)
        bench_fail("loom_close");
    loom_wg_wait(&done);
    int64_t t2 = bench_now_ns();
    if (released != n)
        bench_fail("%" PRId64 " of %" PRId64 " goroutines saw the channel closed", released, n);
    bench_result("ns_per_spawn", (double)(t1 - t0) / (double)n, "ns", procs);
    bench_result("kib_per_goroutine", (double)(rss1 - rss0) / (double)n, "KiB", procs);
    bench_result("ns_per_release", (double)(t2 - t1) / (double)n, "ns", procs);
    bench_result("peak_rss_mib", (double)bench_maxrss_kib() / 1024, "MiB", procs);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "spawn");
    n = bench_param("goroutines", 1000000, 2000);
    if (n < 1)
        bench_fail("goroutines must be >= 1");
    bench_watchdog(300, "did not finish in 300 s");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
