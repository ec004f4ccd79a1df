/*
 * test_sleep.c — loom_sleep and loom_now:
 *  - loom_sleep(20 ms) takes >= 20 ms (by loom_now and by CLOCK_MONOTONIC), and loom_now
 *    counts the nanoseconds of CLOCK_MONOTONIC: over the sleep it advances no less than
 *    the clock between two readings inside it and no more than between two outside it;
 *    1 ns and 1 us sleeps return (the upper bounds are 10 s guards against a hang);
 *  - loom_sleep(0) and negative durations only yield: at LOOM_PROCS=1 another
 *    goroutine runs meanwhile and sees the caller ready to run, not parked on a timer;
 *  - 1000 goroutines sleeping random 1..50 ms all wake, each after at least its time;
 *  - loom_now is monotonic, also across Ps;
 *  - sleeping parks the goroutine, not the thread: at LOOM_PROCS=1 a busy goroutine
 *    makes progress while 100 others and main sleep.
 */
#include "t.h"

#define MS 1000000LL

static void test_basic(void)
{
    for (int i = 0; i < 3; i++) {
        int64_t ca = t_clock_ns(), n0 = loom_now(), cb = t_clock_ns();
        loom_sleep(20 * MS);
        int64_t cc = t_clock_ns(), n1 = loom_now(), cd = t_clock_ns();
        CHECK_GE(n1 - n0, 20 * MS);
        CHECK_GE(cd - ca, 20 * MS);
        /* loom_now counts CLOCK_MONOTONIC's nanoseconds, not some other unit: the readings
         * nest, so its advance lies between the clock's inner and outer intervals */
        CHECK_MSG(n1 - n0 >= cc - cb && n1 - n0 <= cd - ca,
                  "loom_now advanced %" PRId64 " ns while the clock advanced %" PRId64
                  " ns (inside) and %" PRId64 " ns (outside)",
                  n1 - n0, cc - cb, cd - ca);
        CHECK_MSG(cd - ca < 20 * MS + 10000 * MS, "loom_sleep(20 ms) took %" PRId64 " ns",
                  cd - ca); /* a hang guard */
    }
    /* 1 ns and 1 us sleeps return */
    int64_t c0 = t_clock_ns();
    loom_sleep(1);
    loom_sleep(1000);
    CHECK_MSG(t_clock_ns() - c0 < 10000 * MS, "1 ns and 1 us sleeps took %" PRId64 " ns",
              t_clock_ns() - c0); /* a hang guard */
}

/* ---- sleep(0) / negative: a yield */
static int y_flag;   /* atomic */
static int y_done;   /* atomic */
static int y_parked; /* atomic: the setter saw the caller parked, or a timer pending */

static void setter(void *arg)
{
    (void)arg;
    /* it runs while the caller is inside loom_sleep(0 or less), at one P: the caller must
     * be ready to run (a yield), not waiting on a timer */
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    if (st.runnable < 1 || st.timers > 0)
        __atomic_store_n(&y_parked, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&y_flag, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&y_done, 1, __ATOMIC_SEQ_CST);
}

static void test_zero_yields(int64_t how)
{
    /* at LOOM_PROCS=1 the setter can only run if loom_sleep(how) gives up the P */
    __atomic_store_n(&y_flag, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&y_parked, 0, __ATOMIC_SEQ_CST);
    CHECK(loom_go(setter, NULL) != 0);
    int64_t dl = t_clock_ns() + 10000 * MS;
    while (!__atomic_load_n(&y_flag, __ATOMIC_SEQ_CST)) {
        CHECK_MSG(t_clock_ns() < dl, "loom_sleep(%" PRId64 ") never let another goroutine run", how);
        loom_sleep(how);
    }
    /* and it only yields: it does not wait for a timer (many calls in a row would each
     * wait for one) */
    CHECK_MSG(!__atomic_load_n(&y_parked, __ATOMIC_SEQ_CST),
              "loom_sleep(%" PRId64 ") parked its caller (or left a timer) instead of yielding", how);
}

/* ---- many sleepers */
#define NSLEEPERS 1000
static int s_done; /* atomic */

static void sleeper(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    t_rng r;
    t_rng_seed(&r, seed);
    int64_t d = (int64_t)(1 + t_rng_below(&r, 50)) * MS;
    int64_t n0 = loom_now(), c0 = t_clock_ns();
    loom_sleep(d);
    int64_t n1 = loom_now(), c1 = t_clock_ns();
    CHECK_MSG(n1 - n0 >= d, "slept %" PRId64 " ns by loom_now, asked %" PRId64, n1 - n0, d);
    CHECK_MSG(c1 - c0 >= d, "slept %" PRId64 " ns by the clock, asked %" PRId64, c1 - c0, d);
    CHECK_MSG(c1 - c0 < d + 10000 * MS, "slept %" PRId64 " ns, asked %" PRId64, c1 - c0, d);
    /* a second, shorter sleep: timers re-armed on whatever P we are on now */
    loom_sleep(d / 4);
    CHECK_GE(t_clock_ns() - c1, d / 4);
    __atomic_add_fetch(&s_done, 1, __ATOMIC_SEQ_CST);
}

static void test_many(void)
{
    int n = NSLEEPERS;
    for (int i = 0; i < n; i++)
        CHECK(loom_go(sleeper, (void *)(uintptr_t)(i + 1)) != 0);
    T_WAIT_UNTIL(t_get(&s_done) >= n, 60, "sleepers (%d of %d)", t_get(&s_done), n);
}

/* ---- loom_now monotonic, across Ps */
static int64_t mono_max; /* atomic */
static int mono_done;    /* atomic */

static void mono(void *arg)
{
    (void)arg;
    long n = t_scale(200000);
    int64_t prev = loom_now();
    for (long i = 0; i < n; i++) {
        int64_t seen = __atomic_load_n(&mono_max, __ATOMIC_SEQ_CST);
        int64_t v = loom_now();
        CHECK_MSG(v >= prev, "loom_now went back: %" PRId64 " after %" PRId64, v, prev);
        CHECK_MSG(v >= seen,
                  "loom_now %" PRId64 " is before %" PRId64 " published earlier by another goroutine", v,
                  seen);
        int64_t m = seen;
        while (v > m && !__atomic_compare_exchange_n(&mono_max, &m, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            ;
        prev = v;
        if (i % 1000 == 0)
            loom_yield();
    }
    __atomic_add_fetch(&mono_done, 1, __ATOMIC_SEQ_CST);
}

static void test_monotonic(void)
{
    int n = loom_procs() * 2;
    for (int i = 0; i < n; i++)
        CHECK(loom_go(mono, NULL) != 0);
    T_WAIT_UNTIL(t_get(&mono_done) >= n, 60, "loom_now checkers (%d of %d)", t_get(&mono_done), n);
}

/* ---- sleeping goroutines don't block the thread (LOOM_PROCS=1) */
static long b_progress;                              /* atomic */
static int b_stop;                                   /* atomic */
static int b_sleepers_done, b_sleeping, b_busy_done; /* atomics */

static void busy(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&b_stop, __ATOMIC_SEQ_CST)) {
        __atomic_add_fetch(&b_progress, 1, __ATOMIC_SEQ_CST);
        loom_yield();
    }
    __atomic_store_n(&b_busy_done, 1, __ATOMIC_SEQ_CST);
}

static void long_sleeper(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&b_sleeping, 1, __ATOMIC_SEQ_CST);
    long before = __atomic_load_n(&b_progress, __ATOMIC_SEQ_CST);
    int64_t c0 = t_clock_ns();
    loom_sleep(200 * MS);
    CHECK_GE(t_clock_ns() - c0, 200 * MS);
    /* the busy goroutine ran while this one slept (it can only run while this one does
     * not, at one P); if it had not yet, it does while this one sleeps on */
    T_WAIT_UNTIL(__atomic_load_n(&b_progress, __ATOMIC_SEQ_CST) > before, 30,
                 "the busy goroutine made no progress while this one slept (%ld)", before);
    __atomic_add_fetch(&b_sleepers_done, 1, __ATOMIC_SEQ_CST);
}

static void test_not_blocking(void)
{
    CHECK_EQ(loom_procs(), 1);
    CHECK(loom_go(busy, NULL) != 0);
    for (int i = 0; i < 100; i++)
        CHECK(loom_go(long_sleeper, NULL) != 0);
    /* (main yields, not sleeps, until they are in their sleeps) */
    int64_t dl = t_clock_ns() + 20000 * MS;
    while (t_get(&b_sleeping) < 100) {
        CHECK_MSG(t_clock_ns() < dl, "sleepers to start (%d of %d)", t_get(&b_sleeping), 100);
        loom_yield();
    }
    long p0 = __atomic_load_n(&b_progress, __ATOMIC_SEQ_CST);
    /* main sleeps as well (in T_WAIT_UNTIL's pauses): 101 goroutines asleep, one runnable,
     * which runs meanwhile */
    T_WAIT_UNTIL(__atomic_load_n(&b_progress, __ATOMIC_SEQ_CST) > p0, 30,
                 "no progress by the busy goroutine while main slept (%ld)", p0);
    T_WAIT_UNTIL(t_get(&b_sleepers_done) >= 100, 30, "sleepers to wake (%d of %d)", t_get(&b_sleepers_done),
                 100);
    __atomic_store_n(&b_stop, 1, __ATOMIC_SEQ_CST);
    T_WAIT_UNTIL(t_get(&b_busy_done) >= 1, 10, "busy goroutine to stop (%d of %d)", t_get(&b_busy_done), 1);
}

static int main_all(void *arg)
{
    (void)arg;
    test_basic();
    test_monotonic();
    test_many();
    return 0;
}

static int main_one(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_procs(), 1);
    test_zero_yields(0);
    test_zero_yields(-1);
    test_zero_yields(-1000000000LL);
    test_zero_yields(INT64_MIN);
    test_not_blocking();
    test_basic();
    return 0;
}

int main(void)
{
    T_RUN(main_all, NULL);

    char *old = getenv("LOOM_PROCS");
    char *saved = old ? strdup(old) : NULL;
    setenv("LOOM_PROCS", "1", 1);
    T_RUN(main_one, NULL);
    if (saved) {
        setenv("LOOM_PROCS", saved, 1);
        free(saved);
    } else {
        unsetenv("LOOM_PROCS");
    }
    return 0;
}
