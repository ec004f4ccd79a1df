/*
 * preempt_policy.c — what becomes of a goroutine preempted by signal (the signal itself is
 * preempt_signal.c): Go's way for a goroutine locked to its thread.
 *
 * A goroutine switched out by the preemption signal must resume on the thread it was
 * interrupted on (preempt_signal.c, "thread affinity").  It is locked to that thread until
 * it resumes (g->lockedm) and waits for its turn in the global queue, where Go
 * puts its preempted goroutines, while its thread gives its P away and sleeps
 * (runtime.stoplockedm); whoever takes the goroutine hands that thread a P
 * (runtime.startlockedm).  The cost is Go's for a goroutine locked to its thread: a thread
 * per goroutine preempted and waiting, and a thread wakeup per time slice (proc.c's
 * stoplockedm hands the P straight to the next such thread: one wakeup, not two).
 *
 * The thread runs nothing else until the goroutine resumes, because the interrupted C code
 * may own things that belong to the thread: a pthread mutex (recursive, error-checking, or
 * one another goroutine will wait for in the kernel), a FILE's lock, the write end of a pipe
 * that others read with plain calls.  A goroutine run on that thread meanwhile would get
 * into a recursive mutex beside its owner, be told EDEADLK by an error-checking one, or
 * sleep in the kernel waiting for the owner, which can only resume on the thread it is
 * sleeping on: a hang nothing can undo.  So no M ever keeps preempted goroutines to run in
 * turn with others (tests/test_preempt_lock.c).
 *
 * With nothing else to run the goroutine just goes on, in a new slice.  A goroutine
 * locked to its thread by the program yields as at any preemption point.
 */

#include "proc.h"

/* Called by the preemption signal handler on the goroutine's stack (preempt_signal.c),
 * and at a cooperative point with LOOM_DEBUG=coopasync=1 (proc.c): switch out, to resume
 * on this same thread, or go on if nothing else waits.
 *
 * With priority levels the deadline timer's signal lands here too: the P's due timers run
 * first, and a goroutine they readied that outranks this one gets the P. */
void loom__async_preempt(M *m) {
    LOOM__CHAOS(CH_PREEMPT);
again:;
    G *g = m->curg;
    P *p = m->p;
    /* the slice's end, before the due timers run below: what they ready keeps runnext
     * (runq_first would do it after this thread had handed the P on, and demote those too) */
    if (LOAD_RLX(&p->preempt) && !loom__det_on) loom__slice_end(p);
    if (unlikely(LOAD_RLX(&loom__sched.prio.used))) {
        /* the deadline timer's signal: the due timers may ready an outranking goroutine */
        if (LOAD_RLX(&p->timer0_when) != 0) loom__timers_run(p, loom__now());
        if (loom__prio_keeps(m, g)) return;
        if (LOAD_RLX(&p->prio.kick) && XCHG(&p->prio.kick, 0) && !loom__prio_outranked(p)) {
            /* a priority kick whose goroutine another P took first (kick_lowest kicks
             * every P of the lowest level): no switch.  A slice's end that came too is
             * asked for again at sysmon's next look. */
            STORE(&p->preempt, 0);
            return;
        }
    }
    if (g->lockedm) { /* locked by the program: a preemption point as any other */
        LOOM__COUNT(m, npreempt);
        LOOM__COUNT(m, nasync);
        LOOM__TRACE(loom__trace_preempt(m, g, true));
        loom_yield();
        return;
    }
    /* a spare P being given back (spare.c) is given back by the switch (schedule) */
    timers_at_switch(p);
    if (!LOAD_RLX(&p->spare.retire) && loom__runqempty(p) && LOAD_RLX(&loom__sched.runqsize) == 0) {
        STORE(&p->preempt, 0); /* nothing else to run: go on, a new slice */
        return;
    }
    LOOM__COUNT(m, npreempt);
    LOOM__COUNT(m, nasync);
    LOOM__TRACE(loom__trace_preempt(m, g, true));
    g->lockedm = m;
    m->lockedg = g;
    loom_yield();     /* to the global queue; this thread waits for it (stoplockedm) */
    m = loom__getm(); /* the same M, by the lock */
    g->lockedm = NULL;
    m->lockedg = NULL;
    /* maybe long after: a goroutine readied meanwhile for this P while it had no running
     * goroutine (so nobody was kicked) may outrank g: go round once more rather than spin
     * on until sysmon, itself waiting for a CPU, notices */
    if (unlikely(LOAD_RLX(&loom__sched.prio.used)) && m->p && !g->nopreempt && loom__prio_outranked(m->p))
        goto again;
}
