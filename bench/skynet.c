/* skynet: a 10-ary tree of goroutines, 1M leaves, sums over unbuffered channels
 * (ms); the sum must be 499999500000.  Twin of go/skynet/main.go. */
#include <loom.h>
#include "bench.h"

struct node {
    loom_chan *out;
    int64_t num, size, div;
};

static void skynet(void *arg)
{
    struct node a = *(struct node *)arg; /* the parent's frame lives until we send */
    if (a.size == 1) {
        if (loom_send(a.out, &a.num) != 0)
            bench_fail("leaf send failed");
        return;
    }
    loom_chan *rc = loom_chan_new(sizeof(int64_t), 0);
    if (!rc)
        bench_fail("loom_chan_new: %s", strerror(errno));
    struct node kids[64];
    for (int64_t i = 0; i < a.div; i++) {
        kids[i] = (struct node){ rc, a.num + i * (a.size / a.div), a.size / a.div, a.div };
        if (!loom_go(skynet, &kids[i]))
            bench_fail("loom_go: %s", strerror(errno));
    }
    int64_t sum = 0, v;
    for (int64_t i = 0; i < a.div; i++) {
        if (loom_recv(rc, &v) != 0)
            bench_fail("recv failed");
        sum += v;
    }
    loom_chan_free(rc);
    if (loom_send(a.out, &sum) != 0)
        bench_fail("send failed");
}

static int64_t size, div_;

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    loom_chan *c = loom_chan_new(sizeof(int64_t), 0);
    if (!c)
        bench_fail("loom_chan_new: %s", strerror(errno));
    struct node root = { c, 0, size, div_ };
    int64_t t0 = bench_now_ns(), sum = 0;
    if (!loom_go(skynet, &root))
        bench_fail("loom_go: %s", strerror(errno));
    if (loom_recv(c, &sum) != 0)
        bench_fail("recv failed");
    int64_t el = bench_now_ns() - t0;
    if (sum != size * (size - 1) / 2)
        bench_fail("sum %" PRId64 ", want %" PRId64, sum, size * (size - 1) / 2);
    loom_chan_free(c);
    bench_result("ms", (double)el / 1e6, "ms", procs);
    bench_result("peak_rss_mib", (double)bench_maxrss_kib() / 1024, "MiB", procs);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "skynet");
    size = bench_param("size", 1000000, 1000);
    div_ = bench_param("div", 10, 10);
    if (div_ < 2 || div_ > 64)
        bench_fail("div must be 2..64");
    for (int64_t s = size; s > 1; s /= div_)
        if (s % div_)
            bench_fail("size %" PRId64 " is not a power of div %" PRId64, size, div_);
    bench_watchdog(300, "did not finish in 300 s");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
