/*
 * trace_target.c — the program tests/test_trace.sh runs with LOOM_TRACE set, so that the
 * trace has known content (not a test by itself: its name does not match tests/test_*.c).
 *
 * It sets LOOM_PROCS=2 (setenv before loom_run) and runs, in goroutine 1, phases
 * whose blocking is certain, not just likely: the goroutines of a phase are started, and
 * goroutine 1 waits (polling loom_stats) until all of them are parked before it releases
 * them, so each one leaves a block event with a known reason and an unblock event:
 *   1. channels: receivers parked in loom_recv ("chan recv"), senders in loom_send
 *      ("chan send"), selectors in a two-case loom_select ("select"); goroutine 1 then
 *      sends, receives and sends again;
 *   2. waitgroup: waiters parked in loom_wg_wait ("waitgroup") until goroutine 1's wg_done;
 *   3. mutex: goroutine 1 holds a loom_mutex while lockers park on it ("mutex"); each then
 *      calls loom_yield while holding it;
 *   4. sleep and yield: sleepers in loom_sleep ("sleep"), a yielder calling loom_yield in a
 *      loop (its name has a quote and a backslash, for the trace's JSON escaping);
 *   5. stealing: goroutine 1 spawns many short CPU-bound workers into its own P's queue
 *      without yielding, then spins for a while, so that the other P steals some.
 * Every goroutine has a name (loom_go_attr).  At the end it prints on stdout
 *   trace_target: spawns=N steals=S procs=P
 * N: goroutines this program spawned (the trace has at least N spawn events); S: steals
 * counted by loom_stats (when S > 0 the trace must have a steal event); P: loom_procs().
 * Exits 0; a failed check aborts.
 */
#include "t.h"

#define US 1000LL
#define MS 1000000LL

static int nspawn; /* goroutines spawned by this program (atomic) */

static uint64_t spawn(void (*fn)(void *), void *arg, const char *name)
{
    loom_attr attr = { .name = name };
    uint64_t id = loom_go_attr(fn, arg, &attr);
    CHECK_MSG(id > 0, "loom_go_attr(%s) failed: errno %d", name, errno);
    __atomic_add_fetch(&nspawn, 1, __ATOMIC_RELAXED);
    return id;
}

static uint64_t waiting_now(void)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st.waiting;
}

/* Waits until at least base + n goroutines are parked (the phase's ones: the phases before
 * have ended, and goroutine 1 itself runs while it looks). */
static void wait_parked(uint64_t base, uint64_t n, const char *what)
{
    int64_t deadline = loom_now() + 60000 * MS;
    while (waiting_now() < base + n) {
        CHECK_MSG(loom_now() < deadline, "%s: %llu goroutines never all parked", what, (unsigned long long)n);
        loom_sleep(200 * US);
    }
}

/* ---------------------------------------------------------------- 1: channels */

#define NRECV 4
#define NSEND 4
#define NSEL  4

static loom_chan *c_recv, *c_send, *c_sel_a, *c_sel_b;
static loom_waitgroup wg_chan = LOOM_WAITGROUP_INIT;
static long recv_sum, sel_sum; /* atomic */

static void receiver(void *arg)
{
    (void)arg;
    int v = -1;
    CHECK_OK(loom_recv(c_recv, &v));
    __atomic_add_fetch(&recv_sum, v, __ATOMIC_RELAXED);
    loom_wg_done(&wg_chan);
}

static void sender(void *arg)
{
    int v = (int)(intptr_t)arg;
    CHECK_OK(loom_send(c_send, &v));
    loom_wg_done(&wg_chan);
}

static void selector(void *arg)
{
    (void)arg;
    int a = -1, b = -1;
    loom_case cases[2] = { { c_sel_a, LOOM_RECV, &a, 0 }, { c_sel_b, LOOM_RECV, &b, 0 } };
    int i = loom_select(cases, 2, -1);
    CHECK_MSG(i == 0 || i == 1, "loom_select returned %d", i);
    CHECK_EQ(cases[i].ok, 1);
    __atomic_add_fetch(&sel_sum, i == 0 ? a : b, __ATOMIC_RELAXED);
    loom_wg_done(&wg_chan);
}

static void phase_chan(void)
{
    c_recv = loom_chan_new(sizeof(int), 0);
    c_send = loom_chan_new(sizeof(int), 0);
    c_sel_a = loom_chan_new(sizeof(int), 0);
    c_sel_b = loom_chan_new(sizeof(int), 0);
    CHECK(c_recv && c_send && c_sel_a && c_sel_b);
    uint64_t base = waiting_now();
    CHECK_OK(loom_wg_add(&wg_chan, NRECV + NSEND + NSEL));
    for (int i = 0; i < NRECV; i++)
        spawn(receiver, NULL, "receiver");
    for (int i = 0; i < NSEND; i++)
        spawn(sender, (void *)(intptr_t)(i + 1), "sender");
    for (int i = 0; i < NSEL; i++)
        spawn(selector, NULL, "selector");
    wait_parked(base, NRECV + NSEND + NSEL, "channels");
    long want = 0, got = 0;
    for (int i = 1; i <= NRECV; i++) {
        CHECK_OK(loom_send(c_recv, &i));
        want += i;
    }
    for (int i = 0; i < NSEND; i++) {
        int v = 0;
        CHECK_OK(loom_recv(c_send, &v));
        got += v;
    }
    CHECK_EQ(got, NSEND * (NSEND + 1) / 2);
    for (int i = 1; i <= NSEL; i++)
        CHECK_OK(loom_send(i % 2 ? c_sel_a : c_sel_b, &i));
    loom_wg_wait(&wg_chan);
    CHECK_EQ(__atomic_load_n(&recv_sum, __ATOMIC_RELAXED), want);
    CHECK_EQ(__atomic_load_n(&sel_sum, __ATOMIC_RELAXED), NSEL * (NSEL + 1) / 2);
    loom_chan_free(c_recv);
    loom_chan_free(c_send);
    loom_chan_free(c_sel_a);
    loom_chan_free(c_sel_b);
}

/* ---------------------------------------------------------------- 2: waitgroup */

#define NWG 3
static loom_waitgroup wg_gate = LOOM_WAITGROUP_INIT, wg_waiters = LOOM_WAITGROUP_INIT;

static void wg_waiter(void *arg)
{
    (void)arg;
    loom_wg_wait(&wg_gate);
    loom_wg_done(&wg_waiters);
}

static void phase_waitgroup(void)
{
    uint64_t base = waiting_now();
    CHECK_OK(loom_wg_add(&wg_gate, 1));
    CHECK_OK(loom_wg_add(&wg_waiters, NWG));
    for (int i = 0; i < NWG; i++)
        spawn(wg_waiter, NULL, "wg-waiter");
    wait_parked(base, NWG, "waitgroup");
    loom_wg_done(&wg_gate);
    loom_wg_wait(&wg_waiters);
}

/* ---------------------------------------------------------------- 3: mutex */

#define NLOCK 4
static loom_mutex mu = LOOM_MUTEX_INIT;
static long in_lock; /* under mu */
static loom_waitgroup wg_lockers = LOOM_WAITGROUP_INIT;

static void locker(void *arg)
{
    (void)arg;
    loom_mutex_lock(&mu);
    long v = ++in_lock;
    loom_yield(); /* others stay parked on mu meanwhile */
    CHECK_EQ(in_lock, v);
    CHECK_OK(loom_mutex_unlock(&mu));
    loom_wg_done(&wg_lockers);
}

static void phase_mutex(void)
{
    uint64_t base = waiting_now();
    loom_mutex_lock(&mu);
    CHECK_OK(loom_wg_add(&wg_lockers, NLOCK));
    for (int i = 0; i < NLOCK; i++)
        spawn(locker, NULL, "locker");
    wait_parked(base, NLOCK, "mutex");
    CHECK_OK(loom_mutex_unlock(&mu));
    loom_wg_wait(&wg_lockers);
    CHECK_EQ(in_lock, NLOCK);
}

/* ---------------------------------------------------------------- 4: sleep and yield */

#define NSLEEP 4
static loom_waitgroup wg_sleep = LOOM_WAITGROUP_INIT;

static void sleeper(void *arg)
{
    int64_t ns = (int64_t)(intptr_t)arg * MS;
    int64_t t0 = loom_now();
    loom_sleep(ns);
    CHECK_GE(loom_now() - t0, ns);
    loom_wg_done(&wg_sleep);
}

static void yielder(void *arg)
{
    (void)arg;
    for (int i = 0; i < 50; i++)
        loom_yield();
    loom_wg_done(&wg_sleep);
}

static void phase_sleep(void)
{
    CHECK_OK(loom_wg_add(&wg_sleep, NSLEEP + 1));
    for (int i = 0; i < NSLEEP; i++)
        spawn(sleeper, (void *)(intptr_t)(i + 1), "sleeper");
    spawn(yielder, NULL, "yielder \"q\" \\b");
    loom_wg_wait(&wg_sleep);
}

/* ---------------------------------------------------------------- 5: stealing */

#define NWORK 200
static loom_waitgroup wg_work = LOOM_WAITGROUP_INIT;
static unsigned long sink; /* atomic: keeps the loop */

static void burn_ns(int64_t ns)
{
    int64_t end = t_clock_ns() + ns;
    unsigned long x = 1;
    while (t_clock_ns() < end)
        for (int i = 0; i < 100; i++)
            x = x * 6364136223846793005UL + 1442695040888963407UL;
    __atomic_store_n(&sink, x, __ATOMIC_RELAXED);
}

static void worker(void *arg)
{
    (void)arg;
    burn_ns(50 * US);
    loom_wg_done(&wg_work);
}

static void phase_steal(void)
{
    CHECK_OK(loom_wg_add(&wg_work, NWORK));
    /* all into this P's queue (loom_go queues locally), none run here meanwhile */
    for (int i = 0; i < NWORK; i++)
        spawn(worker, NULL, "worker");
    burn_ns(3 * MS); /* the other P, woken for the queued work, steals some */
    loom_wg_wait(&wg_work);
}

/* ---------------------------------------------------------------- main */

static int main_fn(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_id(), 1);
    phase_chan();
    phase_waitgroup();
    phase_mutex();
    phase_sleep();
    phase_steal();
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    printf("trace_target: spawns=%d steals=%llu procs=%d\n", __atomic_load_n(&nspawn, __ATOMIC_RELAXED),
           (unsigned long long)st.steals, loom_procs());
    fflush(stdout);
    return 0;
}

int main(void)
{
    setenv("LOOM_PROCS", "2", 1);
    T_RUN(main_fn, NULL);
    return 0;
}
