/*
 * test_preempt_cpu.c — on a loaded machine the preemption signal waits until a goroutine
 * has had its time on a CPU (src/sysmon.c): a goroutine that computes for less than half
 * a slice of CPU time between two loom calls is never switched out by the signal, however
 * long the kernel keeps its thread waiting for a CPU.  (Switched out by the signal, a
 * goroutine keeps its thread waiting for it: src/preempt_policy.c.)
 *
 * The whole process runs on one CPU beside three plain threads that spin, so loom's thread
 * gets about a quarter of it.  Two goroutines at one P each compute 0.6 ms of their
 * thread's CPU time, then yield, 150 times: each round takes several wall-clock slices (2 ms), none
 * takes half a slice of CPU.  Nor is one that reaches a preemption point (as at a loom
 * call) every 0.05 ms of CPU beside a goroutine whose 1 ms sleeps are often overdue: it
 * yields at its next point, as the overdue timer asks.  A last run checks that goroutines
 * that compute for 5 ms of CPU between yields are switched out by the signal all the same.
 */
#define _GNU_SOURCE
#include "t.h"
#include <pthread.h>
#include <sched.h>

#define MS 1000000LL

static int stop; /* atomic */

static void *hog(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {}
    return NULL;
}

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t compute_ns; /* CPU time per round */

/* Computes until its thread has used compute_ns of CPU (a plain loop: only the signal
 * could switch it out), then yields; `rounds` times. */
static int rounds;
static loom_waitgroup wg;
static int stop_sleeper; /* atomic */

static void worker(void *arg)
{
    (void)arg;
    volatile uint64_t sink = 0;
    for (int i = 0; i < rounds; i++) {
        int64_t t0 = thread_cpu_ns();             /* (the thread may change at the yield) */
        while (thread_cpu_ns() - t0 < compute_ns) /* (mostly in the loop below: the signal
                                                      switches out only the program's code) */
            for (int k = 0; k < 20000; k++)
                sink++;
        loom_yield();
    }
    loom_wg_done(&wg);
}

/* A worker that makes a cooperative preemption point (as a loom call is) after each 0.05 ms
 * of CPU, for `rounds` x compute_ns in all, beside a goroutine that sleeps 1 ms over and
 * over: its timer is often overdue while the worker's thread waits for a CPU. */
static void caller(void *arg)
{
    (void)arg;
    volatile uint64_t sink = 0;
    for (int64_t done = 0; done < rounds * compute_ns; done += 50000) {
        int64_t t0 = thread_cpu_ns();
        while (thread_cpu_ns() - t0 < 50000)
            for (int k = 0; k < 20000; k++)
                sink++;
        loom_preempt_disable();
        loom_preempt_enable(); /* the outermost enable: a preemption point */
    }
    __atomic_store_n(&stop_sleeper, 1, __ATOMIC_RELAXED);
    loom_wg_done(&wg);
}

static void sleeper(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop_sleeper, __ATOMIC_RELAXED))
        loom_sleep(MS);
    loom_wg_done(&wg);
}

static int run_caller(void *arg)
{
    (void)arg;
    wg = (loom_waitgroup)LOOM_WAITGROUP_INIT;
    CHECK_OK(loom_wg_add(&wg, 2));
    CHECK(loom_go(caller, NULL) != 0);
    CHECK(loom_go(sleeper, NULL) != 0);
    loom_wg_wait(&wg);
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return (int)st.async_preemptions;
}

/* Two workers (the signal switches one out only for another to run); the switches by the
 * signal. */
static int run_workers(void *arg)
{
    (void)arg;
    wg = (loom_waitgroup)LOOM_WAITGROUP_INIT;
    CHECK_OK(loom_wg_add(&wg, 2));
    for (int i = 0; i < 2; i++)
        CHECK(loom_go(worker, NULL) != 0);
    loom_wg_wait(&wg);
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return (int)st.async_preemptions;
}

int main(void)
{
    if (!t_async_preempt()) {
        printf("test_preempt_cpu: the preemption signal is off here: skipped\n");
        return 77;
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    CHECK_EQ(sched_setaffinity(0, sizeof one, &one), 0); /* threads made from here inherit it */
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, hog, NULL), 0);
    setenv("LOOM_PROCS", "1", 1);

    setvbuf(stdout, NULL, _IOLBF, 0);
    compute_ns = 600000;
    rounds = 150;
    int64_t t0 = t_clock_ns();
    int n = loom_run(run_workers, NULL);
    double wall = (double)(t_clock_ns() - t0) / 1e6;
    printf("test_preempt_cpu: 2 x %d rounds of 0.6 ms CPU on a quarter of a CPU in %.0f ms: %d switches by "
           "the signal\n",
           rounds, wall, n);
    if (!t_chaos()) /* (chaos mode draws slices down to a tenth) */
        CHECK_MSG(n == 0, "%d goroutine switches by the signal before it had half a slice of CPU", n);

    compute_ns = 600000;
    rounds = 150;
    n = loom_run(run_caller, NULL);
    printf("test_preempt_cpu: 90 ms of CPU in 0.05 ms pieces between preemption points beside a 1 ms sleeper: "
           "%d switches by the signal\n",
           n);
    if (!t_chaos())
        CHECK_MSG(n == 0,
                  "%d switches by the signal of a goroutine that reaches a preemption point every 0.05 ms",
                  n);

    compute_ns = 5 * MS;
    rounds = 10;
    n = loom_run(run_workers, NULL);
    printf("test_preempt_cpu: 2 x %d rounds of 5 ms CPU: %d switches by the signal\n", rounds, n);
    CHECK_MSG(n > 0, "a goroutine that computed 5 ms of CPU between yields was never switched out");

    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    printf("test_preempt_cpu: ok\n");
    return 0;
}
