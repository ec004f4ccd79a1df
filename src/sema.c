/*
 * sema.c — a counting semaphore that parks goroutines (runtime.semacquire/semrelease in
 * Go's runtime/sema.go), the building block of sync.c's mutex and rwmutex.
 *
 * struct loom__sema lives inside the sync objects (complete types in loom.h so they can
 * be initialised statically).  _count is the semaphore value (atomic).  _lock guards the
 * FIFO of waiters (_head/_tail); the waiters are nodes on the parked goroutines' stacks.
 *
 * No lost wakeup: a releaser increments _count, then looks at _head; a waiter enqueues
 * itself under _lock, then tries _count once more before parking.  With sequentially
 * consistent operations one of the two must see the other.
 * Once priority levels are in use (runq.c), semrelease wakes the first waiter of the
 * highest level instead of the first one.
 * Handoff (starving mutex): semrelease hands the unit straight to the first waiter
 * (decrementing _count for it) and yields, so no newcomer can barge in between.
 */
#include "internal.h"
#include <sched.h>

typedef struct waiter {
    G *g;
    struct waiter *next;
    bool acquired; /* the releaser took the unit for us */
} waiter;

static bool cansemacquire(struct loom__sema *s) {
    for (;;) {
        unsigned v = LOAD(&s->_count);
        if (v == 0) return false;
        if (CAS(&s->_count, v, v - 1)) return true;
    }
}

void loom__semacquire(struct loom__sema *s, bool lifo, int reason) {
    if (cansemacquire(s)) return;
    if (!loom__in_goroutine()) { /* a foreign thread: no goroutine to park */
        while (!cansemacquire(s)) sched_yield();
        return;
    }
    loom__lock *lk = (loom__lock *)&s->_lock;
    for (;;) {
        loom__lock_acquire(lk);
        waiter me = { .g = loom__getg() };
        if (lifo && s->_head) {
            me.next = s->_head;
            STORE(&s->_head, (void *)&me);
        } else {
            if (s->_tail) ((waiter *)s->_tail)->next = &me;
            else STORE(&s->_head, (void *)&me);
            /* cppcheck-suppress autoVariables ; me is off the list again before this frame returns */
            s->_tail = &me;
        }
        if (cansemacquire(s)) {
            /* take ourselves back out */
            waiter **pp = (waiter **)&s->_head, *prev = NULL;
            while (*pp != &me) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            STORE(pp, me.next);
            if (s->_tail == &me) s->_tail = prev;
            loom__lock_release(lk);
            return;
        }
        loom__park(loom__getm(), loom__unlock_after, lk, reason);
        if (me.acquired) return;
        if (cansemacquire(s)) return;
    }
}

void loom__semrelease(struct loom__sema *s, bool handoff) {
    XADD(&s->_count, 1);
    if (LOAD(&s->_head) == NULL) return;
    loom__lock *lk = (loom__lock *)&s->_lock;
    loom__lock_acquire(lk);
    waiter *w = s->_head, *wprev = NULL;
    if (!w) {
        loom__lock_release(lk);
        return;
    }
    if (unlikely(LOAD_RLX(&loom__sched.prio.used))) {
        /* priority order: the first waiter of the highest level (FIFO within a level) */
        for (waiter *prev = w, *x = w->next; x; prev = x, x = x->next)
            if (x->g->prio > w->g->prio) {
                w = x;
                wprev = prev;
            }
    }
    if (wprev) wprev->next = w->next;
    else STORE(&s->_head, (void *)w->next);
    if (s->_tail == w) s->_tail = wprev;
    w->acquired = cansemacquire(s);
    bool acquired = w->acquired;
    G *g = w->g;
    loom__lock_release(lk);
    loom__ready(g);
    if (handoff && acquired && loom__in_goroutine()) loom_yield();
}
