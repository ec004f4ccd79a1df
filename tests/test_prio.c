/*
 * test_prio.c — priority levels (loom_attr.priority, loom_set_priority):
 *  - api: levels are checked (-EINVAL), the previous level is returned, outside a
 *    goroutine -EPERM; a spawned goroutine starts at its attr's level;
 *  - order: at one P, ready goroutines run HIGH first, then NORMAL, then LOW, FIFO within
 *    HIGH and LOW (NORMAL keeps Go's runnext rule);
 *  - handoff: waiters parked on a channel (receive), on a mutex and in a select, in the order
 *    L1 N1 H1 L2 H2, are served H1 H2 N1 L1 L2 (priority order, FIFO within a level);
 *  - aging: at one P, HIGH goroutines that yield to each other forever do not starve a LOW
 *    one: it runs once it has waited LOOM_PRIO_AGE_MS;
 *  - inversion: a LOW goroutine holding a mutex that a HIGH one waits for, while other HIGH
 *    goroutines keep the only P busy, still gets to release it (aging: no deadlock);
 *  - preempt (async preemption builds only): at one P with a 1 s time slice, a LOW
 *    goroutine spinning in plain code is switched out when a HIGH one's 1 ms sleep ends,
 *    long before its slice would end.
 */
#include "t.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* ---------------------------------------------------------------- api */

static void at_level(void *arg)
{
    __atomic_store_n((int *)arg, loom_priority(), __ATOMIC_SEQ_CST);
}

static int t_api(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_priority(), LOOM_PRIO_NORMAL);
    CHECK_ERR(loom_set_priority(2), EINVAL);
    CHECK_ERR(loom_set_priority(-2), EINVAL);
    CHECK_EQ(loom_set_priority(LOOM_PRIO_HIGH), LOOM_PRIO_NORMAL);
    CHECK_EQ(loom_priority(), LOOM_PRIO_HIGH);
    CHECK_EQ(loom_set_priority(LOOM_PRIO_LOW), LOOM_PRIO_HIGH);
    CHECK_EQ(loom_set_priority(LOOM_PRIO_NORMAL), LOOM_PRIO_LOW);
    int seen = 99;
    t_set_errno(0);
    CHECK_EQ(loom_go_attr(at_level, &seen, &(loom_attr){ .priority = 5 }), 0);
    CHECK_EQ(t_errno(), EINVAL);
    CHECK(loom_go_attr(at_level, &seen, &(loom_attr){ .priority = LOOM_PRIO_LOW }) != 0);
    T_WAIT_UNTIL(t_get(&seen) != 99, 30, "the LOW goroutine to run");
    CHECK_EQ(seen, LOOM_PRIO_LOW);
    return 0;
}

/* ---------------------------------------------------------------- order */

static char order_log[64];
static atomic_int order_n;
static loom_waitgroup order_wg = LOOM_WAITGROUP_INIT;

static void record(void *arg)
{
    order_log[atomic_fetch_add(&order_n, 1)] = (char)(intptr_t)arg;
    loom_wg_done(&order_wg);
}

static int prio_of(char tag)
{
    return tag >= 'a' && tag <= 'z'   ? LOOM_PRIO_LOW
           : tag >= 'A' && tag <= 'Z' ? LOOM_PRIO_HIGH
                                      : LOOM_PRIO_NORMAL;
}

static void spawn_tag(void (*fn)(void *), char tag)
{
    CHECK(loom_go_attr(fn, (void *)(intptr_t)tag, &(loom_attr){ .priority = prio_of(tag) }) != 0);
}

static int t_order(void *arg)
{
    (void)arg;
    /* HIGH itself, so that spawning HIGH goroutines does not switch main out */
    loom_set_priority(LOOM_PRIO_HIGH);
    const char *spawn = "a1Ab2Bc3C"; /* lower case LOW, digits NORMAL, upper HIGH */
    loom_wg_add(&order_wg, (int)strlen(spawn));
    for (const char *s = spawn; *s; s++)
        spawn_tag(record, *s);
    loom_set_priority(LOOM_PRIO_LOW); /* now everything outranks main */
    loom_wg_wait(&order_wg);
    order_log[atomic_load(&order_n)] = 0;
    /* HIGH in spawn order, then the NORMAL ones (their order is Go's runnext rule, which
     * a slice's end may change: the last spawned runs first, or last), then LOW in order */
    struct loom_stats st;
    loom_stats(&st);
    bool ok = strncmp(order_log, "ABC", 3) == 0 && strcmp(order_log + 6, "abc") == 0 &&
              strchr(order_log + 3, '1') && strchr(order_log + 3, '2') && strchr(order_log + 3, '3') &&
              strchr(order_log + 3, '1') < order_log + 6 && strchr(order_log + 3, '2') < order_log + 6 &&
              strchr(order_log + 3, '3') < order_log + 6;
    CHECK_MSG(
            ok,
            "ran in order %s, want ABC, then 1 2 3 in any order, then abc (lends %llu steals %llu async %llu preempt %llu procs %llu)",
            order_log, (unsigned long long)st.spare_lends, (unsigned long long)st.steals,
            (unsigned long long)st.async_preemptions, (unsigned long long)st.preemptions,
            (unsigned long long)st.procs);
    return 0;
}

/* ---------------------------------------------------------------- handoff */

static loom_chan *hand_ch;
static loom_mutex hand_mu = LOOM_MUTEX_INIT;
static char hand_log[16];
static atomic_int hand_n;
static loom_waitgroup hand_wg = LOOM_WAITGROUP_INIT;

static void recv_tag(void *arg)
{
    int v;
    CHECK_OK(loom_recv(hand_ch, &v));
    hand_log[v] = (char)(intptr_t)arg;
    loom_wg_done(&hand_wg);
}

static void select_tag(void *arg)
{
    int v;
    loom_chan *never = loom_chan_new(sizeof(int), 0);
    loom_case cs[2] = { { .chan = never, .op = LOOM_RECV, .elem = &v },
                        { .chan = hand_ch, .op = LOOM_RECV, .elem = &v } };
    CHECK_EQ(loom_select(cs, 2, -1), 1);
    hand_log[v] = (char)(intptr_t)arg;
    loom_chan_free(never);
    loom_wg_done(&hand_wg);
}

static void lock_tag(void *arg)
{
    loom_mutex_lock(&hand_mu);
    hand_log[atomic_fetch_add(&hand_n, 1)] = (char)(intptr_t)arg;
    CHECK_OK(loom_mutex_unlock(&hand_mu));
    loom_wg_done(&hand_wg);
}

/* Goroutines parked now. */
static uint64_t parked_now(void)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st.waiting;
}

static void handoff_case(const char *what, void (*fn)(void *), bool mutex)
{
    const char *park = "l1Hm2"; /* parks in this order */
    memset(hand_log, 0, sizeof hand_log);
    atomic_store(&hand_n, 0);
    loom_wg_add(&hand_wg, 5);
    if (mutex)
        loom_mutex_lock(&hand_mu);
    uint64_t base = parked_now();
    for (const char *s = park; *s; s++) {
        char tag = *s == '2' ? 'I' : *s; /* l, 1, H, m, I: L1 N1 H1 L2 H2 */
        spawn_tag(fn, tag);
        base++; /* it parks before the next one comes */
        T_WAIT_UNTIL(parked_now() >= base, 30, "%s: waiter %c to park", what, tag);
    }
    if (mutex)
        CHECK_OK(loom_mutex_unlock(&hand_mu));
    else
        for (int v = 0; v < 5; v++)
            CHECK_OK(loom_send(hand_ch, &v));
    loom_wg_wait(&hand_wg);
    CHECK_MSG(strcmp(hand_log, "HI1lm") == 0, "%s served %s, want HI1lm", what, hand_log);
}

static int t_handoff(void *arg)
{
    (void)arg;
    hand_ch = loom_chan_new(sizeof(int), 0);
    handoff_case("channel receive", recv_tag, false);
    handoff_case("select", select_tag, false);
    handoff_case("mutex", lock_tag, true);
    loom_chan_free(hand_ch);
    return 0;
}

/* ---------------------------------------------------------------- aging */

static atomic_int stop_flag;
static atomic_long low_ran_after;

static void yielder(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_flag))
        loom_yield();
}

static void low_one(void *arg)
{
    int64_t t0 = *(int64_t *)arg;
    atomic_store(&low_ran_after, (long)(loom_now() - t0));
    atomic_store(&stop_flag, 1);
}

static int t_aging(void *arg)
{
    (void)arg;
    loom_set_priority(LOOM_PRIO_HIGH);
    atomic_store(&stop_flag, 0);
    int64_t t0 = loom_now();
    CHECK(loom_go_attr(low_one, &t0, &(loom_attr){ .priority = LOOM_PRIO_LOW }) != 0);
    for (int i = 0; i < 3; i++)
        CHECK(loom_go_attr(yielder, NULL, &(loom_attr){ .priority = LOOM_PRIO_HIGH }) != 0);
    while (!atomic_load(&stop_flag))
        loom_yield(); /* main is one of the HIGH yielders */
    long waited = atomic_load(&low_ran_after);
    /* it had to wait for aging (20 ms by default): it did not run at once... */
    CHECK_MSG(waited >= 15 * 1000000L, "LOW ran after %ld ns, before aging could apply", waited);
    loom_sleep(5 * 1000000);
    return 0;
}

/* ---------------------------------------------------------------- inversion */

static loom_mutex inv_mu = LOOM_MUTEX_INIT;
static atomic_int inv_locked, inv_done;

static void low_holder(void *arg)
{
    (void)arg;
    loom_mutex_lock(&inv_mu);
    atomic_store(&inv_locked, 1);
    for (int i = 0; i < 20; i++)
        loom_yield(); /* needs the CPU to get to the unlock */
    CHECK_OK(loom_mutex_unlock(&inv_mu));
}

static void high_waiter(void *arg)
{
    (void)arg;
    loom_mutex_lock(&inv_mu);
    CHECK_OK(loom_mutex_unlock(&inv_mu));
    atomic_store(&inv_done, 1);
    atomic_store(&stop_flag, 1);
}

static int t_inversion(void *arg)
{
    (void)arg;
    atomic_store(&stop_flag, 0);
    CHECK(loom_go_attr(low_holder, NULL, &(loom_attr){ .priority = LOOM_PRIO_LOW }) != 0);
    while (!atomic_load(&inv_locked))
        loom_sleep(1000000);
    loom_set_priority(LOOM_PRIO_HIGH);
    CHECK(loom_go_attr(high_waiter, NULL, &(loom_attr){ .priority = LOOM_PRIO_HIGH }) != 0);
    for (int i = 0; i < 2; i++)
        CHECK(loom_go_attr(yielder, NULL, &(loom_attr){ .priority = LOOM_PRIO_HIGH }) != 0);
    while (!atomic_load(&stop_flag))
        loom_yield();
    CHECK(atomic_load(&inv_done));
    loom_sleep(5 * 1000000);
    return 0;
}

/* ---------------------------------------------------------------- preempt */

static atomic_int spin_stop;
static atomic_long spin_ns;

static void low_spinner(void *arg)
{
    (void)arg;
    int64_t t0 = t_clock_ns();
    while (!atomic_load_explicit(&spin_stop, memory_order_relaxed)) {}
    atomic_store(&spin_ns, (long)(t_clock_ns() - t0));
}

static void high_sleeper(void *arg)
{
    (void)arg;
    loom_sleep(1000000);
    atomic_store(&spin_stop, 1);
}

static int t_preempt(void *arg)
{
    (void)arg;
    loom_set_priority(LOOM_PRIO_HIGH);
    CHECK(loom_go_attr(low_spinner, NULL, &(loom_attr){ .priority = LOOM_PRIO_LOW }) != 0);
    CHECK(loom_go_attr(high_sleeper, NULL, &(loom_attr){ .priority = LOOM_PRIO_HIGH }) != 0);
    loom_set_priority(LOOM_PRIO_LOW); /* let the spinner start (it is FIFO before main) */
    while (!atomic_load(&spin_stop))
        loom_sleep(1000000);
    loom_sleep(5 * 1000000);
    long ns = atomic_load(&spin_ns);
    /* a 1 s slice: only the priority kick can have stopped it this early */
    /* (chaos mode's sleeps in its windows may let the sleeper's 1 ms pass before the spinner
     * even starts, and draw slices down to a tenth: the bound is for the real runtime) */
    if (!t_chaos())
        CHECK_MSG(ns > 0 && ns < 500L * 1000000, "the spinner ran %ld ns", ns);
    return 0;
}

/* The HIGH goroutine woken while a LOW one spins runs ahead of it, on another thread: the
 * spinner, preempted, waits locked to its own thread, which runs nothing else meanwhile
 * (src/preempt_policy.c); the HIGH one keeps the thread it locks; the spinner resumes on
 * its thread. */
static atomic_int pre_stop, high_ran_early;
static pthread_t low_thread_start, low_thread_end, high_thread_wake;
static loom_waitgroup pre_wg = LOOM_WAITGROUP_INIT;

static void pre_spinner(void *arg)
{
    (void)arg;
    low_thread_start = pthread_self();
    while (!atomic_load_explicit(&pre_stop, memory_order_relaxed)) {}
    low_thread_end = pthread_self();
    loom_wg_done(&pre_wg);
}

static void high_locker(void *arg)
{
    (void)arg;
    loom_sleep(2000000); /* the spinner runs meanwhile */
    if (!atomic_load(&pre_stop))
        atomic_store(&high_ran_early, 1);
    high_thread_wake = pthread_self();
    loom_lock_thread();
    pthread_t me = pthread_self();
    for (int i = 0; i < 3; i++) {
        loom_sleep(500000);
        CHECK(pthread_equal(me, pthread_self()));
        loom_yield();
        CHECK(pthread_equal(me, pthread_self()));
    }
    loom_unlock_thread();
    atomic_store(&pre_stop, 1);
    loom_wg_done(&pre_wg);
}

static int t_preempted(void *arg)
{
    (void)arg;
    for (int round = 0; round < 5; round++) {
        atomic_store(&pre_stop, 0);
        atomic_store(&high_ran_early, 0);
        CHECK_OK(loom_wg_add(&pre_wg, 2));
        CHECK(loom_go_attr(pre_spinner, NULL, &(loom_attr){ .priority = LOOM_PRIO_LOW }) != 0);
        CHECK(loom_go_attr(high_locker, NULL, &(loom_attr){ .priority = LOOM_PRIO_HIGH }) != 0);
        loom_wg_wait(&pre_wg);
        CHECK(atomic_load(&high_ran_early));
        CHECK(pthread_equal(low_thread_start, low_thread_end));
        CHECK_MSG(!pthread_equal(low_thread_start, high_thread_wake),
                  "the HIGH goroutine ran on the thread of the preempted spinner");
    }
    return 0;
}

int main(void)
{
    CHECK_ERR(loom_set_priority(LOOM_PRIO_HIGH), EPERM);
    setenv("LOOM_PROCS", "1", 1);
    T_RUN(t_api, NULL);
    T_RUN(t_order, NULL);
    T_RUN(t_handoff, NULL);
    T_RUN(t_aging, NULL);
    T_RUN(t_inversion, NULL);
    if (t_async_preempt()) {
        setenv("LOOM_SLICE_US", "1000000", 1);
        T_RUN(t_preempt, NULL);
        T_RUN(t_preempted, NULL);
        unsetenv("LOOM_SLICE_US");
    } else {
        printf("preempt: skipped (no preemption signal: a sanitizer build or LOOM_ASYNCPREEMPT=0)\n");
    }
    printf("ok\n");
    return 0;
}
