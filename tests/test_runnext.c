/*
 * test_runnext.c — the runnext slot and the thieves that take it (runq.c, "runnext").
 *
 * The owner of a P and thieves take its runnext with CAS, as Go.  Checked here:
 *  - an idle P steals a busy P's runnext: main spawns a goroutine (it lands in main's
 *    runnext) and then spins without any loom call and without preemption; the goroutine
 *    must run anyway, on another thread, while main still spins;
 *  - no goroutine is lost or run twice when owners and thieves race for runnext: pairs
 *    of goroutines hand a token back and forth over unbuffered channels (every handoff
 *    goes through runnext) with short random spins between, so the other P's thief
 *    often finds a runnext older than its 3 µs wait and takes it while the owner takes
 *    it too; every goroutine marks itself running with an atomic exchange (a second run
 *    of the same goroutine at once fails), and every token must arrive exactly once.
 */
#include "t.h"

#include <sys/syscall.h>
#include <unistd.h>

static long tid(void)
{
    return syscall(SYS_gettid);
}

/* ---- an idle P steals a busy P's runnext */

static int worker_ran;  /* atomic */
static long worker_tid; /* atomic */

static void worker(void *arg)
{
    (void)arg;
    __atomic_store_n(&worker_tid, tid(), __ATOMIC_SEQ_CST);
    __atomic_store_n(&worker_ran, 1, __ATOMIC_SEQ_CST);
}

static void test_steal_busy_runnext(void)
{
    worker_ran = 0;
    CHECK(loom_go(worker, NULL) != 0);
    long me = tid();
    int64_t t0 = t_clock_ns();
    /* no loom call in here: only a thief can run the worker */
    while (!__atomic_load_n(&worker_ran, __ATOMIC_SEQ_CST)) {
        CHECK_MSG(t_clock_ns() - t0 < 30000000000LL,
                  "the goroutine in a busy P's runnext was not stolen in 30 s");
    }
    int64_t took = t_clock_ns() - t0;
    CHECK_MSG(worker_tid != me, "the stolen goroutine ran on the spinner's thread %ld", me);
    struct loom_stats st;
    CHECK(loom_stats(&st) == 0);
    /* taken by a thief; or, on a loaded machine where sysmon took the spinner's thread for
     * one asleep in the kernel, moved to the global queue with a spare P lent */
    CHECK_MSG(st.steals >= 1 || st.spare_lends >= 1, "steals = %" PRIu64 ", spare lends = %" PRIu64,
              st.steals, st.spare_lends);
    printf("runnext stolen from a busy P after %.1f us\n", (double)took / 1e3);
}

/* ---- owners and thieves racing for runnext */

#define NPAIRS 2

struct player {
    loom_chan *in, *out;
    int running; /* atomic: 1 while this goroutine runs a step */
    long rounds;
    uint64_t seed;
    bool echo; /* B: receive, then send back; A: send, then receive */
    int pair;
    loom_waitgroup *wg;
};

static void spin_ns(int64_t ns)
{
    int64_t end = t_clock_ns() + ns;
    while (t_clock_ns() < end) {}
}

/* A step between two channel operations: nobody else may run this goroutine meanwhile,
 * and sometimes it takes long enough (up to 8 µs) for a thief to want the runnext */
static void step(struct player *p, t_rng *r)
{
    CHECK_MSG(__atomic_exchange_n(&p->running, 1, __ATOMIC_SEQ_CST) == 0, "pair %d (%s) runs twice at once",
              p->pair, p->echo ? "B" : "A");
    uint64_t x = t_rng_below(r, 256);
    if (x == 0)
        spin_ns(200000); /* long enough for sysmon to wake an idle P to steal */
    else if (x < 64)
        spin_ns((int64_t)t_rng_below(r, 8000));
    __atomic_store_n(&p->running, 0, __ATOMIC_SEQ_CST);
}

/* A sends 0, 1, 2, ...; B checks each arrives once and in order and sends it back */
static void player(void *arg)
{
    struct player *p = arg;
    t_rng r;
    t_rng_seed(&r, p->seed);
    for (long i = 0; i < p->rounds; i++) {
        long tok = i;
        if (p->echo) {
            CHECK(loom_recv(p->in, &tok) == 0);
            CHECK_MSG(tok == i, "pair %d: B got token %ld, want %ld", p->pair, tok, i);
            step(p, &r);
            CHECK(loom_send(p->out, &tok) == 0);
        } else {
            CHECK(loom_send(p->out, &tok) == 0);
            step(p, &r);
            CHECK(loom_recv(p->in, &tok) == 0);
            CHECK_MSG(tok == i, "pair %d: A got token %ld back, want %ld", p->pair, tok, i);
        }
        step(p, &r);
    }
    loom_wg_done(p->wg);
}

static void test_race(void)
{
    long rounds = t_scale(50000);
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    static struct player pl[NPAIRS][2];
    CHECK(loom_wg_add(&wg, 2 * NPAIRS) == 0);
    struct loom_stats st0, st;
    CHECK(loom_stats(&st0) == 0);
    for (int k = 0; k < NPAIRS; k++) {
        loom_chan *ab = loom_chan_new(sizeof(long), 0), *ba = loom_chan_new(sizeof(long), 0);
        CHECK(ab && ba);
        pl[k][0] = (struct player){ .in = ba,
                                    .out = ab,
                                    .rounds = rounds,
                                    .seed = 2 * k + 1,
                                    .pair = k,
                                    .wg = &wg };
        pl[k][1] = (struct player){ .in = ab,
                                    .out = ba,
                                    .rounds = rounds,
                                    .seed = 2 * k + 2,
                                    .pair = k,
                                    .echo = true,
                                    .wg = &wg };
        CHECK(loom_go(player, &pl[k][1]) != 0);
        CHECK(loom_go(player, &pl[k][0]) != 0);
    }
    loom_wg_wait(&wg);
    CHECK(loom_stats(&st) == 0);
    for (int k = 0; k < NPAIRS; k++) {
        loom_chan_free(pl[k][0].out);
        loom_chan_free(pl[k][1].out);
    }
    printf("%d pairs x %ld round trips: %" PRIu64 " steals\n", NPAIRS, rounds, st.steals - st0.steals);
}

static int main_fn(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++) {
        test_steal_busy_runnext();
        loom_sleep(1000000);
    }
    test_race();
    return 0;
}

int main(void)
{
    /* two Ps, and no preemption of the spinner: only a thief can run the goroutine */
    setenv("LOOM_PROCS", "2", 1);
    setenv("LOOM_ASYNCPREEMPT", "0", 1);
    setenv("LOOM_SLICE_US", "1000000", 1);
    CHECK(loom_run(main_fn, NULL) == 0);
    printf("test_runnext: ok\n");
    return 0;
}
