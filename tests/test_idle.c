/*
 * test_idle.c — an idle runtime burns no CPU.  Inside loom_run at every P, with one
 * goroutine asleep for 500 ms, 50 on 60 s timers and one parked forever on a channel
 * nobody sends to (all abandoned when main returns; the pending timers keep the
 * deadlock detector quiet) and main parked on a channel receive, the process's
 * user+sys CPU time over the 500 ms must stay under 50 ms: idle threads sleep in the
 * kernel, they don't spin or poll at a high rate.  On failure the CPU time of each
 * thread in the window is printed.
 */
#include "t.h"

#include <sys/resource.h>
#include <unistd.h>

#define MS 1000000LL

static loom_chan *g_forever; /* nobody ever sends */
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

/* Per-thread CPU ticks from /proc, printed when the check fails: which thread burned it. */
#define MAXT 64
typedef struct {
    int n;
    long tid[MAXT];
    long ticks[MAXT];
    char name[MAXT][20];
} tsnap;

static bool snap_one(long tid, char *buf, void *arg)
{
    tsnap *s = arg;
    if (s->n == MAXT)
        return false;
    char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
    if (!lp || !rp)
        return true;
    unsigned long ut = 0, st = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return true;
    int i = s->n++;
    s->tid[i] = tid;
    s->ticks[i] = (long)(ut + st);
    snprintf(s->name[i], sizeof s->name[i], "%.*s", (int)(rp - lp - 1), lp + 1);
    return true;
}

static void snap_threads(tsnap *s)
{
    s->n = 0;
    t_each_thread_stat(snap_one, s);
}

static void print_threads(const tsnap *a, const tsnap *b)
{
    long hz = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < b->n; i++) {
        long before = 0;
        for (int j = 0; j < a->n; j++)
            if (a->tid[j] == b->tid[i])
                before = a->ticks[j];
        fprintf(stderr, "  thread %ld (%s): %.0f ms CPU in the window\n", b->tid[i], b->name[i],
                (b->ticks[i] - before) * 1000.0 / (double)hz);
    }
}

static int main_fn(void *arg)
{
    (void)arg;
    g_forever = loom_chan_new(sizeof(int), 0);
    g_done = loom_chan_new(sizeof(int), 0);
    CHECK(g_forever && g_done);
    CHECK(loom_go(blocked_forever, NULL) != 0);
    /* more sleepers on long timers, abandoned when main returns */
    for (int i = 0; i < 50; i++)
        CHECK(loom_go(sleeper, (void *)(intptr_t)(60000 + i)) != 0);
    /* let start-up work and spinning threads settle */
    loom_sleep(100 * MS);

    tsnap s0, s1;
    snap_threads(&s0);
    int64_t c0 = cpu_ns(), w0 = t_clock_ns();
    CHECK(loom_go(sleeper, (void *)(intptr_t)500) != 0);
    int v = 0;
    CHECK_OK(loom_recv(g_done, &v));
    int64_t c1 = cpu_ns(), w1 = t_clock_ns();
    snap_threads(&s1);
    CHECK_EQ(v, 1);
    CHECK_GE(w1 - w0, 500 * MS);
    if (c1 - c0 >= 50 * MS)
        print_threads(&s0, &s1);
    if (!t_chaos())
        CHECK_MSG(c1 - c0 < 50 * MS, "the idle runtime used %.1f ms of CPU in %.1f ms (%d Ps)",
                  (c1 - c0) / 1e6, (w1 - w0) / 1e6, loom_procs());
    /* neither channel is freed: the goroutines in g_forever and on timers are abandoned
     * when we return, and the sender on g_done may not have returned from loom_send yet */
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
