/* pingpong: unbuffered channel round trip (ns per round trip); run by run.py at
 * one P and at all Ps (LOOM_PROCS).  Twin of go/pingpong/main.go. */
#include <loom.h>
#include "bench.h"

static int64_t rounds;
static loom_chan *in, *out;

static void ponger(void *arg)
{
    (void)arg;
    int64_t v;
    while (loom_recv(in, &v) == 0) {
        v++;
        if (loom_send(out, &v) != 0)
            bench_fail("ponger: send failed");
    }
}

static int64_t round_trip(int64_t i)
{
    int64_t v = i;
    if (loom_send(in, &v) != 0 || loom_recv(out, &v) != 0)
        bench_fail("round %" PRId64 ": send/recv failed", i);
    if (v != i + 1)
        bench_fail("round %" PRId64 ": got %" PRId64 ", want %" PRId64, i, v, i + 1);
    return v;
}

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    in = loom_chan_new(sizeof(int64_t), 0);
    out = loom_chan_new(sizeof(int64_t), 0);
    if (!in || !out)
        bench_fail("loom_chan_new: %s", strerror(errno));
    if (!loom_go(ponger, NULL))
        bench_fail("loom_go: %s", strerror(errno));
    for (int64_t i = 0; i < 1000; i++) /* warm-up */
        round_trip(i);
    int64_t t0 = bench_now_ns();
    int64_t sum = 0;
    for (int64_t i = 0; i < rounds; i++)
        sum += round_trip(i);
    int64_t el = bench_now_ns() - t0;
    loom_close(in);
    if (sum != rounds * (rounds + 1) / 2)
        bench_fail("sum %" PRId64 ", want %" PRId64, sum, rounds * (rounds + 1) / 2);
    bench_result("ns_per_roundtrip", (double)el / (double)rounds, "ns", procs);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "pingpong");
    rounds = bench_param("rounds", 1000000, 10000);
    if (rounds < 1)
        bench_fail("rounds must be >= 1");
    bench_watchdog(300, "did not finish in 300 s");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
