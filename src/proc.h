/*
 * proc.h — the scheduler's core (proc.c) as the files of loom's own policies see it:
 * preempt_policy.c (goroutines preempted by signal), spare.c (spare Ps) and prio.c
 * (priority levels).
 *
 * proc.c is Go's scheduler.  Each policy hooks into it by a direct call behind one check of
 * its own state (the preemption signal's handler, p->spare.retire, sched.prio.used: a
 * predicted branch when the policy is idle), and calls back into the core only through what is declared here.  Only
 * these files include it.  The static inline names are Go's (casgstatus, runqput,
 * globrunqput), so the callers read as proc.go does.
 */
#ifndef LOOM_PROC_H
#define LOOM_PROC_H

#include "internal.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ------------------------------------------------------------------ invariant checks
 * LOOM_DEBUG=check=1 (on in the sanitizer builds and under LOOM_CHAOS): every change of a
 * goroutine's status is a compare-and-swap from the status it must have (Go's casgstatus),
 * a P is acquired only when no M owns it, and a goroutine queued on a P must not be in that
 * P's queue already.  A violation is a fatal error naming both states and where the
 * status last changed, with the dump: the interleaving that broke the invariant is caught
 * where it happens.  Off, a status change is a plain store. */
#ifndef __FILE_NAME__
#define __FILE_NAME__ __FILE__
#endif
#define LOOM__STR2(x)            #x
#define LOOM__STR(x)             LOOM__STR2(x)
#define casgstatus(g, old, want) casgstatus_at(g, old, want, __FILE_NAME__ ":" LOOM__STR(__LINE__))

void loom__bad_gstatus(G *g, uint32_t st, uint32_t old, uint32_t want, const char *where)
        __attribute__((noinline, noreturn, cold));

static ALWAYS_INLINE void casgstatus_at(G *g, uint32_t old, uint32_t want, const char *where) {
    if (likely(!loom__sched.check)) {
        STORE_RLX(&g->status, want);
        return;
    }
    uint32_t st = old;
    if (!__atomic_compare_exchange_n(&g->status, &st, want, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        loom__bad_gstatus(g, st, old, want, where);
    M *m = loom__getm();
    STORE_RLX(&g->statuswhere, where);
    STORE_RLX(&g->statusm, m ? m->id : -1);
}

/* ------------------------------------------------------------------ queueing
 * runq.c's queues, and with priority levels in use the kick for a goroutine that outranks
 * a running one (prio.c).  The level is read before g is queued: once queued, g may run,
 * exit and be reused. */

static ALWAYS_INLINE void runqput(P *p, G *g, bool next) {
    int prio = g->prio;
    loom__runqput(p, g, next);
    if (unlikely(prio != LOOM_PRIO_NORMAL)) loom__prio_queued(p, prio);
}

static inline void globrunqput(G *g) { /* sched.lock held */
    int prio = g->prio;
    loom__globrunqput(g);
    if (unlikely(LOAD_RLX(&loom__sched.prio.used))) loom__prio_queued_global(prio);
}

static inline void globrunqputbatch(G *head, G *tail, int n) { /* sched.lock held */
    if (likely(!LOAD_RLX(&loom__sched.prio.used))) {
        loom__globrunqputbatch(head, tail, n);
        return;
    }
    bool levels[LOOM__NLEVELS] = { false };
    for (G *g = head; g; g = g == tail ? NULL : g->schedlink) levels[LVL(g->prio)] = true;
    loom__globrunqputbatch(head, tail, n);
    for (int prio = LOOM_PRIO_LOW; prio <= LOOM_PRIO_HIGH; prio++)
        if (levels[LVL(prio)]) loom__prio_queued_global(prio);
}

/* Runs p's due timers at a switch away from the running goroutine (loom__async_preempt,
 * stoplockedm).  What they put in runnext did not share that goroutine's slice: it keeps
 * runnext however late the thread that takes the P comes (slice_end, in proc.c, would see
 * that slice's end if sysmon marks it meanwhile). */
static inline void timers_at_switch(P *p) {
    if (LOAD_RLX(&p->timer0_when) == 0) return;
    G *before = LOAD_RLX(&p->runnext);
    loom__timers_run(p, loom__now());
    if (LOAD_RLX(&p->runnext) != before) p->runnexttick = p->schedtick - 1;
}

/* A goroutine taken to run on p: one not from runnext starts a new time slice. */
static ALWAYS_INLINE void ran(P *p, bool inherit) {
    if (!inherit) STORE_RLX(&p->schedtick, p->schedtick + 1);
}

/* ------------------------------------------------------------------ proc.c */
P *loom__p_new(int id);                 /* a P record, P_OFF; NULL: no memory */
P *loom__releasep(M *m);                /* m drops its P (runtime.releasep) */
void loom__startm(P *p, bool spinning); /* runtime.startm */
void loom__slice_end(P *p);             /* p's slice is used up: runnext to the tail */

/* ------------------------------------------------------------------ spare.c */
void loom__spare_off(P *sp);       /* give back spare sp, which we own */
void loom__spare_retirep(M *m);    /* m's P is a spare asked back: give it */
int loom__spare_limit(int nprocs); /* LOOM_MAX_THREADS */
/* sched.lock held: asks sp back; true if it was idle, now the caller's to give back */
bool loom__spare_retire_locked(P *sp);

#endif
