/*
 * select.c — loom_select, following Go's runtime/select.go (selectgo).
 *
 *   1. Validate; pick a random poll order (uniform choice among ready cases) and a lock
 *      order (channels sorted by address, so concurrent selects on overlapping channels
 *      always lock in the same order and can never deadlock each other).
 *   2. Lock every channel; take the first ready case in poll order.
 *   3. None ready: timeout 0 returns -EAGAIN (Go's default:).  Otherwise enqueue a sudog
 *      (on this goroutine's stack) on every channel and park; the parking hook unlocks the
 *      channels (and arms the timeout timer before that).  Wakers race to claim the
 *      goroutine with CAS(g->selectdone, 0, 1); exactly one wins.
 *   4. Woken: lock every channel again, except the one that fired (its waker may free it
 *      the moment our call completes), and take our sudogs off the queues that did not
 *      fire.  Re-locking also waits out the parking hook, which may still be unlocking
 *      the other channels on another thread when a waker already readied us.
 * The parking hook copies the channel list before unlocking anything, since once the first
 * channel is unlocked this goroutine may run again and its stack change.
 */
#include "chan.h"

enum { SMALL = 16 };

static void sort_lockorder(loom_case *cases, int *order, int n) {
    /* insertion sort on channel address: n is small in practice */
    for (int i = 1; i < n; i++) {
        int k = order[i];
        uintptr_t key = (uintptr_t)cases[k].chan;
        int j = i - 1;
        while (j >= 0 && (uintptr_t)cases[order[j]].chan > key) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = k;
    }
}

static void sellock(loom_case *cases, const int *lockorder, int n) {
    loom_chan *last = NULL;
    for (int i = 0; i < n; i++) {
        loom_chan *c = cases[lockorder[i]].chan;
        if (c != last) loom__spin_lock(&c->lock);
        last = c;
    }
}

static void selunlock(loom_case *cases, const int *lockorder, int n) {
    for (int i = n - 1; i >= 0; i--) {
        loom_chan *c = cases[lockorder[i]].chan;
        if (i > 0 && cases[lockorder[i - 1]].chan == c) continue;
        loom__spin_unlock(&c->lock);
    }
}

/* unlocks every channel but `keep` (whose unlock comes with the handoff to a waiter) */
static void selunlock_except(loom_case *cases, const int *lockorder, int n, loom_chan *keep) {
    for (int i = n - 1; i >= 0; i--) {
        loom_chan *c = cases[lockorder[i]].chan;
        if (c == keep || (i > 0 && cases[lockorder[i - 1]].chan == c)) continue;
        loom__spin_unlock(&c->lock);
    }
}

struct park_locks {
    loom_chan **chans;
    int n;
};

/* the parking hook: unlock every channel, distinct, from a private copy */
static void selparkcommit(G *prev, void *arg) {
    (void)prev;
    struct park_locks *pl = arg;
    int n = pl->n;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): copy is an array of pointers */
    loom_chan *small[SMALL], **copy = n <= SMALL ? small : malloc((size_t)n * sizeof *copy);
    if (!copy) loom__fatal("out of memory in select");
    memcpy(copy, pl->chans, (size_t)n * sizeof *copy); /* NOLINT(bugprone-sizeof-expression) */
    for (int i = n - 1; i >= 0; i--) loom__spin_unlock(&copy[i]->lock);
    if (copy != small) free(copy);
}

int loom_select(loom_case *cases, int ncases, int64_t timeout_ns) {
    if (ncases < 0 || (ncases > 0 && !cases)) return -EINVAL;
    int nchans = 0;
    for (int i = 0; i < ncases; i++) {
        loom_case *k = &cases[i];
        if (k->op != LOOM_SEND && k->op != LOOM_RECV) return -EINVAL;
        if (!k->chan) continue;
        if (k->op == LOOM_SEND && !k->elem && k->chan->elemsize) return -EINVAL;
        nchans++;
    }
    bool in_g = loom__enter_blocking() != NULL;  /* in a goroutine: its preemption point first */
    if (timeout_ns != 0 && !in_g) return -EPERM; /* blocking needs a goroutine */
    /* only now read the M: the preemption point may have moved us to another thread */
    M *m = loom__getm();
    if (nchans == 0) {
        /* only nil channels: never ready */
        if (timeout_ns == 0) return -EAGAIN;
        if (!in_g) return -EPERM;
        G *g = m->curg;
        if (g->ctx) { /* until its context ends, or the timeout */
            STORE(&g->selectdone, 0);
            g->param = NULL;
            (void)loom__park_timeout(NULL, NULL, WAIT_SELECT_NOCASES, timeout_ns);
            return g->ctxerr ? g->ctxerr : -ETIMEDOUT;
        }
        if (timeout_ns > 0) {
            loom_sleep(timeout_ns);
            return -ETIMEDOUT;
        }
        loom__park(m, NULL, NULL, WAIT_SELECT_NOCASES);
        loom__fatal("select with no cases woke up");
    }

    int small_order[2 * SMALL];
    int *pollorder = nchans <= SMALL ? small_order : malloc(2 * (size_t)nchans * sizeof(int));
    if (!pollorder) return -ENOMEM;
    int *lockorder = pollorder + nchans;
    /* poll order: a uniform random permutation of the non-nil cases (Fisher-Yates) */
    int np = 0;
    for (int i = 0; i < ncases; i++) {
        if (!cases[i].chan) continue;
        uint32_t j = m ? loom__fastrandn(m, (uint32_t)np + 1) : (uint32_t)(rand() % (np + 1));
        if (j != (uint32_t)np) pollorder[np] = pollorder[j];
        pollorder[j] = i;
        np++;
    }
    for (int i = 0; i < np; i++) lockorder[i] = pollorder[i];
    sort_lockorder(cases, lockorder, np);

    int result;
    sellock(cases, lockorder, np);
    /* pass 1: anything ready?  ok: -1 not ready, else the case's ok; sg: a partner waiting */
    for (int i = 0; i < np; i++) {
        int ci = pollorder[i];
        loom_case *k = &cases[ci];
        loom_chan *c = k->chan;
        loom__sudog *sg = NULL;
        int ok = -1;
        if (k->op == LOOM_RECV) {
            if ((sg = loom__waitq_dequeue(&c->sendq))) {
                ok = 1;
            } else if (c->qcount > 0) {
                loom__chan_buf_take(c, k->elem);
                ok = 1;
            } else if (c->closed) {
                if (k->elem && c->elemsize) memset(k->elem, 0, c->elemsize);
                ok = 0;
            }
        } else {
            if (c->closed) {
                ok = 0;
            } else if ((sg = loom__waitq_dequeue(&c->recvq))) {
                ok = 1;
            } else if (c->qcount < c->dataqsiz) {
                loom__chan_buf_put(c, k->elem);
                ok = 1;
            }
        }
        if (ok < 0) continue;
        k->ok = ok;
        result = ci;
        if (!sg) {
            selunlock(cases, lockorder, np);
        } else {
            selunlock_except(cases, lockorder, np, c);
            if (k->op == LOOM_RECV) loom__chan_recv_from(m, c, sg, k->elem); /* unlocks c */
            else loom__chan_send_to(m, c, sg, k->elem);                      /* unlocks c */
        }
        goto out;
    }
    if (timeout_ns == 0 || !in_g) {
        selunlock(cases, lockorder, np);
        result = timeout_ns == 0 ? -EAGAIN : -EPERM;
        goto out;
    }

    /* pass 2: enqueue on every channel and park */
    {
        G *g = m->curg; /* NOLINT(clang-analyzer-core.NullDereference): in_g, so m is set */
        loom__sudog small_sg[SMALL], *sgs = np <= SMALL ? small_sg : calloc((size_t)np, sizeof *sgs);
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): chans is an array of pointers */
        loom_chan *small_ch[SMALL], **chans = np <= SMALL ? small_ch : malloc((size_t)np * sizeof *chans);
        if (!sgs || !chans) loom__fatal("out of memory in select");
        int nch = 0;
        for (int i = 0; i < np; i++) {
            loom_chan *c = cases[lockorder[i]].chan;
            if (nch == 0 || chans[nch - 1] != c) chans[nch++] = c;
        }
        uint32_t seq = g->parkseq + 1; /* only this goroutine writes it */
        STORE_RLX(&g->parkseq, seq);
        STORE(&g->selectdone, 0);
        g->param = NULL;
        for (int i = 0; i < np; i++) {
            int ci = lockorder[i];
            loom_case *k = &cases[ci];
            loom__sudog *sg = &sgs[i];
            *sg = (loom__sudog){ .g = g,
                                 .elem = k->elem,
                                 .c = k->chan,
                                 .caseidx = ci,
                                 .isselect = true,
                                 .seq = seq };
            loom__waitq_enqueue(k->op == LOOM_RECV ? &k->chan->recvq : &k->chan->sendq, sg);
        }
        struct park_locks pl = { chans, nch };
        loom__park_timeout(selparkcommit, &pl, WAIT_SELECT, timeout_ns);

        /* pass 3: dequeue from the losers; the winner (if any) is g->param.  The winner's
         * channel is not touched again (its waker already took our sudog off it), so the
         * goroutine that woke us may free it at once — unless another case of ours is on
         * the same channel, whose sudog must come off it too. */
        loom__sudog *won = g->param;
        loom_chan *skip = won ? won->c : NULL;
        for (int i = 0; skip && i < np; i++)
            if (&sgs[i] != won && sgs[i].c == skip) skip = NULL;
        int nl = 0;
        for (int i = 0; i < np; i++)
            if (cases[lockorder[i]].chan != skip) lockorder[nl++] = lockorder[i];
        sellock(cases, lockorder, nl);
        for (int i = 0; i < np; i++) {
            loom__sudog *sg = &sgs[i];
            if (sg == won) continue;
            loom_case *k = &cases[sg->caseidx];
            loom__waitq_remove(k->op == LOOM_RECV ? &k->chan->recvq : &k->chan->sendq, sg);
        }
        selunlock(cases, lockorder, nl);
        if (won) {
            result = won->caseidx;
            cases[result].ok = won->success ? 1 : 0;
        } else {
            result = g->ctxerr ? g->ctxerr : -ETIMEDOUT;
        }
        if (sgs != small_sg) free(sgs);
        if (chans != small_ch) free(chans);
    }
out:
    if (pollorder != small_order) free(pollorder);
    return result;
}
