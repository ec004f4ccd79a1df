/*
 * test_timer.c — loom_timer (Go's time.Timer, Ticker, AfterFunc): fires never early, a
 * ticker keeps its schedule and drops fires a slow receiver misses, Go 1.23's rule that no
 * value sent before a reset or stop is received after it (also while tickers fire on other
 * threads), after-funcs in goroutines of their own, many pending timers with no goroutine
 * or thread, from a thread outside the runtime, and bad input.
 */
#include "t.h"
#include <pthread.h>

#define MS 1000000LL

static int64_t recv_time(loom_timer *t)
{
    int64_t v = 0;
    CHECK_OK(loom_recv(loom_timer_chan(t), &v));
    return v;
}

static void case_oneshot(void)
{
    int64_t t0 = loom_now();
    loom_timer *t = loom_timer_new(5 * MS, 0);
    CHECK(t != NULL);
    int64_t v = recv_time(t);
    CHECK_GE(v, t0 + 5 * MS); /* never early */
    CHECK_LE(v, loom_now());
    loom_sleep(15 * MS);
    CHECK_ERR(loom_try_recv(loom_timer_chan(t), &v), EAGAIN); /* once */
    CHECK_EQ(loom_timer_stop(t), 0);                          /* nothing pending */
    loom_timer_free(t);
    /* ns <= 0: at once */
    t = loom_timer_new(0, 0);
    CHECK(t != NULL);
    CHECK_GE(recv_time(t), t0);
    loom_timer_free(t);
}

static void case_ticker(void)
{
    int64_t t0 = loom_now(), period = 2 * MS, last = 0;
    loom_timer *t = loom_timer_new(period, period);
    CHECK(t != NULL);
    for (int k = 1; k <= 20; k++) {
        int64_t v = recv_time(t);
        CHECK_GT(v, last);
        /* the k-th fire is due at t0 + k*period or, after a late one, later: never early */
        CHECK_GE(v, t0 + period);
        last = v;
    }
    /* a receiver that falls behind finds one value, not a backlog */
    loom_sleep(30 * MS);
    int64_t v;
    CHECK_OK(loom_try_recv(loom_timer_chan(t), &v));
    CHECK_ERR(loom_try_recv(loom_timer_chan(t), &v), EAGAIN);
    CHECK_EQ(loom_timer_stop(t), 1);
    loom_sleep(10 * MS);
    CHECK_ERR(loom_try_recv(loom_timer_chan(t), &v), EAGAIN); /* stopped: no more fires */
    loom_timer_free(t);
}

/* Go 1.23: a value sent before stop or reset is never received after it */
static void case_stale(void)
{
    loom_timer *t = loom_timer_new(1 * MS, 0);
    CHECK(t != NULL);
    loom_sleep(10 * MS);             /* fired: its value waits in the channel */
    CHECK_EQ(loom_timer_stop(t), 1); /* sent and not received counts as pending */
    int64_t v;
    CHECK_ERR(loom_try_recv(loom_timer_chan(t), &v), EAGAIN);
    CHECK_EQ(loom_timer_stop(t), 0);
    /* reset after a fire: the old value is gone, the new one comes after the reset */
    CHECK_EQ(loom_timer_reset(t, 1 * MS, 0), 0);
    loom_sleep(10 * MS);
    int64_t r = loom_now();
    CHECK_EQ(loom_timer_reset(t, 3 * MS, 0), 1);
    v = recv_time(t);
    CHECK_GE(v, r + 3 * MS);
    /* stop before the fire: it never comes */
    CHECK_EQ(loom_timer_reset(t, 5 * MS, 0), 0);
    CHECK_EQ(loom_timer_stop(t), 1);
    loom_sleep(15 * MS);
    CHECK_ERR(loom_try_recv(loom_timer_chan(t), &v), EAGAIN);
    /* a one-shot timer turned into a ticker by reset */
    CHECK_EQ(loom_timer_reset(t, 1 * MS, 1 * MS), 0);
    for (int k = 0; k < 5; k++)
        recv_time(t);
    loom_timer_free(t);
}

/* Tickers firing every 100 us on other threads while their owners reset and stop them:
 * after each reset no value older than the reset arrives, after each stop none at all. */
enum { RACERS = 8 };
static loom_waitgroup racers_done = LOOM_WAITGROUP_INIT;
static int stale; /* atomic */

static void racer(void *arg)
{
    t_rng rng;
    t_rng_seed(&rng, (uint64_t)(intptr_t)arg + 1);
    loom_timer *t = loom_timer_new(100000, 100000);
    CHECK(t != NULL);
    long rounds = t_scale(300);
    for (long i = 0; i < rounds; i++) {
        /* let it fire a few times, maybe into a full channel */
        for (int k = (int)t_rng_below(&rng, 4); k > 0; k--)
            loom_yield();
        if (t_rng_below(&rng, 2)) {
            loom_sleep((int64_t)t_rng_below(&rng, 300000));
        }
        int64_t before = loom_now();
        if (t_rng_below(&rng, 3) == 0) {
            CHECK_GE(loom_timer_stop(t), 0);
            int64_t v;
            for (int k = 0; k < 3; k++) {
                if (loom_try_recv(loom_timer_chan(t), &v) == 0)
                    __atomic_add_fetch(&stale, 1, __ATOMIC_RELAXED);
                loom_yield();
            }
            CHECK_GE(loom_timer_reset(t, 100000, 100000), 0);
        } else {
            CHECK_GE(loom_timer_reset(t, 100000, 100000), 0);
            int64_t v = recv_time(t);
            if (v < before)
                __atomic_add_fetch(&stale, 1, __ATOMIC_RELAXED);
        }
    }
    loom_timer_free(t);
    loom_wg_done(&racers_done);
}

static void case_race(void)
{
    CHECK_OK(loom_wg_add(&racers_done, RACERS));
    for (intptr_t i = 0; i < RACERS; i++)
        CHECK(loom_go(racer, (void *)i) != 0);
    loom_wg_wait(&racers_done);
    CHECK_EQ(__atomic_load_n(&stale, __ATOMIC_RELAXED), 0);
}

static loom_chan *af_ran;

static void af(void *arg)
{
    uint64_t id = loom_id();
    CHECK_NE(id, 0u);
    CHECK_OK(loom_send(af_ran, &id));
    (void)arg;
}

static void case_after_func(void)
{
    af_ran = loom_chan_new(sizeof(uint64_t), 16);
    CHECK(af_ran != NULL);
    int64_t t0 = loom_now();
    loom_timer *t = loom_after_func(2 * MS, af, NULL);
    CHECK(t != NULL);
    CHECK(loom_timer_chan(t) == NULL);
    uint64_t id;
    CHECK_OK(loom_recv(af_ran, &id));
    CHECK_NE(id, loom_id()); /* a goroutine of its own */
    CHECK_GE(loom_now(), t0 + 2 * MS);
    CHECK_EQ(loom_timer_stop(t), 0); /* already fired */
    /* stopped before the fire: fn never runs */
    CHECK_EQ(loom_timer_reset(t, 5 * MS, 0), 0);
    CHECK_EQ(loom_timer_stop(t), 1);
    loom_sleep(20 * MS);
    CHECK_ERR(loom_try_recv(af_ran, &id), EAGAIN);
    /* many at once, at 0 ns: each in its own goroutine */
    enum { N = 200 };
    loom_timer *ts[N];
    for (int i = 0; i < N; i++)
        CHECK((ts[i] = loom_after_func(0, af, NULL)) != NULL);
    for (int i = 0; i < N; i++)
        CHECK_OK(loom_recv(af_ran, &id));
    for (int i = 0; i < N; i++)
        loom_timer_free(ts[i]);
    loom_timer_free(t);
    loom_chan_free(af_ran);
}

/* many pending timers: a heap entry each, no goroutine, no thread */
static void case_many(void)
{
    long n = t_scale(200000);
    loom_timer **ts = calloc((size_t)n, sizeof *ts);
    CHECK(ts != NULL);
    struct loom_stats st0, st1;
    CHECK_OK(loom_stats(&st0));
    int threads0 = t_count_threads();
    for (long i = 0; i < n; i++)
        CHECK((ts[i] = loom_timer_new(3600 * 1000 * MS + i, 0)) != NULL);
    CHECK_OK(loom_stats(&st1));
    CHECK_GE(st1.timers, st0.timers + (uint64_t)n);
    CHECK_LE(st1.goroutines, st0.goroutines);
    CHECK_LE(t_count_threads(), threads0 + 1);
    for (long i = 0; i < n; i++) {
        CHECK_EQ(loom_timer_stop(ts[i]), 1);
        loom_timer_free(ts[i]);
    }
    CHECK_OK(loom_stats(&st1));
    CHECK_LE(st1.timers, st0.timers);
    free(ts);
}

/* from a thread that runs no goroutine, while loom runs */
static void *foreign(void *arg)
{
    loom_timer **out = arg;
    *out = loom_timer_new(1 * MS, 0);
    return NULL;
}

static void case_foreign(void)
{
    pthread_t th;
    loom_timer *t = NULL;
    CHECK_EQ(pthread_create(&th, NULL, foreign, &t), 0);
    loom_block_begin();
    CHECK_EQ(pthread_join(th, NULL), 0);
    loom_block_end();
    CHECK(t != NULL);
    recv_time(t);
    loom_timer_free(t);
}

static void case_errors(void)
{
    CHECK(loom_timer_new(1, -1) == NULL);
    CHECK_EQ(t_errno(), EINVAL);
    CHECK(loom_after_func(1, NULL, NULL) == NULL);
    CHECK_EQ(t_errno(), EINVAL);
    CHECK_EQ(loom_timer_stop(NULL), -EINVAL);
    CHECK_EQ(loom_timer_reset(NULL, 1, 0), -EINVAL);
    loom_timer *t = loom_timer_new(MS, 0);
    CHECK(t != NULL);
    CHECK_EQ(loom_timer_reset(t, 1, -5), -EINVAL);
    CHECK(loom_timer_chan(NULL) == NULL);
    loom_timer_free(NULL);
    loom_timer_free(t);
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("oneshot"))
        case_oneshot();
    if (t_want("ticker"))
        case_ticker();
    if (t_want("stale"))
        case_stale();
    if (t_want("race"))
        case_race();
    if (t_want("after_func"))
        case_after_func();
    if (t_want("many"))
        case_many();
    if (t_want("foreign"))
        case_foreign();
    if (t_want("errors"))
        case_errors();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    CHECK(loom_timer_new(MS, 0) == NULL); /* loom is not running */
    CHECK_EQ(t_errno(), EPERM);
    setenv("LOOM_PROCS", "2", 0);
    T_RUN(main_fn, NULL);
    printf("test_timer: ok\n");
    return 0;
}
