/*
 * test_globq.c — the global run queue serves goroutines that have run before fresh ones
 * (src/runq.c, "the global NORMAL queue"), and fresh ones still get their turns.  At one P,
 * with a slice long enough that main is not switched out, main spawns 5000 fresh goroutines
 * (most overflow the local queue into the global one), then closes a channel on which W
 * goroutines wait, readying them all at once (none of the fresh ones may run before: if
 * main was switched out meanwhile after all, or a spare P was lent, loom_stats counts it,
 * and the scene is run again):
 *  - W = 300: the woken run before all but a few fresh ones (one FIFO put those that
 *    overflowed into the global queue behind all 5000);
 *  - W = 3000, most of them overflowing into the global queue: while woken ones still wait
 *    there, fresh ones get every 4th take (some run before the last woken one, but far
 *    from all: with no turns none would, with one FIFO all would).
 */
#include "t.h"
#include <pthread.h>

enum { MAXWOKEN = 3000, NFRESH = 5000 };

static int started;        /* atomic: fresh goroutines that have started */
static int seen[MAXWOKEN]; /* started, as each woken goroutine saw it */
static loom_chan *gate;
static loom_waitgroup wg;

static void fresh(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
    loom_wg_done(&wg);
}

static void woken(void *arg)
{
    int i = (int)(intptr_t)arg;
    char c;
    CHECK_ERR(loom_recv(gate, &c), EPIPE); /* closed: the wakeup */
    seen[i] = __atomic_load_n(&started, __ATOMIC_RELAXED);
    loom_wg_done(&wg);
}

/* Runs the scene with nwoken waiting goroutines; returns the most fresh goroutines any
 * woken one saw started, and in *whole whether main kept the P from its first spawn to the
 * close (else the order says nothing). */
static int scene(int nwoken, bool *whole)
{
    __atomic_store_n(&started, 0, __ATOMIC_RELAXED);
    gate = loom_chan_new(1, 0);
    CHECK(gate != NULL);
    wg = (loom_waitgroup)LOOM_WAITGROUP_INIT;
    CHECK_OK(loom_wg_add(&wg, nwoken + NFRESH));
    for (int i = 0; i < nwoken; i++)
        CHECK(loom_go(woken, (void *)(intptr_t)i) != 0);
    struct loom_stats st;
    int64_t t0 = loom_now();
    do { /* they all run, and wait on the gate */
        loom_sleep(10000000);
        CHECK_OK(loom_stats(&st));
    } while (st.waiting < (uint64_t)nwoken && loom_now() - t0 < 10000000000LL);
    CHECK_EQ(st.waiting, (uint64_t)nwoken);
    /* main keeps the P (a 1 s slice) while it spawns and while it closes the gate */
    struct loom_stats st0, st1;
    CHECK_OK(loom_stats(&st0));
    for (int i = 0; i < NFRESH; i++)
        CHECK(loom_go(fresh, NULL) != 0);
    int before_close = __atomic_load_n(&started, __ATOMIC_RELAXED);
    CHECK_OK(loom_close(gate));
    CHECK_OK(loom_stats(&st1));
    /* main kept the P unless it was switched out at a slice's end, or sysmon lent a spare
     * P (a thread held up in the kernel, as by a page fault on a fresh stack, looks like a
     * blocking call): then fresh goroutines may have run, and the order says nothing.
     * (Chaos mode draws slices down to a tenth and sleeps in its windows: main may lose
     * the P there, so there only the goroutines' all running is checked.) */
    *whole = st1.preemptions == st0.preemptions && st1.spare_lends == st0.spare_lends;
    if (*whole)
        CHECK_MSG(before_close == 0, "%d fresh goroutines ran while main spawned, which kept the P",
                  before_close);
    loom_wg_wait(&wg);
    CHECK_EQ(__atomic_load_n(&started, __ATOMIC_RELAXED), NFRESH);
    int worst = 0;
    long sum = 0;
    for (int i = 0; i < nwoken; i++) {
        if (seen[i] > worst)
            worst = seen[i];
        sum += seen[i];
    }
    printf("%d woken behind %d fresh goroutines at 1 P: they ran after %ld fresh ones on average, %d at most%s\n",
           nwoken, NFRESH, sum / nwoken, worst, *whole ? "" : " (main lost the P meanwhile: again)");
    loom_chan_free(gate);
    return worst;
}

/* The scene until main kept the P throughout (a 30 s guard); under chaos, once. */
static int whole_scene(int nwoken)
{
    int64_t dl = t_clock_ns() + 30000000000LL;
    for (;;) {
        bool whole;
        int worst = scene(nwoken, &whole);
        if (whole || t_chaos())
            return worst;
        CHECK_MSG(t_clock_ns() < dl, "main lost the P while it spawned in every scene for 30 s");
    }
}

static int few_test(void *arg)
{
    (void)arg;
    int worst = whole_scene(300);
    /* what may run first: a fresh turn's batch at most (the order is the real runtime's:
     * not under chaos, see scene) */
    if (!t_chaos())
        CHECK_MSG(worst < NFRESH / 2, "a woken goroutine waited behind %d of %d fresh ones", worst, NFRESH);
    return 0;
}

static int many_test(void *arg)
{
    (void)arg;
    int worst = whole_scene(MAXWOKEN);
    if (t_chaos())
        return 0; /* (the order is the real runtime's: see scene) */
    CHECK_MSG(worst > 0, "no fresh goroutine ran while %d woken ones waited in the global queue", MAXWOKEN);
    CHECK_MSG(worst < NFRESH / 2, "the last woken goroutine waited behind %d of %d fresh ones", worst,
              NFRESH);
    return 0;
}

int main(void)
{
    setenv("LOOM_PROCS", "1", 1);
    setenv("LOOM_SLICE_US", "1000000", 1);
    T_RUN(few_test, NULL);
    T_RUN(many_test, NULL);
    printf("test_globq: ok\n");
    return 0;
}
