/*
 * test_preempt.c — asynchronous preemption of goroutines that never call loom:
 *  - at LOOM_PROCS=1 a goroutine spinning in a plain loop does not hold up a goroutine
 *    sleeping 1 ms at a time: it wakes every time, at the first switch of the spinner
 *    after its timer is due, not some switches later (how late it wakes is printed: the
 *    3 ms bar is bench/preempt.c's, measured on a quiet machine);
 *  - four plain-loop spinners on two Ps all make progress (time slicing), and each one
 *    stays on the thread it started on (an asynchronously preempted goroutine resumes on
 *    its own thread, so cached thread-local addresses stay valid);
 *  - FP state (double sums, the rounding mode in MXCSR), errno and the signal mask come
 *    back intact after preemption;
 *  - goroutines that malloc/free, snprintf and fprintf in tight loops for a second under
 *    preemption find no corruption and no deadlock;
 *  - loom_preempt_disable keeps a spinner on its P;
 *  - the outermost loom_preempt_enable is a preemption point: a goroutine that spends
 *    nearly all its time in such sections still yields at a slice's end, with the signal
 *    and without it (LOOM_ASYNCPREEMPT=0, and in sanitizer builds).
 * Sanitizer builds keep asynchronous preemption off (preempt_signal.c says why): the checks that
 * need it are skipped there, with a message.
 */
#include "t.h"
#include <fenv.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MS 1000000LL

static int stop;
static int stopped(void)
{
    return __atomic_load_n(&stop, __ATOMIC_RELAXED);
}

/* ---- a plain loop beside a 1 ms sleeper at one P */

static void plain_spinner(void *arg)
{
    volatile uint64_t *n = arg;
    while (!stopped())
        (*n)++;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int wakeup_test(void *arg)
{
    (void)arg;
    volatile uint64_t spins = 0;
    loom_go(plain_spinner, (void *)&spins);
    T_WAIT_UNTIL(spins > 0, 30, "the spinner never ran"); /* it shares the P from now on */
    enum { ROUNDS = 300 };
    int late = 0;
    int64_t worst = 0, out[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        struct loom_stats st0, st1;
        CHECK_OK(loom_stats(&st0));
        int64_t t0 = loom_now();
        loom_sleep(MS);
        int64_t d = loom_now() - t0 - MS;
        CHECK_OK(loom_stats(&st1));
        out[i] = (int64_t)(st1.preemptions - st0.preemptions);
        if (d > worst)
            worst = d;
        if (d > 3 * MS)
            late++;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    loom_sleep(5 * MS);
    qsort(out, ROUNDS, sizeof out[0], cmp_i64);
    printf("wakeups beside a spinner: %d rounds, %d later than 3 ms, worst %.2f ms, spinner %llu iterations; "
           "spinner switched out per sleep: median %lld, most %lld\n",
           ROUNDS, late, worst / 1e6, (unsigned long long)spins, (long long)out[ROUNDS / 2],
           (long long)out[ROUNDS - 1]);
    /* Without preemption the sleeper would not wake at all while the spinner runs (every
     * round's wakeup needs the spinner switched out).  It wakes at the first switch after
     * its timer is due, not after the spinner's next slices: asserted as that count (the
     * median round's), which a loaded machine does not change.  (Chaos mode draws slices
     * down to a tenth of the default: the spinner may be switched out before the timer is
     * due.) */
    if (!t_chaos())
        CHECK_MSG(out[ROUNDS / 2] <= 1,
                  "the spinner was switched out %lld times per 1 ms sleep (median) before the "
                  "sleeper ran",
                  (long long)out[ROUNDS / 2]);
    return 0;
}

/* ---- four spinners at two Ps: progress, same thread, FP and errno intact */

struct spin {
    uint64_t n;
    int tid;
    int moved;
    int fp_bad;
    int errno_bad;
    int mask_bad;
    int id;
    int done;
};

static void state_spinner(void *arg)
{
    struct spin *s = arg;
    int tid = (int)syscall(SYS_gettid);
    s->tid = tid;
    int mode = s->id % 2 ? FE_UPWARD : FE_DOWNWARD;
    fesetround(mode);
    errno = 1000 + s->id;
    sigset_t mine, now;
    sigemptyset(&mine);
    sigaddset(&mine, SIGUSR1 + (s->id % 2));
    pthread_sigmask(SIG_BLOCK, &mine, NULL);
    volatile double acc = 0;
    uint64_t i = 0;
    while (!stopped()) {
        acc += 0.5;
        i++;
        if ((i & 0xfffff) == 0) {
            if (acc != 0.5 * (double)i)
                s->fp_bad++;
            if (fegetround() != mode)
                s->fp_bad++;
            if (errno != 1000 + s->id)
                s->errno_bad++;
            if ((int)syscall(SYS_gettid) != tid)
                s->moved++;
            pthread_sigmask(SIG_BLOCK, NULL, &now);
            if (!sigismember(&now, SIGUSR1 + (s->id % 2)))
                s->mask_bad++;
            errno = 1000 + s->id; /* the syscalls above may not touch it, but be sure */
        }
        __atomic_store_n(&s->n, i, __ATOMIC_RELAXED);
    }
    pthread_sigmask(SIG_UNBLOCK, &mine, NULL);
    fesetround(FE_TONEAREST);
    __atomic_store_n(&s->done, 1, __ATOMIC_SEQ_CST);
}

/* The first spinner that made no progress since before (NULL: since it started), or -1. */
static int stalled(struct spin *s, int n, const uint64_t *before)
{
    for (int i = 0; i < n; i++)
        if (__atomic_load_n(&s[i].n, __ATOMIC_RELAXED) <= (before ? before[i] : 0))
            return i;
    return -1;
}

static int running(struct spin *s, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += !__atomic_load_n(&s[i].done, __ATOMIC_SEQ_CST);
    return k;
}

static int spinners_test(void *arg)
{
    (void)arg;
    enum { N = 4 };
    struct spin s[N];
    memset(s, 0, sizeof s);
    for (int i = 0; i < N; i++) {
        s[i].id = i;
        loom_go(state_spinner, &s[i]);
    }
    uint64_t before[N];
    T_WAIT_UNTIL(stalled(s, N, NULL) < 0, 30, "spinner %d never ran", stalled(s, N, NULL));
    for (int i = 0; i < N; i++)
        before[i] = __atomic_load_n(&s[i].n, __ATOMIC_RELAXED);
    /* each one runs again: all four make progress, two Ps time-sliced among them */
    T_WAIT_UNTIL(stalled(s, N, before) < 0, 30, "spinner %d made no progress", stalled(s, N, before));
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    T_WAIT_UNTIL(running(s, N) == 0, 30, "%d of %d spinners still running after stop", running(s, N), N);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(s[i].fp_bad, 0);
        CHECK_EQ(s[i].errno_bad, 0);
        CHECK_EQ(s[i].mask_bad, 0);
        CHECK_MSG(s[i].moved == 0, "spinner %d resumed on another thread %d times", i, s[i].moved);
    }
    return 0;
}

/* ---- libc in tight loops under preemption */

static int libc_done; /* atomic: workers that returned */

static void libc_worker(void *arg)
{
    FILE *devnull = arg;
    t_rng r;
    t_rng_seed(&r, (uint64_t)loom_id());
    char buf[128];
    while (!stopped()) {
        size_t n = 1 + t_rng_below(&r, 4000);
        unsigned char *p = malloc(n);
        CHECK(p != NULL);
        unsigned char pat = (unsigned char)t_rng_next(&r);
        memset(p, pat, n);
        for (size_t i = 0; i < n; i += 97)
            CHECK_EQ(p[i], pat);
        int k = snprintf(buf, sizeof buf, "%zu:%u:%.3f", n, pat, (double)n / 7);
        CHECK_GT(k, 0);
        char expect[128];
        snprintf(expect, sizeof expect, "%zu:%u:%.3f", n, pat, (double)n / 7);
        CHECK(strcmp(buf, expect) == 0);
        fprintf(devnull, "%s %p\n", buf, (void *)p);
        free(p);
    }
    __atomic_add_fetch(&libc_done, 1, __ATOMIC_SEQ_CST);
}

static int libc_test(void *arg)
{
    (void)arg;
    FILE *devnull = fopen("/dev/null", "w");
    CHECK(devnull != NULL);
    __atomic_store_n(&libc_done, 0, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 8; i++)
        loom_go(libc_worker, devnull);
    loom_sleep(t_scale(10) * 100 * MS);
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    /* no worker still writes to devnull when it is closed */
    T_WAIT_UNTIL(t_get(&libc_done) == 8, 30, "%d of 8 workers returned", t_get(&libc_done));
    fclose(devnull);
    return 0;
}

/* ---- loom_preempt_disable */

struct spinner {
    volatile uint64_t n;
    struct loom_stats s0, s1; /* taken by the spinner itself, around its loop */
    int64_t t0, t1;           /* when its loop started and ended */
    loom_waitgroup done;
};

static void nonpreemptible(void *arg)
{
    struct spinner *sp = arg;
    loom_preempt_disable();
    CHECK_OK(loom_stats(&sp->s0));
    sp->t0 = loom_now();
    int64_t end = sp->t0 + 60 * MS;
    while (loom_now() < end)
        sp->n++; /* loom_now is no preemption point */
    sp->t1 = loom_now();
    CHECK_OK(loom_stats(&sp->s1));
    loom_preempt_enable();
    loom_wg_done(&sp->done);
}

static int disable_test(void *arg)
{
    (void)arg;
    struct spinner sp = { .done = LOOM_WAITGROUP_INIT };
    CHECK_OK(loom_wg_add(&sp.done, 1));
    struct loom_stats before;
    CHECK_OK(loom_stats(&before));
    loom_go(nonpreemptible, &sp);
    int64_t t0 = loom_now();
    loom_sleep(MS); /* at one P the spinner runs, all 60 ms of it */
    int64_t woke = loom_now(), d = woke - t0;
    loom_wg_wait(&sp.done);
    /* main may run beside the spinner only on a spare P, lent if a long page fault on the
     * spinner's fresh stack looked like a blocking call (a loaded machine); giving that P
     * back at the spinner's next safe point counts as a preemption.  The counts are the
     * spinner's own window: nothing else runs in it at one P.  A spare lent before the
     * window (from main's spawn on) and still in service counts too (procs > 1).
     * Main may also run before the window opens: the spinner inherits main's time slice
     * (it was main's runnext), and a slice's end that reaches it before its
     * loom_preempt_disable (its thread descheduled on a loaded machine) switches it out
     * legitimately.  What must not happen is main waking inside the window. */
    if (sp.s1.spare_lends == before.spare_lends && sp.s0.procs == 1 && sp.s1.procs == 1) {
        CHECK_EQ(sp.s1.preemptions, sp.s0.preemptions);
        CHECK_MSG(woke <= sp.t0 || woke >= sp.t1,
                  "a goroutine with preemption disabled was preempted: main woke after %.1f ms"
                  ", %.1f ms into the spinner's window"
                  " (spare lends %" PRIu64 ", handoffs %" PRIu64 ", threads %" PRIu64 ", procs %" PRIu64 ")",
                  d / 1e6, (woke - sp.t0) / 1e6, sp.s1.spare_lends, sp.s1.handoffs, sp.s1.threads,
                  sp.s1.procs);
    }
    CHECK_GT(sp.n, 0);
    return 0;
}

/* ---- loom_preempt_enable is a preemption point */

static uint64_t sections; /* atomic: the spinner's finished sections */

static void sectioned(void *arg)
{
    (void)arg;
    while (!stopped()) {
        loom_preempt_disable();
        loom_preempt_disable(); /* nested: only the outer enable is a point */
        int64_t end = loom_now() + MS;
        while (loom_now() < end) {} /* loom_now is no preemption point */
        loom_preempt_enable();
        loom_preempt_enable();
        __atomic_add_fetch(&sections, 1, __ATOMIC_RELAXED);
    }
}

static int enable_point_test(void *arg)
{
    (void)arg;
    __atomic_store_n(&sections, 0, __ATOMIC_RELAXED);
    CHECK(loom_go(sectioned, NULL) != 0);
    /* at one P main runs again only if the spinner yields: at the enable ending the
     * section in which its slice ran out (the signal, if on, is refused inside one).
     * Without that point main would never wake: the alarm fails the test then.  A sleep
     * counts once the spinner finished a section during it (so it was the spinner that
     * had to yield for main to wake); main sleeps until 5 have counted, 20 times at least
     * (the alarm is the guard: a spinner that never runs fails the test too). */
    alarm(30);
    int sleeps = 0, counted = 0;
    for (; sleeps < 20 || counted < 5; sleeps++) {
        uint64_t before = __atomic_load_n(&sections, __ATOMIC_RELAXED);
        loom_sleep(MS);
        counted += __atomic_load_n(&sections, __ATOMIC_RELAXED) != before;
    }
    alarm(0);
    printf("enable points: %d of %d 1 ms sleeps saw the spinner finish a section (%llu sections)\n", counted,
           sleeps, (unsigned long long)__atomic_load_n(&sections, __ATOMIC_RELAXED));
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    loom_sleep(5 * MS);
    return 0;
}

int main(void)
{
    T_RUN_AT(1, enable_point_test, &stop);
    if (!t_async_preempt()) {
        /* every other check here needs goroutines switched out of plain C loops */
        printf("test_preempt: the preemption signal is off; the rest skipped\n");
        return 0;
    }
    setenv("LOOM_ASYNCPREEMPT", "0", 1); /* the enable point alone, without the signal */
    T_RUN_AT(1, enable_point_test, &stop);
    unsetenv("LOOM_ASYNCPREEMPT");
    T_RUN_AT(4, libc_test, &stop);
    T_RUN_AT(1, wakeup_test, &stop);
    T_RUN_AT(2, spinners_test, &stop);
    T_RUN_AT(1, disable_test, &stop);
    printf("test_preempt: ok\n");
    return 0;
}
