/*
 * test_preempt_turns.c — goroutines switched out by the preemption signal wait for their
 * turn locked to the thread they ran on, which runs nothing else meanwhile
 * (src/preempt_policy.c):
 *  - sixteen plain-loop spinners at two Ps all make progress, each on the thread it
 *    started on, and no two of them ever started on one thread;
 *  - three spinners at two Ps share both CPUs (the share is reported);
 *  - a goroutine woken on the P (a 1 ms sleeper beside three, then sixteen spinners at one
 *    P) runs after the current slice, not after a turn of every spinner;
 *  - a goroutine of the P that blocks in the kernel (loom_block_begin/end) while spinners
 *    keep the P busy: they go on, on their own threads;
 *  - loom_lock_thread beside spinners keeps the goroutine on its thread across yields and
 *    sleeps, and no spinner runs there;
 *  - a NORMAL goroutine readied on the global queue (by a thread outside the runtime)
 *    runs before LOW spinners switched out before it;
 *  - a spare P lent for a plain blocking call goes back once the call returns, beside
 *    spinners (its lender was never preempted again: a goroutine sleeping on the lender's
 *    P slept forever).
 * Where the signal is off (sanitizer builds, or LOOM_ASYNCPREEMPT=0: the ctest entry
 * test_preempt_turns_coop) the same checks run with LOOM_DEBUG=coopasync=1, which switches
 * a goroutine out at a cooperative preemption point as the signal would: the spinners then
 * call loom_preempt_disable/enable now and then (the enable is such a point).  So this path
 * also runs under ThreadSanitizer and AddressSanitizer.
 */
#include "t.h"
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MS 1000000LL

static int stop;  /* atomic */
static bool coop; /* the signal is off: LOOM_DEBUG=coopasync=1 */
static int stopped(void)
{
    return __atomic_load_n(&stop, __ATOMIC_RELAXED);
}
static long gettid_now(void)
{
    return syscall(SYS_gettid);
}

/* In coop mode, a preemption point every 2^10 rounds of a spinner's loop (switched out
 * there, a spinner stays on its thread as with the signal). */
static void coop_point(uint64_t i)
{
    if (coop && (i & 0x3ff) == 0) {
        loom_preempt_disable();
        loom_preempt_enable();
    }
}

/* A plain loop (no loom call but coop_point) that counts, and checks every 2^16 rounds
 * that it is still on the thread it started on. */
struct spin {
    uint64_t n;
    long tid;
    int moved;
    int done;
};

static void spinner(void *arg)
{
    struct spin *s = arg;
    __atomic_store_n(&s->tid, gettid_now(), __ATOMIC_RELAXED);
    uint64_t i = 0;
    while (!stopped()) {
        if ((++i & 0xffff) == 0 && gettid_now() != s->tid)
            s->moved++;
        coop_point(i);
        __atomic_store_n(&s->n, i, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&s->done, 1, __ATOMIC_SEQ_CST);
}

static void start_spinners(struct spin *s, int n)
{
    memset(s, 0, sizeof *s * (size_t)n);
    for (int i = 0; i < n; i++)
        CHECK(loom_go(spinner, &s[i]) != 0);
}

/* The first spinner that made no progress since before (NULL: since it started), or -1. */
static int stalled(struct spin *s, int n, const uint64_t *before)
{
    for (int i = 0; i < n; i++)
        if (__atomic_load_n(&s[i].n, __ATOMIC_RELAXED) <= (before ? before[i] : 0))
            return i;
    return -1;
}

/* Each spinner makes progress after a snapshot (the timeout is a hang guard). */
static void check_progress(const char *when, struct spin *s, int n, const uint64_t *before)
{
    T_WAIT_UNTIL(stalled(s, n, before) < 0, 30, "%s: spinner %d made no progress", when,
                 stalled(s, n, before));
}

/* Until every spinner has run. */
static void await_started(struct spin *s, int n)
{
    T_WAIT_UNTIL(stalled(s, n, NULL) < 0, 30, "spinner %d never ran", stalled(s, n, NULL));
}

static int running(struct spin *s, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += !__atomic_load_n(&s[i].done, __ATOMIC_SEQ_CST);
    return k;
}

static void snapshot(struct spin *s, int n, uint64_t *out)
{
    for (int i = 0; i < n; i++)
        out[i] = __atomic_load_n(&s[i].n, __ATOMIC_RELAXED);
}

static void stop_spinners(struct spin *s, int n)
{
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    T_WAIT_UNTIL(running(s, n) == 0, 30, "%d of %d spinners still running after stop", running(s, n), n);
    for (int i = 0; i < n; i++)
        CHECK_MSG(s[i].moved == 0, "spinner %d resumed on another thread %d times", i, s[i].moved);
}

/* ---- many spinners: each waits for its turn on a thread of its own */

/* No two spinners started on one thread (a thread that kept one preempted while it ran the
 * next would start two). */
static void check_own_threads(struct spin *s, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            CHECK_MSG(__atomic_load_n(&s[i].tid, __ATOMIC_RELAXED) !=
                              __atomic_load_n(&s[j].tid, __ATOMIC_RELAXED),
                      "spinners %d and %d started on one thread", j, i);
}

enum { NMANY = 16 };

static int threads_test(void *arg)
{
    (void)arg;
    struct spin s[NMANY];
    uint64_t before[NMANY];
    start_spinners(s, NMANY);
    await_started(s, NMANY); /* all but two have been preempted */
    snapshot(s, NMANY, before);
    check_progress("16 spinners at 2 Ps", s, NMANY, before);
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    printf("16 spinners at %llu Ps: %llu threads, %llu async preemptions\n", (unsigned long long)st.procs,
           (unsigned long long)st.threads, (unsigned long long)st.async_preemptions);
    CHECK_GT(st.async_preemptions, 0);
    CHECK_GE(st.threads, (uint64_t)NMANY);
    check_own_threads(s, NMANY);
    stop_spinners(s, NMANY);
    return 0;
}

/* ---- three spinners at two Ps share both CPUs */

static int share_test(void *arg)
{
    (void)arg;
    enum { N = 3 };
    struct spin s[N];
    uint64_t a[N], b[N];
    start_spinners(s, N);
    await_started(s, N);
    snapshot(s, N, a);
    loom_sleep(900 * MS);
    snapshot(s, N, b);
    uint64_t total = 0, most = 0;
    for (int i = 0; i < N; i++) {
        total += b[i] - a[i];
        if (b[i] - a[i] > most)
            most = b[i] - a[i];
    }
    CHECK_GT(total, 0);
    check_progress("3 spinners at 2 Ps", s, N, a);
    /* Each gets about a third; a thread that kept the preempted ones would give one of
     * them a CPU to itself (near 50 %) while the other two shared one.  Not asserted:
     * thread handoffs on this VM skew a window now and then (47 % and 57 % were seen once
     * each, against 34-39 % usually), so the share is only reported. */
    printf("3 spinners at 2 Ps: the busiest did %.0f%% of the work\n", 100.0 * (double)most / (double)total);
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    CHECK_GE(st.threads, (uint64_t)N);
    check_own_threads(s, N);
    stop_spinners(s, N);
    return 0;
}

/* ---- a woken goroutine goes before the spinners switched out before it */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int wake_spinners = 3; /* how many spinners beside the sleeper */

static int wake_test(void *arg)
{
    (void)arg;
    enum { NMAX = 16, ROUNDS = 60 };
    const int N = wake_spinners;
    struct spin s[NMAX];
    start_spinners(s, N);
    await_started(s, N); /* they have all run: two were switched out */
    int64_t d[ROUNDS], ran[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t before[NMAX], after[NMAX];
        snapshot(s, N, before);
        int64_t t0 = loom_now();
        loom_sleep(MS);
        d[i] = loom_now() - t0 - MS;
        snapshot(s, N, after);
        ran[i] = 0;
        for (int k = 0; k < N; k++)
            ran[i] += after[k] != before[k];
    }
    qsort(d, ROUNDS, sizeof d[0], cmp_i64);
    qsort(ran, ROUNDS, sizeof ran[0], cmp_i64);
    printf("1 ms sleeps beside %d spinners at 1 P: median %.2f ms late, worst %.2f ms; spinners that "
           "ran meanwhile: median %lld, most %lld\n",
           N, d[ROUNDS / 2] / 1e6, d[ROUNDS - 1] / 1e6, (long long)ran[ROUNDS / 2],
           (long long)ran[ROUNDS - 1]);
    /* The sleeper runs after the current slice, the one spinner that had the P when it
     * slept: not after a turn of the others, which wait in the global queue (every 61st
     * tick one of them goes first, so the median).  In time: late by at most a slice,
     * where a turn of the others would add two more; asserted as the order, which a loaded
     * machine does not change.  Nor ever after a turn of most of them: readied as a
     * spinner was switched out, it keeps runnext even when that spinner gets the P back
     * first and uses a whole slice (proc.c's slice_end demotes only a runnext readied during
     * the slice that ended).  (Chaos mode draws slices shorter than the sleep:
     * several spinners may run in it.) */
    if (!t_chaos()) {
        CHECK_MSG(ran[ROUNDS / 2] <= 1, "a woken goroutine waited behind %lld spinners (median)",
                  (long long)ran[ROUNDS / 2]);
        CHECK_MSG(ran[ROUNDS - 1] <= 4, "a woken goroutine waited behind %lld of %d spinners",
                  (long long)ran[ROUNDS - 1], N);
    }
    stop_spinners(s, N);
    return 0;
}

/* ---- a blocking call beside spinners */

static int yields; /* atomic */
static void yielder(void *arg)
{
    (void)arg;
    while (!stopped()) {
        loom_yield();
        __atomic_add_fetch(&yields, 1, __ATOMIC_RELAXED);
    }
}

static void blocker(void *arg)
{
    loom_waitgroup *wg = arg;
    for (int i = 0; i < 20; i++) {
        loom_block_begin();
        usleep(5000); /* long enough for sysmon to hand the P on */
        loom_block_end();
        volatile uint64_t k = 0;
        while (k < 200000)
            k++; /* some plain work: may be preempted */
    }
    loom_wg_done(wg);
}

static int blocking_test(void *arg)
{
    (void)arg;
    enum { N = 3 };
    struct spin s[N];
    uint64_t before[N];
    start_spinners(s, N);
    await_started(s, N);
    snapshot(s, N, before);
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    CHECK_OK(loom_wg_add(&wg, 1));
    CHECK(loom_go(yielder, NULL) != 0);
    CHECK(loom_go(blocker, &wg) != 0);
    int64_t t0 = loom_now();
    loom_wg_wait(&wg);
    int64_t took = loom_now() - t0;
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    printf("20 blocking calls beside %d spinners and a yielder at 1 P: %.0f ms, %llu handoffs\n", N,
           took / 1e6, (unsigned long long)st.handoffs);
    check_progress("after blocking calls", s, N, before);
    CHECK_GT(__atomic_load_n(&yields, __ATOMIC_RELAXED), 0);
    stop_spinners(s, N);
    return 0;
}

/* ---- loom_lock_thread beside spinners */

static int lock_test(void *arg)
{
    (void)arg;
    enum { N = 3 };
    struct spin s[N];
    uint64_t before[N];
    start_spinners(s, N);
    await_started(s, N);
    loom_lock_thread();
    long mine = gettid_now();
    snapshot(s, N, before);
    for (int i = 0; i < 20; i++) {
        loom_yield();
        CHECK_EQ(gettid_now(), mine);
        loom_sleep(MS);
        CHECK_EQ(gettid_now(), mine);
    }
    check_progress("while main is locked", s, N, before);
    for (int i = 0; i < N; i++)
        CHECK_MSG(__atomic_load_n(&s[i].tid, __ATOMIC_RELAXED) != mine,
                  "spinner %d shares the thread main locked", i);
    loom_unlock_thread();
    stop_spinners(s, N);
    return 0;
}

/* ---- a NORMAL goroutine readied on the global queue goes before LOW spinners */

enum { FROUNDS = 40, FN = 3 };
static loom_chan *fchan;
static struct spin *fspin; /* prio_global_test's spinners */

/* What the foreign sender hands main: when it sent, and the switches-out counted so far
 * (loom_stats' preemptions, read from the sender's thread just before the send), so that
 * main can tell how many times a spinner was switched out between its readying and its
 * turn; and each spinner's count then, to tell which of them ran meanwhile. */
struct fmsg {
    int64_t t0;
    uint64_t preemptions;
    uint64_t before[FN];
};

static void *foreign_sender(void *arg)
{
    (void)arg;
    for (int i = 0; i < FROUNDS; i++) {
        struct timespec ts = { 0, 2 * MS };
        nanosleep(&ts, NULL);
        /* unbuffered: succeeds once main waits in loom_recv; from this thread, which runs
         * no goroutine, main is readied onto the global queue.  The counts are taken
         * afresh before each try, so they are the ones just before the send that readied
         * main. */
        struct fmsg m;
        do {
            struct loom_stats st;
            CHECK_OK(loom_stats(&st));
            m.preemptions = st.preemptions;
            snapshot(fspin, FN, m.before);
            m.t0 = t_clock_ns();
            if (loom_try_send(fchan, &m) != -EAGAIN)
                break;
            struct timespec w = { 0, 100000 };
            nanosleep(&w, NULL);
        } while (1);
    }
    return NULL;
}

static int prio_global_test(void *arg)
{
    (void)arg;
    struct spin s[FN];
    memset(s, 0, sizeof s);
    fspin = s;
    for (int i = 0; i < FN; i++)
        CHECK(loom_go_attr(spinner, &s[i], &(loom_attr){ .priority = LOOM_PRIO_LOW }) != 0);
    await_started(s, FN); /* they have all run: two were switched out */
    fchan = loom_chan_new(sizeof(struct fmsg), 0);
    CHECK(fchan != NULL);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, foreign_sender, NULL), 0);
    int64_t d[FROUNDS], out[FROUNDS], ran[FROUNDS];
    for (int i = 0; i < FROUNDS; i++) {
        struct fmsg m;
        CHECK_OK(loom_recv(fchan, &m));
        d[i] = t_clock_ns() - m.t0;
        uint64_t after[FN];
        snapshot(s, FN, after);
        struct loom_stats st;
        CHECK_OK(loom_stats(&st));
        out[i] = (int64_t)(st.preemptions - m.preemptions);
        ran[i] = 0;
        for (int k = 0; k < FN; k++)
            ran[i] += after[k] != m.before[k];
    }
    CHECK_EQ(pthread_join(th, NULL), 0);
    qsort(d, FROUNDS, sizeof d[0], cmp_i64);
    qsort(out, FROUNDS, sizeof out[0], cmp_i64);
    qsort(ran, FROUNDS, sizeof ran[0], cmp_i64);
    printf("NORMAL receiver woken from a foreign thread beside %d LOW spinners at 1 P: median %.2f ms, worst %.2f ms; "
           "spinners switched out meanwhile: median %lld, most %lld; spinners that ran: median %lld, most %lld\n",
           FN, d[FROUNDS / 2] / 1e6, d[FROUNDS - 1] / 1e6, (long long)out[FROUNDS / 2],
           (long long)out[FROUNDS - 1], (long long)ran[FROUNDS / 2], (long long)ran[FROUNDS - 1]);
    /* it outranks the spinners: it runs once the running one is switched out (a kick, or
     * the slice's end), not after the others get their turns: asserted as the order, how many times a spinner was switched out between
     * its readying and its turn (once: the one that had the thread), which a loaded machine
     * does not change.  (Chaos mode stretches the readying and draws slices down to a
     * tenth: more may end in it.) */
    if (!t_chaos())
        CHECK_MSG(out[FROUNDS / 2] <= 1,
                  "a NORMAL goroutine readied globally waited while spinners were switched "
                  "out %lld times (median)",
                  (long long)out[FROUNDS / 2]);
    loom_chan_free(fchan);
    stop_spinners(s, FN);
    return 0;
}

/* ---- a spare P lent beside spinners goes back */

/* Spins like spinner, but while roam is set yields every 2^18 rounds: a yielded goroutine
 * is locked to no thread and any thread may take it, spare Ps' threads too.  (A yield
 * gives back a spare being retired, as schedule() does: once roam is cleared only the
 * preemption signal's switches can.) */
static int roam; /* atomic */
static void roaming_spinner(void *arg)
{
    uint64_t *n = arg;
    uint64_t i = 0;
    while (!stopped()) {
        if ((++i & 0x3ffff) == 0 && __atomic_load_n(&roam, __ATOMIC_RELAXED))
            loom_yield();
        coop_point(i);
        __atomic_store_n(n, i, __ATOMIC_RELAXED);
    }
}

static void plain_blocker(void *arg)
{
    loom_waitgroup *wg = arg;
    for (int i = 0; i < 30; i++) {
        if (i == 20)
            __atomic_store_n(&roam, 0, __ATOMIC_RELAXED);
        usleep(5000); /* unannotated: sysmon lends a spare P */
        volatile uint64_t k = 0;
        while (k < 100000)
            k++;
    }
    loom_wg_done(wg);
}

/* Ps in use now (st is filled in too). */
static uint64_t procs_now(struct loom_stats *st)
{
    CHECK_OK(loom_stats(st));
    return st->procs;
}

static int spare_test(void *arg)
{
    (void)arg;
    enum { N = 4 };
    uint64_t n[N] = { 0 };
    alarm(60); /* the failure was a hang: make it quick */
    __atomic_store_n(&roam, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < N; i++)
        CHECK(loom_go(roaming_spinner, &n[i]) != 0);
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    CHECK_OK(loom_wg_add(&wg, 1));
    CHECK(loom_go(plain_blocker, &wg) != 0);
    loom_wg_wait(&wg);
    /* main's own sleeps end (its timer may be on the lender's P), and the last spare lent
     * goes back within a few slices once nothing blocks */
    struct loom_stats st;
    int64_t t0 = loom_now();
    T_WAIT_UNTIL(procs_now(&st) == 1, 30,
                 "a spare P still in use %.0f ms after the last blocking call (%llu Ps)",
                 (loom_now() - t0) / 1e6, (unsigned long long)st.procs);
    printf("30 plain blocking calls beside %d roaming spinners at 1 P: %llu spare Ps lent, %llu in use after %.0f ms\n",
           N, (unsigned long long)st.spare_lends, (unsigned long long)st.procs, (loom_now() - t0) / 1e6);
    CHECK_GT(st.spare_lends, 0);
    for (int i = 0; i < N; i++)
        CHECK_GT(__atomic_load_n(&n[i], __ATOMIC_RELAXED), 0);
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    loom_sleep(20 * MS);
    alarm(0);
    return 0;
}

int main(void)
{
    coop = !t_async_preempt();
    if (coop) {
        setenv("LOOM_DEBUG", "coopasync=1", 1);
        printf("test_preempt_turns: the preemption signal is off: switches at cooperative points\n");
    }
    T_RUN_AT(2, threads_test, &stop);
    T_RUN_AT(2, share_test, &stop);
    T_RUN_AT(1, wake_test, &stop);
    wake_spinners = 16;
    T_RUN_AT(1, wake_test, &stop);
    wake_spinners = 3;
    T_RUN_AT(1, blocking_test, &stop);
    T_RUN_AT(1, lock_test, &stop);
    T_RUN_AT(1, prio_global_test, &stop);
    T_RUN_AT(1, spare_test, &stop);
    printf("test_preempt_turns: ok\n");
    return 0;
}
