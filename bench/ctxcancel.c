/* ctxcancel: 100k goroutines blocked on a context, the time from its cancel to
 * all of them returned (ms).  Each goroutine starts with main's context current
 * (loom_ctx_with_cancel) and parks in loom_recv on a channel nobody sends on,
 * which the context's end cuts short with -ECANCELED.  Once all are parked
 * (loom_stats: waiting >= n) and a short settle sleep has passed, main, back on
 * the background context, cancels and waits for the WaitGroup.  Twin of
 * go/ctxcancel/main.go (select on ctx.Done() and the channel). */
#include <loom.h>
#include "bench.h"

enum { SETTLE_NS = 20 * 1000000 }; /* both twins sleep this long once all are parked */

static loom_chan *never; /* nobody sends on it */
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

static void waiter(void *arg)
{
    (void)arg;
    int rc = loom_recv(never, NULL);
    if (rc != -ECANCELED)
        bench_fail("loom_recv returned %d, not -ECANCELED (%d)", rc, -ECANCELED);
    loom_wg_done(&wg);
}

static int64_t n;

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    if (!(never = loom_chan_new(0, 0)))
        bench_fail("loom_chan_new: %s", strerror(errno));
    loom_ctx *ctx = loom_ctx_with_cancel(NULL);
    if (!ctx)
        bench_fail("loom_ctx_with_cancel: %s", strerror(errno));
    if (loom_wg_add(&wg, n) != 0)
        bench_fail("loom_wg_add");
    loom_ctx *old = loom_ctx_set(ctx); /* the waiters inherit it */
    for (int64_t i = 0; i < n; i++)
        if (!loom_go(waiter, NULL))
            bench_fail("loom_go failed at goroutine %" PRId64 ": %s", i, strerror(errno));
    loom_ctx_set(old); /* main's own waits must not end with ctx */
    struct loom_stats st;
    for (;;) {
        if (loom_stats(&st) != 0)
            bench_fail("loom_stats");
        if ((int64_t)st.waiting >= n)
            break;
        loom_sleep(1000000);
    }
    loom_sleep(SETTLE_NS);
    int64_t t0 = loom_now();
    loom_ctx_cancel(ctx, 0);
    loom_wg_wait(&wg);
    int64_t el = loom_now() - t0;
    if (loom_ctx_err(ctx) != -ECANCELED)
        bench_fail("loom_ctx_err is %d after the cancel, not -ECANCELED", loom_ctx_err(ctx));
    bench_note("%.1f ns per goroutine", (double)el / (double)n);
    bench_result("ms", (double)el / 1e6, "ms", procs);
    loom_ctx_free(ctx);
    loom_chan_free(never);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "ctxcancel");
    n = bench_param("goroutines", 100000, 1000);
    if (n < 1)
        bench_fail("goroutines must be >= 1");
    bench_watchdog(120, "did not finish in 120 s");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
