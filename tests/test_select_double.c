/*
 * test_select_double — concurrent selects on overlapping channels, across all Ps:
 *   1. (Go's doubleselect) 4 senders, each selecting SEND over 3 of 4 shared
 *      channels, forwarded by per-channel muxes (loom_recv) and by select-based
 *      forwarders (RECV over all 4 channels) onto one output channel: every value
 *      arrives exactly once (a select completing two cases would duplicate it,
 *      a lost wakeup would lose it or deadlock). Unbuffered and buffered.
 *   2. Two goroutines each looping on select { SEND c; RECV c } over the same
 *      unbuffered channel: they pair up every iteration, each receives exactly the
 *      other's sent values in order, never its own.
 *   3. Four goroutines doing the same, stopped by a closed `quit` case: every
 *      completed send was received exactly once, by another goroutine.
 */
#include "t.h"

#include <stdatomic.h>

#define DEADLINE_NS (30LL * 1000000000LL)
#define DEADLINE_S  30

/* ------------------------------------------------------- doubleselect */

enum { NS = 4, NC = 4, NMUX = NC, NSELFWD = 2 };

struct ds {
    loom_chan *c[NC];
    loom_chan *out;
    long n; /* values per sender */
    atomic_int senders_left;
    atomic_int fwd_left;
    atomic_int exited; /* goroutines past their last channel call */
};

struct ds_sender {
    struct ds *d;
    int id;
};

static void ds_sender_fn(void *arg)
{
    struct ds_sender *s = arg;
    struct ds *d = s->d;
    long vals[3];
    loom_case cs[3];
    for (long i = 0; i < d->n; i++) {
        long v = s->id * d->n + i;
        for (int k = 0; k < 3; k++) {
            vals[k] = v;
            cs[k] = (loom_case){ .chan = d->c[(s->id + k) % NC],
                                 .op = LOOM_SEND,
                                 .elem = &vals[k],
                                 .ok = -1 };
        }
        int r = loom_select(cs, 3, -1);
        CHECK(r >= 0 && r < 3);
        CHECK_EQ(cs[r].ok, 1);
    }
    if (atomic_fetch_sub(&d->senders_left, 1) == 1) {
        /* last sender: nobody sends on the shared channels any more */
        for (int k = 0; k < NC; k++)
            CHECK_OK(loom_close(d->c[k]));
    }
    atomic_fetch_add(&d->exited, 1);
}

static void fwd_done(struct ds *d)
{
    if (atomic_fetch_sub(&d->fwd_left, 1) == 1)
        CHECK_OK(loom_close(d->out));
    atomic_fetch_add(&d->exited, 1);
}

struct ds_mux {
    struct ds *d;
    loom_chan *in;
};

static void ds_mux_fn(void *arg)
{
    struct ds_mux *m = arg;
    long v;
    int rc;
    while ((rc = loom_recv(m->in, &v)) == 0)
        CHECK_OK(loom_send(m->d->out, &v));
    CHECK_ERR(rc, EPIPE);
    fwd_done(m->d);
}

static void ds_selfwd_fn(void *arg)
{
    struct ds *d = arg;
    long vals[NC];
    loom_case cs[NC];
    int open = NC;
    for (int k = 0; k < NC; k++)
        cs[k] = (loom_case){ .chan = d->c[k], .op = LOOM_RECV, .elem = &vals[k] };
    while (open > 0) {
        int r = loom_select(cs, NC, -1);
        CHECK(r >= 0 && r < NC);
        if (cs[r].ok) {
            CHECK_OK(loom_send(d->out, &vals[r]));
        } else {
            CHECK_EQ(vals[r], 0);
            cs[r].chan = NULL; /* closed and drained: never ready again */
            open--;
        }
    }
    fwd_done(d);
}

static void doubleselect(size_t cap)
{
    struct ds d;
    d.n = t_scale(20000);
    for (int k = 0; k < NC; k++) {
        d.c[k] = loom_chan_new(sizeof(long), cap);
        CHECK(d.c[k] != NULL);
    }
    d.out = loom_chan_new(sizeof(long), cap);
    CHECK(d.out != NULL);
    atomic_init(&d.senders_left, NS);
    atomic_init(&d.fwd_left, NMUX + NSELFWD);
    atomic_init(&d.exited, 0);

    struct ds_mux mux[NMUX];
    for (int k = 0; k < NMUX; k++) {
        mux[k] = (struct ds_mux){ .d = &d, .in = d.c[k] };
        CHECK(loom_go(ds_mux_fn, &mux[k]) != 0);
    }
    for (int k = 0; k < NSELFWD; k++)
        CHECK(loom_go(ds_selfwd_fn, &d) != 0);
    struct ds_sender snd[NS];
    for (int s = 0; s < NS; s++) {
        snd[s] = (struct ds_sender){ .d = &d, .id = s };
        CHECK(loom_go(ds_sender_fn, &snd[s]) != 0);
    }

    long total = NS * d.n;
    unsigned char *seen = calloc((size_t)total, 1);
    CHECK(seen != NULL);
    long got = 0, v;
    int rc;
    while ((rc = loom_recv(d.out, &v)) == 0) {
        if (v < 0 || v >= total)
            FAIL("doubleselect: received out-of-range value %ld", v);
        if (seen[v])
            FAIL("doubleselect: value %ld received twice (cap %zu)", v, cap);
        seen[v] = 1;
        got++;
    }
    CHECK_ERR(rc, EPIPE);
    if (got != total) {
        for (long i = 0; i < total; i++)
            if (!seen[i])
                FAIL("doubleselect: value %ld lost (%ld of %ld received, cap %zu)", i, got, total, cap);
    }
    free(seen);
    /* free only once every goroutine is past its last call on the channels */
    int64_t end = loom_now() + DEADLINE_NS;
    while (atomic_load(&d.exited) != NS + NMUX + NSELFWD) {
        CHECK(loom_now() < end);
        loom_sleep(100 * 1000);
    }
    for (int k = 0; k < NC; k++)
        loom_chan_free(d.c[k]);
    loom_chan_free(d.out);
}

/* -------------------------------------- send and recv on the same channel */

struct sr {
    loom_chan *c;
    loom_chan *quit; /* NULL in the two-goroutine version */
    int id;
    long n; /* iterations (two-goroutine version) */
    long sent, recvd;
    long *got; /* received values, in order */
    long got_cap;
    atomic_long *total; /* received so far, all goroutines */
    long target;
    atomic_int *finished;
};

static void sr_fn(void *arg)
{
    struct sr *s = arg;
    for (long it = 0; s->quit ? 1 : it < s->n; it++) {
        long out = (long)s->id << 40 | s->sent, in = -1;
        loom_case cs[3] = {
            { .chan = s->c, .op = LOOM_SEND, .elem = &out, .ok = -1 },
            { .chan = s->c, .op = LOOM_RECV, .elem = &in, .ok = -1 },
            { .chan = s->quit, .op = LOOM_RECV, .elem = NULL, .ok = -1 },
        };
        int r = loom_select(cs, 3, -1);
        if (r == 2) {
            CHECK_EQ(cs[2].ok, 0);
            break;
        }
        CHECK(r == 0 || r == 1);
        CHECK_EQ(cs[r].ok, 1);
        if (r == 0) {
            s->sent++;
        } else {
            if ((in >> 40) == s->id)
                FAIL("goroutine %d received its own value %ld", s->id, in & ((1L << 40) - 1));
            CHECK(s->recvd < s->got_cap);
            s->got[s->recvd++] = in;
            if (s->total && atomic_fetch_add(s->total, 1) + 1 == s->target)
                CHECK_OK(loom_close(s->quit));
        }
    }
    atomic_fetch_add(s->finished, 1);
}

static void sendrecv_two(void)
{
    long n = t_scale(20000);
    loom_chan *c = loom_chan_new(sizeof(long), 0);
    CHECK(c != NULL);
    atomic_int finished;
    atomic_init(&finished, 0);
    struct sr s[2];
    for (int i = 0; i < 2; i++) {
        s[i] = (struct sr){ .c = c,
                            .id = i + 1,
                            .n = n,
                            .got = calloc((size_t)n, sizeof(long)),
                            .got_cap = n,
                            .finished = &finished };
        CHECK(s[i].got != NULL);
    }
    for (int i = 0; i < 2; i++)
        CHECK(loom_go(sr_fn, &s[i]) != 0);
    T_WAIT_UNTIL(atomic_load(&finished) >= 2, DEADLINE_S, "%d of %d goroutines finished",
                 atomic_load(&finished), 2);
    for (int i = 0; i < 2; i++) {
        struct sr *me = &s[i], *other = &s[1 - i];
        CHECK_EQ(me->sent + me->recvd, n);
        CHECK_EQ(me->recvd, other->sent);
        for (long k = 0; k < me->recvd; k++) {
            long want = (long)other->id << 40 | k;
            if (me->got[k] != want)
                FAIL("goroutine %d: received #%ld = %lx, expected %lx", me->id, k, me->got[k], want);
        }
    }
    CHECK_GT(s[0].sent, 0);
    CHECK_GT(s[1].sent, 0);
    for (int i = 0; i < 2; i++)
        free(s[i].got);
    loom_chan_free(c);
}

static void sendrecv_many(void)
{
    enum { G = 4 };
    long target = t_scale(40000);
    loom_chan *c = loom_chan_new(sizeof(long), 0);
    loom_chan *quit = loom_chan_new(0, 0);
    CHECK(c && quit);
    atomic_long total;
    atomic_init(&total, 0);
    atomic_int finished;
    atomic_init(&finished, 0);
    struct sr s[G];
    for (int i = 0; i < G; i++) {
        s[i] = (struct sr){ .c = c,
                            .quit = quit,
                            .id = i + 1,
                            .got = calloc((size_t)target * 2 + 1000, sizeof(long)),
                            .got_cap = target * 2 + 1000,
                            .total = &total,
                            .target = target,
                            .finished = &finished };
        CHECK(s[i].got != NULL);
    }
    for (int i = 0; i < G; i++)
        CHECK(loom_go(sr_fn, &s[i]) != 0);
    T_WAIT_UNTIL(atomic_load(&finished) >= G, DEADLINE_S, "%d of %d goroutines finished",
                 atomic_load(&finished), G);
    long sent = 0, recvd = 0;
    long next[G + 1] = { 0 };
    for (int i = 0; i < G; i++) {
        sent += s[i].sent;
        recvd += s[i].recvd;
    }
    CHECK_EQ(sent, recvd);
    CHECK_GE(recvd, target);
    /* every value of every sender exactly once: per sender, the union of what
     * the others received is 0..sent-1, each once (check with a bitmap) */
    for (int src = 1; src <= G; src++) {
        long ns = s[src - 1].sent;
        unsigned char *seen = calloc((size_t)ns + 1, 1);
        CHECK(seen != NULL);
        for (int i = 0; i < G; i++) {
            for (long k = 0; k < s[i].recvd; k++) {
                long v = s[i].got[k];
                if ((v >> 40) != src)
                    continue;
                long seq = v & ((1L << 40) - 1);
                if (seq >= ns)
                    FAIL("value %d:%ld received but goroutine %d only sent %ld", src, seq, src, ns);
                if (seen[seq])
                    FAIL("value %d:%ld received twice", src, seq);
                seen[seq] = 1;
                next[src]++;
            }
        }
        CHECK_EQ(next[src], ns);
        free(seen);
    }
    for (int i = 0; i < G; i++)
        free(s[i].got);
    loom_chan_free(c);
    loom_chan_free(quit);
}

static int main_fn(void *arg)
{
    (void)arg;
    doubleselect(0);
    doubleselect(2);
    sendrecv_two();
    sendrecv_many();
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
