/* threadring: 503 goroutines in a ring pass a token N times over unbuffered
 * channels (ns per pass).  Twin of go/threadring/main.go. */
#include <loom.h>
#include "bench.h"

static int64_t ring, passes;
static loom_chan **chans, *done;

static void member(void *arg)
{
    int64_t i = (int64_t)(intptr_t)arg, t;
    loom_chan *in = chans[i], *next = chans[(i + 1) % ring];
    for (;;) {
        if (loom_recv(in, &t) != 0)
            bench_fail("member %" PRId64 ": recv failed", i + 1);
        if (t == 0) {
            int64_t id = i + 1;
            loom_send(done, &id);
            return;
        }
        t--;
        if (loom_send(next, &t) != 0)
            bench_fail("member %" PRId64 ": send failed", i + 1);
    }
}

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    chans = calloc((size_t)ring, sizeof *chans);
    done = loom_chan_new(sizeof(int64_t), 0);
    if (!chans || !done)
        bench_fail("out of memory");
    for (int64_t i = 0; i < ring; i++)
        if (!(chans[i] = loom_chan_new(sizeof(int64_t), 0)))
            bench_fail("loom_chan_new: %s", strerror(errno));
    for (int64_t i = 0; i < ring; i++)
        if (!loom_go(member, (void *)(intptr_t)i))
            bench_fail("loom_go: %s", strerror(errno));
    int64_t t0 = bench_now_ns(), id = 0;
    if (loom_send(chans[0], &passes) != 0 || loom_recv(done, &id) != 0)
        bench_fail("send/recv failed");
    int64_t el = bench_now_ns() - t0;
    if (id != passes % ring + 1)
        bench_fail("token ended at member %" PRId64 ", want %" PRId64, id, passes % ring + 1);
    bench_result("ns_per_pass", (double)el / (double)passes, "ns", procs);
    return 0; /* the other members stay blocked and are abandoned, as in Go */
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "threadring");
    ring = bench_param("ring", 503, 503);
    passes = bench_param("passes", 10000000, 50000);
    if (ring < 2 || passes < 1)
        bench_fail("bad parameters ring=%" PRId64 " passes=%" PRId64, ring, passes);
    bench_watchdog(300, "did not finish in 300 s");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
