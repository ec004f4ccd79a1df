/*
 * test_select — loom_select basics:
 *   - the index of the ready case is returned, ok = 1, the value moved (RECV into
 *     elem, SEND out of elem); RECV with elem NULL consumes the value;
 *   - NULL-channel cases are never ready (alone: -EAGAIN / -ETIMEDOUT);
 *   - a case on a closed channel is ready: RECV completes with ok = 0 and elem
 *     zeroed (after the buffer is drained), SEND completes with ok = 0 and sends
 *     nothing;
 *   - a blocked select is woken by a send, a receive, or a close on any of its
 *     channels, and afterwards leaves no waiter behind on the other channels
 *     (a later try_send on those unbuffered channels returns -EAGAIN);
 *   - timeout > 0: -ETIMEDOUT not earlier than requested (and within a 30 s hang
 *     guard), and no waiter left behind; a value arriving before the timeout (30 s, which
 *     only a hang reaches) wins;
 *   - timeout 0: -EAGAIN; zero cases: -EAGAIN with timeout 0, -ETIMEDOUT with a
 *     positive timeout (cases may then be NULL);
 *   - bad arguments: cases NULL with ncases > 0, negative ncases, an op other than
 *     LOOM_SEND / LOOM_RECV -> -EINVAL, with nothing consumed;
 *   - the same channel in several cases; many (1000) cases.
 * (A select with zero cases and a negative timeout blocks forever, like Go's
 * empty select; it is not exercised.)
 */
#include "t.h"

#include <stdatomic.h>

#define DEADLINE_NS (10LL * 1000000000LL)
#define MS          (1000LL * 1000LL)

static void test_ready_index(void)
{
    loom_chan *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = loom_chan_new(sizeof(long), 1);
        CHECK(c[i] != NULL);
    }
    for (int which = 0; which < 3; which++) {
        long in = 100 + which;
        CHECK_OK(loom_send(c[which], &in));
        long out[3] = { -1, -1, -1 };
        loom_case cs[3];
        for (int i = 0; i < 3; i++)
            cs[i] = (loom_case){ .chan = c[i], .op = LOOM_RECV, .elem = &out[i], .ok = -1 };
        int timeouts[3] = { -1, 0, 1000 };
        int r = loom_select(cs, 3, timeouts[which] * MS);
        CHECK_EQ(r, which);
        CHECK_EQ(cs[which].ok, 1);
        CHECK_EQ(out[which], 100 + which);
        for (int i = 0; i < 3; i++)
            if (i != which)
                CHECK_EQ(out[i], -1); /* untouched */
        CHECK_EQ(loom_chan_len(c[which]), 0);
    }

    /* SEND case ready: on the channel with room */
    long one = 1;
    CHECK_OK(loom_send(c[0], &one));
    CHECK_OK(loom_send(c[2], &one)); /* c0, c2 full; c1 has room */
    long v0 = 10, v1 = 11, v2 = 12;
    loom_case cs[3] = {
        { .chan = c[0], .op = LOOM_SEND, .elem = &v0, .ok = -1 },
        { .chan = c[1], .op = LOOM_SEND, .elem = &v1, .ok = -1 },
        { .chan = c[2], .op = LOOM_SEND, .elem = &v2, .ok = -1 },
    };
    CHECK_EQ(loom_select(cs, 3, -1), 1);
    CHECK_EQ(cs[1].ok, 1);
    long got = 0;
    CHECK_OK(loom_recv(c[1], &got));
    CHECK_EQ(got, 11);
    CHECK_OK(loom_recv(c[0], &got));
    CHECK_EQ(got, 1);
    CHECK_OK(loom_recv(c[2], &got));
    CHECK_EQ(got, 1);

    /* mixed SEND/RECV: only the RECV is ready */
    long in = 55, out = 0;
    CHECK_OK(loom_send(c[2], &in));
    CHECK_OK(loom_send(c[0], &one)); /* c0 full: send not ready */
    loom_case mix[2] = {
        { .chan = c[0], .op = LOOM_SEND, .elem = &v0, .ok = -1 },
        { .chan = c[2], .op = LOOM_RECV, .elem = &out, .ok = -1 },
    };
    CHECK_EQ(loom_select(mix, 2, 0), 1);
    CHECK_EQ(mix[1].ok, 1);
    CHECK_EQ(out, 55);
    CHECK_OK(loom_recv(c[0], &got));
    CHECK_EQ(got, 1);

    /* RECV with elem NULL consumes the value */
    in = 77;
    CHECK_OK(loom_send(c[1], &in));
    loom_case nul[1] = { { .chan = c[1], .op = LOOM_RECV, .elem = NULL, .ok = -1 } };
    CHECK_EQ(loom_select(nul, 1, -1), 0);
    CHECK_EQ(nul[0].ok, 1);
    CHECK_EQ(loom_chan_len(c[1]), 0);
    CHECK_ERR(loom_try_recv(c[1], &got), EAGAIN);

    for (int i = 0; i < 3; i++)
        loom_chan_free(c[i]);
}

static void test_null_cases(void)
{
    long v = 0;
    loom_case cs[3] = {
        { .chan = NULL, .op = LOOM_RECV, .elem = &v },
        { .chan = NULL, .op = LOOM_SEND, .elem = &v },
        { .chan = NULL, .op = LOOM_RECV, .elem = NULL },
    };
    CHECK_ERR(loom_select(cs, 3, 0), EAGAIN);
    int64_t t0 = loom_now();
    CHECK_ERR(loom_select(cs, 3, 20 * MS), ETIMEDOUT);
    CHECK_GE(loom_now() - t0, 20 * MS);

    /* NULL cases mixed with a ready one: always the ready one */
    loom_chan *c = loom_chan_new(sizeof(long), 1);
    CHECK(c != NULL);
    for (int i = 0; i < 200; i++) {
        long in = i, out = -1;
        CHECK_OK(loom_send(c, &in));
        loom_case m[4] = {
            { .chan = NULL, .op = LOOM_RECV, .elem = &v },
            { .chan = NULL, .op = LOOM_SEND, .elem = &v },
            { .chan = c, .op = LOOM_RECV, .elem = &out, .ok = -1 },
            { .chan = NULL, .op = LOOM_RECV, .elem = NULL },
        };
        CHECK_EQ(loom_select(m, 4, -1), 2);
        CHECK_EQ(m[2].ok, 1);
        CHECK_EQ(out, i);
    }
    loom_chan_free(c);
}

static void test_closed_cases(void)
{
    loom_chan *c = loom_chan_new(sizeof(long), 2);
    loom_chan *never = loom_chan_new(sizeof(long), 0);
    CHECK(c && never);
    long a = 1;
    CHECK_OK(loom_send(c, &a));
    CHECK_OK(loom_close(c));

    /* SEND on closed: ok = 0, nothing sent (buffer has room) */
    long x = 99, y = 0;
    loom_case s[2] = {
        { .chan = never, .op = LOOM_RECV, .elem = &y, .ok = -1 },
        { .chan = c, .op = LOOM_SEND, .elem = &x, .ok = -1 },
    };
    CHECK_EQ(loom_select(s, 2, -1), 1);
    CHECK_EQ(s[1].ok, 0);
    CHECK_EQ(loom_chan_len(c), 1);

    /* RECV on closed with a buffered value: value first, ok = 1 */
    long out = -1;
    loom_case r[2] = {
        { .chan = never, .op = LOOM_RECV, .elem = &y, .ok = -1 },
        { .chan = c, .op = LOOM_RECV, .elem = &out, .ok = -1 },
    };
    CHECK_EQ(loom_select(r, 2, -1), 1);
    CHECK_EQ(r[1].ok, 1);
    CHECK_EQ(out, 1);
    /* then drained: ok = 0, elem zeroed, repeatedly */
    for (int i = 0; i < 3; i++) {
        out = -1;
        r[1].ok = -1;
        CHECK_EQ(loom_select(r, 2, i == 1 ? 0 : -1), 1);
        CHECK_EQ(r[1].ok, 0);
        CHECK_EQ(out, 0);
    }
    /* RECV on closed with elem NULL */
    loom_case rn[1] = { { .chan = c, .op = LOOM_RECV, .elem = NULL, .ok = -1 } };
    CHECK_EQ(loom_select(rn, 1, -1), 0);
    CHECK_EQ(rn[0].ok, 0);
    loom_chan_free(c);
    loom_chan_free(never);
}

/* --------------------------------------------------- blocked selects */

struct bsel {
    loom_chan *c[3];
    int op; /* op used for all 3 cases */
    long vals[3];
    int64_t timeout;
    int rc;
    int ok[3];
    atomic_int started, done;
};

static void bsel_fn(void *arg)
{
    struct bsel *b = arg;
    loom_case cs[3];
    for (int i = 0; i < 3; i++)
        cs[i] = (loom_case){ .chan = b->c[i], .op = b->op, .elem = &b->vals[i], .ok = -1 };
    atomic_store(&b->started, 1);
    b->rc = loom_select(cs, 3, b->timeout);
    for (int i = 0; i < 3; i++)
        b->ok[i] = cs[i].ok;
    atomic_store(&b->done, 1);
}

static void wait_flag(atomic_int *f)
{
    int64_t end = loom_now() + DEADLINE_NS;
    while (!atomic_load(f)) {
        if (loom_now() > end)
            FAIL("timed out waiting for a flag");
        loom_sleep(50 * 1000);
    }
}

static void start_bsel(struct bsel *b, loom_chan **c, int op, int64_t timeout)
{
    memset(b, 0, sizeof *b);
    for (int i = 0; i < 3; i++) {
        b->c[i] = c[i];
        b->vals[i] = op == LOOM_SEND ? 1000 + i : -1;
    }
    b->op = op;
    b->timeout = timeout;
    b->rc = 12345;
    atomic_init(&b->started, 0);
    atomic_init(&b->done, 0);
    CHECK(loom_go(bsel_fn, b) != 0);
    wait_flag(&b->started);
    loom_sleep(5 * MS);
}

static void new_unbuffered(loom_chan **c)
{
    for (int i = 0; i < 3; i++) {
        c[i] = loom_chan_new(sizeof(long), 0);
        CHECK(c[i] != NULL);
    }
}

static void free3(loom_chan **c)
{
    for (int i = 0; i < 3; i++)
        loom_chan_free(c[i]);
}

static void test_blocked_woken(void)
{
    for (int which = 0; which < 3; which++) {
        loom_chan *c[3];
        struct bsel b;
        long v;

        /* woken by a send */
        new_unbuffered(c);
        start_bsel(&b, c, LOOM_RECV, -1);
        CHECK_EQ(atomic_load(&b.done), 0);
        v = 40 + which;
        CHECK_OK(loom_send(c[which], &v));
        wait_flag(&b.done);
        CHECK_EQ(b.rc, which);
        CHECK_EQ(b.ok[which], 1);
        CHECK_EQ(b.vals[which], 40 + which);
        for (int i = 0; i < 3; i++) { /* no stale receiver left behind */
            v = 1;
            CHECK_ERR(loom_try_send(c[i], &v), EAGAIN);
        }
        free3(c);

        /* woken by a receive */
        new_unbuffered(c);
        start_bsel(&b, c, LOOM_SEND, -1);
        CHECK_EQ(atomic_load(&b.done), 0);
        v = -1;
        CHECK_OK(loom_recv(c[which], &v));
        CHECK_EQ(v, 1000 + which);
        wait_flag(&b.done);
        CHECK_EQ(b.rc, which);
        CHECK_EQ(b.ok[which], 1);
        for (int i = 0; i < 3; i++) /* no stale sender left behind */
            CHECK_ERR(loom_try_recv(c[i], &v), EAGAIN);
        free3(c);

        /* woken by a close, RECV and SEND */
        for (int op = LOOM_SEND; op <= LOOM_RECV; op++) {
            new_unbuffered(c);
            start_bsel(&b, c, op, -1);
            CHECK_EQ(atomic_load(&b.done), 0);
            CHECK_OK(loom_close(c[which]));
            wait_flag(&b.done);
            CHECK_EQ(b.rc, which);
            CHECK_EQ(b.ok[which], 0);
            if (op == LOOM_RECV)
                CHECK_EQ(b.vals[which], 0);
            for (int i = 0; i < 3; i++) {
                if (i == which)
                    continue;
                v = 1;
                CHECK_ERR(loom_try_send(c[i], &v), EAGAIN);
                CHECK_ERR(loom_try_recv(c[i], &v), EAGAIN);
            }
            free3(c);
        }

        /* with a timeout, woken by a value before it passes */
        new_unbuffered(c);
        start_bsel(&b, c, LOOM_RECV, 30000 * MS); /* a timeout only a hang reaches */
        v = 7;
        CHECK_OK(loom_send(c[which], &v));
        wait_flag(&b.done);
        CHECK_EQ(b.rc, which);
        CHECK_EQ(b.vals[which], 7);
        free3(c);
    }

    /* buffered variant: after the select returns, later sends on its other
     * channels are buffered (not handed to a stale waiter) */
    loom_chan *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = loom_chan_new(sizeof(long), 2);
        CHECK(c[i] != NULL);
    }
    struct bsel b;
    start_bsel(&b, c, LOOM_RECV, -1);
    long v = 5;
    CHECK_OK(loom_send(c[1], &v));
    wait_flag(&b.done);
    CHECK_EQ(b.rc, 1);
    CHECK_EQ(b.vals[1], 5);
    for (int i = 0; i < 3; i++) {
        v = 6;
        CHECK_OK(loom_send(c[i], &v));
        CHECK_EQ(loom_chan_len(c[i]), 1);
    }
    free3(c);
}

static void test_timeouts(void)
{
    loom_chan *c[3];
    new_unbuffered(c);
    long v = 0;
    loom_case cs[3] = {
        { .chan = c[0], .op = LOOM_RECV, .elem = &v },
        { .chan = c[1], .op = LOOM_SEND, .elem = &v },
        { .chan = c[2], .op = LOOM_RECV, .elem = NULL },
    };
    CHECK_ERR(loom_select(cs, 3, 0), EAGAIN);

    int64_t reqs[] = { 1 * MS, 20 * MS, 50 * MS };
    for (int k = 0; k < 3; k++) {
        int64_t t0 = loom_now();
        CHECK_ERR(loom_select(cs, 3, reqs[k]), ETIMEDOUT);
        int64_t el = loom_now() - t0;
        CHECK_MSG(el >= reqs[k], "select timed out after %lld ns, requested %lld", (long long)el,
                  (long long)reqs[k]);
        CHECK_MSG(el < reqs[k] + 30000 * MS, "select with %lld ns timeout returned after %lld ns",
                  (long long)reqs[k], (long long)el);
    }
    /* nothing left queued by the timed-out selects */
    CHECK_ERR(loom_try_send(c[0], &v), EAGAIN);
    CHECK_ERR(loom_try_recv(c[1], &v), EAGAIN);
    CHECK_ERR(loom_try_send(c[2], &v), EAGAIN);

    /* a blocked select with a timeout, in another goroutine */
    struct bsel b;
    int64_t t0 = loom_now();
    start_bsel(&b, c, LOOM_RECV, 30 * MS);
    wait_flag(&b.done);
    CHECK_GE(loom_now() - t0, 30 * MS);
    CHECK_ERR(b.rc, ETIMEDOUT);
    CHECK_ERR(loom_try_send(c[0], &v), EAGAIN);
    free3(c);

    /* zero cases */
    CHECK_ERR(loom_select(NULL, 0, 0), EAGAIN);
    loom_case none[1];
    CHECK_ERR(loom_select(none, 0, 0), EAGAIN);
    t0 = loom_now();
    CHECK_ERR(loom_select(NULL, 0, 10 * MS), ETIMEDOUT);
    CHECK_GE(loom_now() - t0, 10 * MS);
}

static void test_bad_args(void)
{
    loom_chan *c = loom_chan_new(sizeof(long), 1);
    CHECK(c != NULL);
    long v = 3, out = 0;
    CHECK_OK(loom_send(c, &v));

    CHECK_ERR(loom_select(NULL, 1, 0), EINVAL);
    CHECK_ERR(loom_select(NULL, 1, -1), EINVAL);
    loom_case ok1[1] = { { .chan = c, .op = LOOM_RECV, .elem = &out } };
    CHECK_ERR(loom_select(ok1, -1, 0), EINVAL);
    CHECK_ERR(loom_select(ok1, -1, -1), EINVAL);

    int bad_ops[] = { 0, 3, -1, 42 };
    for (int k = 0; k < 4; k++) {
        loom_case cs[2] = {
            { .chan = c, .op = LOOM_RECV, .elem = &out, .ok = -1 }, /* ready */
            { .chan = c, .op = bad_ops[k], .elem = &out, .ok = -1 },
        };
        CHECK_ERR(loom_select(cs, 2, -1), EINVAL);
        CHECK_ERR(loom_select(cs, 2, 0), EINVAL);
        CHECK_EQ(loom_chan_len(c), 1); /* the ready case was not taken */
        loom_case one[1] = { { .chan = c, .op = bad_ops[k], .elem = &out } };
        CHECK_ERR(loom_select(one, 1, 0), EINVAL);
    }
    CHECK_EQ(out, 0);
    CHECK_OK(loom_recv(c, &out));
    CHECK_EQ(out, 3);
    loom_chan_free(c);
}

static void test_same_channel_cases(void)
{
    loom_chan *c = loom_chan_new(sizeof(long), 1);
    CHECK(c != NULL);
    /* two RECV cases on one channel holding one value: exactly one completes */
    for (int i = 0; i < 50; i++) {
        long in = i, a = -1, b = -1;
        CHECK_OK(loom_send(c, &in));
        loom_case cs[2] = {
            { .chan = c, .op = LOOM_RECV, .elem = &a, .ok = -1 },
            { .chan = c, .op = LOOM_RECV, .elem = &b, .ok = -1 },
        };
        int r = loom_select(cs, 2, -1);
        CHECK(r == 0 || r == 1);
        CHECK_EQ(r == 0 ? a : b, i);
        CHECK_EQ(r == 0 ? b : a, -1);
        CHECK_EQ(loom_chan_len(c), 0);
    }
    /* SEND and RECV on the same empty buffered channel: only the SEND is ready */
    for (int i = 0; i < 50; i++) {
        long s = 100 + i, r = -1;
        loom_case cs[2] = {
            { .chan = c, .op = LOOM_RECV, .elem = &r, .ok = -1 },
            { .chan = c, .op = LOOM_SEND, .elem = &s, .ok = -1 },
        };
        CHECK_EQ(loom_select(cs, 2, -1), 1);
        CHECK_EQ(r, -1);
        /* now full: only the RECV is ready */
        cs[0].ok = cs[1].ok = -1;
        CHECK_EQ(loom_select(cs, 2, -1), 0);
        CHECK_EQ(r, 100 + i);
    }
    /* unbuffered: a select cannot rendezvous with itself */
    loom_chan *u = loom_chan_new(sizeof(long), 0);
    CHECK(u != NULL);
    long s = 1, r = 0;
    loom_case cs[2] = {
        { .chan = u, .op = LOOM_SEND, .elem = &s },
        { .chan = u, .op = LOOM_RECV, .elem = &r },
    };
    CHECK_ERR(loom_select(cs, 2, 0), EAGAIN);
    CHECK_ERR(loom_select(cs, 2, 5 * MS), ETIMEDOUT);
    loom_chan_free(u);
    loom_chan_free(c);
}

static void test_many_cases(void)
{
    enum { N = 1000 };
    loom_chan **c = calloc(N, sizeof *c);
    loom_case *cs = calloc(N, sizeof *cs);
    long *out = calloc(N, sizeof *out);
    CHECK(c && cs && out);
    for (int i = 0; i < N; i++) {
        c[i] = loom_chan_new(sizeof(long), 1);
        CHECK(c[i] != NULL);
    }
    int targets[] = { N - 1, 0, 517 };
    for (int k = 0; k < 3; k++) {
        long v = 7000 + k;
        CHECK_OK(loom_send(c[targets[k]], &v));
        for (int i = 0; i < N; i++)
            cs[i] = (loom_case){ .chan = c[i], .op = LOOM_RECV, .elem = &out[i], .ok = -1 };
        CHECK_EQ(loom_select(cs, N, -1), targets[k]);
        CHECK_EQ(out[targets[k]], 7000 + k);
    }
    /* all not ready with a timeout, then none left queued */
    CHECK_ERR(loom_select(cs, N, 2 * MS), ETIMEDOUT);
    for (int i = 0; i < N; i++) {
        long v = i;
        CHECK_OK(loom_try_send(c[i], &v));
        CHECK_EQ(loom_chan_len(c[i]), 1);
        loom_chan_free(c[i]);
    }
    free(c);
    free(cs);
    free(out);
}

static int main_fn(void *arg)
{
    (void)arg;
    test_ready_index();
    test_null_cases();
    test_closed_cases();
    test_blocked_woken();
    test_timeouts();
    test_bad_args();
    test_same_channel_cases();
    test_many_cases();
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
