/*
 * test_cond.c — loom_cond: a bounded producer/consumer queue across Ps, broadcast
 * wakes every waiter, signal wakes exactly one, and a signal with no waiter is not
 * remembered (as sync.Cond, whose Wait cannot return unless woken by Signal or
 * Broadcast).
 */
#include "t.h"

/* ---- 1. producer/consumer over a ring of 4 slots */
#define QCAP  4
#define NPROD 4
#define NCONS 4
static loom_mutex q_mu = LOOM_MUTEX_INIT;
static loom_cond q_notempty = LOOM_COND_INIT;
static loom_cond q_notfull = LOOM_COND_INIT;
static long q_buf[QCAP];
static int q_head, q_len; /* under q_mu */
static long q_per_producer;
static unsigned char *q_seen;        /* [NPROD * q_per_producer], under q_mu */
static long q_consumed;              /* under q_mu */
static int q_prod_done, q_cons_done; /* atomic */

static void producer(void *arg)
{
    long id = (long)(intptr_t)arg;
    for (long i = 0; i < q_per_producer; i++) {
        loom_mutex_lock(&q_mu);
        while (q_len == QCAP)
            loom_cond_wait(&q_notfull, &q_mu);
        q_buf[(q_head + q_len) % QCAP] = id * q_per_producer + i;
        q_len++;
        loom_cond_signal(&q_notempty);
        CHECK_OK(loom_mutex_unlock(&q_mu));
    }
    __atomic_add_fetch(&q_prod_done, 1, __ATOMIC_SEQ_CST);
}

static void consumer(void *arg)
{
    (void)arg;
    long total = NPROD * q_per_producer;
    for (;;) {
        loom_mutex_lock(&q_mu);
        while (q_len == 0 && q_consumed < total)
            loom_cond_wait(&q_notempty, &q_mu);
        if (q_len == 0) { /* everything consumed */
            loom_cond_broadcast(&q_notempty);
            CHECK_OK(loom_mutex_unlock(&q_mu));
            break;
        }
        long v = q_buf[q_head];
        q_head = (q_head + 1) % QCAP;
        q_len--;
        CHECK(v >= 0 && v < total);
        CHECK_MSG(q_seen[v] == 0, "item %ld consumed twice", v);
        q_seen[v] = 1;
        q_consumed++;
        if (q_consumed == total)
            loom_cond_broadcast(&q_notempty); /* release the other consumers */
        loom_cond_signal(&q_notfull);
        CHECK_OK(loom_mutex_unlock(&q_mu));
    }
    __atomic_add_fetch(&q_cons_done, 1, __ATOMIC_SEQ_CST);
}

static void test_queue(void)
{
    q_per_producer = t_scale(20000);
    long total = NPROD * q_per_producer;
    q_seen = calloc((size_t)total, 1);
    CHECK(q_seen != NULL);
    for (long i = 0; i < NCONS; i++)
        CHECK(loom_go(consumer, (void *)(intptr_t)i) != 0);
    for (long i = 0; i < NPROD; i++)
        CHECK(loom_go(producer, (void *)(intptr_t)i) != 0);
    T_WAIT_UNTIL(t_get(&q_prod_done) >= NPROD, 120, "producers (%d of %d)", t_get(&q_prod_done), NPROD);
    T_WAIT_UNTIL(t_get(&q_cons_done) >= NCONS, 120, "consumers (%d of %d)", t_get(&q_cons_done), NCONS);
    loom_mutex_lock(&q_mu);
    CHECK_EQ(q_consumed, total);
    CHECK_EQ(q_len, 0);
    for (long i = 0; i < total; i++)
        CHECK_MSG(q_seen[i] == 1, "item %ld never consumed", i);
    CHECK_OK(loom_mutex_unlock(&q_mu));
    free(q_seen);
}

/* ---- 2. waiters that wait exactly once (no predicate loop): counts how many a
 * signal or broadcast really woke */
static loom_mutex w_mu = LOOM_MUTEX_INIT;
static loom_cond w_cond = LOOM_COND_INIT;
static int w_waiting; /* under w_mu */
static int w_woken;   /* atomic (also under w_mu) */

static void once_waiter(void *arg)
{
    (void)arg;
    loom_mutex_lock(&w_mu);
    w_waiting++;
    loom_cond_wait(&w_cond, &w_mu);
    w_waiting--;
    __atomic_add_fetch(&w_woken, 1, __ATOMIC_SEQ_CST);
    CHECK_OK(loom_mutex_unlock(&w_mu));
}

static void wait_waiting(int n)
{
    int64_t dl = t_clock_ns() + 20LL * 1000000000;
    for (;;) {
        loom_mutex_lock(&w_mu);
        int w = w_waiting;
        CHECK_OK(loom_mutex_unlock(&w_mu));
        if (w == n)
            return;
        CHECK_MSG(t_clock_ns() < dl, "only %d of %d goroutines reached cond_wait", w, n);
        loom_sleep(500000);
    }
}

static void test_broadcast(void)
{
    enum { N = 20 };
    __atomic_store_n(&w_woken, 0, __ATOMIC_SEQ_CST);
    for (int i = 0; i < N; i++)
        CHECK(loom_go(once_waiter, NULL) != 0);
    wait_waiting(N); /* all N are inside cond_wait (they registered under w_mu) */
    loom_sleep(10000000);
    CHECK_EQ(__atomic_load_n(&w_woken, __ATOMIC_SEQ_CST), 0); /* nobody woke by itself */
    loom_mutex_lock(&w_mu);
    loom_cond_broadcast(&w_cond);
    CHECK_OK(loom_mutex_unlock(&w_mu));
    T_WAIT_UNTIL(t_get(&w_woken) >= N, 10, "broadcast to wake every waiter (%d of %d)", t_get(&w_woken), N);
    loom_sleep(10000000);
    CHECK_EQ(__atomic_load_n(&w_woken, __ATOMIC_SEQ_CST), N);

    /* broadcast without holding the mutex is allowed too */
    __atomic_store_n(&w_woken, 0, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 5; i++)
        CHECK(loom_go(once_waiter, NULL) != 0);
    wait_waiting(5);
    loom_cond_broadcast(&w_cond);
    T_WAIT_UNTIL(t_get(&w_woken) >= 5, 10, "unlocked broadcast to wake every waiter (%d of %d)",
                 t_get(&w_woken), 5);
}

static void test_signal(void)
{
    enum { N = 5 };
    __atomic_store_n(&w_woken, 0, __ATOMIC_SEQ_CST);
    for (int i = 0; i < N; i++)
        CHECK(loom_go(once_waiter, NULL) != 0);
    wait_waiting(N);
    for (int k = 1; k <= N; k++) {
        loom_mutex_lock(&w_mu);
        loom_cond_signal(&w_cond);
        CHECK_OK(loom_mutex_unlock(&w_mu));
        T_WAIT_UNTIL(t_get(&w_woken) >= k, 10, "a signal to wake one waiter (%d of %d)", t_get(&w_woken), k);
        loom_sleep(30000000); /* give any extra wakeup time to show */
        CHECK_MSG(__atomic_load_n(&w_woken, __ATOMIC_SEQ_CST) == k, "after %d signals %d waiters woke", k,
                  __atomic_load_n(&w_woken, __ATOMIC_SEQ_CST));
    }
    wait_waiting(0);

    /* a signal (or broadcast) with nobody waiting is lost, not banked */
    loom_mutex_lock(&w_mu);
    loom_cond_signal(&w_cond);
    loom_cond_broadcast(&w_cond);
    CHECK_OK(loom_mutex_unlock(&w_mu));
    __atomic_store_n(&w_woken, 0, __ATOMIC_SEQ_CST);
    CHECK(loom_go(once_waiter, NULL) != 0);
    wait_waiting(1);
    loom_sleep(30000000);
    CHECK_MSG(__atomic_load_n(&w_woken, __ATOMIC_SEQ_CST) == 0,
              "cond_wait returned on a signal sent before it waited");
    loom_cond_signal(&w_cond);
    T_WAIT_UNTIL(t_get(&w_woken) >= 1, 10, "the late waiter (%d of %d)", t_get(&w_woken), 1);
}

/* ---- 3. a cond used by waiters on several Ps with a counter predicate
 * (handoff ping-pong through one cond) */
static loom_mutex p_mu = LOOM_MUTEX_INIT;
static loom_cond p_cond = LOOM_COND_INIT;
static long p_turn; /* under p_mu */
static long p_rounds;
static int p_done; /* atomic */

static void pinger(void *arg)
{
    long me = (long)(intptr_t)arg; /* 0..2 */
    loom_mutex_lock(&p_mu);
    for (;;) {
        while (p_turn < p_rounds && p_turn % 3 != me)
            loom_cond_wait(&p_cond, &p_mu);
        if (p_turn >= p_rounds)
            break;
        p_turn++;
        loom_cond_broadcast(&p_cond);
    }
    CHECK_OK(loom_mutex_unlock(&p_mu));
    __atomic_add_fetch(&p_done, 1, __ATOMIC_SEQ_CST);
}

static void test_pingpong(void)
{
    p_rounds = t_scale(30000);
    for (long i = 0; i < 3; i++)
        CHECK(loom_go(pinger, (void *)(intptr_t)i) != 0);
    T_WAIT_UNTIL(t_get(&p_done) >= 3, 120, "three-way cond ping-pong (%d of %d)", t_get(&p_done), 3);
    CHECK_EQ(p_turn, p_rounds);
}

static int main_fn(void *arg)
{
    (void)arg;
    test_broadcast();
    test_signal();
    test_queue();
    test_pingpong();
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
