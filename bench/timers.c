/* timers: 1M goroutines each sleeping a random 1..1000 ms (total ms, worst
 * lateness ms).  Twin of go/timers/main.go (same splitmix64 durations). */
#include <loom.h>
#include "bench.h"

static int64_t n, max_ms;
static int64_t *dur, *late;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

static void sleeper(void *arg)
{
    size_t i = (size_t)(uintptr_t)arg;
    int64_t s = loom_now();
    loom_sleep(dur[i]);
    late[i] = loom_now() - s - dur[i];
    loom_wg_done(&wg);
}

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    dur = malloc((size_t)n * sizeof *dur);
    late = malloc((size_t)n * sizeof *late);
    if (!dur || !late)
        bench_fail("out of memory");
    uint64_t seed = 42;
    int64_t max_dur = 0;
    for (int64_t i = 0; i < n; i++) {
        dur[i] = (int64_t)(1 + bench_rand(&seed) % (uint64_t)max_ms) * 1000000;
        if (dur[i] > max_dur)
            max_dur = dur[i];
    }
    if (loom_wg_add(&wg, n) != 0)
        bench_fail("loom_wg_add");
    int64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < n; i++)
        if (!loom_go(sleeper, (void *)(uintptr_t)i))
            bench_fail("loom_go failed at goroutine %" PRId64 ": %s", i, strerror(errno));
    loom_wg_wait(&wg);
    int64_t el = bench_now_ns() - t0, worst = 0;
    for (int64_t i = 0; i < n; i++) {
        if (late[i] < 0)
            bench_fail("goroutine %" PRId64 " woke %" PRId64 " ns early", i, -late[i]);
        if (late[i] > worst)
            worst = late[i];
    }
    if (el < max_dur)
        bench_fail("finished in %" PRId64 " ns, before the longest sleep %" PRId64, el, max_dur);
    bench_result("total_ms", (double)el / 1e6, "ms", procs);
    bench_result("worst_late_ms", (double)worst / 1e6, "ms", procs);
    bench_result("peak_rss_mib", (double)bench_maxrss_kib() / 1024, "MiB", procs);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "timers");
    n = bench_param("goroutines", 1000000, 1000);
    max_ms = bench_param("max_ms", 1000, 50);
    if (n < 1 || max_ms < 1)
        bench_fail("bad parameters");
    bench_watchdog(300, "did not finish in 300 s");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
