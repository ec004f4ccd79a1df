/*
 * chan.c — channels, following Go's runtime/chan.go (names kept: chansend, chanrecv,
 * closechan, send, recv).  See chan.h for the invariants and which lock guards what.
 *
 * A send finds, in order: a waiting receiver (copy straight into its elem and ready it —
 * the unbuffered rendezvous), room in the ring buffer, or nothing (park on sendq until a
 * receiver or close wakes it).  A receive mirrors it; for a full buffered channel with a
 * waiting sender it takes the head of the ring and moves the sender's value to the tail,
 * which keeps FIFO order.  Close wakes every waiter: receivers get a zeroed value and
 * -EPIPE, senders -EPIPE.
 *
 * After a waiter is woken the runtime never touches the channel again on its behalf: the
 * waker copies, unlocks, and only then readies the waiter, so a channel may be freed the
 * moment the last goroutine using it has returned from its call.
 */
#include "chan.h"

static bool elem_overflows(size_t elem, size_t cap) { return elem != 0 && cap > SIZE_MAX / 2 / elem; }

loom_chan *loom_chan_new(size_t elem_size, size_t capacity) {
    if (elem_overflows(elem_size, capacity) || elem_size > (1u << 30)) {
        errno = EINVAL;
        return NULL;
    }
    size_t bufbytes = elem_size * capacity;
    size_t hdr = (sizeof(loom_chan) + 63) & ~(size_t)63;
    if (bufbytes > SIZE_MAX - hdr) {
        errno = EINVAL;
        return NULL;
    }
    loom_chan *c = calloc(1, hdr + bufbytes);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    c->elemsize = elem_size;
    c->dataqsiz = capacity;
    c->buf = (char *)c + hdr;
    return c;
}

void loom_chan_free(loom_chan *c) { free(c); }

size_t loom_chan_len(loom_chan *c) { return c ? LOAD_RLX(&c->qcount) : 0; }
size_t loom_chan_cap(loom_chan *c) { return c ? c->dataqsiz : 0; }

/* ---- wait queues */

void loom__waitq_enqueue(loom__waitq *q, loom__sudog *sg) {
    sg->next = NULL;
    sg->prev = q->last;
    if (q->last) q->last->next = sg;
    else q->first = sg;
    q->last = sg;
}

void loom__waitq_remove(loom__waitq *q, loom__sudog *sg) {
    if (sg->prev) sg->prev->next = sg->next;
    else if (q->first == sg) q->first = sg->next;
    else return; /* not in the queue any more */
    if (sg->next) sg->next->prev = sg->prev;
    else q->last = sg->prev;
    sg->next = sg->prev = NULL;
}

/* Pops the first waiter that can still be woken: a select whose goroutine was already
 * claimed by another case (or its timeout) is skipped (runtime.waitq.dequeue). */
loom__sudog *loom__waitq_dequeue(loom__waitq *q) {
    for (;;) {
        loom__sudog *sg = q->first;
        if (!sg) return NULL;
        if (unlikely(LOAD_RLX(&loom__sched.prio.used))) {
            /* priority order where Go leaves the choice free: the first waiter of the
             * highest level (FIFO within a level) */
            for (loom__sudog *x = sg->next; x; x = x->next)
                if (x->g->prio > sg->g->prio) sg = x;
        }
        loom__waitq_remove(q, sg);
        if (sg->isselect && !CAS(&sg->g->selectdone, 0, 1)) continue;
        /* invariant: a claimable sudog belongs to its goroutine's current select */
        if (unlikely(sg->isselect && sg->seq != LOAD_RLX(&sg->g->parkseq)))
            loom__fatal("stale select waiter of goroutine %llu", (unsigned long long)sg->g->id);
        return sg;
    }
}

/* m: this thread's M if the caller has it at hand, else NULL */
static void wake(M *m, loom__sudog *sg, bool success) {
    G *g = sg->g;
    LOOM__CHAOS(CH_LOCK);
    sg->success = success;
    g->param = sg;
    loom__ready_m(m ? m : loom__getm(), g); /* sg lives on g's stack: no access after this */
}

/* An element copy: the common small sizes without a call */
static inline void elem_copy(void *dst, const void *src, size_t n) {
    switch (n) {
    case 8: memcpy(dst, src, 8); break;
    case 4: memcpy(dst, src, 4); break;
    case 16: memcpy(dst, src, 16); break;
    default: memcpy(dst, src, n); break;
    }
}

/* ---- the ring buffer */

void loom__chan_buf_put(loom_chan *c, const void *ep) {
    if (c->elemsize && ep) memcpy(c->buf + c->sendx * c->elemsize, ep, c->elemsize);
    if (++c->sendx == c->dataqsiz) c->sendx = 0;
    STORE_RLX(&c->qcount, c->qcount + 1);
}

void loom__chan_buf_take(loom_chan *c, void *ep) {
    char *slot = c->buf + c->recvx * c->elemsize;
    if (c->elemsize) {
        if (ep) memcpy(ep, slot, c->elemsize);
        memset(slot, 0, c->elemsize);
    }
    if (++c->recvx == c->dataqsiz) c->recvx = 0;
    STORE_RLX(&c->qcount, c->qcount - 1);
}

/* runtime.send: a receiver sg waits; hand it ep directly. */
void loom__chan_send_to(M *m, loom_chan *c, loom__sudog *sg, const void *ep) {
    if (c->elemsize && sg->elem && ep) elem_copy(sg->elem, ep, c->elemsize);
    loom__spin_unlock(&c->lock);
    wake(m, sg, true);
}

/* runtime.recv: a sender sg waits.  Unbuffered: take its value.  Full buffer: take the
 * head, and the sender's value goes to the tail (the slot just freed). */
void loom__chan_recv_from(M *m, loom_chan *c, loom__sudog *sg, void *ep) {
    if (c->dataqsiz == 0) {
        if (c->elemsize && ep) elem_copy(ep, sg->elem, c->elemsize);
    } else {
        char *slot = c->buf + c->recvx * c->elemsize;
        if (c->elemsize) {
            if (ep) memcpy(ep, slot, c->elemsize);
            memcpy(slot, sg->elem, c->elemsize);
        }
        if (++c->recvx == c->dataqsiz) c->recvx = 0;
        c->sendx = c->recvx;
    }
    loom__spin_unlock(&c->lock);
    wake(m, sg, true);
}

/* ---- send / receive */

/* Nothing ready on c (locked): fail for a non-blocking call or a thread without a
 * goroutine, else wait on q until a peer or close completes the operation.  m: this
 * thread's M, from loom__enter_blocking (NULL for the non-blocking forms). */
static int chanwait(M *m, loom_chan *c, loom__waitq *q, void *elem, bool block, int reason) {
    if (!block || !loom__m_runs_g(m)) {
        loom__spin_unlock(&c->lock);
        return block ? -EPERM : -EAGAIN;
    }
    G *g = m->curg;
    loom__sudog me = { .g = g, .elem = elem, .c = c, .caseidx = -1 };
    g->param = NULL;
    if (unlikely(g->ctx)) {
        /* a context may end the wait: wakers claim g, as for a select (context.c), so a
         * wait cut short moved no value */
        me.isselect = true;
        me.seq = g->parkseq + 1;
        STORE_RLX(&g->parkseq, me.seq);
        STORE(&g->selectdone, 0);
        loom__waitq_enqueue(q, &me);
        if (!loom__park_timeout(loom__spin_unlock_after, &c->lock, reason, -1) && g->ctxerr) {
            loom__spin_lock(&c->lock);
            loom__waitq_remove(q, &me);
            loom__spin_unlock(&c->lock);
            return g->ctxerr;
        }
        return me.success ? 0 : -EPIPE;
    }
    loom__waitq_enqueue(q, &me);
    loom__park(m, loom__spin_unlock_after, &c->lock, reason);
    return me.success ? 0 : -EPIPE;
}

static int chansend(M *m, loom_chan *c, const void *ep, bool block) {
    if (!c) return -EINVAL;
    if (!ep && c->elemsize) return -EINVAL;
    /* fast path for a full buffered channel in non-blocking mode, without the lock (as Go) */
    if (!block && c->dataqsiz > 0 && LOAD(&c->qcount) == c->dataqsiz && !LOAD(&c->closed)) return -EAGAIN;
    loom__spin_lock(&c->lock);
    if (c->closed) {
        loom__spin_unlock(&c->lock);
        return -EPIPE;
    }
    loom__sudog *sg = loom__waitq_dequeue(&c->recvq);
    if (sg) {
        loom__chan_send_to(m, c, sg, ep);
        return 0;
    }
    if (c->qcount < c->dataqsiz) {
        loom__chan_buf_put(c, ep);
        loom__spin_unlock(&c->lock);
        return 0;
    }
    return chanwait(m, c, &c->sendq, (void *)ep, block, WAIT_CHAN_SEND);
}

static int chanrecv(M *m, loom_chan *c, void *ep, bool block) {
    if (!c) return -EINVAL;
    if (!block && c->dataqsiz > 0 && LOAD(&c->qcount) == 0 && !LOAD(&c->closed)) return -EAGAIN;
    loom__spin_lock(&c->lock);
    if (c->closed && c->qcount == 0) {
        loom__spin_unlock(&c->lock);
        if (ep && c->elemsize) memset(ep, 0, c->elemsize);
        return -EPIPE;
    }
    loom__sudog *sg = loom__waitq_dequeue(&c->sendq);
    if (sg) {
        loom__chan_recv_from(m, c, sg, ep);
        return 0;
    }
    if (c->qcount > 0) {
        loom__chan_buf_take(c, ep);
        loom__spin_unlock(&c->lock);
        return 0;
    }
    return chanwait(m, c, &c->recvq, ep, block, WAIT_CHAN_RECV); /* closechan zeroes elem */
}

/* The blocking forms are goroutine calls: from a thread that runs no goroutine they fail
 * with -EPERM whether or not this particular call would have blocked (API.md). */
int loom_send(loom_chan *c, const void *elem) {
    if (!c) return -EINVAL;
    M *m = loom__enter_blocking();
    if (!m) return -EPERM;
    return chansend(m, c, elem, true);
}
int loom_recv(loom_chan *c, void *elem) {
    if (!c) return -EINVAL;
    M *m = loom__enter_blocking();
    if (!m) return -EPERM;
    return chanrecv(m, c, elem, true);
}
int loom_try_send(loom_chan *c, const void *elem) { return chansend(loom__getm(), c, elem, false); }
int loom_try_recv(loom_chan *c, void *elem) { return chanrecv(loom__getm(), c, elem, false); }

/* runtime.closechan */
int loom_close(loom_chan *c) {
    if (!c) return -EINVAL;
    loom__spin_lock(&c->lock);
    if (c->closed) {
        loom__spin_unlock(&c->lock);
        return -EPIPE;
    }
    STORE(&c->closed, 1);
    loom__sudog *list = NULL, *sg;
    while ((sg = loom__waitq_dequeue(&c->recvq))) {
        if (sg->elem && c->elemsize) memset(sg->elem, 0, c->elemsize);
        sg->next = list;
        list = sg;
    }
    while ((sg = loom__waitq_dequeue(&c->sendq))) {
        sg->next = list;
        list = sg;
    }
    loom__spin_unlock(&c->lock);
    while (list) {
        sg = list;
        list = sg->next;
        wake(NULL, sg, false);
    }
    return 0;
}
