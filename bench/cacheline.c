/* cacheline: physical limit for context — one cache line bounced between two
 * cores by two pthreads ping-ponging an atomic (ns per round trip).
 * Needs no loom; no Go twin. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <sched.h>
#include "bench.h"

static _Alignas(64) int64_t line;
static int64_t rounds;
static int ncpu;

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void wait_for(int64_t v)
{
    unsigned spins = 0;
    while (__atomic_load_n(&line, __ATOMIC_ACQUIRE) != v)
        if (++spins % 4096 == 0)
            sched_yield(); /* only matters when both threads share one CPU */
}

static void *pong(void *arg)
{
    (void)arg;
    if (ncpu >= 2)
        pin(1);
    for (int64_t i = 0; i < rounds; i++) {
        wait_for(2 * i + 1);
        __atomic_store_n(&line, 2 * i + 2, __ATOMIC_RELEASE);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "cacheline");
    rounds = bench_param("rounds", 2000000, 10000);
    cpu_set_t set;
    ncpu = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    if (ncpu < 2)
        bench_note("only one CPU: the threads share it, the number is not a cache-line bounce");
    if (ncpu >= 2)
        pin(0);
    pthread_t th;
    if (pthread_create(&th, NULL, pong, NULL) != 0)
        bench_fail("pthread_create");
    int64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < rounds; i++) {
        __atomic_store_n(&line, 2 * i + 1, __ATOMIC_RELEASE);
        wait_for(2 * i + 2);
    }
    int64_t el = bench_now_ns() - t0;
    pthread_join(th, NULL);
    if (line != 2 * rounds)
        bench_fail("final value %" PRId64 ", want %" PRId64, line, 2 * rounds);
    bench_result("ns_per_roundtrip", (double)el / (double)rounds, "ns", 2);
    return 0;
}
