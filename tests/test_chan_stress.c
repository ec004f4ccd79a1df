/*
 * test_chan_stress — randomized stress across all Ps.
 *
 * 8 shared channels (capacities 0, 0, 1, 1, 4, 4, 16, 16). Workers pick random
 * operations: blocking send/recv, try_send/try_recv, and selects of 1-4 random
 * SEND/RECV cases (sometimes a NULL channel) with timeout 0, 50 us, 500 us or -1.
 * Feeders keep sending (select with a `quit` case) so blocking receives finish;
 * drainers keep receiving from every channel (select) so blocking sends finish.
 * Two channels are closed mid-way by workers.
 *
 * Every send attempt carries a fresh unique id (plus a checksum word). At the
 * end (stop feeders, close every channel, drainers drain to -EPIPE) each id must
 * have been received exactly as many times as its send reported success: once
 * if loom_send / loom_try_send returned 0 or its select SEND case completed with
 * ok = 1, never otherwise. Nothing lost, nothing duplicated, nothing delivered
 * from a failed send, no torn element; receives on closed channels zero the
 * element; len never exceeds cap.
 */
#include "t.h"

#include <stdatomic.h>

#define NCH        8
#define NW         6 /* workers */
#define NF         2 /* feeders */
#define ND         2 /* drainers */
#define NPROD      (NW + NF)
#define US         1000LL
#define DEADLINE_S 60

typedef struct msg {
    uint64_t id; /* producer (1..NPROD) << 32 | seq */
    uint64_t chk;
} msg;

static uint64_t chk_of(uint64_t id)
{
    return id * 0x9E3779B97F4A7C15ULL ^ 0x5555AAAA5555AAAAULL;
}

static loom_chan *chans[NCH];
static const size_t caps[NCH] = { 0, 0, 1, 1, 4, 4, 16, 16 };
static loom_chan *quit;

struct producer {
    long max;                   /* capacity of the arrays */
    long attempts;              /* ids handed out (written by the producer only) */
    unsigned char *sent;        /* 1: the send of that id reported success */
    _Atomic unsigned char *rcv; /* times that id was received */
};
static struct producer prod[NPROD + 1]; /* index 1..NPROD */

static atomic_int workers_done, feeders_done, drainers_done;
/* what each worker is doing, printed if the test hangs */
static atomic_int cur_kind[NW + 1], cur_chan[NW + 1];
static atomic_long cur_op[NW + 1];
static atomic_long n_received, n_sent;
static int64_t stop_at;

static msg new_msg(int p)
{
    struct producer *pr = &prod[p];
    CHECK(pr->attempts < pr->max);
    uint64_t id = (uint64_t)p << 32 | (uint64_t)pr->attempts++;
    return (msg){ id, chk_of(id) };
}

static void mark_sent(const msg *m)
{
    prod[m->id >> 32].sent[m->id & 0xffffffff] = 1;
    atomic_fetch_add(&n_sent, 1);
}

static void got_msg(const msg *m)
{
    uint64_t p = m->id >> 32, seq = m->id & 0xffffffff;
    if (p < 1 || p > NPROD || (long)seq >= prod[p].max)
        FAIL("received a value with invalid id %llx", (unsigned long long)m->id);
    if (m->chk != chk_of(m->id))
        FAIL("received a torn value: id %llx chk %llx", (unsigned long long)m->id,
             (unsigned long long)m->chk);
    atomic_fetch_add(&prod[p].rcv[seq], 1);
    atomic_fetch_add(&n_received, 1);
}

static void got_closed(const msg *m)
{
    if (m->id != 0 || m->chk != 0)
        FAIL("receive on a closed channel did not zero the element (id %llx)", (unsigned long long)m->id);
}

static void check_len(loom_chan *c, size_t cap)
{
    size_t len = loom_chan_len(c);
    if (len > cap)
        FAIL("loom_chan_len %zu > cap %zu", len, cap);
}

/* ------------------------------------------------------------ workers */

struct worker {
    int p; /* producer index */
    long ops;
    uint64_t seed;
};

static void worker_fn(void *arg)
{
    struct worker *w = arg;
    t_rng rng;
    t_rng_seed(&rng, w->seed);
    for (long op = 0; op < w->ops && loom_now() < stop_at; op++) {
        if (w->p == 1 && op == w->ops / 3)
            CHECK_OK(loom_close(chans[1]));
        if (w->p == 2 && op == 2 * w->ops / 3)
            CHECK_OK(loom_close(chans[5]));
        int ci = (int)t_rng_below(&rng, NCH);
        loom_chan *c = chans[ci];
        int kind = (int)t_rng_below(&rng, 10);
        atomic_store(&cur_kind[w->p], kind);
        atomic_store(&cur_chan[w->p], ci);
        atomic_store(&cur_op[w->p], op);
        if (kind == 0) {
            msg m = new_msg(w->p);
            int rc = loom_send(c, &m);
            if (rc == 0)
                mark_sent(&m);
            else
                CHECK_ERR(rc, EPIPE);
        } else if (kind <= 2) {
            msg m = new_msg(w->p);
            int rc = loom_try_send(c, &m);
            if (rc == 0)
                mark_sent(&m);
            else if (rc != -EAGAIN)
                CHECK_ERR(rc, EPIPE);
        } else if (kind == 3) {
            msg m;
            memset(&m, 0xA5, sizeof m);
            int rc = loom_recv(c, &m);
            if (rc == 0)
                got_msg(&m);
            else {
                CHECK_ERR(rc, EPIPE);
                got_closed(&m);
            }
        } else if (kind <= 5) {
            msg m;
            memset(&m, 0xA5, sizeof m);
            int rc = loom_try_recv(c, &m);
            if (rc == 0)
                got_msg(&m);
            else if (rc == -EPIPE)
                got_closed(&m);
            else
                CHECK_ERR(rc, EAGAIN);
        } else {
            int n = 1 + (int)t_rng_below(&rng, 4);
            loom_case cs[4];
            msg ms[4];
            for (int i = 0; i < n; i++) {
                int cj = (int)t_rng_below(&rng, NCH);
                int send = (int)t_rng_below(&rng, 2);
                if (send) {
                    ms[i] = new_msg(w->p);
                } else {
                    memset(&ms[i], 0xA5, sizeof ms[i]);
                }
                cs[i] = (loom_case){ .chan = t_rng_below(&rng, 8) == 0 ? NULL : chans[cj],
                                     .op = send ? LOOM_SEND : LOOM_RECV,
                                     .elem = &ms[i],
                                     .ok = -1 };
            }
            static const int64_t tmo[4] = { 0, 50 * US, 500 * US, -1 };
            int64_t t = tmo[t_rng_below(&rng, 4)];
            int all_null = 1;
            for (int i = 0; i < n; i++)
                if (cs[i].chan)
                    all_null = 0;
            if (all_null && t < 0)
                t = 50 * US; /* would block forever */
            int r = loom_select(cs, n, t);
            if (r < 0) {
                if (t == 0)
                    CHECK_ERR(r, EAGAIN);
                else
                    CHECK_ERR(r, ETIMEDOUT);
            } else {
                CHECK(r < n);
                CHECK(cs[r].chan != NULL);
                CHECK(cs[r].ok == 0 || cs[r].ok == 1);
                if (cs[r].op == LOOM_SEND) {
                    if (cs[r].ok)
                        mark_sent(&ms[r]);
                } else if (cs[r].ok) {
                    got_msg(&ms[r]);
                } else {
                    got_closed(&ms[r]);
                }
            }
        }
        check_len(c, caps[ci]);
    }
    atomic_store(&cur_kind[w->p], -1);
    atomic_fetch_add(&workers_done, 1);
}

/* ------------------------------------------------------------ feeders */

struct feeder {
    int p;
    uint64_t seed;
};

static void feeder_fn(void *arg)
{
    struct feeder *f = arg;
    t_rng rng;
    t_rng_seed(&rng, f->seed);
    for (;;) {
        int ci = (int)t_rng_below(&rng, NCH);
        /* feeders run flat out while the workers run (at most ~2 s): an id space
         * of 2^23 per feeder is far more than they can use; running out would
         * starve the workers' blocking receives, so say so instead of hanging */
        if (prod[f->p].attempts >= prod[f->p].max)
            FAIL("feeder %d ran out of ids (%ld sends)", f->p, prod[f->p].attempts);
        msg m = new_msg(f->p);
        loom_case cs[2] = {
            { .chan = chans[ci], .op = LOOM_SEND, .elem = &m, .ok = -1 },
            { .chan = quit, .op = LOOM_RECV, .elem = NULL, .ok = -1 },
        };
        int r = loom_select(cs, 2, -1);
        if (r == 1) {
            CHECK_EQ(cs[1].ok, 0);
            break;
        }
        CHECK_EQ(r, 0); /* a select with timeout -1 over 2 cases */
        if (cs[0].ok)
            mark_sent(&m);
    }
    atomic_fetch_add(&feeders_done, 1);
}

/* ----------------------------------------------------------- drainers */

static void drainer_fn(void *arg)
{
    (void)arg;
    loom_case cs[NCH];
    msg ms[NCH];
    int open = NCH;
    for (int i = 0; i < NCH; i++)
        cs[i] = (loom_case){ .chan = chans[i], .op = LOOM_RECV, .elem = &ms[i] };
    while (open > 0) {
        for (int i = 0; i < NCH; i++)
            memset(&ms[i], 0xA5, sizeof ms[i]);
        int r = loom_select(cs, NCH, -1);
        CHECK(r >= 0 && r < NCH);
        if (cs[r].ok) {
            got_msg(&ms[r]);
        } else {
            got_closed(&ms[r]);
            cs[r].chan = NULL; /* closed and drained */
            open--;
        }
    }
    atomic_fetch_add(&drainers_done, 1);
}

/* What each worker was doing: printed when a wait for the goroutines times out. */
static void dump_workers(void)
{
    for (int p = 1; p <= NW; p++)
        fprintf(stderr,
                "worker %d: op %ld kind %d (0 send, 1-2 try_send, 3 recv, 4-5 try_recv, "
                "6+ select) chan %d%s\n",
                p, atomic_load(&cur_op[p]), atomic_load(&cur_kind[p]), atomic_load(&cur_chan[p]),
                atomic_load(&cur_kind[p]) < 0 ? " (done)" : "");
}

static int main_fn(void *arg)
{
    (void)arg;
    long ops = t_scale(30000);
    for (int i = 0; i < NCH; i++) {
        chans[i] = loom_chan_new(sizeof(msg), caps[i]);
        CHECK(chans[i] != NULL);
    }
    quit = loom_chan_new(0, 0);
    CHECK(quit != NULL);
    for (int p = 1; p <= NPROD; p++) {
        prod[p].max =
                p <= NW ? ops * 4 + 8
                        : 1L << 24; /* feeders must not run out of ids before the workers stop, or a worker blocked in recv waits forever */
        prod[p].sent = calloc((size_t)prod[p].max, 1);
        prod[p].rcv = calloc((size_t)prod[p].max, sizeof *prod[p].rcv);
        CHECK(prod[p].sent && prod[p].rcv);
    }
    stop_at = loom_now() + 2000LL * 1000 * 1000; /* at most ~2 s of work */

    for (int i = 0; i < ND; i++)
        CHECK(loom_go(drainer_fn, NULL) != 0);
    struct feeder fd[NF];
    for (int i = 0; i < NF; i++) {
        fd[i] = (struct feeder){ .p = NW + 1 + i, .seed = 1000 + (uint64_t)i };
        CHECK(loom_go(feeder_fn, &fd[i]) != 0);
    }
    struct worker wk[NW];
    for (int i = 0; i < NW; i++) {
        wk[i] = (struct worker){ .p = 1 + i, .ops = ops, .seed = 7 + (uint64_t)i * 7919 };
        CHECK(loom_go(worker_fn, &wk[i]) != 0);
    }

    T_WAIT_UNTIL_THEN(atomic_load(&workers_done) >= NW, DEADLINE_S, dump_workers(),

                      "workers: %d of %d", atomic_load(&workers_done), NW);
    CHECK_OK(loom_close(quit));
    T_WAIT_UNTIL_THEN(atomic_load(&feeders_done) >= NF, DEADLINE_S, dump_workers(), "feeders: %d of %d",
                      atomic_load(&feeders_done), NF);
    /* workers 1 and 2 closed channels 1 and 5 mid-way, unless they ran out of
     * time first */
    for (int i = 0; i < NCH; i++) {
        int rc = loom_close(chans[i]);
        if (i == 1 || i == 5) {
            if (rc != 0)
                CHECK_ERR(rc, EPIPE);
        } else {
            CHECK_OK(rc);
        }
    }
    T_WAIT_UNTIL_THEN(atomic_load(&drainers_done) >= ND, DEADLINE_S, dump_workers(), "drainers: %d of %d",
                      atomic_load(&drainers_done), ND);

    long lost = 0, dup = 0, ghost = 0;
    for (int p = 1; p <= NPROD; p++) {
        for (long s = 0; s < prod[p].max; s++) {
            int r = atomic_load(&prod[p].rcv[s]);
            int want = s < prod[p].attempts ? prod[p].sent[s] : 0;
            if (r == want)
                continue;
            if (r == 0)
                lost++;
            else if (want == 1)
                dup++;
            else
                ghost++;
            if (lost + dup + ghost <= 10)
                fprintf(stderr, "value %d:%ld: send %s, received %d time(s)\n", p, s,
                        want ? "succeeded" : "failed", r);
        }
    }
    CHECK_MSG(lost + dup + ghost == 0, "%ld lost, %ld duplicated, %ld delivered although the send failed",
              lost, dup, ghost);
    CHECK_EQ(atomic_load(&n_sent), atomic_load(&n_received));
    CHECK_GT(atomic_load(&n_sent), 0);
    for (int i = 0; i < NCH; i++) {
        CHECK_EQ(loom_chan_len(chans[i]), 0);
        loom_chan_free(chans[i]);
    }
    loom_chan_free(quit);
    for (int p = 1; p <= NPROD; p++) {
        free(prod[p].sent);
        free((void *)prod[p].rcv);
    }
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
