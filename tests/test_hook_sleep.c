/*
 * test_hook_sleep.c — sleeps through libloom_hook, from goroutines:
 *  - 1000 goroutines in usleep at once all wake, each no earlier than asked, in about the
 *    time of one sleep, within the thread bound and with no spare P lent;
 *  - nanosleep, clock_nanosleep (relative and TIMER_ABSTIME, CLOCK_MONOTONIC and
 *    CLOCK_REALTIME) and sleep(0) return 0 after the time asked;
 *  - bad arguments get the kernel's errors (EINVAL through errno, or returned).
 */
#include "t_hook.h"

struct sleeper {
    int64_t took;
    int us;
    loom_waitgroup *wg;
};

static void sleeper(void *arg)
{
    struct sleeper *s = arg;
    int64_t t0 = loom_now();
    CHECK_OK(usleep((useconds_t)s->us));
    s->took = loom_now() - t0;
    loom_wg_done(s->wg);
}

static void test_many_sleepers(void)
{
    int n = (int)t_scale(1000);
    struct sleeper *ss = calloc((size_t)n, sizeof *ss);
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    loom_wg_add(&wg, n);
    struct t_watch w;
    t_watch_start(&w);
    int64_t t0 = loom_now();
    for (int i = 0; i < n; i++) {
        ss[i] = (struct sleeper){ 0, 50000 + (i % 10) * 1000, &wg };
        loom_go(sleeper, &ss[i]);
    }
    loom_wg_wait(&wg);
    int64_t all = loom_now() - t0;
    t_watch_check(&w, "1000 sleepers");
    for (int i = 0; i < n; i++)
        CHECK_GE(ss[i].took, ss[i].us * 1000LL);
    /* on threads, 1000 sleeps of 50 ms would need 1000 threads or 50 s; parked, ~60 ms */
    CHECK_MSG(all < 3000 * MS, "1000 sleepers took %.1f ms", all / 1e6);
    free(ss);
}

static void test_calls(void)
{
    int64_t t0 = loom_now();
    struct timespec ts = { 0, 20 * MS }, rem = { 9, 9 };
    CHECK_OK(nanosleep(&ts, &rem));
    CHECK_GE(loom_now() - t0, 20 * MS);
    t0 = loom_now();
    CHECK_OK(clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL));
    CHECK_GE(loom_now() - t0, 20 * MS);
    struct timespec now, until;
    for (int c = 0; c < 2; c++) {
        clockid_t clk = c ? CLOCK_REALTIME : CLOCK_MONOTONIC;
        clock_gettime(clk, &now);
        until = now;
        until.tv_nsec += 20 * MS;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        CHECK_OK(clock_nanosleep(clk, TIMER_ABSTIME, &until, NULL));
        clock_gettime(clk, &now);
        CHECK(now.tv_sec > until.tv_sec || (now.tv_sec == until.tv_sec && now.tv_nsec >= until.tv_nsec));
    }
    t0 = loom_now();
    CHECK_EQ(sleep(0), 0);
    CHECK_OK(usleep(0));
    ts = (struct timespec){ 0, 0 };
    CHECK_OK(nanosleep(&ts, NULL));
    CHECK_LT(loom_now() - t0, 1000 * MS);
    /* errors */
    ts = (struct timespec){ 0, 1000000000 };
    t_set_errno(0);
    CHECK_EQ(nanosleep(&ts, NULL), -1);
    CHECK_EQ(t_errno(), EINVAL);
    CHECK_EQ(clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL), EINVAL);
    ts = (struct timespec){ 0, 1000 };
    CHECK_EQ(clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &ts, NULL), EINVAL);
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("calls"))
        test_calls();
    if (t_want("many"))
        test_many_sleepers();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    t_hook_require("test_hook_sleep");
    t_hook_run(2, main_fn, NULL);
    printf("test_hook_sleep: ok\n");
    return 0;
}
