/*
 * test_waitgroup.c — loom_waitgroup: add/done/wait with many goroutines across Ps,
 * several waiters, reuse for several rounds, wait at zero, and misuse: a negative
 * counter is refused with -EINVAL and leaves the counter as it was, and an add racing
 * with the counter reaching zero under a waiter is neither lost nor loses the waiter;
 * threads that run no goroutine may wait and may release goroutines.
 * `test_waitgroup NAME...` runs only the named cases (see main_fn and main).
 */
#include "t.h"
#include <limits.h>
#include <pthread.h>

static loom_waitgroup g_wg = LOOM_WAITGROUP_INIT; /* static initialisation */
static int g_finished;                            /* atomic */

typedef struct {
    int round;
    uint64_t seed;
} job;

static void work(void *arg)
{
    job *j = arg;
    t_rng r;
    t_rng_seed(&r, j->seed);
    if (t_rng_below(&r, 4) == 0)
        loom_sleep((int64_t)t_rng_below(&r, 2000000)); /* up to 2 ms */
    else if (t_rng_below(&r, 2) == 0)
        loom_yield();
    __atomic_add_fetch(&g_finished, 1, __ATOMIC_SEQ_CST);
    loom_wg_done(&g_wg);
}

/* spawner: adds for its children before spawning each, then is done itself */
static job *g_jobs;
static long g_per_spawner;

static void spawner(void *arg)
{
    long s = (long)(intptr_t)arg;
    for (long i = 0; i < g_per_spawner; i++) {
        CHECK_OK(loom_wg_add(&g_wg, 1));
        CHECK(loom_go(work, &g_jobs[s * g_per_spawner + i]) != 0);
    }
    loom_wg_done(&g_wg);
}

static int g_waiters_released; /* atomic */
static void extra_waiter(void *arg)
{
    long want = (long)(intptr_t)arg;
    loom_wg_wait(&g_wg);
    long got = __atomic_load_n(&g_finished, __ATOMIC_SEQ_CST);
    CHECK_MSG(got >= want, "an extra waiter returned with %ld of %ld finished", got, want);
    __atomic_add_fetch(&g_waiters_released, 1, __ATOMIC_SEQ_CST);
}

static void test_rounds(void)
{
    enum { NSPAWNERS = 4, ROUNDS = 10, NWAITERS = 3 };
    g_per_spawner = t_scale(1000);
    long per_round = NSPAWNERS * g_per_spawner;
    g_jobs = calloc((size_t)per_round, sizeof *g_jobs);
    CHECK(g_jobs != NULL);
    long expect = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (long i = 0; i < per_round; i++) {
            g_jobs[i].round = round;
            g_jobs[i].seed = (uint64_t)round * 1000003u + (uint64_t)i;
        }
        expect += per_round;
        /* the spawners' own counts first, so the counter can't touch 0 early */
        CHECK_OK(loom_wg_add(&g_wg, NSPAWNERS));
        __atomic_store_n(&g_waiters_released, 0, __ATOMIC_SEQ_CST);
        for (int w = 0; w < NWAITERS; w++)
            CHECK(loom_go(extra_waiter, (void *)(intptr_t)expect) != 0);
        for (long s = 0; s < NSPAWNERS; s++)
            CHECK(loom_go(spawner, (void *)(intptr_t)s) != 0);
        loom_wg_wait(&g_wg);
        CHECK_EQ(__atomic_load_n(&g_finished, __ATOMIC_SEQ_CST), expect);
        /* the other waiters are released as well */
        int64_t dl = t_clock_ns() + 20LL * 1000000000;
        while (__atomic_load_n(&g_waiters_released, __ATOMIC_SEQ_CST) < NWAITERS) {
            CHECK_MSG(t_clock_ns() < dl, "round %d: only %d of %d other waiters released", round,
                      __atomic_load_n(&g_waiters_released, __ATOMIC_SEQ_CST), NWAITERS);
            loom_sleep(500000);
        }
    }
    free(g_jobs);
}

/* ---- misuse and zero */
static int z_flag; /* atomic */
static loom_waitgroup *z_wg;

static void flag_waiter(void *arg)
{
    (void)arg;
    loom_wg_wait(z_wg);
    __atomic_store_n(&z_flag, 1, __ATOMIC_SEQ_CST);
}

static void expect_blocked(const char *when)
{
    loom_sleep(30000000);
    CHECK_MSG(__atomic_load_n(&z_flag, __ATOMIC_SEQ_CST) == 0, "wg_wait returned %s", when);
}

static void expect_released(const char *when)
{
    int64_t dl = t_clock_ns() + 10LL * 1000000000;
    while (!__atomic_load_n(&z_flag, __ATOMIC_SEQ_CST)) {
        CHECK_MSG(t_clock_ns() < dl, "wg_wait not released %s", when);
        loom_sleep(200000);
    }
}

static void test_misuse(void)
{
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    z_wg = &wg;

    /* counter 0: wait returns at once (no other goroutine could wake us) */
    loom_wg_wait(&wg);
    loom_wg_wait(&wg);

    CHECK_ERR(loom_wg_add(&wg, -1), EINVAL);
    CHECK_ERR(loom_wg_add(&wg, -100), EINVAL);
    loom_wg_wait(&wg); /* still 0 */

    CHECK_OK(loom_wg_add(&wg, 2));
    CHECK_ERR(loom_wg_add(&wg, -3), EINVAL); /* 2 - 3 < 0: refused, counter stays 2 */
    CHECK_ERR(loom_wg_add(&wg, LONG_MIN), EINVAL);
    CHECK_ERR(loom_wg_add(&wg, LONG_MAX), EINVAL);
    CHECK_ERR(loom_wg_add(&wg, INT32_MAX), EINVAL); /* 2 + INT32_MAX is past the counter's range */
    __atomic_store_n(&z_flag, 0, __ATOMIC_SEQ_CST);
    CHECK(loom_go(flag_waiter, NULL) != 0);
    expect_blocked("with the counter at 2");
    loom_wg_done(&wg);
    expect_blocked("with the counter at 1 (wg_add(-3) must not have changed it)");
    CHECK_ERR(loom_wg_add(&wg, -2), EINVAL); /* refused with a waiter parked */
    expect_blocked("after a refused wg_add(-2) with the counter at 1");
    loom_wg_done(&wg);
    expect_released("when the counter reached 0");

    /* a negative delta that reaches exactly zero releases waiters */
    CHECK_OK(loom_wg_add(&wg, 5));
    __atomic_store_n(&z_flag, 0, __ATOMIC_SEQ_CST);
    CHECK(loom_go(flag_waiter, NULL) != 0);
    expect_blocked("with the counter at 5");
    CHECK_OK(loom_wg_add(&wg, -4));
    expect_blocked("with the counter at 1");
    CHECK_OK(loom_wg_add(&wg, -1));
    expect_released("by wg_add(-1) reaching 0");

    /* add(0) is harmless */
    CHECK_OK(loom_wg_add(&wg, 0));
    loom_wg_wait(&wg);

    /* still usable for another round */
    CHECK_OK(loom_wg_add(&wg, 1));
    __atomic_store_n(&z_flag, 0, __ATOMIC_SEQ_CST);
    CHECK(loom_go(flag_waiter, NULL) != 0);
    expect_blocked("in the last round");
    loom_wg_done(&wg);
    expect_released("in the last round");
    loom_wg_wait(&wg);
}

/* ---- a positive add racing with the counter reaching zero under a waiter (Go panics:
 * "Add called concurrently with Wait"): at LOOM_PROCS=2, bumpers add 1 and take it back
 * while waiters wait.  No add may be lost (each bumper's -1 must succeed) and no waiter
 * may be left parked. */
static loom_waitgroup r_wg = LOOM_WAITGROUP_INIT;
static int r_stop;   /* atomic */
static int r_done;   /* atomic */
static long r_waits; /* atomic: wg_wait calls that returned */
static int r_flag;

static void r_bumper(void *arg)
{
    long id = (long)(intptr_t)arg;
    for (long i = 0; !__atomic_load_n(&r_stop, __ATOMIC_SEQ_CST); i++) {
        int a = loom_wg_add(&r_wg, 1);
        CHECK_MSG(a == 0, "bumper %ld: wg_add(1) returned %s", id, t_errname(a));
        if ((i + id) % 64 == 0)
            loom_yield(); /* let a waiter register on this P */
        int b = loom_wg_add(&r_wg, -1);
        CHECK_MSG(b == 0,
                  "bumper %ld: wg_add(-1) after its own wg_add(1) returned %s: an add "
                  "racing with the counter reaching zero was lost",
                  id, t_errname(b));
    }
    __atomic_add_fetch(&r_done, 1, __ATOMIC_SEQ_CST);
}

static void r_waiter(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&r_stop, __ATOMIC_SEQ_CST)) {
        loom_wg_wait(&r_wg);
        __atomic_add_fetch(&r_waits, 1, __ATOMIC_SEQ_CST);
        loom_yield();
    }
    __atomic_add_fetch(&r_done, 1, __ATOMIC_SEQ_CST);
}

static int race_main(void *arg)
{
    (void)arg;
    enum { NB = 2, NW = 2 };
    CHECK_EQ(loom_procs(), 2);
    for (long i = 0; i < NB; i++)
        CHECK(loom_go(r_bumper, (void *)(intptr_t)i) != 0);
    for (long i = 0; i < NW; i++)
        CHECK(loom_go(r_waiter, NULL) != 0);
    loom_sleep(2000000000LL); /* 2 s: the racing add must land within a few instructions */
    /* the waiters got through (the counter did reach zero under them), before they stop */
    T_WAIT_UNTIL(__atomic_load_n(&r_waits, __ATOMIC_SEQ_CST) > 0, 30, "no waiter ever returned from wg_wait");
    __atomic_store_n(&r_stop, 1, __ATOMIC_SEQ_CST);
    int64_t dl = t_clock_ns() + 20LL * 1000000000;
    while (__atomic_load_n(&r_done, __ATOMIC_SEQ_CST) < NB + NW) {
        CHECK_MSG(t_clock_ns() < dl,
                  "only %d of %d bumpers and waiters finished: a waiter "
                  "was left parked",
                  __atomic_load_n(&r_done, __ATOMIC_SEQ_CST), NB + NW);
        loom_sleep(1000000);
    }
    CHECK_GT(__atomic_load_n(&r_waits, __ATOMIC_SEQ_CST), 0);
    CHECK_ERR(loom_wg_add(&r_wg, -1), EINVAL); /* the counter is back to 0 */
    loom_wg_wait(&r_wg);
    return 0;
}

/* ---- a thread that runs no goroutine waits (it cannot park: it spins until released),
 * and one that runs none is the last to call done, releasing a goroutine */
static loom_waitgroup f_wg = LOOM_WAITGROUP_INIT;
static int f_returned; /* atomic */

static void *f_waiter_thread(void *arg)
{
    (void)arg;
    loom_wg_wait(&f_wg);
    __atomic_store_n(&f_returned, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void *f_done_thread(void *arg)
{
    (void)arg;
    loom_wg_done(&f_wg);
    return NULL;
}

static void f_goroutine_waiter(void *arg)
{
    (void)arg;
    loom_wg_wait(&f_wg);
    __atomic_store_n(&f_returned, 1, __ATOMIC_SEQ_CST);
}

static void test_foreign_threads(void)
{
    pthread_t t;
    CHECK_OK(loom_wg_add(&f_wg, 2));
    CHECK_OK(pthread_create(&t, NULL, f_waiter_thread, NULL));
    loom_sleep(30000000);
    CHECK_MSG(!__atomic_load_n(&f_returned, __ATOMIC_SEQ_CST), "a thread's wg_wait returned at 2");
    loom_wg_done(&f_wg);
    loom_sleep(30000000);
    CHECK_MSG(!__atomic_load_n(&f_returned, __ATOMIC_SEQ_CST), "a thread's wg_wait returned at 1");
    loom_wg_done(&f_wg);
    int64_t dl = t_clock_ns() + 10LL * 1000000000;
    while (!__atomic_load_n(&f_returned, __ATOMIC_SEQ_CST)) {
        CHECK_MSG(t_clock_ns() < dl, "a thread's wg_wait not released at 0");
        loom_sleep(200000);
    }
    CHECK_OK(pthread_join(t, NULL));

    __atomic_store_n(&f_returned, 0, __ATOMIC_SEQ_CST);
    CHECK_OK(loom_wg_add(&f_wg, 1));
    CHECK(loom_go(f_goroutine_waiter, NULL) != 0);
    loom_sleep(30000000);
    CHECK(!__atomic_load_n(&f_returned, __ATOMIC_SEQ_CST));
    CHECK_OK(pthread_create(&t, NULL, f_done_thread, NULL));
    dl = t_clock_ns() + 10LL * 1000000000;
    while (!__atomic_load_n(&f_returned, __ATOMIC_SEQ_CST)) {
        CHECK_MSG(t_clock_ns() < dl, "a goroutine's wg_wait not released by a thread's done");
        loom_sleep(200000);
    }
    CHECK_OK(pthread_join(t, NULL));
    CHECK_ERR(loom_wg_add(&f_wg, -1), EINVAL);
}

static int main_fn(void *arg)
{
    (void)arg;
    loom_wg_wait(&g_wg); /* static, counter 0 */
    if (t_want("misuse"))
        test_misuse();
    if (t_want("foreign_threads"))
        test_foreign_threads();
    if (t_want("rounds"))
        test_rounds();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    T_RUN(main_fn, NULL);
    if (t_want("add_at_zero_race"))
        T_RUN_AT(2, race_main, &r_flag);
    return 0;
}
