/*
 * test_chan_fifo — FIFO order:
 *   - among goroutines blocked sending (unbuffered, and on a full buffer where the
 *     waiting senders' values must follow the buffered ones), plain loom_send and
 *     select SEND waiters mixed;
 *   - among goroutines blocked receiving (unbuffered and empty buffered), plain
 *     loom_recv and select RECV waiters mixed, with a select whose timeout expired
 *     while queued (it must not take a value);
 *   - a buffered channel delivers in send order (Go's AsynchFifo);
 *   - a daisy chain of goroutines receives values in sequence (Go's SynchFifo);
 *   - with several Ps, each sender's values arrive in its own send order.
 *
 * "Blocked in a known order": the spawner starts the next waiter only once loom_stats
 * counts the last one parked (a goroutine counts as waiting once it is queued on the
 * channel), so the order is known at one P (phase 1) and at the normal number of Ps
 * (phase 2) alike, however slow the machine.
 */
#include "t.h"

#include <stdatomic.h>

#define DEADLINE_NS (10LL * 1000000000LL)

static int strict_mode;

static void wait_flag(atomic_int *f)
{
    int64_t end = loom_now() + DEADLINE_NS;
    while (!atomic_load(f)) {
        if (loom_now() > end)
            FAIL("timed out waiting for a goroutine to start");
        if (strict_mode)
            loom_yield();
        else
            loom_sleep(50 * 1000);
    }
}

/* Goroutines parked now. */
static uint64_t parked_now(void)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st.waiting;
}

enum { NWAIT = 8 };

struct waiter {
    loom_chan *c;
    long value; /* to send, or received */
    int use_select;
    int64_t timeout; /* receivers' select timeout: -1, or > 0 for the "timed" one */
    int rc;
    atomic_int started;
    atomic_int done;
};

static void sender_fn(void *arg)
{
    struct waiter *w = arg;
    long v = w->value;
    atomic_store(&w->started, 1);
    if (w->use_select) {
        loom_case cs[2] = {
            { .chan = NULL, .op = LOOM_RECV, .elem = NULL },
            { .chan = w->c, .op = LOOM_SEND, .elem = &v },
        };
        int r = loom_select(cs, 2, -1);
        CHECK_EQ(r, 1);
        CHECK_EQ(cs[1].ok, 1);
        w->rc = 0;
    } else {
        w->rc = loom_send(w->c, &v);
    }
    atomic_store(&w->done, 1);
}

static void receiver_fn(void *arg)
{
    struct waiter *w = arg;
    long v = -1;
    atomic_store(&w->started, 1);
    if (w->use_select) {
        loom_case cs[2] = {
            { .chan = w->c, .op = LOOM_RECV, .elem = &v },
            { .chan = NULL, .op = LOOM_SEND, .elem = &v },
        };
        int r = loom_select(cs, 2, w->timeout);
        if (w->timeout > 0) {
            w->rc = r;
        } else {
            CHECK_EQ(r, 0);
            CHECK_EQ(cs[0].ok, 1);
            w->rc = 0;
        }
    } else {
        w->rc = loom_recv(w->c, &v);
    }
    w->value = v;
    atomic_store(&w->done, 1);
}

static bool parked(uint64_t base, int n, struct waiter *timed)
{
    int t = timed && !atomic_load(&timed->done); /* read first: it only ever finishes */
    return parked_now() >= base + (uint64_t)n + (uint64_t)t;
}

/* Until n more goroutines than base are parked, and the timed waiter too while it has
 * not finished (NULL: none): the goroutine just started is queued behind the others. */
static void settle(uint64_t base, int n, struct waiter *timed)
{
    T_WAIT_UNTIL(parked(base, n, timed), DEADLINE_NS / 1000000000,
                 "%d waiters to park (%llu parked, %llu before)", n, (unsigned long long)parked_now(),
                 (unsigned long long)base);
}

static void wait_done(struct waiter *w)
{
    int64_t end = loom_now() + DEADLINE_NS;
    while (!atomic_load(&w->done)) {
        if (loom_now() > end)
            FAIL("timed out waiting for a waiter to finish");
        loom_sleep(50 * 1000);
    }
}

/* Senders block in order 0..NWAIT-1 behind `prefill` buffered values (cap =
 * prefill); returns the number of out-of-order values. */
static int senders_in_order(size_t prefill)
{
    loom_chan *c = loom_chan_new(sizeof(long), prefill);
    CHECK(c != NULL);
    for (size_t i = 0; i < prefill; i++) {
        long v = 1000 + (long)i;
        CHECK_OK(loom_send(c, &v));
    }
    struct waiter w[NWAIT];
    uint64_t base = parked_now();
    for (int i = 0; i < NWAIT; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].c = c;
        w[i].value = i;
        w[i].use_select = (i % 3 == 2);
        atomic_init(&w[i].started, 0);
        atomic_init(&w[i].done, 0);
        CHECK(loom_go(sender_fn, &w[i]) != 0);
        wait_flag(&w[i].started);
        settle(base, i + 1, NULL);
    }
    for (int i = 0; i < NWAIT; i++)
        CHECK_MSG(!atomic_load(&w[i].done), "sender %d did not block", i);
    int bad = 0;
    for (size_t i = 0; i < prefill; i++) {
        long v = -1;
        CHECK_OK(loom_recv(c, &v));
        CHECK_EQ(v, 1000 + (long)i);
    }
    long got[NWAIT];
    for (int i = 0; i < NWAIT; i++) {
        got[i] = -1;
        CHECK_OK(loom_recv(c, &got[i]));
        if (got[i] != i)
            bad++;
    }
    for (int i = 0; i < NWAIT; i++) {
        wait_done(&w[i]);
        CHECK_OK(w[i].rc);
    }
    if (bad) {
        fprintf(stderr, "senders (prefill %zu) unblocked in order:", prefill);
        for (int i = 0; i < NWAIT; i++)
            fprintf(stderr, " %ld", got[i]);
        fprintf(stderr, "\n");
    }
    CHECK_EQ(loom_chan_len(c), 0);
    loom_chan_free(c);
    return bad;
}

/* Receivers block in order on an empty channel of capacity cap; a timed select
 * waiter is queued in the middle and expires before the values arrive. */
static int receivers_in_order(size_t cap)
{
    loom_chan *c = loom_chan_new(sizeof(long), cap);
    CHECK(c != NULL);
    struct waiter w[NWAIT];
    struct waiter timed;
    uint64_t base = parked_now();
    for (int i = 0; i < NWAIT; i++) {
        if (i == NWAIT / 2) {
            memset(&timed, 0, sizeof timed);
            timed.c = c;
            timed.use_select = 1;
            timed.timeout = 2 * 1000 * 1000;
            atomic_init(&timed.started, 0);
            atomic_init(&timed.done, 0);
            CHECK(loom_go(receiver_fn, &timed) != 0);
            wait_flag(&timed.started);
            settle(base, i, &timed);
        }
        memset(&w[i], 0, sizeof w[i]);
        w[i].c = c;
        w[i].value = -1;
        w[i].use_select = (i % 3 == 1);
        w[i].timeout = -1;
        atomic_init(&w[i].started, 0);
        atomic_init(&w[i].done, 0);
        CHECK(loom_go(receiver_fn, &w[i]) != 0);
        wait_flag(&w[i].started);
        settle(base, i + 1, i >= NWAIT / 2 ? &timed : NULL);
    }
    wait_done(&timed); /* its timeout passed while queued among the others */
    CHECK_ERR(timed.rc, ETIMEDOUT);
    for (int i = 0; i < NWAIT; i++)
        CHECK_MSG(!atomic_load(&w[i].done), "receiver %d did not block", i);
    for (long v = 0; v < NWAIT; v++)
        CHECK_OK(loom_send(c, &v));
    int bad = 0;
    for (int i = 0; i < NWAIT; i++) {
        wait_done(&w[i]);
        CHECK_OK(w[i].rc);
        if (w[i].value != i)
            bad++;
    }
    if (bad) {
        fprintf(stderr, "receivers (cap %zu) got:", cap);
        for (int i = 0; i < NWAIT; i++)
            fprintf(stderr, " %ld", w[i].value);
        fprintf(stderr, "\n");
    }
    CHECK_EQ(loom_chan_len(c), 0);
    loom_chan_free(c);
    return bad;
}

static void order_tests(void)
{
    for (int kind = 0; kind < 4; kind++) {
        int bad = 0;
        switch (kind) {
        case 0: bad = senders_in_order(0); break;
        case 1: bad = senders_in_order(3); break;
        case 2: bad = receivers_in_order(0); break;
        default: bad = receivers_in_order(4); break;
        }
        CHECK_MSG(bad == 0, "FIFO order violated in order test %d (%s mode)", kind,
                  strict_mode ? "single-P strict" : "multi-P");
    }
}

/* ----------------------------------------------------------- AsynchFifo */

static void async_fifo(void)
{
    int n = 1000;
    loom_chan *c = loom_chan_new(sizeof(int), (size_t)n);
    CHECK(c != NULL);
    for (int i = 0; i < n; i++)
        CHECK_OK(loom_send(c, &i));
    for (int i = 0; i < n; i++) {
        int v = -1;
        CHECK_OK(loom_recv(c, &v));
        CHECK_EQ(v, i);
    }
    loom_chan_free(c);
}

/* ------------------------------------------------------------ SynchFifo */

struct link {
    loom_chan *ch, *in, *out;
    int val;
    atomic_int *finished;
};

static void chain_fn(void *arg)
{
    struct link *l = arg;
    char tok;
    CHECK_OK(loom_recv(l->in, &tok));
    int v = -1;
    CHECK_OK(loom_recv(l->ch, &v));
    if (v != l->val)
        FAIL("chain link %d received %d", l->val, v);
    CHECK_OK(loom_send(l->out, &tok));
    atomic_fetch_add(l->finished, 1);
}

static void sync_fifo(void)
{
    int n = (int)t_scale(1000);
    loom_chan *ch = loom_chan_new(sizeof(int), 0);
    loom_chan **sig = calloc((size_t)n + 1, sizeof *sig);
    struct link *links = calloc((size_t)n, sizeof *links);
    CHECK(ch && sig && links);
    atomic_int finished;
    atomic_init(&finished, 0);
    for (int i = 0; i <= n; i++) {
        sig[i] = loom_chan_new(0, 0);
        CHECK(sig[i] != NULL);
    }
    for (int i = 0; i < n; i++) {
        links[i] =
                (struct link){ .ch = ch, .in = sig[i], .out = sig[i + 1], .val = i, .finished = &finished };
        CHECK(loom_go(chain_fn, &links[i]) != 0);
    }
    char tok = 0;
    CHECK_OK(loom_send(sig[0], &tok));
    for (int i = 0; i < n; i++)
        CHECK_OK(loom_send(ch, &i));
    CHECK_OK(loom_recv(sig[n], &tok));
    int64_t end = loom_now() + DEADLINE_NS;
    while (atomic_load(&finished) < n) {
        CHECK(loom_now() < end);
        loom_sleep(100 * 1000);
    }
    for (int i = 0; i <= n; i++)
        loom_chan_free(sig[i]);
    loom_chan_free(ch);
    free(sig);
    free(links);
}

/* ------------------------------------------- per-sender order, many Ps */

struct producer {
    loom_chan *c;
    int id, n;
    atomic_int *finished;
};

static void producer_fn(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < p->n; i++) {
        long v = (long)p->id << 32 | i;
        if (i % 4 == 3) {
            loom_case cs[1] = { { .chan = p->c, .op = LOOM_SEND, .elem = &v } };
            CHECK_EQ(loom_select(cs, 1, -1), 0);
            CHECK_EQ(cs[0].ok, 1);
        } else {
            CHECK_OK(loom_send(p->c, &v));
        }
    }
    atomic_fetch_add(p->finished, 1);
}

static void per_sender_order(size_t cap)
{
    enum { NP = 8 };
    int per = (int)t_scale(4000);
    loom_chan *c = loom_chan_new(sizeof(long), cap);
    CHECK(c != NULL);
    struct producer ps[NP];
    int next[NP];
    atomic_int finished;
    atomic_init(&finished, 0);
    for (int i = 0; i < NP; i++) {
        ps[i] = (struct producer){ .c = c, .id = i, .n = per, .finished = &finished };
        next[i] = 0;
        CHECK(loom_go(producer_fn, &ps[i]) != 0);
    }
    for (long k = 0; k < (long)NP * per; k++) {
        long v = -1;
        CHECK_OK(loom_recv(c, &v));
        int id = (int)(v >> 32), seq = (int)(v & 0xffffffff);
        CHECK(id >= 0 && id < NP);
        if (seq != next[id])
            FAIL("producer %d: received seq %d, expected %d (cap %zu)", id, seq, next[id], cap);
        next[id]++;
    }
    long x;
    CHECK_ERR(loom_try_recv(c, &x), EAGAIN);
    int64_t end = loom_now() + DEADLINE_NS;
    while (atomic_load(&finished) < NP) {
        CHECK(loom_now() < end);
        loom_sleep(100 * 1000);
    }
    loom_chan_free(c);
}

static int phase1(void *arg)
{
    (void)arg;
    strict_mode = (loom_procs() == 1);
    if (!strict_mode)
        fprintf(stderr, "note: LOOM_PROCS=1 not honoured (%d Ps); order test uses multi-P mode\n",
                loom_procs());
    order_tests();
    return 0;
}

static int phase2(void *arg)
{
    (void)arg;
    strict_mode = 0;
    async_fifo();
    sync_fifo();
    per_sender_order(0);
    per_sender_order(1);
    per_sender_order(16);
    if (loom_procs() > 1)
        order_tests();
    return 0;
}

int main(void)
{
    const char *old = getenv("LOOM_PROCS");
    char *saved = old ? strdup(old) : NULL;
    setenv("LOOM_PROCS", "1", 1);
    T_RUN(phase1, NULL);
    if (saved)
        setenv("LOOM_PROCS", saved, 1);
    else
        unsetenv("LOOM_PROCS");
    free(saved);
    T_RUN(phase2, NULL);
    return 0;
}
