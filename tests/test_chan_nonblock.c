/*
 * test_chan_nonblock — non-blocking operations (loom_try_send / loom_try_recv and
 * loom_select with timeout 0, Go's `default:`) on unbuffered and buffered channels:
 *   - with no peer: -EAGAIN (select: -EAGAIN, no case completed), nothing stored;
 *   - with a peer blocked on the other side: the operation succeeds (retried until
 *     the peer has parked, bounded by a deadline), the value gets through, and
 *     the blocked peer completes;
 *   - a buffered channel accepts/provides values without a peer; with a receiver
 *     parked on an empty buffer, try_send hands over directly;
 *   - closed channels: try ops return -EPIPE, a select with timeout 0 completes
 *     the closed case with ok = 0 instead of -EAGAIN;
 *   - Go's nonblock.go loop: a goroutine streams values with blocking ops while
 *     the other side uses only non-blocking ops (try_* or select 0); all values
 *     arrive in order, for capacities 0, 1, 5 and 17, in both directions.
 */
#include "t.h"

#include <stdatomic.h>

#define DEADLINE_NS (10LL * 1000000000LL)

enum { VIA_TRY = 0, VIA_SELECT = 1 };

static int nb_send(int via, loom_chan *c, long v)
{
    if (via == VIA_TRY)
        return loom_try_send(c, &v);
    loom_case cs[2] = {
        { .chan = NULL, .op = LOOM_RECV, .elem = NULL, .ok = -1 },
        { .chan = c, .op = LOOM_SEND, .elem = &v, .ok = -1 },
    };
    int r = loom_select(cs, 2, 0);
    if (r == 1)
        return cs[1].ok ? 0 : -EPIPE;
    CHECK_MSG(r == -EAGAIN, "select(SEND, 0) returned %s", t_errname(r));
    return r;
}

static int nb_recv(int via, loom_chan *c, long *v)
{
    if (via == VIA_TRY)
        return loom_try_recv(c, v);
    loom_case cs[2] = {
        { .chan = c, .op = LOOM_RECV, .elem = v, .ok = -1 },
        { .chan = NULL, .op = LOOM_SEND, .elem = v, .ok = -1 },
    };
    int r = loom_select(cs, 2, 0);
    if (r == 0)
        return cs[0].ok ? 0 : -EPIPE;
    CHECK_MSG(r == -EAGAIN, "select(RECV, 0) returned %s", t_errname(r));
    return r;
}

/* retry a non-blocking op until it stops returning -EAGAIN */
#define RETRY(expr) \
    ({ \
        int64_t end_ = loom_now() + DEADLINE_NS; \
        int r_; \
        while ((r_ = (expr)) == -EAGAIN) { \
            if (loom_now() > end_) \
                FAIL("%s still -EAGAIN after 10 s with a peer waiting", #expr); \
            loom_yield(); \
        } \
        r_; \
    })

/* --------------------------------------------------------- no peer */

static void test_no_peer(void)
{
    for (int via = 0; via < 2; via++) {
        loom_chan *u = loom_chan_new(sizeof(long), 0);
        loom_chan *b = loom_chan_new(sizeof(long), 2);
        CHECK(u && b);
        long v = 7;
        CHECK_ERR(nb_send(via, u, 1), EAGAIN);
        CHECK_ERR(nb_recv(via, u, &v), EAGAIN);
        CHECK_ERR(nb_recv(via, b, &v), EAGAIN);
        CHECK_OK(nb_send(via, b, 11));
        CHECK_OK(nb_send(via, b, 12));
        CHECK_ERR(nb_send(via, b, 13), EAGAIN);
        CHECK_EQ(loom_chan_len(b), 2);
        CHECK_OK(nb_recv(via, b, &v));
        CHECK_EQ(v, 11);
        CHECK_OK(nb_recv(via, b, &v));
        CHECK_EQ(v, 12);
        CHECK_ERR(nb_recv(via, b, &v), EAGAIN);

        /* a select with several not-ready cases */
        long x = 5, y = 0;
        CHECK_OK(nb_send(via, b, 1));
        CHECK_OK(nb_send(via, b, 2)); /* b full */
        loom_case cs[3] = {
            { .chan = u, .op = LOOM_SEND, .elem = &x },
            { .chan = u, .op = LOOM_RECV, .elem = &y },
            { .chan = b, .op = LOOM_SEND, .elem = &x },
        };
        CHECK_ERR(loom_select(cs, 3, 0), EAGAIN);
        CHECK_EQ(loom_chan_len(b), 2);
        loom_chan_free(u);
        loom_chan_free(b);
    }
}

/* ------------------------------------------------- peer blocked */

struct peer {
    loom_chan *c;
    long value;
    int rc;
    atomic_int done;
};

static void blocked_receiver(void *arg)
{
    struct peer *p = arg;
    p->rc = loom_recv(p->c, &p->value);
    atomic_store(&p->done, 1);
}

static void blocked_sender(void *arg)
{
    struct peer *p = arg;
    p->rc = loom_send(p->c, &p->value);
    atomic_store(&p->done, 1);
}

static void wait_done(struct peer *p)
{
    int64_t end = loom_now() + DEADLINE_NS;
    while (!atomic_load(&p->done)) {
        if (loom_now() > end)
            FAIL("peer did not complete");
        loom_sleep(50 * 1000);
    }
}

static void test_with_peer(void)
{
    for (int via = 0; via < 2; via++) {
        for (size_t cap = 0; cap <= 2; cap += 2) {
            loom_chan *c = loom_chan_new(sizeof(long), cap);
            CHECK(c != NULL);
            /* receiver parked: non-blocking send succeeds and hands the value over */
            for (int i = 0; i < 20; i++) {
                struct peer p = { .c = c, .value = -1, .rc = 12345 };
                atomic_init(&p.done, 0);
                CHECK(loom_go(blocked_receiver, &p) != 0);
                if (i % 2)
                    loom_sleep(1000 * 1000); /* usually parked by now; else RETRY */
                CHECK_OK(RETRY(nb_send(via, c, 500 + i)));
                wait_done(&p);
                CHECK_OK(p.rc);
                CHECK_EQ(p.value, 500 + i);
                CHECK_EQ(loom_chan_len(c), 0);
                if (cap == 0)
                    CHECK_ERR(nb_send(via, c, 1), EAGAIN); /* receiver is gone */
            }
            /* sender parked (unbuffered), or value buffered: non-blocking recv gets it */
            for (int i = 0; i < 20; i++) {
                struct peer p = { .c = c, .value = 900 + i, .rc = 12345 };
                atomic_init(&p.done, 0);
                CHECK(loom_go(blocked_sender, &p) != 0);
                if (i % 2)
                    loom_sleep(1000 * 1000);
                long v = -1;
                CHECK_OK(RETRY(nb_recv(via, c, &v)));
                CHECK_EQ(v, 900 + i);
                wait_done(&p);
                CHECK_OK(p.rc);
                CHECK_ERR(nb_recv(via, c, &v), EAGAIN);
            }
            loom_chan_free(c);
        }

        /* full buffer with a sender parked behind it: recv takes the head and the
         * parked sender's value follows the buffered ones */
        loom_chan *c = loom_chan_new(sizeof(long), 2);
        CHECK(c != NULL);
        CHECK_OK(nb_send(via, c, 1));
        CHECK_OK(nb_send(via, c, 2));
        struct peer p = { .c = c, .value = 3, .rc = 12345 };
        atomic_init(&p.done, 0);
        CHECK(loom_go(blocked_sender, &p) != 0);
        loom_sleep(5 * 1000 * 1000);
        CHECK_EQ(atomic_load(&p.done), 0);
        long v = -1;
        CHECK_OK(nb_recv(via, c, &v));
        CHECK_EQ(v, 1);
        wait_done(&p);
        CHECK_OK(p.rc);
        CHECK_OK(nb_recv(via, c, &v));
        CHECK_EQ(v, 2);
        CHECK_OK(nb_recv(via, c, &v));
        CHECK_EQ(v, 3);
        CHECK_ERR(nb_recv(via, c, &v), EAGAIN);
        loom_chan_free(c);
    }
}

/* ----------------------------------------------------------- closed */

static void test_closed(void)
{
    for (size_t cap = 0; cap <= 1; cap++) {
        loom_chan *c = loom_chan_new(sizeof(long), cap);
        CHECK(c != NULL);
        CHECK_OK(loom_close(c));
        long v = 5;
        CHECK_ERR(loom_try_send(c, &v), EPIPE);
        CHECK_ERR(loom_try_recv(c, &v), EPIPE);
        CHECK_EQ(v, 0);
        v = 5;
        loom_case rc[1] = { { .chan = c, .op = LOOM_RECV, .elem = &v, .ok = -1 } };
        CHECK_EQ(loom_select(rc, 1, 0), 0);
        CHECK_EQ(rc[0].ok, 0);
        CHECK_EQ(v, 0);
        loom_case sc[1] = { { .chan = c, .op = LOOM_SEND, .elem = &v, .ok = -1 } };
        CHECK_EQ(loom_select(sc, 1, 0), 0);
        CHECK_EQ(sc[0].ok, 0);
        CHECK_EQ(loom_chan_len(c), 0);
        loom_chan_free(c);
    }
}

/* ------------------------------------------------ streaming (nonblock.go) */

struct stream {
    loom_chan *c;
    long n;
    atomic_int done;
};

static void stream_sender(void *arg)
{
    struct stream *s = arg;
    for (long i = 0; i < s->n; i++)
        CHECK_OK(loom_send(s->c, &i));
    atomic_store(&s->done, 1);
}

static void stream_receiver(void *arg)
{
    struct stream *s = arg;
    for (long i = 0; i < s->n; i++) {
        long v = -1;
        CHECK_OK(loom_recv(s->c, &v));
        if (v != i)
            FAIL("stream receiver got %ld, expected %ld", v, i);
    }
    atomic_store(&s->done, 1);
}

static void test_streaming(void)
{
    size_t caps[] = { 0, 1, 5, 17 };
    long n = t_scale(3000);
    for (size_t k = 0; k < 4; k++) {
        for (int via = 0; via < 2; via++) {
            loom_chan *c = loom_chan_new(sizeof(long), caps[k]);
            CHECK(c != NULL);
            /* blocking sender, non-blocking receiver */
            struct stream s = { .c = c, .n = n };
            atomic_init(&s.done, 0);
            CHECK(loom_go(stream_sender, &s) != 0);
            for (long i = 0; i < n; i++) {
                long v = -1;
                CHECK_OK(RETRY(nb_recv(via, c, &v)));
                if (v != i)
                    FAIL("cap %zu via %d: got %ld, expected %ld", caps[k], via, v, i);
            }
            int64_t end = loom_now() + DEADLINE_NS;
            while (!atomic_load(&s.done)) {
                CHECK(loom_now() < end);
                loom_yield();
            }
            /* non-blocking sender, blocking receiver */
            struct stream r = { .c = c, .n = n };
            atomic_init(&r.done, 0);
            CHECK(loom_go(stream_receiver, &r) != 0);
            for (long i = 0; i < n; i++)
                CHECK_OK(RETRY(nb_send(via, c, i)));
            end = loom_now() + DEADLINE_NS;
            while (!atomic_load(&r.done)) {
                CHECK(loom_now() < end);
                loom_yield();
            }
            CHECK_EQ(loom_chan_len(c), 0);
            loom_chan_free(c);
        }
    }
}

static int main_fn(void *arg)
{
    (void)arg;
    test_no_peer();
    test_with_peer();
    test_closed();
    test_streaming();
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
