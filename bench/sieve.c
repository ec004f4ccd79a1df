/* sieve: the concurrent prime sieve (a goroutine per prime found) up to the
 * 2000th prime, 17389 (ms).  Twin of go/sieve/main.go. */
#include <loom.h>
#include "bench.h"

struct filter {
    loom_chan *in, *out;
    int64_t prime;
};

static void generate(void *arg)
{
    loom_chan *ch = arg;
    for (int64_t i = 2;; i++)
        if (loom_send(ch, &i) != 0)
            return;
}

static void filter(void *arg)
{
    struct filter f = *(struct filter *)arg;
    free(arg);
    int64_t i;
    for (;;) {
        if (loom_recv(f.in, &i) != 0)
            return;
        if (i % f.prime != 0 && loom_send(f.out, &i) != 0)
            return;
    }
}

/* nth prime by a plain sieve of Eratosthenes, to check the result. */
static int64_t nth_prime(int64_t n)
{
    for (int64_t limit = 64;; limit *= 2) {
        char *comp = calloc((size_t)limit, 1);
        int64_t count = 0;
        if (!comp)
            bench_fail("out of memory");
        for (int64_t i = 2; i < limit; i++) {
            if (comp[i])
                continue;
            if (++count == n) {
                free(comp);
                return i;
            }
            for (int64_t j = i * i; j < limit; j += i)
                comp[j] = 1;
        }
        free(comp);
    }
}

static int64_t nprimes;

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    int64_t t0 = bench_now_ns(), prime = 0;
    loom_chan *ch = loom_chan_new(sizeof(int64_t), 0);
    if (!ch || !loom_go(generate, ch))
        bench_fail("spawn failed: %s", strerror(errno));
    for (int64_t i = 0; i < nprimes; i++) {
        if (loom_recv(ch, &prime) != 0)
            bench_fail("recv failed");
        struct filter *f = malloc(sizeof *f);
        loom_chan *ch1 = loom_chan_new(sizeof(int64_t), 0);
        if (!f || !ch1)
            bench_fail("out of memory");
        *f = (struct filter){ ch, ch1, prime };
        if (!loom_go(filter, f))
            bench_fail("loom_go: %s", strerror(errno));
        ch = ch1;
    }
    int64_t el = bench_now_ns() - t0;
    int64_t want = nth_prime(nprimes);
    if (prime != want)
        bench_fail("prime #%" PRId64 " is %" PRId64 ", want %" PRId64, nprimes, prime, want);
    bench_result("ms", (double)el / 1e6, "ms", procs);
    return 0; /* the filters are abandoned, as in Go */
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "sieve");
    nprimes = bench_param("primes", 2000, 100);
    if (nprimes < 1)
        bench_fail("primes must be >= 1");
    bench_watchdog(300, "did not finish in 300 s");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
