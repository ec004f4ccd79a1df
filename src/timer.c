/*
 * timer.c — per-P timer heaps (as Go since 1.14: runtime/time.go).
 *
 * Each P keeps a 4-ary min-heap of the timers started on it, keyed on `when`.  A 4-ary
 * heap is shallower than a binary one (fewer cache lines touched per sift).  The owner
 * runs its due timers in schedule(); an idle P runs other Ps' due timers while stealing;
 * when every P is idle, the M that polls sleeps in epoll until the earliest deadline of
 * all heaps (proc.c findrunnable).  Adding a timer earlier than that deadline breaks the
 * poller's sleep (loom__wake_netpoller, Go's wakeNetPoller).
 *
 * Locking: p->timers_lock guards p's heap and the pp/idx fields of the timers in it.
 * timer0_when mirrors heap[0]->when so other Ms can look without the lock.
 * A timer's state is IDLE, PENDING (in a heap) or FIRING (popped, callback running).
 * loom__timer_del waits out a FIRING timer, so after it returns the callback is not
 * running and will not run: the owner may reuse the timer at once.  The callback may wake
 * the owner before the firing M is done with the timer, so every owner that was woken by
 * its timer calls loom__timer_del before it reuses or frees it (loom_sleep does).
 * Timers are embedded in the objects using them (a G's sleep/timeout timer): no allocation.
 *
 * A periodic timer (its callback returns a period > 0: a ticker) goes back on the heap of
 * the P that fired it, by loom__timers_run under the heap lock after the callback: state goes FIRING -> PENDING
 * with the timer already in the heap, so loom__timer_del, which waits out FIRING, then
 * finds it pending and removes it.  (A callback re-adding the timer itself could not be
 * told apart from a fire that is over, and the firing M would touch the timer after its
 * owner had deleted and freed it.)
 */
#include "internal.h"

static void set_idx(loom__timer **h, int i, loom__timer *t) {
    h[i] = t;
    t->idx = i;
}

static void siftup(loom__timer **h, int i) {
    loom__timer *t = h[i];
    while (i > 0) {
        int parent = (i - 1) / 4;
        if (h[parent]->when <= t->when) break;
        set_idx(h, i, h[parent]);
        i = parent;
    }
    set_idx(h, i, t);
}

static void siftdown(loom__timer **h, int n, int i) {
    loom__timer *t = h[i];
    for (;;) {
        int c = 4 * i + 1;
        if (c >= n) break;
        int best = c;
        for (int k = c + 1; k < c + 4 && k < n; k++)
            if (h[k]->when < h[best]->when) best = k;
        if (h[best]->when >= t->when) break;
        set_idx(h, i, h[best]);
        i = best;
    }
    set_idx(h, i, t);
}

static void update0(P *p) { STORE(&p->timer0_when, p->ntimers ? p->timers[0]->when : 0); }

static void remove_at(P *p, int i) {
    loom__timer **h = p->timers;
    int last = --p->ntimers;
    if (i != last) {
        set_idx(h, i, h[last]);
        siftdown(h, last, i);
        siftup(h, h[i]->idx);
    }
}

/* Pushes t onto p's heap; p->timers_lock held.  Returns true if it became the earliest. */
static bool heap_push(P *p, loom__timer *t) {
    if (p->ntimers == p->timers_cap) {
        int cap = p->timers_cap ? p->timers_cap * 2 : 64;
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): the heap is an array of pointers */
        loom__timer **nh = realloc(p->timers, (size_t)cap * sizeof *nh);
        if (!nh) loom__fatal("out of memory growing a timer heap");
        p->timers = nh;
        p->timers_cap = cap;
    }
    STORE(&t->pp, p);
    set_idx(p->timers, p->ntimers, t);
    p->ntimers++;
    siftup(p->timers, t->idx);
    return p->timers[0] == t;
}

void loom__timer_add(P *p, loom__timer *t, int64_t when) {
    if (when <= 0) when = 1;
    loom__lock_acquire(&p->timers_lock);
    t->when = when;
    STORE(&t->state, TIMER_PENDING);
    bool first = heap_push(p, t);
    update0(p);
    loom__lock_release(&p->timers_lock);
    if (first) loom__wake_netpoller(when);
}

/* Moves every timer of `from` to `to` (a spare P retiring, proc.c).  Both locks are held,
 * lower P id first, so a concurrent timer_del finds each timer in one heap or the other. */
void loom__timers_move(P *from, P *to) {
    if (from == to) return;
    P *a = from->id < to->id ? from : to, *b = a == from ? to : from;
    loom__lock_acquire(&a->timers_lock);
    loom__lock_acquire(&b->timers_lock);
    int64_t earliest = 0;
    while (from->ntimers > 0) {
        loom__timer *t = from->timers[from->ntimers - 1];
        from->ntimers--;
        heap_push(to, t);
        if (earliest == 0 || t->when < earliest) earliest = t->when;
    }
    update0(from);
    update0(to);
    loom__lock_release(&b->timers_lock);
    loom__lock_release(&a->timers_lock);
    if (earliest) loom__wake_netpoller(earliest);
}

bool loom__timer_del(loom__timer *t) {
    for (;;) {
        P *pp = LOAD(&t->pp);
        if (!pp) {
            for (int spins = 0; LOAD(&t->state) == TIMER_FIRING; spins++) {
                if (spins < 100) loom__cpu_relax();
                else loom__osyield(); /* the firing M was descheduled mid-callback */
            }
            if (LOAD(&t->state) == TIMER_PENDING) continue; /* a periodic one, back in a heap */
            return false;
        }
        loom__lock_acquire(&pp->timers_lock);
        if (LOAD(&t->pp) != pp) {
            loom__lock_release(&pp->timers_lock);
            continue;
        }
        remove_at(pp, t->idx);
        STORE(&t->pp, NULL);
        STORE(&t->state, TIMER_IDLE);
        update0(pp);
        loom__lock_release(&pp->timers_lock);
        return true;
    }
}

int64_t loom__timers_run(P *p, int64_t now) {
    if (LOAD(&p->timer0_when) == 0 || LOAD(&p->timer0_when) > now) return LOAD(&p->timer0_when);
    if (!loom__lock_try(&p->timers_lock)) return LOAD(&p->timer0_when); /* someone else runs them */
    while (p->ntimers > 0 && p->timers[0]->when <= now) {
        loom__timer *t = p->timers[0];
        remove_at(p, 0);
        STORE(&t->state, TIMER_FIRING); /* before pp: timer_del seeing pp NULL must see FIRING */
        STORE(&t->pp, NULL);
        update0(p);
        loom__lock_release(&p->timers_lock);
        LOOM__CHAOS(CH_TIMER);
        int64_t period = t->fn(t);
        if (period > 0) { /* a ticker: back on this heap (see the top) */
            loom__lock_acquire(&p->timers_lock);
            t->when = loom__timer_next_fire(t->when, now, period);
            heap_push(p, t);
            STORE(&t->state, TIMER_PENDING);
            continue;
        }
        /* the callback may have let the owner re-add it (state PENDING): leave that */
        CAS(&t->state, TIMER_FIRING, TIMER_IDLE);
        loom__lock_acquire(&p->timers_lock);
    }
    update0(p);
    int64_t next = p->ntimers ? p->timers[0]->when : 0;
    loom__lock_release(&p->timers_lock);
    return next;
}

/* Go's next fire of a ticker whose fire due at `when` ran at `now`: the next multiple of
 * the period after now, so one that fell behind skips the fires it missed and keeps its
 * schedule (runtime/time.go, timer.updateHeap). */
int64_t loom__timer_next_fire(int64_t when, int64_t now, int64_t period) {
    if (now < when) return when + period;
    return when + period * (1 + (now - when) / period);
}

/* The heap for a timer started by the caller: its P's if it holds one (its M runs that
 * heap's timers without a lock handoff), else P 0's, which is always in service. */
P *loom__timer_home(void) {
    M *m = loom__getm();
    if (m && m->p && !m->blocked) return m->p;
    return loom__sched.allp[0];
}

/* loom_now() + ns, at least now and at most INT64_MAX */
int64_t loom__deadline_after(int64_t ns) {
    int64_t now = loom__now();
    return ns <= 0 ? now : ns > INT64_MAX - now ? INT64_MAX : now + ns;
}

int64_t loom__timers_next(P *p) { return LOAD(&p->timer0_when); }

int loom__timers_count(P *p) {
    loom__lock_acquire(&p->timers_lock);
    int n = p->ntimers;
    loom__lock_release(&p->timers_lock);
    return n;
}

void loom__timers_term(P *p) {
    free(p->timers);
    p->timers = NULL;
    p->ntimers = p->timers_cap = 0;
}

/* A timer was added that fires at `when`: make sure some M will notice in time
 * (runtime.wakeNetPoller). */
void loom__wake_netpoller(int64_t when) {
    if (LOAD(&loom__sched.lastpoll) == 0) {
        int64_t pu = LOAD(&loom__sched.polluntil);
        if (pu == 0 || pu > when) loom__netpoll_break();
    } else {
        loom__wakep();
    }
}
