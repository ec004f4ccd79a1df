/*
 * test_spare_lock.c — a goroutine whose thread waits on a lock held by a thread that runs
 * (pthread_mutex_lock, as malloc's arena lock is taken) is not taken for one blocked in a
 * call: no spare P is lent for a wait of a few milliseconds (src/spare.c, ASLEEP_THREAD_NS),
 * while a lock held across a blocking call and a condition variable wait still get one.
 *
 * At one P: a thread outside the runtime holds a mutex 3 ms at a time, using the CPU, and
 * lets go of it for 0.2 ms; a goroutine takes and drops the mutex for 300 ms.  Its thread
 * is found asleep in the futex wait for milliseconds at a time, which a spare P would
 * answer (taken for blocked calls, these waits got dozens).  Then two waits that block for
 * real: the thread holds the mutex while it sleeps 200 ms, and a goroutine waits on a
 * condition variable that only the main goroutine signals.  At one P the main goroutine runs
 * meanwhile only on a spare; without one the program hangs.
 */
#include "t.h"
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int stop;  /* atomic */
static int holds; /* atomic: holds done by the holder */

static int64_t thread_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *holder(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        CHECK_EQ(pthread_mutex_lock(&mu), 0);
        int64_t end = thread_now() + 3 * MS;
        while (thread_now() < end)
            ; /* running, as malloc's holder is */
        CHECK_EQ(pthread_mutex_unlock(&mu), 0);
        __atomic_add_fetch(&holds, 1, __ATOMIC_RELAXED);
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int takes; /* atomic */

static void taker(void *arg)
{
    (void)arg;
    int64_t end = loom_now() + 300 * MS;
    while (loom_now() < end) {
        CHECK_EQ(pthread_mutex_lock(&mu), 0);
        __atomic_add_fetch(&takes, 1, __ATOMIC_RELAXED);
        CHECK_EQ(pthread_mutex_unlock(&mu), 0);
    }
}

/* the lock held across a blocking call: the holder sleeps 200 ms with it */
static int held;     /* atomic: the holder has it */
static int released; /* atomic */

static void *sleepy_holder(void *arg)
{
    (void)arg;
    CHECK_EQ(pthread_mutex_lock(&mu), 0);
    __atomic_store_n(&held, 1, __ATOMIC_SEQ_CST);
    usleep(200000);
    __atomic_store_n(&released, 1, __ATOMIC_SEQ_CST);
    CHECK_EQ(pthread_mutex_unlock(&mu), 0);
    return NULL;
}

static int locked; /* atomic: the waiter got the lock */

static void waiter(void *arg)
{
    (void)arg;
    CHECK_EQ(pthread_mutex_lock(&mu), 0);
    __atomic_store_n(&locked, 1, __ATOMIC_SEQ_CST);
    CHECK_EQ(pthread_mutex_unlock(&mu), 0);
}

static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int signalled; /* under mu */

static void cond_waiter(void *arg)
{
    (void)arg;
    CHECK_EQ(pthread_mutex_lock(&mu), 0);
    while (!signalled)
        CHECK_EQ(pthread_cond_wait(&cv, &mu), 0);
    CHECK_EQ(pthread_mutex_unlock(&mu), 0);
    __atomic_store_n(&locked, 2, __ATOMIC_SEQ_CST);
}

/* Ps in service: 1, or more while a spare lent earlier has not been given back yet */
static uint64_t procs_now(void)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st.procs;
}

static int main_fn(void *arg)
{
    (void)arg;
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, holder, NULL), 0);
    CHECK(loom_go(taker, NULL) != 0);
    /* main waits by sleeping: the taker has the P to itself otherwise */
    int64_t end = loom_now() + 300 * MS;
    while (loom_now() < end + 20 * MS)
        loom_sleep(10 * MS);
    struct loom_stats st;
    CHECK_OK(loom_stats(&st)); /* (before the join below, itself a plain blocking call) */
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    CHECK_EQ(pthread_join(th, NULL), 0);
    printf("test_spare_lock: %d takes beside %d holds of 3 ms: %llu spare Ps lent\n",
           __atomic_load_n(&takes, __ATOMIC_RELAXED), __atomic_load_n(&holds, __ATOMIC_RELAXED),
           (unsigned long long)st.spare_lends);
    CHECK_GT(__atomic_load_n(&takes, __ATOMIC_RELAXED), 0);
    /* (none on a quiet machine; under load the holder may be kept from the CPU past
     * ASLEEP_THREAD_NS now and then, where a spare is right.  Chaos mode sleeps inside the
     * runtime, which may look blocked.) */
    if (!t_chaos())
        CHECK_MSG(st.spare_lends <= 3, "%llu spare Ps lent for a thread waiting on a lock held 3 ms",
                  (unsigned long long)st.spare_lends);

    /* a lock held across a blocking call: the waiter's P is lent a spare, on which main
     * runs while the holder still sleeps (once spares lent before are back: with one
     * still in service main would run on it) */
    T_WAIT_UNTIL(procs_now() == 1, 10, "a spare P was never given back");
    CHECK_OK(loom_stats(&st));
    CHECK_EQ(pthread_create(&th, NULL, sleepy_holder, NULL), 0);
    while (!__atomic_load_n(&held, __ATOMIC_SEQ_CST))
        loom_sleep(MS);
    uint64_t lent0 = st.spare_lends;
    CHECK(loom_go(waiter, NULL) != 0);
    loom_yield(); /* the waiter blocks on the lock, holding the only P */
    int ran_before_release = !__atomic_load_n(&released, __ATOMIC_SEQ_CST);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_OK(loom_stats(&st));
    printf("test_spare_lock: a lock held 200 ms across a sleep: main ran %s its release, %llu spare Ps lent\n",
           ran_before_release ? "before" : "after", (unsigned long long)(st.spare_lends - lent0));
    CHECK_MSG(ran_before_release, "main did not run while a goroutine waited 200 ms on a lock");
    CHECK_GT(st.spare_lends, lent0);
    while (__atomic_load_n(&locked, __ATOMIC_SEQ_CST) != 1)
        loom_sleep(MS);

    /* a condition variable: the waiter sleeps in the kernel until main signals, and main
     * runs only on a spare */
    T_WAIT_UNTIL(procs_now() == 1, 10, "a spare P was never given back");
    CHECK_OK(loom_stats(&st));
    lent0 = st.spare_lends;
    CHECK(loom_go(cond_waiter, NULL) != 0);
    loom_yield();
    loom_sleep(5 * MS);
    CHECK_EQ(pthread_mutex_lock(&mu), 0);
    signalled = 1;
    CHECK_EQ(pthread_cond_signal(&cv), 0);
    CHECK_EQ(pthread_mutex_unlock(&mu), 0);
    while (__atomic_load_n(&locked, __ATOMIC_SEQ_CST) != 2)
        loom_sleep(MS);
    CHECK_OK(loom_stats(&st));
    printf("test_spare_lock: a condition variable wait: %llu spare Ps lent\n",
           (unsigned long long)(st.spare_lends - lent0));
    CHECK_GT(st.spare_lends, lent0);
    return 0;
}

int main(void)
{
    setenv("LOOM_PROCS", "1", 1);
    T_RUN(main_fn, NULL);
    printf("test_spare_lock: ok\n");
    return 0;
}
