/*
 * test_mutex.c — loom_mutex: mutual exclusion across every P, trylock, misuse
 * (unlock of an unlocked mutex, also while a woken waiter has not run yet), static
 * initialisation, and Go's starvation mode (a waiter gets the lock even while another
 * goroutine re-grabs it in a loop; at one P after a bounded number of the other's takes:
 * the 1 ms threshold's worth of its 100 us holds, and a take or two around it).
 */
#include "t.h"

#define NWORKERS 8

/* Static initialisation: used as is, never passed through any init call. */
static loom_mutex g_mu = LOOM_MUTEX_INIT;
static long g_counter; /* plain, non-atomic: protected by g_mu only */
static int g_inside;   /* atomic: goroutines inside the critical section */

static struct {
    loom_mutex mu;
    int value;
} g_embedded = { LOOM_MUTEX_INIT, 0 };

static long g_iters;
static int g_workers_done; /* atomic */

static void worker(void *arg)
{
    long id = (long)(intptr_t)arg;
    for (long i = 0; i < g_iters; i++) {
        loom_mutex_lock(&g_mu);
        int in = __atomic_add_fetch(&g_inside, 1, __ATOMIC_SEQ_CST);
        CHECK_MSG(in == 1, "worker %ld: %d goroutines inside the critical section", id, in);
        long v = g_counter;
        /* now and then hold the lock across a reschedule, so waiters really park */
        if ((i + id) % 97 == 0)
            loom_yield();
        g_counter = v + 1;
        __atomic_sub_fetch(&g_inside, 1, __ATOMIC_SEQ_CST);
        CHECK_OK(loom_mutex_unlock(&g_mu));
        if (i % 251 == 0)
            loom_yield();
    }
    __atomic_add_fetch(&g_workers_done, 1, __ATOMIC_SEQ_CST);
}

static void test_exclusion(void)
{
    g_iters = t_scale(50000);
    g_counter = 0;
    __atomic_store_n(&g_workers_done, 0, __ATOMIC_SEQ_CST);
    for (long i = 0; i < NWORKERS; i++)
        CHECK(loom_go(worker, (void *)(intptr_t)i) != 0);
    int64_t deadline = t_clock_ns() + 120LL * 1000000000;
    while (__atomic_load_n(&g_workers_done, __ATOMIC_SEQ_CST) < NWORKERS) {
        CHECK_MSG(t_clock_ns() < deadline, "workers did not finish in 120 s (%d/%d done)",
                  __atomic_load_n(&g_workers_done, __ATOMIC_SEQ_CST), NWORKERS);
        loom_sleep(1000000);
    }
    loom_mutex_lock(&g_mu);
    CHECK_EQ(g_counter, (long long)NWORKERS * g_iters);
    CHECK_OK(loom_mutex_unlock(&g_mu));
}

/* ---- trylock */
static loom_mutex t_mu = LOOM_MUTEX_INIT;
static int t_result = 1; /* atomic */
static int t_done;       /* atomic */

static void try_other(void *arg)
{
    (void)arg;
    __atomic_store_n(&t_result, loom_mutex_trylock(&t_mu), __ATOMIC_SEQ_CST);
    __atomic_store_n(&t_done, 1, __ATOMIC_SEQ_CST);
}

static void wait_flag(int *flag, const char *what)
{
    int64_t deadline = t_clock_ns() + 10LL * 1000000000;
    while (!__atomic_load_n(flag, __ATOMIC_SEQ_CST)) {
        CHECK_MSG(t_clock_ns() < deadline, "timed out waiting for %s", what);
        loom_sleep(100000);
    }
}

static void test_trylock(void)
{
    CHECK_OK(loom_mutex_trylock(&t_mu));         /* free: acquired */
    CHECK_ERR(loom_mutex_trylock(&t_mu), EBUSY); /* held (even by this goroutine) */
    /* held: another goroutine, possibly on another P, gets -EBUSY too */
    __atomic_store_n(&t_done, 0, __ATOMIC_SEQ_CST);
    CHECK(loom_go(try_other, NULL) != 0);
    wait_flag(&t_done, "trylock goroutine");
    CHECK_ERR(__atomic_load_n(&t_result, __ATOMIC_SEQ_CST), EBUSY);
    CHECK_OK(loom_mutex_unlock(&t_mu));
    /* free again: the other goroutine acquires it */
    __atomic_store_n(&t_done, 0, __ATOMIC_SEQ_CST);
    CHECK(loom_go(try_other, NULL) != 0);
    wait_flag(&t_done, "trylock goroutine");
    CHECK_OK(__atomic_load_n(&t_result, __ATOMIC_SEQ_CST));
    /* ... and holds it: lock status is not tied to the goroutine (as sync.Mutex),
     * so this goroutine may unlock it */
    CHECK_ERR(loom_mutex_trylock(&t_mu), EBUSY);
    CHECK_OK(loom_mutex_unlock(&t_mu));
    CHECK_OK(loom_mutex_trylock(&t_mu));
    CHECK_OK(loom_mutex_unlock(&t_mu));
    /* trylock after a lock */
    loom_mutex_lock(&t_mu);
    CHECK_ERR(loom_mutex_trylock(&t_mu), EBUSY);
    CHECK_OK(loom_mutex_unlock(&t_mu));
}

/* ---- misuse: unlock of an unlocked mutex */
static int m_shared; /* protected by m_mu */
static loom_mutex m_mu = LOOM_MUTEX_INIT;
static int m_done; /* atomic */

static void misuse_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        loom_mutex_lock(&m_mu);
        int v = m_shared;
        if (i % 50 == 0)
            loom_yield();
        m_shared = v + 1;
        CHECK_OK(loom_mutex_unlock(&m_mu));
    }
    __atomic_add_fetch(&m_done, 1, __ATOMIC_SEQ_CST);
}

static void test_misuse(void)
{
    loom_mutex fresh = LOOM_MUTEX_INIT;
    CHECK_ERR(loom_mutex_unlock(&fresh), EPERM);
    CHECK_ERR(loom_mutex_unlock(&fresh), EPERM);
    /* still a working, unlocked mutex */
    CHECK_OK(loom_mutex_trylock(&fresh));
    CHECK_ERR(loom_mutex_trylock(&fresh), EBUSY);
    CHECK_OK(loom_mutex_unlock(&fresh));
    CHECK_ERR(loom_mutex_unlock(&fresh), EPERM); /* double unlock */
    loom_mutex_lock(&fresh);
    CHECK_OK(loom_mutex_unlock(&fresh));

    /* the static one, after misuse, still excludes under contention */
    CHECK_ERR(loom_mutex_unlock(&m_mu), EPERM);
    for (int i = 0; i < 4; i++)
        CHECK(loom_go(misuse_worker, NULL) != 0);
    for (int i = 0; i < 100; i++) {
        /* (no double-unlock check here: once unlocked, a worker on another P may hold
         * the mutex, and Go lets any goroutine unlock a locked mutex) */
        if (loom_mutex_trylock(&m_mu) == 0)
            CHECK_OK(loom_mutex_unlock(&m_mu));
        loom_yield();
    }
    int64_t deadline = t_clock_ns() + 30LL * 1000000000;
    while (__atomic_load_n(&m_done, __ATOMIC_SEQ_CST) < 4) {
        CHECK_MSG(t_clock_ns() < deadline, "misuse workers did not finish");
        loom_sleep(1000000);
    }
    loom_mutex_lock(&m_mu);
    CHECK_EQ(m_shared, 4000);
    CHECK_OK(loom_mutex_unlock(&m_mu));
    CHECK_ERR(loom_mutex_unlock(&m_mu), EPERM);

    /* mutex embedded in a statically initialised struct */
    loom_mutex_lock(&g_embedded.mu);
    g_embedded.value++;
    CHECK_OK(loom_mutex_unlock(&g_embedded.mu));
    CHECK_EQ(g_embedded.value, 1);
}

/* ---- starvation: one goroutine holds the lock almost all the time, re-grabbing
 * it right after each unlock; a second one wants it ten times.  Without Go's
 * starvation mode the woken waiter loses every race; with it, the lock is handed
 * to a waiter that waited more than 1 ms.  Each hold of the hog lasts 100 us at least
 * (a sleep), so by the time a waiter has waited 1 ms the hog took the lock 10 times at
 * most: at one P, where nothing else runs while the waiter waits, the hog's takes during
 * one wait are bounded by that (and a take or two around it), however slow the machine.
 * At several Ps the waiter's thread may be held up while the hog takes on: there the
 * count is printed and the guard is a hang guard (without starvation mode the waiter
 * practically never wins there). */
static loom_mutex s_mu = LOOM_MUTEX_INIT;
static int s_stop;         /* atomic */
static int s_hog_done;     /* atomic */
static int s_waiter_done;  /* atomic */
static long s_hog_takes;   /* atomic: the hog's lock acquisitions */
static long s_max_takes;   /* written by the waiter only: the most in one of its waits */
static int64_t s_max_wait; /* written by the waiter only */

enum { HOG_HOLD_NS = 100000, STARVATION_NS = 1000000 };

static void hog(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&s_stop, __ATOMIC_SEQ_CST)) {
        loom_mutex_lock(&s_mu);
        __atomic_add_fetch(&s_hog_takes, 1, __ATOMIC_SEQ_CST);
        loom_sleep(HOG_HOLD_NS); /* 100 us with the lock held */
        CHECK_OK(loom_mutex_unlock(&s_mu));
        /* straight back to lock(): no yield in between */
    }
    __atomic_store_n(&s_hog_done, 1, __ATOMIC_SEQ_CST);
}

static void waiter(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++) {
        loom_sleep(100000);
        long h0 = __atomic_load_n(&s_hog_takes, __ATOMIC_SEQ_CST);
        int64_t t0 = t_clock_ns();
        loom_mutex_lock(&s_mu);
        int64_t w = t_clock_ns() - t0;
        long takes = __atomic_load_n(&s_hog_takes, __ATOMIC_SEQ_CST) - h0;
        if (w > s_max_wait)
            s_max_wait = w;
        if (takes > s_max_takes)
            s_max_takes = takes;
        CHECK_OK(loom_mutex_unlock(&s_mu));
        if (loom_procs() == 1)
            CHECK_MSG(takes <= STARVATION_NS / HOG_HOLD_NS + 2,
                      "the hog took the mutex %ld times while the waiter "
                      "waited (round %d, %.3f ms): starved",
                      takes, i, w / 1e6);
    }
    __atomic_store_n(&s_waiter_done, 1, __ATOMIC_SEQ_CST);
}

static void test_starvation(void)
{
    __atomic_store_n(&s_stop, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s_hog_done, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s_waiter_done, 0, __ATOMIC_SEQ_CST);
    s_max_wait = 0;
    s_max_takes = 0;
    CHECK(loom_go(hog, NULL) != 0);
    loom_sleep(2000000); /* let the hog start its loop */
    CHECK(loom_go(waiter, NULL) != 0);
    T_WAIT_UNTIL(t_get(&s_waiter_done), 20,
                 "the waiter to take the mutex 10 times: starved by a goroutine re-locking "
                 "in a loop (no starvation mode?)");
    printf("starvation at %d Ps: the hog took the mutex at most %ld times during one wait, the longest %.3f ms\n",
           loom_procs(), s_max_takes, s_max_wait / 1e6);
    __atomic_store_n(&s_stop, 1, __ATOMIC_SEQ_CST);
    wait_flag(&s_hog_done, "hog to stop");
    CHECK_OK(loom_mutex_trylock(&s_mu));
    CHECK_OK(loom_mutex_unlock(&s_mu));
}

/* ---- misuse while waiters queue: on one P, an unlock wakes the first waiter, which
 * cannot run before this goroutine parks; until then the mutex is unlocked with waiters
 * queued (woken flag set), and another unlock must be refused without waking a second
 * waiter or letting two goroutines in. */
static loom_mutex q_mu = LOOM_MUTEX_INIT;
static int q_inside; /* atomic */
static int q_done;   /* atomic */
static long q_count; /* under q_mu */

static void q_waiter(void *arg)
{
    (void)arg;
    loom_mutex_lock(&q_mu);
    int in = __atomic_add_fetch(&q_inside, 1, __ATOMIC_SEQ_CST);
    CHECK_MSG(in == 1, "%d goroutines inside after a refused unlock", in);
    q_count++;
    loom_yield(); /* hold it across a switch */
    __atomic_sub_fetch(&q_inside, 1, __ATOMIC_SEQ_CST);
    CHECK_OK(loom_mutex_unlock(&q_mu));
    __atomic_add_fetch(&q_done, 1, __ATOMIC_SEQ_CST);
}

static void test_unlock_unlocked_with_waiters(void)
{
    enum { N = 3 };
    CHECK_EQ(loom_procs(), 1);
    for (int round = 0; round < 2; round++) {
        __atomic_store_n(&q_done, 0, __ATOMIC_SEQ_CST);
        q_count = 0;
        loom_mutex_lock(&q_mu);
        for (int i = 0; i < N; i++)
            CHECK(loom_go(q_waiter, NULL) != 0);
        /* round 0: the waiters park at once; round 1: they wait more than 1 ms, so the
         * first one woken sets starvation mode if it loses the mutex again */
        loom_sleep(round == 0 ? 100000 : 5000000);
        CHECK_EQ(q_count, 0);
        CHECK_OK(loom_mutex_unlock(&q_mu));         /* wakes the first waiter */
        CHECK_ERR(loom_mutex_unlock(&q_mu), EPERM); /* unlocked, waiters queued */
        CHECK_ERR(loom_mutex_unlock(&q_mu), EPERM);
        if (round == 1) {
            /* take it back before the woken waiter runs: it finds the mutex locked
             * and switches to starvation mode, so the next unlock hands it over (and
             * yields to it: no unlock here could be checked as misuse after that) */
            loom_mutex_lock(&q_mu);
            loom_sleep(2000000);
            CHECK_OK(loom_mutex_unlock(&q_mu));
        }
        int64_t deadline = t_clock_ns() + 10LL * 1000000000;
        while (__atomic_load_n(&q_done, __ATOMIC_SEQ_CST) < N) {
            CHECK_MSG(t_clock_ns() < deadline,
                      "round %d: %d of %d waiters got the mutex after "
                      "refused unlocks",
                      round, __atomic_load_n(&q_done, __ATOMIC_SEQ_CST), N);
            loom_sleep(100000);
        }
        CHECK_EQ(q_count, N);
        CHECK_OK(loom_mutex_trylock(&q_mu));
        CHECK_OK(loom_mutex_unlock(&q_mu));
        CHECK_ERR(loom_mutex_unlock(&q_mu), EPERM);
    }
}

static int main_all(void *arg)
{
    (void)arg;
    test_trylock();
    test_misuse();
    test_exclusion();
    test_starvation();
    return 0;
}

static int main_starvation_only(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_procs(), 1);
    test_unlock_unlocked_with_waiters();
    test_starvation();
    /* exclusion on one P: the lock is held across yields */
    test_exclusion();
    return 0;
}

int main(void)
{
    /* every P the process may use (or whatever LOOM_PROCS says) */
    T_RUN(main_all, NULL);

    /* again on a single P: the waiter and the hog share the thread */
    char *old = getenv("LOOM_PROCS");
    char *saved = old ? strdup(old) : NULL;
    setenv("LOOM_PROCS", "1", 1);
    T_RUN(main_starvation_only, NULL);
    if (saved) {
        setenv("LOOM_PROCS", saved, 1);
        free(saved);
    } else {
        unsetenv("LOOM_PROCS");
    }
    return 0;
}
