/*
 * preempt_policy.c — what becomes of a goroutine preempted by signal: loom's policy of
 * held goroutines (the signal itself is preempt_signal.c).
 *
 * A goroutine switched out by the preemption signal must resume on the thread it was
 * interrupted on (preempt_signal.c, "thread affinity").  Go's way for a goroutine tied to
 * its thread (runtime.startlockedm/stoplockedm) hands the P to that thread whenever the
 * goroutine's turn comes: with N goroutines that spin, N threads and a futex wakeup per
 * time slice, and each woken thread may wait milliseconds for a CPU beside the spinning
 * ones (EEVDF lets the running thread finish its slice).  So the M keeps the goroutines it
 * preempted itself, in a FIFO of its own (m->held; locked to it, g->alocked), and runs
 * them in turn with its P's queues: CPU-bound goroutines rotate on as many threads as Ps,
 * with no thread handoff at all.
 *
 * Turns: held goroutines wait as Go's preempted ones do in the global queue: the P's own
 * queues go first, then the global queue, then the held ones, and on every 61st tick one of
 * them goes first anyway (runtime.schedule's fairness look, at another phase than the
 * global queue's).  So a goroutine woken on the P (a sleeper, a channel partner) runs
 * after the current slice, not after a round of every spinner.  Priority levels: a higher
 * level ready on the P or globally goes first, a held goroutine with nothing at its level
 * or above waiting is due at once, and when none of the held ones has run for
 * LOOM_PRIO_AGE_MS the oldest is due whatever waits (aging, as prio.c: a queue's head
 * that has not moved).
 *
 * The price: held goroutines can run only on their thread, so they share one CPU even if
 * another P goes idle, until they make a loom call (then they may move as any other).  So
 * an M holds only while the runtime is crowded (crowded: twice as many goroutines wait as
 * there are Ps); with fewer, a preempted goroutine goes Go's way, locked to its thread
 * alone, queued globally, its thread asleep until its turn (stoplockedm/startlockedm).  An
 * M that loses its P (a goroutine it ran blocked in the kernel, a spare P given back)
 * queues its oldest held goroutine globally, still locked to it, and sleeps: whoever takes
 * that goroutine hands the M its P (startlockedm), and the rotation goes on (held_wait).
 * A goroutine that calls loom_lock_thread on an M that holds others moves to another
 * thread first (movelock).
 *
 * The core sees held goroutines only as m->held.head, checked where the M picks its next
 * goroutine (runq_next), loses its P (schedule) or locks its thread (loom_lock_thread).
 */

#include "proc.h"

/* Are at least twice as many goroutines as Ps ready and waiting (queued, or held by an M)?
 * Only then does an M hold the goroutines it preempts: with fewer, a preempted goroutine
 * takes Go's way (a thread of its own while it waits, loom__async_preempt), because
 * goroutines held by one thread share its CPU — three spinners at two Ps would get 25, 25
 * and 50 % of a CPU each, and the last two of a parallel job could end up on one thread
 * while the other P idles.  Crowded, a thread per waiting goroutine and a handoff per
 * slice cost more than held goroutines lose.  Racy reads: an estimate. */
static bool crowded(void) {
    uint32_t want = 2 * (uint32_t)loom__sched.nprocs;
    uint32_t n = (uint32_t)LOAD_RLX(&loom__sched.runqsize);
    for (int i = 0; i < loom__nallp() && n < want; i++) {
        P *q = loom__sched.allp[i];
        n += LOAD_RLX(&q->runqtail) - LOAD_RLX(&q->runqhead) + (LOAD_RLX(&q->runnext) != NULL) +
             LOAD_RLX(&q->prio.n[LVL(LOOM_PRIO_HIGH)]) + LOAD_RLX(&q->prio.n[LVL(LOOM_PRIO_LOW)]);
    }
    for (M *x = LOAD_ACQ(&loom__sched.allm); x && n < want; x = x->alllink) n += loom__m_nheld(x);
    return n >= want;
}

/* Holds g on M m: at the tail, or at the head (it runs next). */
static void held_put(M *m, G *g, bool front) {
    if (!m->held.head) m->held.since = LOAD_RLX(&loom__sched.coarse_now);
    loom__glist_put(&m->held.head, &m->held.tail, g, front);
    STORE_RLX(&m->held.n[LVL(g->prio)], m->held.n[LVL(g->prio)] + 1);
}

static G *held_get(M *m) {
    G *g = loom__glist_get(&m->held.head, &m->held.tail);
    if (!g) return NULL;
    m->held.since = LOAD_RLX(&loom__sched.coarse_now);
    STORE_RLX(&m->held.n[LVL(g->prio)], m->held.n[LVL(g->prio)] - 1);
    return g;
}

/* Does M m hold a goroutine of level prio or higher? */
bool loom__held_has(M *m, int prio) {
    for (int l = LVL(prio); l < LOOM__NLEVELS; l++)
        if (m->held.n[l]) return true;
    return false;
}

/* Has the turn of M m's oldest held goroutine come, on its P p? */
static bool held_due(M *m, P *p) {
    G *h = m->held.head;
    if (unlikely(LOAD_RLX(&loom__sched.prio.used))) {
        if (LOAD_RLX(&loom__sched.coarse_now) - m->held.since >= loom__sched.prio.age_ns) {
            m->held.aged = h; /* it gets its turn whatever waits (no "again") */
            return true;
        }
        if (h->prio < LOOM_PRIO_HIGH && loom__prio_ready(p, h->prio + 1)) return false;
        if (!loom__prio_ready(p, h->prio)) return true;
    }
    return p->schedtick % 61 == 30;
}

/* runq_next for an M that holds goroutines: a held one whose turn has come goes before the
 * P's queues; then the P's queues, the global queue (where Go's preempted goroutines would
 * be, in line with the rest), and the held ones before this M looks further: it never
 * idles while it holds goroutines, since nobody else may run them. */
G *loom__held_next(M *m, P *p, bool *inherit) {
    *inherit = false;
    G *g = loom__runq_first(p);
    if (!g && held_due(m, p)) return held_get(m);
    if (!g) g = loom__runqget(p, inherit);
    if (!g) g = loom__globrunq_take(p);
    return g ? g : held_get(m);
}

/* An M holding goroutines lost its P: queue the oldest globally,
 * still locked here, and sleep until whoever takes it hands this M its P with it
 * (startlockedm); it then runs first.  Returns false at runtime exit. */
bool loom__held_wait(M *m) {
    G *g = held_get(m);
    loom__lock_acquire(&loom__sched.lock);
    globrunqput(g);
    loom__sched.nmlockedidle++;
    loom__lock_release(&loom__sched.lock);
    loom__wakep(); /* an idle P takes it at once */
    if (!loom__mpark(m)) return false;
    G *back = XCHG(&m->pending_g, NULL);
    if (back) held_put(m, back, true);
    return true;
}

/* Goroutine g, moving off a thread that holds others to lock a thread of its own
 * (loom_lock_thread), was picked by M m that holds some too: it goes to the P's runnext
 * and the P to another M, which runs it; m waits for a P back (loom__held_wait). */
void loom__held_pass(M *m, G *g) {
    runqput(m->p, g, true);
    loom__startm(loom__releasep(m), false);
}

static void hold_after(G *prev, void *arg) {
    (void)arg;
    casgstatus(prev, G_RUNNING, G_RUNNABLE);
    held_put(prev->m, prev, false);
}

/* Called by the preemption signal handler on the goroutine's stack (preempt_signal.c): switch
 * out, to resume on this same thread.  The goroutine is locked to its M until it resumes
 * and held by it: the M runs the next goroutine of its P, or a
 * held one whose turn has come, and resumes this one in its turn.  With nothing else to
 * run here it just goes on (the P's other work, if any, is stolen by idle Ps as usual).
 *
 * A goroutine locked to its thread by the program goes Go's way instead: to the global
 * queue, its thread waiting for it (stoplockedm) — it has the thread to itself.
 *
 * With priority levels the deadline timer's signal lands here too: the P's due timers run
 * first, and a goroutine of a higher level they readied (or one readied earlier) runs
 * at once on this thread. */
void loom__async_preempt(M *m) {
    LOOM__CHAOS(CH_PREEMPT);
again:;
    G *g = m->curg;
    P *p = m->p;
    bool locked = g->lockedm != NULL;
    G *next = NULL;
    if (unlikely(LOAD_RLX(&loom__sched.prio.used))) {
        /* the deadline timer's signal: the due timers may ready an outranking goroutine */
        if (LOAD_RLX(&p->timer0_when) != 0) loom__timers_run(p, loom__now());
        if (loom__prio_keeps(m, g)) return;
        if (!locked && (next = loom__prio_runqget_above(p, g->prio))) ran(p, false);
        if (!next && LOAD_RLX(&p->prio.kick) && XCHG(&p->prio.kick, 0) && !loom__prio_outranked(p)) {
            /* a priority kick whose goroutine another P took first (kick_lowest kicks
             * every P of the lowest level): no switch.  A slice's end that came too is
             * asked for again at sysmon's next look. */
            STORE(&p->preempt, 0);
            return;
        }
    }
    LOOM__COUNT(m, npreempt);
    LOOM__COUNT(m, nasync);
    LOOM__TRACE(loom__trace_preempt(m, g, true));
    if (locked) {
        loom_yield();
        return;
    }
    /* a spare P being given back (spare.c): schedule() on g0 gives it back, and
     * sysmon leaves its lender's goroutine alone until it has.  Rotating held goroutines
     * here, from one to the next, would keep it for good. */
    bool retire = LOAD_RLX(&p->spare.retire);
    if (!next && !m->held.head && loom__sched.nprocs > 1 && !crowded()) {
        /* few goroutines ready: Go's way (runtime.stoplockedm), so that no two share this
         * thread and an idle P can take any of them (at one P there is no other P: hold).
         * (schedule_from, under loom_yield, gives back a retiring spare.) */
        if (LOAD_RLX(&p->timer0_when) != 0) loom__timers_run(p, loom__now());
        if (!retire && loom__runqempty(p) && LOAD_RLX(&loom__sched.runqsize) == 0) {
            STORE(&p->preempt, 0); /* nothing else to run: go on, a new slice */
            return;
        }
        g->lockedm = m;
        g->alocked = true;
        m->lockedg = g;
        loom_yield();     /* to the global queue; this thread waits for it */
        m = loom__getm(); /* the same M, by the lock */
        g->lockedm = NULL;
        g->alocked = false;
        m->lockedg = NULL;
        return;
    }
    if (unlikely(retire)) {
        if (next) runqput(p, next, true);
        next = &m->g0; /* g is held; this M waits with it for a P (held_wait) */
    } else if (!next) {
        bool inherit;
        next = loom__runq_next(m, p, &inherit);
        if (!next) next = loom__globrunq_take(p); /* runq_first looks there every 61st tick */
        if (!next) return;                        /* nothing else to run here: go on */
        ran(p, inherit);
    }
    if ((next->lockedm && next->lockedm != m) || (next->movelock && m->held.head)) {
        runqput(p, next, true); /* schedule() on g0 hands it on */
        next = &m->g0;
    }
    g->lockedm = m;
    g->alocked = true;
    loom__gogo(m, g, next, hold_after, NULL);
    /* resumed, on this same thread (it was locked here) */
    g->lockedm = NULL;
    g->alocked = false;
    /* maybe long after: a goroutine readied meanwhile for this P while it had no running
     * goroutine (so nobody was kicked) may outrank g: go round once more rather than spin
     * on until sysmon, itself waiting for a CPU, notices */
    m = loom__getm();
    if (m->held.aged == g) {
        m->held.aged = NULL; /* resumed by aging: a turn whatever waits */
        return;
    }
    if (unlikely(LOAD_RLX(&loom__sched.prio.used)) && m->p && !g->nopreempt && loom__prio_outranked(m->p))
        goto again;
}

static void move_after(G *prev, void *arg) {
    (void)arg;
    casgstatus(prev, G_RUNNING, G_RUNNABLE);
    loom__lock_acquire(&loom__sched.lock);
    globrunqput(prev);
    loom__lock_release(&loom__sched.lock);
    loom__wakep();
}

/* loom_lock_thread by g on M m, which holds preempted goroutines that must resume here:
 * g moves to another thread first.  Returns the M it runs on then. */
M *loom__held_move_off(M *m, G *g) {
    while (m->held.head) {
        g->movelock = true;
        loom__gogo(m, g, &m->g0, move_after, NULL);
        m = loom__getm();
    }
    g->movelock = false;
    return m;
}
