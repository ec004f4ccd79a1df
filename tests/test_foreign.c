/*
 * test_foreign.c — loom calls from threads that run no goroutine (API.md, Runtime):
 * a plain pthread started while loom_run runs, and the main thread before/after it.
 * Checked there:
 *  - loom_go / loom_go_attr: 0 with errno EPERM;
 *  - loom_id() == 0;
 *  - loom_now() works: nondecreasing, counts ns (a 10 ms nanosleep advances it >= 10 ms);
 *  - loom_sleep(10 ms) and loom_yield() return without crashing and without hanging
 *    (whether loom_sleep waits is not asserted: it is void and may not park a thread);
 *  - blocking channel calls loom_send / loom_recv / loom_select(-1) return -EPERM;
 *  - non-blocking calls work and wake goroutines: loom_try_send to a parked receiver,
 *    loom_try_recv from a parked sender, loom_close waking receivers, loom_chan_len/cap.
 */
#include "t.h"

#include <pthread.h>

static void never_runs(void *arg)
{
    (void)arg;
    FAIL("a goroutine spawned from a foreign thread ran");
}

/* everything a foreign thread may check on its own */
static void foreign_checks(const char *where)
{
    CHECK_MSG(loom_id() == 0, "%s: loom_id() = %" PRIu64, where, loom_id());

    errno = 0;
    uint64_t id = loom_go(never_runs, NULL);
    int e = errno;
    CHECK_MSG(id == 0 && e == EPERM, "%s: loom_go returned %" PRIu64 " errno %d", where, id, e);
    loom_attr a = { 0, 0, "foreign" };
    errno = 0;
    id = loom_go_attr(never_runs, NULL, &a);
    e = errno;
    CHECK_MSG(id == 0 && e == EPERM, "%s: loom_go_attr returned %" PRIu64 " errno %d", where, id, e);

    int64_t n0 = loom_now();
    int64_t prev = n0;
    for (int i = 0; i < 1000; i++) {
        int64_t v = loom_now();
        CHECK_MSG(v >= prev, "%s: loom_now went back", where);
        prev = v;
    }
    struct timespec ts = { 0, 10 * 1000000 };
    nanosleep(&ts, NULL);
    int64_t n1 = loom_now();
    CHECK_MSG(n1 - n0 >= 10 * 1000000LL && n1 - n0 < 10LL * 1000000000,
              "%s: loom_now advanced %" PRId64 " ns over a 10 ms nanosleep", where, n1 - n0);

    int64_t c0 = t_clock_ns();
    loom_yield();
    loom_sleep(0);
    loom_sleep(-1);
    loom_sleep(10 * 1000000);
    loom_yield();
    CHECK_MSG(t_clock_ns() - c0 < 30LL * 1000000000, "%s: loom_sleep/loom_yield hung",
              where); /* a hang guard */
    CHECK_MSG(loom_id() == 0, "%s: loom_id() after loom_sleep", where);
}

/* ---- during loom_run */
static loom_chan *c_unbuf;  /* int, cap 0 */
static loom_chan *c_buf;    /* int, cap 4 */
static loom_chan *c_close;  /* elem 0, cap 0 */
static loom_chan *c_from_g; /* int, cap 0: a goroutine sends, the foreign thread try_recvs */
static loom_chan *c_done;   /* int, cap 1: foreign thread reports it finished */
static int recv_parked;     /* atomic: the receiver goroutine is about to block */
static int send_parked;     /* atomic */
static int closers_parked;  /* atomic */
static int got_value;       /* atomic */
static int close_woken;     /* atomic */
static int sender_done;     /* atomic */

static void receiver(void *arg)
{
    (void)arg;
    int v = 0;
    __atomic_store_n(&recv_parked, 1, __ATOMIC_SEQ_CST);
    CHECK_OK(loom_recv(c_unbuf, &v));
    CHECK_EQ(v, 4242);
    __atomic_store_n(&got_value, 1, __ATOMIC_SEQ_CST);
}

static void sender(void *arg)
{
    (void)arg;
    int v = 99;
    __atomic_store_n(&send_parked, 1, __ATOMIC_SEQ_CST);
    CHECK_OK(loom_send(c_from_g, &v));
    __atomic_store_n(&sender_done, 1, __ATOMIC_SEQ_CST);
}

static void close_waiter(void *arg)
{
    (void)arg;
    char dummy;
    __atomic_add_fetch(&closers_parked, 1, __ATOMIC_SEQ_CST);
    CHECK_ERR(loom_recv(c_close, &dummy), EPIPE);
    __atomic_add_fetch(&close_woken, 1, __ATOMIC_SEQ_CST);
}

static void spin_until(int *flag, int want, const char *what)
{
    int64_t dl = t_clock_ns() + 20LL * 1000000000;
    while (__atomic_load_n(flag, __ATOMIC_SEQ_CST) < want) {
        CHECK_MSG(t_clock_ns() < dl, "foreign thread: timed out waiting for %s", what);
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
}

static void *foreign_thread(void *arg)
{
    (void)arg;
    foreign_checks("foreign pthread during loom_run");

    /* blocking calls are refused */
    int v = 1;
    CHECK_ERR(loom_send(c_buf, &v), EPERM);
    CHECK_ERR(loom_recv(c_buf, &v), EPERM);
    loom_case cs[1] = { { c_buf, LOOM_RECV, &v, 0 } };
    CHECK_ERR(loom_select(cs, 1, -1), EPERM);
    CHECK_EQ(loom_chan_len(c_buf), 0); /* the refused send put nothing in */

    /* non-blocking calls work */
    CHECK_EQ(loom_chan_cap(c_buf), 4);
    for (int i = 0; i < 4; i++)
        CHECK_OK(loom_try_send(c_buf, &i));
    CHECK_ERR(loom_try_send(c_buf, &v), EAGAIN);
    CHECK_EQ(loom_chan_len(c_buf), 4);
    for (int i = 0; i < 2; i++) {
        CHECK_OK(loom_try_recv(c_buf, &v));
        CHECK_EQ(v, i);
    }
    CHECK_EQ(loom_chan_len(c_buf), 2);

    /* wake a goroutine parked in loom_recv on an unbuffered channel */
    spin_until(&recv_parked, 1, "the receiver");
    v = 4242;
    int64_t dl = t_clock_ns() + 20LL * 1000000000;
    int rc;
    while ((rc = loom_try_send(c_unbuf, &v)) == -EAGAIN) {
        CHECK_MSG(t_clock_ns() < dl, "loom_try_send never found the parked receiver");
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
    }
    CHECK_OK(rc);
    spin_until(&got_value, 1, "the receiver to get the value");

    /* take a value from a goroutine parked in loom_send */
    spin_until(&send_parked, 1, "the sender");
    dl = t_clock_ns() + 20LL * 1000000000;
    v = 0;
    while ((rc = loom_try_recv(c_from_g, &v)) == -EAGAIN) {
        CHECK_MSG(t_clock_ns() < dl, "loom_try_recv never found the parked sender");
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
    }
    CHECK_OK(rc);
    CHECK_EQ(v, 99);
    spin_until(&sender_done, 1, "the sender to return");

    /* close wakes every parked receiver */
    spin_until(&closers_parked, 3, "close waiters");
    struct timespec ts = { 0, 20 * 1000000 };
    nanosleep(&ts, NULL); /* let them really park */
    CHECK_OK(loom_close(c_close));
    CHECK_ERR(loom_close(c_close), EPIPE);
    spin_until(&close_woken, 3, "close waiters to wake");

    foreign_checks("foreign pthread after waking goroutines");
    int one = 1;
    CHECK_OK(loom_try_send(c_done, &one));
    return NULL;
}

static int main_fn(void *arg)
{
    (void)arg;
    c_unbuf = loom_chan_new(sizeof(int), 0);
    c_buf = loom_chan_new(sizeof(int), 4);
    c_close = loom_chan_new(0, 0);
    c_from_g = loom_chan_new(sizeof(int), 0);
    c_done = loom_chan_new(sizeof(int), 1);
    CHECK(c_unbuf && c_buf && c_close && c_from_g && c_done);
    CHECK(loom_go(receiver, NULL) != 0);
    CHECK(loom_go(sender, NULL) != 0);
    for (int i = 0; i < 3; i++)
        CHECK(loom_go(close_waiter, NULL) != 0);

    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, foreign_thread, NULL));
    /* Wait for the foreign thread's report by polling with sleeps, so a timer is
     * always pending: the deadlock detector can't know about plain pthreads, and this
     * test is not about it. */
    int v = 0, rc;
    int64_t dl = t_clock_ns() + 60LL * 1000000000;
    while ((rc = loom_try_recv(c_done, &v)) == -EAGAIN) {
        CHECK_MSG(t_clock_ns() < dl, "the foreign thread did not finish");
        loom_sleep(1000000);
    }
    CHECK_OK(rc);
    CHECK_EQ(v, 1);
    loom_block_begin();
    CHECK_OK(pthread_join(th, NULL));
    loom_block_end();

    CHECK_EQ(loom_chan_len(c_buf), 2);
    for (int i = 2; i < 4; i++) {
        CHECK_OK(loom_recv(c_buf, &v));
        CHECK_EQ(v, i);
    }
    CHECK(__atomic_load_n(&got_value, __ATOMIC_SEQ_CST));
    CHECK(__atomic_load_n(&sender_done, __ATOMIC_SEQ_CST));
    CHECK_EQ(__atomic_load_n(&close_woken, __ATOMIC_SEQ_CST), 3);
    loom_chan_free(c_unbuf);
    loom_chan_free(c_buf);
    loom_chan_free(c_close);
    loom_chan_free(c_from_g);
    loom_chan_free(c_done);
    return 0;
}

int main(void)
{
    /* no runtime at all yet: this thread is foreign too */
    foreign_checks("main thread before loom_run");
    T_RUN(main_fn, NULL);
    foreign_checks("main thread after loom_run");
    return 0;
}
