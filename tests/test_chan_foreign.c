/*
 * test_chan_foreign — channels used from a thread that runs no goroutine
 * (API.md: the non-blocking calls loom_try_send, loom_try_recv, loom_close,
 * loom_chan_* and loom_now work there, so foreign threads can wake goroutines;
 * calls that would block or spawn return -EPERM, loom_go 0 with errno EPERM).
 *
 * A plain pthread, created inside a goroutine:
 *   - gets -EPERM from loom_send / loom_recv on a channel where they would block
 *     (and nothing is delivered), -EPERM from a select with timeout -1, 0 with
 *     errno EPERM from loom_go; loom_id() is 0; loom_now() is consistent with
 *     the goroutines' clock;
 *   - wakes a goroutine blocked in loom_recv with loom_try_send (retried until the
 *     goroutine has parked), many times in a row: values arrive in order;
 *   - takes values with loom_try_recv from a goroutine blocked in loom_send;
 *   - wakes several goroutines blocked in loom_recv with loom_close (-EPIPE);
 *   - in a second loom_run: wakes goroutine 1 blocked in loom_recv while no other
 *     goroutine and no timer exists. Only the foreign thread (which has already
 *     made loom calls) can wake it; API.md's deadlock rule says the report is for
 *     "every goroutine blocked forever (no timer, fd, syscall or other thread can
 *     wake one)", so this must not be reported as a deadlock.
 * During the first part a ticker goroutine keeps a timer pending, so that part
 * does not depend on how the deadlock detector treats foreign threads.
 */
#include "t.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define DEADLINE_NS (20LL * 1000000000LL)

static loom_chan *c_vals;  /* thread -> goroutine stream (unbuffered) */
static loom_chan *c_back;  /* goroutine -> thread stream (unbuffered) */
static loom_chan *c_close; /* closed by the thread while goroutines wait */
static loom_chan *c_eperm; /* nobody ever on the other side */
static loom_chan *c_last;  /* the final wake-up (second run) */
static long n_stream;
static atomic_int phase; /* handshakes between the thread and goroutine 1 */
static atomic_int thread_failed;
static int64_t g_now_before;

#define TCHECK(cond) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: FAIL (foreign thread): %s\n", __FILE__, __LINE__, #cond); \
            atomic_store(&thread_failed, 1); \
            abort(); \
        } \
    } while (0)

static void never_run(void *arg)
{
    (void)arg;
    FAIL("a goroutine spawned from a foreign thread ran");
}

static void spin_until_phase(int want)
{
    int64_t end = t_clock_ns() + DEADLINE_NS;
    while (atomic_load(&phase) < want) {
        TCHECK(t_clock_ns() < end);
        sched_yield();
    }
}

/* retry a non-blocking op from the thread until it stops returning -EAGAIN */
static int retry_thread(int (*op)(loom_chan *, void *), loom_chan *c, void *v)
{
    int64_t end = t_clock_ns() + DEADLINE_NS;
    int rc;
    while ((rc = op(c, v)) == -EAGAIN) {
        TCHECK(t_clock_ns() < end);
        sched_yield();
    }
    return rc;
}

static int try_send_op(loom_chan *c, void *v)
{
    return loom_try_send(c, v);
}
static int try_recv_op(loom_chan *c, void *v)
{
    return loom_try_recv(c, v);
}

static void *foreign(void *arg)
{
    (void)arg;
    /* --- what must fail, and what must work without a goroutine */
    TCHECK(loom_id() == 0);
    int64_t now = loom_now();
    TCHECK(now >= g_now_before);
    long v = 123;
    TCHECK(loom_send(c_eperm, &v) == -EPERM);
    TCHECK(loom_recv(c_eperm, &v) == -EPERM);
    loom_case cs[2] = {
        { .chan = c_eperm, .op = LOOM_SEND, .elem = &v },
        { .chan = c_eperm, .op = LOOM_RECV, .elem = &v },
    };
    TCHECK(loom_select(cs, 2, -1) == -EPERM);
    TCHECK(loom_select(cs, 2, 1000000) == -EPERM);
    errno = 0;
    uint64_t id = loom_go(never_run, NULL);
    int e = errno;
    TCHECK(id == 0);
    TCHECK(e == EPERM);
    TCHECK(loom_try_send(c_eperm, &v) == -EAGAIN); /* no receiver, nothing queued */
    TCHECK(loom_try_recv(c_eperm, &v) == -EAGAIN); /* the failed send left nothing */
    TCHECK(loom_chan_cap(c_eperm) == 0);
    TCHECK(loom_chan_len(c_eperm) == 0);
    atomic_store(&phase, 1);

    /* --- stream to a goroutine blocked in loom_recv */
    for (long i = 0; i < n_stream; i++)
        TCHECK(retry_thread(try_send_op, c_vals, &i) == 0);

    /* --- stream from a goroutine blocked in loom_send */
    for (long i = 0; i < n_stream; i++) {
        long got = -1;
        TCHECK(retry_thread(try_recv_op, c_back, &got) == 0);
        if (got != i) {
            fprintf(stderr, "foreign thread: try_recv got %ld, expected %ld\n", got, i);
            TCHECK(got == i);
        }
    }

    /* --- close wakes the goroutines blocked in loom_recv */
    spin_until_phase(2);
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL); /* let them park */
    TCHECK(loom_close(c_close) == 0);
    TCHECK(loom_close(c_close) == -EPIPE);

    return NULL;
}

/* second run: goroutine 1 alone, blocked in loom_recv: only this thread can wake it */
static void *foreign_last(void *arg)
{
    (void)arg;
    long v = 1;
    TCHECK(loom_try_recv(c_last, &v) == -EAGAIN); /* a loom call before the wait */
    atomic_store(&phase, 3); /* loom now knows this thread: it counts as a possible waker */
    spin_until_phase(4);
    struct timespec ts = { 0, 50 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    long last = 4242;
    TCHECK(retry_thread(try_send_op, c_last, &last) == 0);
    return NULL;
}

static atomic_int ticker_stop, ticker_done;

static void ticker(void *arg)
{
    (void)arg;
    while (!atomic_load(&ticker_stop))
        loom_sleep(1000 * 1000);
    atomic_store(&ticker_done, 1);
}

enum { NCLOSE = 4 };
struct closewait {
    atomic_int *started, *woken;
};

static void close_waiter(void *arg)
{
    struct closewait *cw = arg;
    long v = 9;
    atomic_fetch_add(cw->started, 1);
    CHECK_ERR(loom_recv(c_close, &v), EPIPE);
    CHECK_EQ(v, 0);
    atomic_fetch_add(cw->woken, 1);
}

struct backsend {
    atomic_int done;
};

static void back_sender(void *arg)
{
    struct backsend *b = arg;
    for (long i = 0; i < n_stream; i++)
        CHECK_OK(loom_send(c_back, &i));
    atomic_store(&b->done, 1);
}

static void wait_atomic(atomic_int *a, int want)
{
    int64_t end = loom_now() + DEADLINE_NS;
    while (atomic_load(a) < want) {
        if (loom_now() > end)
            FAIL("timed out waiting (%d of %d)", atomic_load(a), want);
        loom_sleep(200 * 1000);
    }
}

static int main_fn(void *arg)
{
    (void)arg;
    n_stream = t_scale(20000);
    c_vals = loom_chan_new(sizeof(long), 0);
    c_back = loom_chan_new(sizeof(long), 0);
    c_close = loom_chan_new(sizeof(long), 0);
    c_eperm = loom_chan_new(sizeof(long), 0);
    CHECK(c_vals && c_back && c_close && c_eperm);
    g_now_before = loom_now();
    atomic_init(&ticker_stop, 0);
    atomic_init(&ticker_done, 0);
    CHECK(loom_go(ticker, NULL) != 0);

    /* a goroutine streams values to the thread meanwhile */
    struct backsend bs;
    atomic_init(&bs.done, 0);
    CHECK(loom_go(back_sender, &bs) != 0);

    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, foreign, NULL), 0);

    wait_atomic(&phase, 1);
    for (long i = 0; i < n_stream; i++) {
        long v = -1;
        CHECK_OK(loom_recv(c_vals, &v));
        if (v != i)
            FAIL("received %ld from the foreign thread, expected %ld", v, i);
    }
    wait_atomic(&bs.done, 1);

    atomic_int started, woken;
    atomic_init(&started, 0);
    atomic_init(&woken, 0);
    struct closewait cw = { &started, &woken };
    for (int i = 0; i < NCLOSE; i++)
        CHECK(loom_go(close_waiter, &cw) != 0);
    wait_atomic(&started, NCLOSE);
    atomic_store(&phase, 2);
    wait_atomic(&woken, NCLOSE);

    loom_block_begin();
    CHECK_EQ(pthread_join(th, NULL), 0);
    loom_block_end();
    CHECK_EQ(atomic_load(&thread_failed), 0);
    atomic_store(&ticker_stop, 1);
    wait_atomic(&ticker_done, 1);
    loom_chan_free(c_vals);
    loom_chan_free(c_back);
    loom_chan_free(c_close);
    loom_chan_free(c_eperm);
    return 0;
}

static int main_last(void *arg)
{
    (void)arg;
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, foreign_last, NULL), 0);
    fprintf(stderr,
            "test_chan_foreign: part 2: goroutine 1 blocks in loom_recv; only a foreign thread can wake it\n");
    while (atomic_load(&phase) != 3)
        loom_sleep(1000 * 1000);
    atomic_store(&phase, 4);
    long last = 0;
    CHECK_OK(loom_recv(c_last, &last));
    CHECK_EQ(last, 4242);
    loom_block_begin();
    CHECK_EQ(pthread_join(th, NULL), 0);
    loom_block_end();
    CHECK_EQ(atomic_load(&thread_failed), 0);
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    fprintf(stderr, "test_chan_foreign: part 1 passed\n");
    c_last = loom_chan_new(sizeof(long), 0); /* loom_chan_* work outside the runtime */
    CHECK(c_last != NULL);
    T_RUN(main_last, NULL);
    loom_chan_free(c_last);
    return 0;
}
