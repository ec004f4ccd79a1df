/*
 * test_chan_close — close semantics:
 *   - receivers drain the buffered values (in order) after close, then get -EPIPE
 *     with the element zeroed (recv and try_recv); len counts the values left;
 *   - send / try_send on a closed channel return -EPIPE (also when the buffer is
 *     full, and nothing is stored); double close returns -EPIPE;
 *   - close wakes every blocked receiver (-EPIPE, zeroed elem) and every blocked
 *     sender (-EPIPE), on unbuffered and full buffered channels; the values of the
 *     woken senders are not delivered;
 *   - close happens-before a receive that returns -EPIPE (checked by TSan through
 *     a plain, non-atomic variable);
 *   - a select blocked on a channel is woken by its close with ok = 0.
 */
#include "t.h"

#include <stdatomic.h>

#define DEADLINE_S 10

typedef struct val {
    uint64_t a, b, c;
} val;

static int is_zero(const val *v)
{
    return v->a == 0 && v->b == 0 && v->c == 0;
}

/* ------------------------------------------------- drain after close */

static void test_drain_then_epipe(void)
{
    for (size_t cap = 1; cap <= 6; cap++) {
        loom_chan *c = loom_chan_new(sizeof(val), cap);
        CHECK(c != NULL);
        size_t n = cap > 1 ? cap - 1 : 1; /* partially or fully filled */
        for (size_t i = 0; i < n; i++) {
            val v = { i + 1, ~(uint64_t)i, 7 };
            CHECK_OK(loom_send(c, &v));
        }
        CHECK_OK(loom_close(c));
        CHECK_EQ(loom_chan_len(c), n);
        CHECK_EQ(loom_chan_cap(c), cap);

        val x = { 1, 2, 3 };
        CHECK_ERR(loom_send(c, &x), EPIPE);
        CHECK_ERR(loom_try_send(c, &x), EPIPE);
        CHECK_ERR(loom_close(c), EPIPE);
        CHECK_EQ(loom_chan_len(c), n); /* nothing was added */

        for (size_t i = 0; i < n; i++) {
            val v = { 0, 0, 0 };
            if (i % 2)
                CHECK_OK(loom_recv(c, &v));
            else
                CHECK_OK(loom_try_recv(c, &v));
            CHECK_EQ(v.a, i + 1);
            CHECK_EQU(v.b, ~(uint64_t)i);
            CHECK_EQ(v.c, 7);
            CHECK_EQ(loom_chan_len(c), n - 1 - i);
        }
        for (int k = 0; k < 3; k++) {
            val v;
            memset(&v, 0xAB, sizeof v);
            CHECK_ERR(loom_recv(c, &v), EPIPE);
            CHECK_MSG(is_zero(&v), "recv on closed drained channel did not zero the element");
            memset(&v, 0xCD, sizeof v);
            CHECK_ERR(loom_try_recv(c, &v), EPIPE);
            CHECK_MSG(is_zero(&v), "try_recv on closed drained channel did not zero the element");
        }
        CHECK_ERR(loom_close(c), EPIPE);
        loom_chan_free(c);
    }

    /* full buffer, closed: try_send still reports -EPIPE, not -EAGAIN */
    loom_chan *c = loom_chan_new(sizeof(int), 2);
    CHECK(c != NULL);
    int a = 10, b = 20, z = 30;
    CHECK_OK(loom_send(c, &a));
    CHECK_OK(loom_send(c, &b));
    CHECK_ERR(loom_try_send(c, &z), EAGAIN);
    CHECK_OK(loom_close(c));
    CHECK_ERR(loom_try_send(c, &z), EPIPE);
    CHECK_ERR(loom_send(c, &z), EPIPE);
    int v = 0;
    CHECK_OK(loom_recv(c, &v));
    CHECK_EQ(v, 10);
    CHECK_OK(loom_recv(c, &v));
    CHECK_EQ(v, 20);
    v = 99;
    CHECK_ERR(loom_recv(c, &v), EPIPE);
    CHECK_EQ(v, 0);
    loom_chan_free(c);

    /* unbuffered and signal channels */
    size_t es[] = { sizeof(val), 0 };
    for (int k = 0; k < 2; k++) {
        c = loom_chan_new(es[k], 0);
        CHECK(c != NULL);
        CHECK_OK(loom_close(c));
        val x;
        memset(&x, 0x5A, sizeof x);
        CHECK_ERR(loom_try_send(c, &x), EPIPE);
        CHECK_ERR(loom_send(c, &x), EPIPE);
        CHECK_ERR(loom_recv(c, &x), EPIPE);
        if (es[k])
            CHECK(is_zero(&x));
        CHECK_ERR(loom_try_recv(c, &x), EPIPE);
        CHECK_ERR(loom_close(c), EPIPE);
        CHECK_EQ(loom_chan_len(c), 0);
        loom_chan_free(c);
    }
}

/* ------------------------------------------------- close wakes receivers */

struct waiter {
    loom_chan *c;
    atomic_int *started;
    atomic_int *finished;
    int rc;
    val v;
    int use_select;
    int sel_ok;
};

static void recv_waiter(void *arg)
{
    struct waiter *w = arg;
    memset(&w->v, 0x77, sizeof w->v);
    atomic_fetch_add(w->started, 1);
    if (w->use_select) {
        loom_case cs[2] = {
            { .chan = NULL, .op = LOOM_RECV, .elem = NULL, .ok = -1 },
            { .chan = w->c, .op = LOOM_RECV, .elem = &w->v, .ok = -1 },
        };
        w->rc = loom_select(cs, 2, -1);
        w->sel_ok = cs[1].ok;
    } else {
        w->rc = loom_recv(w->c, &w->v);
    }
    atomic_fetch_add(w->finished, 1);
}

static void send_waiter(void *arg)
{
    struct waiter *w = arg;
    val v = { 0xdead, 0xbeef, (uint64_t)(uintptr_t)w };
    atomic_fetch_add(w->started, 1);
    if (w->use_select) {
        loom_case cs[2] = {
            { .chan = w->c, .op = LOOM_SEND, .elem = &v, .ok = -1 },
            { .chan = NULL, .op = LOOM_SEND, .elem = &v, .ok = -1 },
        };
        w->rc = loom_select(cs, 2, -1);
        w->sel_ok = cs[0].ok;
    } else {
        w->rc = loom_send(w->c, &v);
    }
    atomic_fetch_add(w->finished, 1);
}

enum { NW = 8 };

static void test_close_wakes_receivers(size_t cap)
{
    loom_chan *c = loom_chan_new(sizeof(val), cap);
    CHECK(c != NULL);
    atomic_int started, finished;
    atomic_init(&started, 0);
    atomic_init(&finished, 0);
    struct waiter w[NW];
    for (int i = 0; i < NW; i++) {
        w[i] = (struct waiter){ .c = c,
                                .started = &started,
                                .finished = &finished,
                                .rc = 12345,
                                .use_select = i % 2 };
        CHECK(loom_go(recv_waiter, &w[i]) != 0);
    }
    T_WAIT_UNTIL(atomic_load(&started) >= NW, DEADLINE_S, "%d goroutines (have %d)", NW,
                 atomic_load(&started));
    loom_sleep(20 * 1000 * 1000); /* let them all park */
    CHECK_EQ(atomic_load(&finished), 0);
    CHECK_OK(loom_close(c));
    T_WAIT_UNTIL(atomic_load(&finished) >= NW, DEADLINE_S, "%d goroutines (have %d)", NW,
                 atomic_load(&finished));
    for (int i = 0; i < NW; i++) {
        if (w[i].use_select) {
            CHECK_EQ(w[i].rc, 1);
            CHECK_EQ(w[i].sel_ok, 0);
        } else {
            CHECK_ERR(w[i].rc, EPIPE);
        }
        CHECK_MSG(is_zero(&w[i].v), "woken receiver %d: element not zeroed", i);
    }
    CHECK_ERR(loom_close(c), EPIPE);
    loom_chan_free(c);
}

static void test_close_wakes_senders(size_t cap)
{
    loom_chan *c = loom_chan_new(sizeof(val), cap);
    CHECK(c != NULL);
    /* fill the buffer so the senders block */
    for (size_t i = 0; i < cap; i++) {
        val v = { 100 + i, 0, 0 };
        CHECK_OK(loom_send(c, &v));
    }
    atomic_int started, finished;
    atomic_init(&started, 0);
    atomic_init(&finished, 0);
    struct waiter w[NW];
    for (int i = 0; i < NW; i++) {
        w[i] = (struct waiter){ .c = c,
                                .started = &started,
                                .finished = &finished,
                                .rc = 12345,
                                .use_select = i % 2 };
        CHECK(loom_go(send_waiter, &w[i]) != 0);
    }
    T_WAIT_UNTIL(atomic_load(&started) >= NW, DEADLINE_S, "%d goroutines (have %d)", NW,
                 atomic_load(&started));
    loom_sleep(20 * 1000 * 1000);
    CHECK_EQ(atomic_load(&finished), 0);
    CHECK_EQ(loom_chan_len(c), cap);
    CHECK_OK(loom_close(c));
    T_WAIT_UNTIL(atomic_load(&finished) >= NW, DEADLINE_S, "%d goroutines (have %d)", NW,
                 atomic_load(&finished));
    for (int i = 0; i < NW; i++) {
        if (w[i].use_select) {
            CHECK_EQ(w[i].rc, 0);
            CHECK_EQ(w[i].sel_ok, 0);
        } else {
            CHECK_ERR(w[i].rc, EPIPE);
        }
    }
    /* exactly the buffered values, none of the woken senders' values */
    for (size_t i = 0; i < cap; i++) {
        val v = { 0, 0, 0 };
        CHECK_OK(loom_recv(c, &v));
        CHECK_EQ(v.a, 100 + i);
    }
    val v;
    memset(&v, 1, sizeof v);
    CHECK_ERR(loom_recv(c, &v), EPIPE);
    CHECK(is_zero(&v));
    loom_chan_free(c);
}

/* close happens-before the -EPIPE receive: a plain write before close must be
 * visible (and not a data race for TSan) after recv returns -EPIPE. */
struct hb {
    loom_chan *c;
    long plain;
};

static void hb_closer(void *arg)
{
    struct hb *h = arg;
    h->plain = 4242;
    CHECK_OK(loom_close(h->c));
}

static void test_close_happens_before(void)
{
    for (int i = 0; i < 200; i++) {
        struct hb h = { .c = loom_chan_new(sizeof(int), (size_t)(i % 3)), .plain = 0 };
        CHECK(h.c != NULL);
        CHECK(loom_go(hb_closer, &h) != 0);
        int x = 5;
        CHECK_ERR(loom_recv(h.c, &x), EPIPE);
        CHECK_EQ(x, 0);
        CHECK_EQ(h.plain, 4242);
        loom_chan_free(h.c);
    }
}

/* Close while several receivers are busy draining: every value sent before the
 * close is received exactly once, and each receiver then sees -EPIPE. */
struct racer {
    loom_chan *c;
    atomic_long *received;
    atomic_int *done;
};

static void race_receiver(void *arg)
{
    struct racer *r = arg;
    long v = -1;
    int rc;
    while ((rc = loom_recv(r->c, &v)) == 0) {
        CHECK_GT(v, 0);
        atomic_fetch_add(r->received, v);
    }
    CHECK_ERR(rc, EPIPE);
    CHECK_EQ(v, 0);
    atomic_fetch_add(r->done, 1);
}

static void test_close_while_busy(void)
{
    int rounds = (int)t_scale(200);
    for (int round = 0; round < rounds; round++) {
        loom_chan *c = loom_chan_new(sizeof(long), (size_t)(round % 4));
        CHECK(c != NULL);
        atomic_long received;
        atomic_int done;
        atomic_init(&received, 0);
        atomic_init(&done, 0);
        struct racer r = { .c = c, .received = &received, .done = &done };
        for (int i = 0; i < 4; i++)
            CHECK(loom_go(race_receiver, &r) != 0);
        long sent = 0;
        for (long v = 1; v <= 50; v++) {
            CHECK_OK(loom_send(c, &v));
            sent += v;
        }
        CHECK_OK(loom_close(c));
        long x = 1;
        CHECK_ERR(loom_send(c, &x), EPIPE);
        T_WAIT_UNTIL(atomic_load(&done) >= 4, DEADLINE_S, "%d goroutines (have %d)", 4, atomic_load(&done));
        CHECK_EQ(atomic_load(&received), sent);
        loom_chan_free(c);
    }
}

static int main_fn(void *arg)
{
    (void)arg;
    test_drain_then_epipe();
    test_close_wakes_receivers(0);
    test_close_wakes_receivers(3);
    test_close_wakes_senders(0);
    test_close_wakes_senders(2);
    test_close_happens_before();
    test_close_while_busy();
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
