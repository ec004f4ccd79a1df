/*
 * context.c — loom_ctx: Go's context.Context (cancellation, causes, deadlines) and how its
 * end reaches goroutines parked in loom calls.
 *
 * The tree.  A context has a parent (NULL for background), a list of children and a cause
 * (`err`: 0 while live).  Ending one (cancel, its deadline's timer, or its parent ending)
 * sets the cause once, closes its done channel, wakes its waiters (below) and ends its
 * children with the same cause.  Background never ends; a goroutine whose current context
 * is background has g->ctx NULL, so a program that never uses contexts pays one predicted
 * branch per park.
 *
 * Reaching a parked goroutine.  Every loom wait that a context interrupts parks through
 * loom__park_timeout, whose wakers claim the goroutine with CAS(g->selectdone, 0, 1) (a
 * channel peer, a close, the poller, the timeout's timer).  The context is one more such
 * waker: once the goroutine is switched out, its park hook puts it on its current
 * context's list of waiters (loom__ctx_park_hook), or, if the context has ended already,
 * claims and readies it at once.  Ending a context claims every waiter it can; a waiter
 * another waker claimed first is left to that waker.  So a wake by data and a wake by
 * cancellation cannot both happen: a send or receive that returns the context's error
 * moved no value, and one that moved a value returns 0.  The claimed goroutine finds
 * g->ctxerr set (to the cause, copied at the claim) and returns it; it takes itself off the
 * list only if no canceller did (loom__ctx_park_done), so a woken goroutine never touches a
 * context a canceller has finished with.
 *
 * Locking: c->lock guards c's children list, its waiters list (g->ctxnext/ctxprev/ctxq of
 * the Gs on it) and the done channel's close.  Locks are taken parent before child: ending
 * a context ends its children under its own lock, and loom_ctx_free unlinks a context from
 * its parent under the parent's, so a child is never freed while its parent's end reaches
 * it.  (The woken goroutines are readied under the locks of the ancestors being ended; the
 * scheduler's locks come after every context lock.)
 *
 * Lifetime: loom_ctx_free ends c, detaches it from its parent and its children from it
 * (they are ended, and keep working as ended contexts), and frees it.  A context must not
 * be freed while a goroutine has it current: as a channel, it is the program's to keep
 * until its users are done (a group frees its own after its wait).
 */
#include "chan.h"

struct loom_ctx {
    loom_ctx *parent;
    loom_ctx *child, *next, *prev; /* children; siblings, under parent->lock */
    G *waiters;                    /* goroutines parked with this context current */
    loom_chan *done;               /* closed when it ends */
    loom__timer tm;                /* the deadline's */
    int64_t deadline;              /* 0: none of its own */
    int err;                       /* 0 while live, then the cause; atomic */
    bool firing;                   /* ending by its own timer: not deleting it */
    loom__lock lock;
};

static loom_ctx background;

static void ctx_end(loom_ctx *c, int cause, bool from_timer);

static int64_t deadline_fire(loom__timer *tm) {
    ctx_end((loom_ctx *)tm->arg, -ETIMEDOUT, true);
    return 0;
}

loom_ctx *loom_ctx_background(void) {
    if (!LOAD(&background.done)) {
        loom_chan *d = loom_chan_new(0, 0);
        if (!d) loom__fatal("out of memory for the background context");
        loom_chan *none = NULL;
        if (!__atomic_compare_exchange_n(&background.done, &none, d, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            loom_chan_free(d);
    }
    return &background;
}

static loom_ctx *ctx_new(loom_ctx *parent, int64_t deadline) {
    if (!parent) parent = &background;
    loom_ctx *c = calloc(1, sizeof *c);
    if (!c || !(c->done = loom_chan_new(0, 0))) {
        free(c);
        errno = ENOMEM;
        return NULL;
    }
    c->tm.fn = deadline_fire;
    c->tm.arg = c;
    c->deadline = deadline;
    if (parent != &background) {
        c->parent = parent;
        loom__lock_acquire(&parent->lock);
        c->next = parent->child;
        if (c->next) c->next->prev = c;
        parent->child = c;
        int perr = LOAD(&parent->err);
        loom__lock_release(&parent->lock);
        if (perr) { /* ended already: so is the child, with the same cause */
            ctx_end(c, perr, false);
            return c;
        }
    }
    if (deadline) {
        if (deadline <= loom__now()) {
            ctx_end(c, -ETIMEDOUT, false);
        } else if (LOAD(&loom__sched.running)) {
            loom__timer_add(loom__timer_home(), &c->tm, deadline);
        }
    }
    return c;
}

loom_ctx *loom_ctx_with_cancel(loom_ctx *parent) { return ctx_new(parent, 0); }

loom_ctx *loom_ctx_with_deadline(loom_ctx *parent, int64_t deadline) {
    return ctx_new(parent, deadline > 0 ? deadline : 1);
}

loom_ctx *loom_ctx_with_timeout(loom_ctx *parent, int64_t ns) {
    return ctx_new(parent, loom__deadline_after(ns));
}

/* Claims g for the context's wake (as a channel waker would); true if won. */
static bool claim(G *g, int cause) {
    if (!CAS(&g->selectdone, 0, 1)) return false;
    g->ctxerr = cause;
    g->param = NULL;
    return true;
}

static void ctx_end(loom_ctx *c, int cause, bool from_timer) {
    if (c == &background || !c) return;
    int zero = 0;
    if (!__atomic_compare_exchange_n(&c->err, &zero, cause, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    if (c->deadline && !from_timer) loom__timer_del(&c->tm);
    loom__lock_acquire(&c->lock);
    G *woken = NULL;
    while (c->waiters) {
        G *g = c->waiters;
        c->waiters = g->ctxnext;
        g->ctxnext = g->ctxprev = NULL;
        STORE(&g->ctxq, NULL); /* off the list: the goroutine will not touch c for it */
        if (claim(g, cause)) {
            g->schedlink = woken;
            woken = g;
        }
    }
    loom_close(c->done);
    /* the children, under c's lock: loom_ctx_free of a child unlinks it under this lock, so
     * none is freed while it is ended here (locks are taken parent before child) */
    for (loom_ctx *k = c->child; k; k = k->next) ctx_end(k, cause, false);
    loom__lock_release(&c->lock);
    while (woken) {
        G *g = woken;
        woken = g->schedlink;
        g->schedlink = NULL;
        loom__ready(g);
    }
}

void loom_ctx_cancel(loom_ctx *c, int cause) { ctx_end(c, cause < 0 ? cause : -ECANCELED, false); }

int loom_ctx_err(loom_ctx *c) { return c ? LOAD(&c->err) : -EINVAL; }

loom_chan *loom_ctx_done(loom_ctx *c) {
    if (c == &background) return loom_ctx_background()->done;
    return c ? c->done : NULL;
}

void loom_ctx_free(loom_ctx *c) {
    if (!c || c == &background) return;
    ctx_end(c, -ECANCELED, false);
    if (c->deadline) loom__timer_del(&c->tm); /* waits out a fire that may still run */
    loom_ctx *p = c->parent;
    if (p) {
        loom__lock_acquire(&p->lock);
        if (c->prev) c->prev->next = c->next;
        else p->child = c->next;
        if (c->next) c->next->prev = c->prev;
        loom__lock_release(&p->lock);
    }
    loom__lock_acquire(&c->lock);
    for (loom_ctx *k = c->child; k; k = k->next) k->parent = NULL;
    c->child = NULL;
    loom__lock_release(&c->lock);
    loom_chan_free(c->done);
    free(c);
}

loom_ctx *loom_ctx_set(loom_ctx *c) {
    G *g = loom__getg();
    if (!g) return &background;
    loom_ctx *old = g->ctx ? g->ctx : &background;
    g->ctx = c == &background ? NULL : c;
    return old;
}

loom_ctx *loom_ctx_current(void) {
    G *g = loom__getg();
    return g && g->ctx ? g->ctx : &background;
}

/* ---- the parking side (proc.c, loom__park_timeout) */

/* In prev's park hook, after the switch: put prev on its context's waiters, or, if the
 * context has ended, claim prev and return true (the caller readies it). */
bool loom__ctx_park_hook(G *prev) {
    loom_ctx *c = prev->ctx;
    loom__lock_acquire(&c->lock);
    int err = LOAD(&c->err);
    if (err) {
        loom__lock_release(&c->lock);
        return claim(prev, err);
    }
    prev->ctxprev = NULL;
    prev->ctxnext = c->waiters;
    if (c->waiters) c->waiters->ctxprev = prev;
    c->waiters = prev;
    STORE(&prev->ctxq, c);
    loom__lock_release(&c->lock);
    return false;
}

/* g is awake: off its context's waiters if a canceller did not take it off. */
void loom__ctx_park_done(G *g) {
    loom_ctx *c = LOAD(&g->ctxq);
    if (!c) return;
    loom__lock_acquire(&c->lock);
    if (LOAD(&g->ctxq) == c) {
        if (g->ctxprev) g->ctxprev->ctxnext = g->ctxnext;
        else c->waiters = g->ctxnext;
        if (g->ctxnext) g->ctxnext->ctxprev = g->ctxprev;
        g->ctxnext = g->ctxprev = NULL;
        STORE(&g->ctxq, NULL);
    }
    loom__lock_release(&c->lock);
}

/* The calling goroutine's context has ended: its cause, else 0. */
int loom__ctx_ended(G *g) { return g->ctx ? LOAD(&g->ctx->err) : 0; }
