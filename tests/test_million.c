/*
 * test_million.c — 1,000,000 goroutines (divided by LOOM_TEST_SCALE), each parked in
 * loom_recv on one shared unbuffered channel, all released by one loom_close; every
 * one wakes with -EPIPE and finishes.  Spawned by several goroutines, so spawning
 * runs on every P.  Unscaled and without a sanitizer, the peak RSS growth
 * (getrusage ru_maxrss) must stay within 4.5 KiB per goroutine.
 */
#include "t.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define T_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define T_SANITIZED 1
#endif
#endif
#ifndef T_SANITIZED
#define T_SANITIZED 0
#endif

#define NSPAWNERS 8

static loom_chan *g_chan;
static long g_n;
static long g_started;      /* atomic */
static long g_finished;     /* atomic */
static long g_bad;          /* atomic: receives that did not return -EPIPE */
static int g_spawners_done; /* atomic */

static void parked(void *arg)
{
    (void)arg;
    char dummy = 1;
    __atomic_add_fetch(&g_started, 1, __ATOMIC_RELAXED);
    int rc = loom_recv(g_chan, &dummy);
    if (rc != -EPIPE)
        __atomic_add_fetch(&g_bad, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&g_finished, 1, __ATOMIC_RELEASE);
}

static void spawner(void *arg)
{
    long s = (long)(intptr_t)arg;
    long lo = g_n * s / NSPAWNERS, hi = g_n * (s + 1) / NSPAWNERS;
    for (long i = lo; i < hi; i++) {
        uint64_t id = loom_go(parked, NULL);
        CHECK_MSG(id != 0, "loom_go failed at goroutine %ld: errno %d (%s)", i, errno, strerror(errno));
        if (i % 4096 == 0)
            loom_yield();
    }
    __atomic_add_fetch(&g_spawners_done, 1, __ATOMIC_SEQ_CST);
}

static void wait_long(long *p, long want, double secs, const char *what)
{
    int64_t dl = t_clock_ns() + (int64_t)(secs * 1e9);
    while (__atomic_load_n(p, __ATOMIC_ACQUIRE) < want) {
        if (t_clock_ns() >= dl) {
            fprintf(stderr, "test_million: timed out waiting for %s (%ld of %ld); goroutine dump:\n", what,
                    __atomic_load_n(p, __ATOMIC_ACQUIRE), want);
            raise(SIGQUIT); /* loom prints every goroutine and exits 2 */
            sleep(5);
            CHECK_MSG(0, "timed out waiting for %s", what);
        }
        loom_sleep(2000000);
    }
}

static int main_fn(void *arg)
{
    (void)arg;
    int64_t t_start = t_clock_ns();
    g_chan = loom_chan_new(0, 0);
    CHECK(g_chan != NULL);
    for (long s = 0; s < NSPAWNERS; s++)
        CHECK(loom_go(spawner, (void *)(intptr_t)s) != 0);
    int64_t dl = t_clock_ns() + 200LL * 1000000000;
    while (__atomic_load_n(&g_spawners_done, __ATOMIC_SEQ_CST) < NSPAWNERS) {
        CHECK_MSG(t_clock_ns() < dl, "spawners did not finish");
        loom_sleep(2000000);
    }
    int64_t t_spawned = t_clock_ns();
    wait_long(&g_started, g_n, 200, "goroutines to start");
    int64_t t_started = t_clock_ns();
    /* the last ones to start may not have parked yet; give them a moment, though
     * receiving on a closed channel returns -EPIPE anyway */
    loom_sleep(20000000);
    CHECK_EQ(__atomic_load_n(&g_finished, __ATOMIC_ACQUIRE), 0); /* nobody got past recv */
    int64_t t_close = t_clock_ns();
    CHECK_OK(loom_close(g_chan));
    int64_t t_closed = t_clock_ns();
    wait_long(&g_finished, g_n, 200, "goroutines to finish");
    if (getenv("LOOM_TEST_VERBOSE"))
        fprintf(stderr, "test_million: spawn %.2f s, start %.2f s, close %.2f s, finish %.2f s\n",
                (t_spawned - t_start) / 1e9, (t_started - t_spawned) / 1e9, (t_closed - t_close) / 1e9,
                (t_clock_ns() - t_closed) / 1e9);
    CHECK_EQ(__atomic_load_n(&g_bad, __ATOMIC_SEQ_CST), 0);
    CHECK_EQ(__atomic_load_n(&g_finished, __ATOMIC_SEQ_CST), g_n);
    return 0;
}

static long maxrss_kib(void)
{
    struct rusage ru;
    CHECK_OK(getrusage(RUSAGE_SELF, &ru));
    return ru.ru_maxrss;
}

int main(void)
{
    g_n = t_scale(1000000);
    long before = maxrss_kib();
    int64_t t0 = t_clock_ns();
    T_RUN(main_fn, NULL);
    long after = maxrss_kib();
    double per = (double)(after - before) * 1024.0 / (double)g_n;
    if (getenv("LOOM_TEST_VERBOSE"))
        fprintf(stderr,
                "test_million: %ld goroutines, %.2f s, maxrss %ld -> %ld KiB,"
                " %.0f bytes per goroutine\n",
                g_n, (t_clock_ns() - t0) / 1e9, before, after, per);
    if (g_n == 1000000 && !T_SANITIZED)
        CHECK_MSG(per <= 4.5 * 1024,
                  "peak RSS grew %ld KiB for %ld goroutines: %.0f bytes each"
                  " (limit 4608)",
                  after - before, g_n, per);
    return 0;
}
