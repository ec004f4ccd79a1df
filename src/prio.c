/*
 * prio.c — priority levels: loom's own, Go has none.
 *
 * A goroutine has a level, LOOM_PRIO_LOW, NORMAL or HIGH (loom_attr.priority,
 * loom_set_priority).  NORMAL goroutines use Go's queues (runq.c) unchanged, and until the
 * first goroutine leaves NORMAL (sched.prio.used) nothing here is looked at: one load of a
 * read-mostly flag on the paths that would care.
 *
 * Queues.  HIGH and LOW goroutines wait in a FIFO per level per P (p->prio, under the P's
 * spinlock) and per level in the global queue (sched.prio, under sched.lock); they never
 * sit in runnext.  A P takes, in order: its HIGH FIFO, the global HIGH one, runnext and its
 * ring, the global NORMAL queue (runq.c), its LOW FIFO once no NORMAL goroutine waits
 * globally, the global LOW one.  Thieves take from a victim's highest non-empty level.
 *
 * Jumping the queue.  A goroutine queued on a P whose running goroutine it outranks kicks
 * that P (loom__prio_kick): the preempt flag, which the running goroutine obeys at its
 * next loom call, and the preemption signal for one that runs plain C code
 * (preempt_signal.c), whose handler gives the P to the HIGH goroutine
 * (loom__async_preempt).  One
 * queued globally kicks every running P of the lowest level below it (the first of them
 * to get a CPU takes it).  The kicks are made where goroutines become ready (proc.c's
 * runqput/globrunqput wrappers), never by the queues themselves.  A goroutine that
 * outranks every ready one keeps its P when it yields (strict priority), and wait queues
 * (channels, semaphores) wake the first waiter of the highest level.
 *
 * Timers of a HIGH sleeper must fire on time even when every CPU runs spinning goroutines
 * and sysmon waits for a CPU: each thread's deadline timer (preempt_signal.c) follows its P's
 * earliest timer (loom__preempt_rearm), and sysmon fires due timers itself.
 *
 * Aging: sysmon watches the head of each lower level (runnext, the NORMAL ring, the LOW
 * FIFO, and the global NORMAL and LOW queues); a head that has not moved for
 * LOOM_PRIO_AGE_MS (default 20) is moved to the front of its P's HIGH FIFO (the global
 * HIGH one for a global head), so it runs next whatever the levels: low priority means
 * later, never never.  The goroutine keeps its own level.  Held goroutines
 * (preempt_policy.c) age the same way on their M.
 */
#include "internal.h"

/* ---------------------------------------------------------------- the level FIFOs */

static void pq_push(P *p, G *g, int prio, bool front) {
    loom__spin_lock(&p->prio.lock);
    loom__glist_put(&p->prio.head[LVL(prio)], &p->prio.tail[LVL(prio)], g, front);
    STORE(&p->prio.n[LVL(prio)], p->prio.n[LVL(prio)] + 1);
    loom__spin_unlock(&p->prio.lock);
}

/* Takes up to max goroutines from the head of p's FIFO of level prio; returns the first,
 * the others linked behind it.  *n gets the count. */
static G *pq_take(P *p, int prio, uint32_t max, uint32_t *n) {
    int l = LVL(prio);
    *n = 0;
    if (!LOAD(&p->prio.n[l])) return NULL;
    loom__spin_lock(&p->prio.lock);
    G *head = p->prio.head[l], *last = NULL;
    uint32_t k = 0;
    for (G *g = head; g && k < max; g = g->schedlink) {
        last = g;
        k++;
    }
    if (k) {
        p->prio.head[l] = last->schedlink;
        if (!p->prio.head[l]) p->prio.tail[l] = NULL;
        last->schedlink = NULL;
        STORE(&p->prio.n[l], p->prio.n[l] - k);
    }
    loom__spin_unlock(&p->prio.lock);
    *n = k;
    return k ? head : NULL;
}

static void gq_push(G *g, int prio, bool front) { /* sched.lock held */
    int l = LVL(prio);
    loom__glist_put(&loom__sched.prio.gq_head[l], &loom__sched.prio.gq_tail[l], g, front);
    STORE(&loom__sched.prio.gq_n[l], loom__sched.prio.gq_n[l] + 1);
    STORE(&loom__sched.runqsize, loom__sched.runqsize + 1);
}

G *loom__prio_globpop(int prio) { /* sched.lock held */
    int l = LVL(prio);
    G *g = loom__glist_get(&loom__sched.prio.gq_head[l], &loom__sched.prio.gq_tail[l]);
    if (!g) return NULL;
    STORE(&loom__sched.prio.gq_n[l], loom__sched.prio.gq_n[l] - 1);
    STORE(&loom__sched.runqsize, loom__sched.runqsize - 1);
    return g;
}

static G *gq_pop_lock(int prio) {
    if (!LOAD(&loom__sched.prio.gq_n[LVL(prio)])) return NULL;
    loom__lock_acquire(&loom__sched.lock);
    G *g = loom__prio_globpop(prio);
    loom__lock_release(&loom__sched.lock);
    return g;
}

void loom__prio_runqput(P *p, G *g) { pq_push(p, g, g->prio, false); }

void loom__prio_globrunqput(G *g) { gq_push(g, g->prio, false); }

G *loom__prio_take(P *p, int prio) {
    uint32_t n;
    return pq_take(p, prio, 1, &n);
}

/* Is g in one of p's FIFOs?  (invariant checks) */
bool loom__prio_holds(P *p, G *g) {
    bool found = false;
    loom__spin_lock(&p->prio.lock);
    for (int l = 0; l < LOOM__NLEVELS && !found; l++)
        for (G *x = p->prio.head[l]; x && !found; x = x->schedlink) found = x == g;
    loom__spin_unlock(&p->prio.lock);
    return found;
}

void loom__prio_drain(P *p) {
    loom__spin_lock(&p->prio.lock); /* sysmon's aging may look meanwhile */
    for (int l = 0; l < LOOM__NLEVELS; l++) {
        p->prio.head[l] = p->prio.tail[l] = NULL;
        STORE(&p->prio.n[l], 0);
    }
    loom__spin_unlock(&p->prio.lock);
}

/* Steals half of victim's FIFO of level prio into p's own; returns one to run. */
G *loom__prio_steal(P *p, P *victim, int prio) {
    uint32_t avail = LOAD(&victim->prio.n[LVL(prio)]), n;
    if (!avail) return NULL;
    G *g = pq_take(victim, prio, avail - avail / 2, &n);
    if (!g) return NULL;
    for (G *x = g->schedlink, *nx; x; x = nx) {
        nx = x->schedlink;
        pq_push(p, x, prio, false);
    }
    g->schedlink = NULL;
    return g;
}

/* The level part of runq.c's globrunqget for P p (sched.lock held), while nnormal NORMAL
 * goroutines wait globally: true if it decided, with *g the goroutine (or NULL: none for
 * p, which must not take a lower level than it has locally — the fairness look every
 * 61st tick must not run a global LOW goroutine before a local HIGH one). */
bool loom__prio_globrunqget(P *p, int nnormal, G **g) {
    if ((*g = loom__prio_globpop(LOOM_PRIO_HIGH))) return true;
    if (LOAD_RLX(&p->prio.n[LVL(LOOM_PRIO_HIGH)])) return true;
    if (nnormal) return false;
    bool local_normal = LOAD_RLX(&p->runqtail) != LOAD_RLX(&p->runqhead) || LOAD_RLX(&p->runnext);
    *g = local_normal ? NULL : loom__prio_globpop(LOOM_PRIO_LOW);
    return true;
}

/* loom__runqget once levels are in use (internal.h: its NORMAL level is runq.c's). */
G *loom__prio_runqget(P *p, bool *inherit) {
    uint32_t n;
    *inherit = false;
    G *g = pq_take(p, LOOM_PRIO_HIGH, 1, &n);
    if (!g) g = gq_pop_lock(LOOM_PRIO_HIGH);
    if (!g) g = loom__runqget_normal(p, inherit);
    if (!g && LOAD(&loom__sched.runqsize) == (int32_t)LOAD(&loom__sched.prio.gq_n[LVL(LOOM_PRIO_LOW)])) {
        /* no NORMAL goroutine waits globally (else the caller takes it first) */
        g = pq_take(p, LOOM_PRIO_LOW, 1, &n);
        if (!g) g = gq_pop_lock(LOOM_PRIO_LOW);
    }
    return g;
}

/* ---------------------------------------------------------------- who outranks whom */

/* Is a goroutine of level prio or higher ready, locally or globally?  (A yield with only
 * lower ones ready keeps running: strict priority; aging moves starved ones up.) */
bool loom__prio_ready(P *p, int prio) {
    int hi = LVL(LOOM_PRIO_HIGH), lo = LVL(LOOM_PRIO_LOW);
    if (LOAD_RLX(&p->prio.n[hi]) || LOAD_RLX(&loom__sched.prio.gq_n[hi])) return true;
    if (prio >= LOOM_PRIO_HIGH) return false;
    if (LOAD_RLX(&loom__sched.runqsize) >
        (int32_t)(LOAD_RLX(&loom__sched.prio.gq_n[hi]) + LOAD_RLX(&loom__sched.prio.gq_n[lo])))
        return true;
    if (LOAD_RLX(&p->runqtail) != LOAD_RLX(&p->runqhead) || LOAD_RLX(&p->runnext)) return true;
    if (prio >= LOOM_PRIO_NORMAL) return false;
    return !loom__runqempty(p) || LOAD_RLX(&loom__sched.runqsize) > 0;
}

bool loom__prio_outranked(P *p) {
    if (!LOAD_RLX(&loom__sched.prio.used)) return false;
    int rp = LOAD_RLX(&p->prio.running);
    return rp != LOOM__PRIO_NONE && rp < LOOM_PRIO_HIGH && loom__prio_ready(p, rp + 1);
}

/* Does M m's running goroutine g outrank every ready one, so that it keeps the P?  Clears
 * the slice's preemption request if so.  Never on a spare P being given back: only a
 * switch gives it back, and its lender waits for it. */
bool loom__prio_keeps(M *m, G *g) {
    if (!LOAD_RLX(&loom__sched.prio.used) || loom__prio_ready(m->p, g->prio)) return false;
    if (LOAD_RLX(&m->p->spare.retire)) return false;
    if (LOAD_RLX(&m->p->preempt)) STORE(&m->p->preempt, 0);
    return true;
}

/* Does a HIGH FIFO hold a goroutine of HIGH level (not only ones aged into it)?  The caller
 * holds the FIFO's lock. */
static bool fifo_high(G *head) {
    for (G *g = head; g; g = g->schedlink)
        if (g->prio == LOOM_PRIO_HIGH) return true;
    return false;
}

/* Does such a goroutine wait in p's HIGH FIFO or the global one?  (A hint: it may run and
 * exit at once.) */
static bool find_high(P *p) {
    bool found = false;
    int hi = LVL(LOOM_PRIO_HIGH);
    if (LOAD(&p->prio.n[hi])) {
        loom__spin_lock(&p->prio.lock);
        found = fifo_high(p->prio.head[hi]);
        loom__spin_unlock(&p->prio.lock);
    }
    if (!found && LOAD(&loom__sched.prio.gq_n[hi])) { /* readied by sysmon or a thread without a P */
        loom__lock_acquire(&loom__sched.lock);
        found = fifo_high(loom__sched.prio.gq_head[hi]);
        loom__lock_release(&loom__sched.lock);
    }
    return found;
}

/* ---------------------------------------------------------------- kicks */

/* A goroutine that outranks the one running on P p became ready: switch that one out at
 * its next loom call, and by the preemption signal if it runs plain code.  If the signal
 * lands somewhere unsafe, sysmon repeats it (loom__prio_outranked). */
void loom__prio_kick(P *p) {
    if (!LOAD_RLX(&p->prio.kick)) STORE(&p->prio.kick, 1);
    if (!LOAD_RLX(&p->preempt)) STORE(&p->preempt, 1);
    M *m = LOAD(&p->m);
    if (m && m != loom__getm()) loom__preempt_kick(p);
}

/* A goroutine of level prio went to P p's queue: kick p if it outranks p's running one
 * (LOOM__PRIO_NONE: p is choosing, by level anyway). */
void loom__prio_queued(P *p, int prio) {
    int rp = LOAD_RLX(&p->prio.running);
    if (prio > rp && rp != LOOM__PRIO_NONE && LOAD_RLX(&p->status) == P_RUNNING) loom__prio_kick(p);
}

/* A goroutine of level prio went to the global queue: kick the Ps running the lowest level
 * below it (readers race with switches: a hint).  All of them, not one: a P's thread may be
 * waiting for a CPU, and the first kicked thread that runs takes the goroutine (a kick that
 * finds it gone costs no switch, see loom__async_preempt). */
void loom__prio_queued_global(int prio) {
    int low = prio;
    for (int i = 0; i < loom__nallp(); i++) {
        P *v = loom__sched.allp[i];
        int rp = LOAD_RLX(&v->prio.running);
        if (LOAD_RLX(&v->status) == P_RUNNING && rp != LOOM__PRIO_NONE && rp < low) low = rp;
    }
    for (int i = 0; i < loom__nallp() && low < prio; i++) {
        P *v = loom__sched.allp[i];
        if (LOAD_RLX(&v->status) == P_RUNNING && LOAD_RLX(&v->prio.running) == low) loom__prio_kick(v);
    }
}

/* sysmon: a HIGH goroutine (not an aged one) waits, on p or globally, while p runs a
 * lower level: kick now, and loom__async_preempt gives it p.  True if kicked. */
bool loom__prio_kick_high(P *p) {
    int rp = LOAD_RLX(&p->prio.running);
    if (rp == LOOM__PRIO_NONE || rp >= LOOM_PRIO_HIGH || !find_high(p)) return false;
    loom__prio_kick(p);
    return true;
}

/* ---------------------------------------------------------------- aging (sysmon) */

/* The places of a P that aging watches (p->prio.age_g[]). */
enum { AGE_RUNNEXT, AGE_RING, AGE_LOW };

/* Has head g of a lower level (watched in *seen since *since) waited longer than the limit? */
static bool aged(G **seen, int64_t *since, G *g, int64_t now) {
    if (g != *seen) {
        *seen = g;
        *since = now;
        return false;
    }
    return g && now - *since >= loom__sched.prio.age_ns;
}

/* sysmon's look at running P p: age its lower levels, and fire its due timers whatever the
 * P does (its goroutines may rotate every slice, or it may be between threads): a goroutine
 * readied goes to the global queue and, if it outranks a running one, kicks that P. */
void loom__prio_sysmon(P *p, int64_t now) {
    G **seen = p->prio.age_g;
    int64_t *since = p->prio.age_since;
    G *next = LOAD(&p->runnext);
    if (aged(&seen[AGE_RUNNEXT], &since[AGE_RUNNEXT], next, now) && loom__runnext_steal(p, next) == next) {
        pq_push(p, next, LOOM_PRIO_HIGH, true);
        seen[AGE_RUNNEXT] = NULL;
    }
    uint32_t h;
    G *head = loom__runq_peek(p, &h);
    if (aged(&seen[AGE_RING], &since[AGE_RING], head, now) && loom__runq_take_head(p, h)) {
        pq_push(p, head, LOOM_PRIO_HIGH, true); /* sysmon consumed it, as a thief would */
        seen[AGE_RING] = NULL;
    }
    int lo = LVL(LOOM_PRIO_LOW), hi = LVL(LOOM_PRIO_HIGH);
    loom__spin_lock(&p->prio.lock);
    G *low = p->prio.head[lo];
    if (aged(&seen[AGE_LOW], &since[AGE_LOW], low, now)) {
        loom__glist_get(&p->prio.head[lo], &p->prio.tail[lo]);
        STORE(&p->prio.n[lo], p->prio.n[lo] - 1);
        loom__glist_put(&p->prio.head[hi], &p->prio.tail[hi], low, true);
        STORE(&p->prio.n[hi], p->prio.n[hi] + 1);
        seen[AGE_LOW] = NULL;
    }
    loom__spin_unlock(&p->prio.lock);
    int64_t t0 = LOAD_RLX(&p->timer0_when);
    if (t0 != 0 && t0 <= now) loom__timers_run(p, now);
}

/* The same for the global NORMAL and LOW queues. */
void loom__prio_sysmon_global(int64_t now) {
    G **seen = loom__sched.prio.gage_g;
    int64_t *since = loom__sched.prio.gage_since;
    int n = LVL(LOOM_PRIO_NORMAL), lo = LVL(LOOM_PRIO_LOW);
    loom__lock_acquire(&loom__sched.lock);
    if (aged(&seen[n], &since[n], loom__globrunq_peek(), now)) {
        gq_push(loom__globrunq_pop(), LOOM_PRIO_HIGH, true); /* its own level is unchanged */
        seen[n] = NULL;
    }
    if (aged(&seen[lo], &since[lo], loom__sched.prio.gq_head[lo], now)) {
        gq_push(loom__prio_globpop(LOOM_PRIO_LOW), LOOM_PRIO_HIGH, true);
        seen[lo] = NULL;
    }
    loom__lock_release(&loom__sched.lock);
}

/* ---------------------------------------------------------------- the API */

void loom__prio_init(void) {
    loom__sched.prio.age_ns = loom__env_long("LOOM_PRIO_AGE_MS", 20, 1, 60000) * 1000000;
}

int loom_priority(void) {
    M *m = loom__getm();
    if (!m || m->curg == &m->g0) return LOOM_PRIO_NORMAL;
    return m->curg->prio;
}

void loom__prio_use(void) {
    if (!LOAD_RLX(&loom__sched.prio.used)) STORE(&loom__sched.prio.used, 1);
}

int loom_set_priority(int prio) {
    if (prio < LOOM_PRIO_LOW || prio > LOOM_PRIO_HIGH) return -EINVAL;
    M *m = loom__getm();
    if (!loom__m_runs_g(m)) return -EPERM;
    if (prio != LOOM_PRIO_NORMAL) loom__prio_use();
    int old = m->curg->prio;
    m->curg->prio = prio;
    STORE_RLX(&m->p->prio.running, prio);
    if (prio < old && loom__prio_outranked(m->p)) loom_yield(); /* lowered below waiting work */
    return old;
}
