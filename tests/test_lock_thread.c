/*
 * test_lock_thread.c — loom_lock_thread pins a goroutine to its OS thread:
 *  - while locked, gettid() and pthread_self() stay the same across loom_yield,
 *    loom_sleep, blocking channel receives and contended mutexes, with other
 *    goroutines busy on every P;
 *  - while it is locked, no other goroutine ever runs on that thread (every goroutine
 *    compares its own gettid() with the published tids of the locked goroutines);
 *  - after loom_unlock_thread the goroutine runs on (it may move; not asserted).
 * Two goroutines are locked at once, so they must also be on two distinct threads.
 */
#include "t.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

static long (*volatile get_tid)(void);
static long get_tid_impl(void)
{
    return syscall(SYS_gettid);
}
/* glibc declares pthread_self() const: call it through a volatile pointer so each
 * call really asks the thread we run on now */
static pthread_t (*volatile get_self)(void) = pthread_self;

#define NLOCKED 2
static long locked_tid[NLOCKED]; /* atomic: tid while goroutine k is locked, else 0 */
static loom_chan *feed[NLOCKED]; /* partner k -> locked k */
static loom_mutex g_mu = LOOM_MUTEX_INIT;
static long g_rounds;
static int g_stop;                                     /* atomic */
static int g_busy_done, g_locked_done, g_partner_done; /* atomic */
static long g_checks;                                  /* atomic */

/* self: index of a locked goroutine (to skip its own entry), or -1 */
static void check_not_on_locked(int self, const char *who)
{
    long t = get_tid();
    for (int k = 0; k < NLOCKED; k++) {
        if (k == self)
            continue;
        long lt = __atomic_load_n(&locked_tid[k], __ATOMIC_SEQ_CST);
        CHECK_MSG(lt == 0 || lt != t,
                  "%s (goroutine %" PRIu64 ") runs on thread %ld,"
                  " which locked goroutine %d owns",
                  who, loom_id(), t, k);
    }
    __atomic_add_fetch(&g_checks, 1, __ATOMIC_RELAXED);
}

static void busy(void *arg)
{
    t_rng r;
    t_rng_seed(&r, (uint64_t)(uintptr_t)arg);
    while (!__atomic_load_n(&g_stop, __ATOMIC_SEQ_CST)) {
        check_not_on_locked(-1, "busy goroutine");
        for (volatile int i = 0; i < 2000; i++)
            ;
        check_not_on_locked(-1, "busy goroutine");
        switch (t_rng_below(&r, 8)) {
        case 0: loom_sleep((int64_t)t_rng_below(&r, 100000)); break;
        case 1:
            loom_mutex_lock(&g_mu);
            check_not_on_locked(-1, "busy goroutine holding the mutex");
            loom_yield();
            CHECK_OK(loom_mutex_unlock(&g_mu));
            break;
        default: loom_yield();
        }
    }
    __atomic_add_fetch(&g_busy_done, 1, __ATOMIC_SEQ_CST);
}

static void partner(void *arg)
{
    long k = (long)(intptr_t)arg;
    t_rng r;
    t_rng_seed(&r, (uint64_t)k + 100);
    for (long i = 0; i < g_rounds; i++) {
        if (t_rng_below(&r, 3) == 0)
            loom_sleep((int64_t)t_rng_below(&r, 50000)); /* so the receiver really parks */
        check_not_on_locked(-1, "partner");
        CHECK_OK(loom_send(feed[k], &i));
    }
    __atomic_add_fetch(&g_partner_done, 1, __ATOMIC_SEQ_CST);
}

#define CHECK_PINNED(what) \
    do { \
        long t__ = get_tid(); \
        CHECK_MSG(t__ == tid, \
                  "locked goroutine %ld moved from thread %ld to %ld after %s" \
                  " (round %ld)", \
                  k, tid, t__, (what), i); \
        CHECK_MSG(pthread_equal(get_self(), self), \
                  "locked goroutine %ld: pthread_self()" \
                  " changed after %s", \
                  k, (what)); \
        check_not_on_locked((int)k, "locked goroutine"); \
    } while (0)

static void locked(void *arg)
{
    long k = (long)(intptr_t)arg;
    t_rng r;
    t_rng_seed(&r, (uint64_t)k + 7);
    loom_yield();
    loom_lock_thread();
    long tid = get_tid();
    pthread_t self = get_self();
    long i = -1;
    __atomic_store_n(&locked_tid[k], tid, __ATOMIC_SEQ_CST);
    CHECK_PINNED("loom_lock_thread");
    for (i = 0; i < g_rounds; i++) {
        long v = -1;
        CHECK_OK(loom_recv(feed[k], &v));
        CHECK_EQ(v, i);
        CHECK_PINNED("loom_recv");
        switch (t_rng_below(&r, 4)) {
        case 0:
            loom_yield();
            CHECK_PINNED("loom_yield");
            break;
        case 1:
            loom_sleep((int64_t)t_rng_below(&r, 200000) + 1);
            CHECK_PINNED("loom_sleep");
            break;
        case 2:
            loom_mutex_lock(&g_mu);
            CHECK_PINNED("loom_mutex_lock");
            loom_yield();
            CHECK_PINNED("loom_yield holding the mutex");
            CHECK_OK(loom_mutex_unlock(&g_mu));
            break;
        default: loom_sleep(0); CHECK_PINNED("loom_sleep(0)");
        }
    }
    /* the window ends before the unlock */
    __atomic_store_n(&locked_tid[k], 0, __ATOMIC_SEQ_CST);
    loom_unlock_thread();
    /* unlocked: keeps running normally, wherever the scheduler puts it */
    for (int j = 0; j < 100; j++) {
        if (j % 10 == 0)
            loom_sleep(10000);
        else
            loom_yield();
        check_not_on_locked((int)k, "unlocked goroutine");
    }
    /* locking again works too */
    loom_lock_thread();
    long tid2 = get_tid();
    for (int j = 0; j < 20; j++) {
        loom_yield();
        loom_sleep(1000);
        CHECK_EQ(get_tid(), tid2);
    }
    loom_unlock_thread();
    __atomic_add_fetch(&g_locked_done, 1, __ATOMIC_SEQ_CST);
}

static int main_fn(void *arg)
{
    (void)arg;
    g_rounds = t_scale(2000);
    int nbusy = loom_procs() * 2 + 2;
    for (int k = 0; k < NLOCKED; k++) {
        feed[k] = loom_chan_new(sizeof(long), 0);
        CHECK(feed[k] != NULL);
    }
    for (int i = 0; i < nbusy; i++)
        CHECK(loom_go(busy, (void *)(intptr_t)(i + 1)) != 0);
    for (long k = 0; k < NLOCKED; k++) {
        CHECK(loom_go(locked, (void *)(intptr_t)k) != 0);
        CHECK(loom_go(partner, (void *)(intptr_t)k) != 0);
    }
    /* both locked at the same time at some point: distinct threads */
    int64_t dl = t_clock_ns() + 20LL * 1000000000;
    for (;;) {
        long a = __atomic_load_n(&locked_tid[0], __ATOMIC_SEQ_CST);
        long b = __atomic_load_n(&locked_tid[1], __ATOMIC_SEQ_CST);
        if (a && b) {
            CHECK_MSG(a != b, "two locked goroutines share thread %ld", a);
            break;
        }
        if (__atomic_load_n(&g_locked_done, __ATOMIC_SEQ_CST) > 0)
            break;
        CHECK_MSG(t_clock_ns() < dl, "locked goroutines did not start");
        loom_sleep(100000);
    }
    T_WAIT_UNTIL((check_not_on_locked(-1, "main"), t_get(&g_locked_done) >= NLOCKED), 120,
                 "locked goroutines (%d of %d)", t_get(&g_locked_done), NLOCKED);
    T_WAIT_UNTIL((check_not_on_locked(-1, "main"), t_get(&g_partner_done) >= NLOCKED), 20,
                 "partners (%d of %d)", t_get(&g_partner_done), NLOCKED);
    __atomic_store_n(&g_stop, 1, __ATOMIC_SEQ_CST);
    T_WAIT_UNTIL((check_not_on_locked(-1, "main"), t_get(&g_busy_done) >= nbusy), 20,
                 "busy goroutines (%d of %d)", t_get(&g_busy_done), nbusy);
    CHECK(__atomic_load_n(&g_checks, __ATOMIC_SEQ_CST) > 0);

    /* goroutine 1 itself can lock its thread too */
    loom_lock_thread();
    long t = get_tid();
    for (int j = 0; j < 20; j++) {
        loom_sleep(1000);
        CHECK_EQ(get_tid(), t);
    }
    loom_unlock_thread();
    for (int k = 0; k < NLOCKED; k++)
        loom_chan_free(feed[k]);
    return 0;
}

int main(void)
{
    get_tid = get_tid_impl;
    T_RUN(main_fn, NULL);
    return 0;
}
