/*
 * test_idle.c — an idle runtime burns no CPU.  Inside loom_run at every P, with
 * goroutines asleep on timers (500 ms), one parked forever on a channel nobody
 * sends to (abandoned when main returns; the pending timers keep the deadlock
 * detector quiet) and main parked on a channel receive, the process's user+sys
 * CPU time over the 500 ms must stay under 50 ms: idle threads sleep in the
 * kernel, they don't spin or poll at a high rate.
 */
#include "t.h"

#include <sys/resource.h>

#define MS 1000000LL

static loom_chan *g_forever;     /* nobody ever sends */
static loom_chan *g_done;

static void blocked_forever(void *arg)
{
    (void)arg;
    int v;
    loom_recv(g_forever, &v);
    FAIL("received from a channel nobody sends to");
}

static void sleeper(void *arg)
{
    int64_t d = (int64_t)(intptr_t)arg * MS;
    loom_sleep(d);
    int one = 1;
    if (d == 500 * MS)
        CHECK_OK(loom_send(g_done, &one));
}

static int64_t cpu_ns(void)
{
    struct rusage ru;
    CHECK_OK(getrusage(RUSAGE_SELF, &ru));
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

static int main_fn(void *arg)
{
    (void)arg;
    g_forever = loom_chan_new(sizeof(int), 0);
    g_done = loom_chan_new(sizeof(int), 0);
    CHECK(g_forever && g_done);
    CHECK(loom_go(blocked_forever, NULL) != 0);
    /* let start-up work and spinning threads settle */
    loom_sleep(100 * MS);

    int64_t c0 = cpu_ns(), w0 = t_clock_ns();
    CHECK(loom_go(sleeper, (void *)(intptr_t)500) != 0);
    for (int i = 0; i < 50; i++)
        CHECK(loom_go(sleeper, (void *)(intptr_t)(450 + i)) != 0);
    int v = 0;
    CHECK_OK(loom_recv(g_done, &v));
    int64_t c1 = cpu_ns(), w1 = t_clock_ns();
    CHECK_EQ(v, 1);
    CHECK_GE(w1 - w0, 500 * MS);
    CHECK_MSG(c1 - c0 < 50 * MS, "the idle runtime used %.1f ms of CPU in %.1f ms (%d Ps)",
              (c1 - c0) / 1e6, (w1 - w0) / 1e6, loom_procs());
    /* neither channel is freed: the goroutine in g_forever is abandoned when we
     * return, and the sender on g_done may not have returned from loom_send yet */
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
