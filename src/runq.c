/*
 * runq.c — run queues: each P's bounded local queue with its runnext slot, and the global
 * queue.  The algorithms and names are Go's (runtime.runqput, runqget, runqgrab, runqsteal,
 * globrunqget in proc.go); the steal order comes from topo.c.
 *
 * Local queue: a 256-slot ring.  Only the owner P writes runqtail and the slots between
 * tail and head+256; any M may take from the head with a CAS on runqhead (consumers are
 * the owner and thieves).  Slots are read and written with relaxed atomics because a thief
 * may read a slot the owner is about to reuse; the head CAS decides who got it.
 *
 * runnext: the goroutine the running one just spawned or woke.  It runs next, inheriting
 * the rest of the current time slice, so a producer/consumer pair keeps its data in cache.
 * Only the owner sets it; thieves may take it, and only after giving the owner ~3 µs to
 * run it itself (Go sleeps 3 µs there: a channel handoff takes ~50 ns, so the owner is
 * likely about to run it, and stealing it would split the pair across cores).
 *
 * The owner and foreign takers (thieves, sysmon's aging) all take runnext with a CAS to NULL,
 * as Go; only the owner stores into it.
 *
 * Global queue: a growable ring of G pointers under sched.lock, filled when a local queue
 * overflows (half the queue moves in one batch) and by threads without a P; drained in
 * batches straight into the taker's ring.  Go keeps a list linked through the Gs
 * (runtime.gQueue); walking it to cut a batch of 128 takes a cache miss per G while the
 * lock is held, and with two Ps trading work through it (skynet's million goroutines)
 * the other P waited on the lock, then slept in the kernel.  Here only pointers are copied
 * under the lock; the Gs are first touched by the P that runs them.  Unlike Go, goroutines
 * that have run go before fresh ones that never ran, with a share of the takes kept for
 * the fresh (see "the global NORMAL queue" below).
 *
 * Priority levels (prio.c): goroutines of a level but NORMAL wait in prio.c's FIFOs, which
 * the functions below reach through one guarded call each; the queues here never kick a
 * P (proc.c does, where a goroutine becomes ready).
 */
#include "internal.h"

#define SLOT_LOAD(p, i)     __atomic_load_n(&(p)->runq[(i) % LOOM_RUNQ_SIZE], __ATOMIC_RELAXED)
#define SLOT_STORE(p, i, g) __atomic_store_n(&(p)->runq[(i) % LOOM_RUNQ_SIZE], (g), __ATOMIC_RELAXED)

/* ---------------------------------------------------------------- runnext (see above) */

/* A foreign taker's claim on v's runnext, if it still holds `want`: returns it, or NULL. */
G *loom__runnext_steal(P *v, G *want) {
    G *x = LOAD(&v->runnext);
    LOOM__CHAOS(CH_RUNNEXT);
    return x == want && CAS(&v->runnext, x, NULL) ? x : NULL;
}

/* ---------------------------------------------------------------- the global NORMAL queue
 * Two rings, all under sched.lock (runqsize counts them with the priority levels' global
 * FIFOs): runq[GQ_RAN] holds goroutines that have run before, runq[GQ_FRESH] fresh ones
 * that never ran (g->sp is NULL until a goroutine's first run gives it a stack).
 *
 * Why two: a program that spawns faster than its Ps start goroutines (a million loom_go in
 * a loop) fills the global queue with fresh ones; one FIFO puts a goroutine woken by its
 * timer or a channel, which overflows a full local queue, behind all of them, each of which
 * faults in a fresh stack page when it starts (~12 us here): 1M sleepers of 1-1000 ms woke up
 * to 2.5 s late (bench/timers.c).  A fresh goroutine has waited for nothing yet, and one that
 * has run was woken for a reason (a timer, a message), so takes serve GQ_RAN first — but
 * every FRESH_TURN-th take serves GQ_FRESH first, so fresh goroutines get at least that
 * share of the takes whatever else is ready: later, never never.  Go keeps one FIFO.
 * Within each ring the order stays FIFO. */
enum { GQ_RAN = 0, GQ_FRESH = 1, FRESH_TURN = 4 };

typedef struct loom__gring gring;

#define RING_SLOT(r, i) ((r)->v[((r)->first + (i)) & ((r)->cap - 1)])

/* Room for k more pointers: doubles the ring, copying it in order.  Out of memory here is
 * fatal, as in any allocator under a scheduler lock. */
static void ring_reserve(gring *r, uint32_t k) {
    uint32_t need = r->n + k;
    if (need <= r->cap) return;
    uint32_t cap = r->cap ? r->cap : 1024;
    while (cap < need) cap *= 2;
    G **v = malloc(sizeof(G *) * cap);
    if (!v) loom__fatal("out of memory for the global run queue (%u goroutines)", need);
    for (uint32_t i = 0; i < r->n; i++) v[i] = RING_SLOT(r, i);
    free(r->v);
    r->v = v;
    r->cap = cap;
    r->first = 0;
}

static void ring_putv(gring *r, G *const *v, uint32_t n) {
    ring_reserve(r, n);
    for (uint32_t i = 0; i < n; i++) RING_SLOT(r, r->n + i) = v[i];
    r->n += n;
}

static G *ring_pop(gring *r) {
    G *g = RING_SLOT(r, 0);
    r->first = (r->first + 1) & (r->cap - 1);
    r->n--;
    return g;
}

static void gq_count(int32_t d) { STORE(&loom__sched.runqsize, loom__sched.runqsize + d); }

static inline int gq_ring(const G *g) { return g->sp == NULL ? GQ_FRESH : GQ_RAN; }

static uint32_t globq_len(void) { return loom__sched.runq[GQ_RAN].n + loom__sched.runq[GQ_FRESH].n; }

/* The ring the next take starts with: a non-empty one if any is. */
static gring *globq_first(void) {
    gring *ran = &loom__sched.runq[GQ_RAN], *fresh = &loom__sched.runq[GQ_FRESH];
    if (!fresh->n) return ran;
    if (!ran->n || loom__sched.runqtakes % FRESH_TURN == 0) return fresh;
    return ran;
}

G *loom__globrunq_peek(void) {
    gring *r = globq_first();
    return r->n ? RING_SLOT(r, 0) : NULL;
}

/* One take of one goroutine (a turn, for FRESH_TURN). */
G *loom__globrunq_pop(void) {
    gring *r = globq_first();
    if (!r->n) return NULL;
    loom__sched.runqtakes++;
    gq_count(-1);
    return ring_pop(r);
}

/* Queues nr goroutines that have run and nf fresh ones (the caller sorted them, before
 * taking the lock: reading g->sp may miss the cache), in order within each ring. */
static void globq_putv(G *const *ran, uint32_t nr, G *const *fresh, uint32_t nf) {
    if (nr) ring_putv(&loom__sched.runq[GQ_RAN], ran, nr);
    if (nf) ring_putv(&loom__sched.runq[GQ_FRESH], fresh, nf);
    gq_count((int32_t)(nr + nf));
}

void loom__globrunq_term(void) {
    for (int i = 0; i < 2; i++) {
        free(loom__sched.runq[i].v);
        memset(&loom__sched.runq[i], 0, sizeof loom__sched.runq[i]);
    }
    loom__sched.runqtakes = 0;
}

/* Puts half of p's local queue and g on the global queue (runtime.runqputslow).
 * Fails if a thief moved the head meanwhile: the caller retries the fast path. */
static bool runqputslow(P *p, G *g, uint32_t h, uint32_t t) {
    enum { HALF = LOOM_RUNQ_SIZE / 2 };
    G *batch[HALF + 1], *fresh[HALF + 1];
    uint32_t n = (t - h) / 2;
    if (n != HALF) loom__fatal("runqputslow: queue is not full");
    for (uint32_t i = 0; i < n; i++) batch[i] = SLOT_LOAD(p, h + i);
    if (!CAS_REL(&p->runqhead, h, h + n)) return false;
    batch[n] = g;
    uint32_t nr = 0, nf = 0; /* sorted in place: nr <= i */
    for (uint32_t i = 0; i <= n; i++) {
        if (gq_ring(batch[i]) == GQ_FRESH) fresh[nf++] = batch[i];
        else batch[nr++] = batch[i];
    }
    loom__lock_acquire(&loom__sched.lock);
    globq_putv(batch, nr, fresh, nf);
    loom__lock_release(&loom__sched.lock);
    return true;
}

/* Invariant check (LOOM_DEBUG=check=1): g, about to be queued on p, is not queued there
 * already (runnext, the ring, the level FIFOs). */
static __attribute__((noinline)) void check_not_queued(P *p, G *g) {
    bool dup = LOAD(&p->runnext) == g;
    uint32_t h = LOAD_ACQ(&p->runqhead), t = LOAD_ACQ(&p->runqtail);
    for (uint32_t i = h; i != t && !dup && t - h <= LOOM_RUNQ_SIZE; i++) dup = SLOT_LOAD(p, i) == g;
    if (!dup) dup = loom__prio_holds(p, g);
    if (dup) loom__fatal("goroutine %llu queued twice on P%d", (unsigned long long)g->id, p->id);
}

void loom__runqput(P *p, G *g, bool next) {
    if (unlikely(loom__sched.check)) check_not_queued(p, g);
    if (unlikely(g->prio != LOOM_PRIO_NORMAL)) {
        loom__prio_runqput(p, g);
        return;
    }
    if (next) {
        /* Only the owner (us) makes runnext non-NULL; foreign takers only CAS it to NULL.
         * So an empty slot stays empty until we fill it: a release store will do (the
         * common case: a channel handoff readies into the slot its peer just left). */
        p->runnexttick = p->schedtick;
        G *old = LOAD_RLX(&p->runnext);
        if (!old) {
            STORE_REL(&p->runnext, g);
            return;
        }
        old = XCHG(&p->runnext, g); /* replacing old is a take of it: a thief may have won */
        if (!old) return;
        g = old; /* the previous runnext goes to the tail */
    }
    for (;;) {
        uint32_t h = LOAD_ACQ(&p->runqhead);
        uint32_t t = LOAD_RLX(&p->runqtail);
        if (t - h < LOOM_RUNQ_SIZE) {
            SLOT_STORE(p, t, g);
            STORE_REL(&p->runqtail, t + 1);
            return;
        }
        if (runqputslow(p, g, h, t)) return;
    }
}

bool loom__runqempty(P *p) {
    /* as runtime.runqempty: read head, tail, runnext, then check tail didn't move, so a
     * goroutine in flight from runnext to the queue is not missed */
    for (;;) {
        uint32_t h = LOAD(&p->runqhead);
        uint32_t t = LOAD(&p->runqtail);
        G *next = LOAD(&p->runnext);
        if (LOAD(&p->runqtail) == t)
            return h == t && next == NULL &&
                   (LOAD(&p->prio.n[LVL(LOOM_PRIO_HIGH)]) | LOAD(&p->prio.n[LVL(LOOM_PRIO_LOW)])) == 0;
    }
}

static void spin_wait_ns(int64_t ns) {
    int64_t end = loom__nanotime() + ns;
    while (loom__nanotime() < end) loom__cpu_relax();
}

/* Grabs half of victim's queue into batch[batchhead...] (runtime.runqgrab). */
static uint32_t runqgrab(P *victim, P *dst, uint32_t batchhead, bool stealrunnext) {
    for (;;) {
        uint32_t h = LOAD_ACQ(&victim->runqhead);
        uint32_t t = LOAD_ACQ(&victim->runqtail);
        uint32_t n = t - h;
        n = n - n / 2;
        if (n == 0) {
            if (stealrunnext) {
                G *next = LOAD(&victim->runnext);
                if (next) {
                    if (LOAD(&victim->status) == P_RUNNING) {
                        spin_wait_ns(3000);
                        /* the owner ran it meanwhile, or a newer one replaced it: look again */
                        if (LOAD(&victim->runnext) != next) continue;
                    }
                    if (loom__runnext_steal(victim, next) != next) continue;
                    SLOT_STORE(dst, batchhead, next);
                    return 1;
                }
            }
            return 0;
        }
        if (n > LOOM_RUNQ_SIZE / 2) continue; /* read an inconsistent h and t */
        for (uint32_t i = 0; i < n; i++) SLOT_STORE(dst, batchhead + i, SLOT_LOAD(victim, h + i));
        LOOM__CHAOS(CH_RUNQ);
        if (CAS_REL(&victim->runqhead, h, h + n)) return n;
    }
}

G *loom__runqsteal(P *p, P *victim, bool stealrunnext) {
    if (unlikely(LOAD_RLX(&loom__sched.prio.used))) {
        G *g = loom__prio_steal(p, victim, LOOM_PRIO_HIGH);
        if (g) return g;
    }
    uint32_t t = LOAD_RLX(&p->runqtail);
    uint32_t n = runqgrab(victim, p, t, stealrunnext);
    if (n == 0)
        return unlikely(LOAD_RLX(&loom__sched.prio.used)) ? loom__prio_steal(p, victim, LOOM_PRIO_LOW) : NULL;
    n--;
    G *g = SLOT_LOAD(p, t + n);
    if (n == 0) return g;
    uint32_t h = LOAD_ACQ(&p->runqhead);
    if (t - h + n >= LOOM_RUNQ_SIZE) loom__fatal("runqsteal: runq overflow");
    STORE_REL(&p->runqtail, t + n);
    return g;
}

void loom__globrunqput(G *g) {
    if (unlikely(g->prio != LOOM_PRIO_NORMAL)) {
        loom__prio_globrunqput(g);
        return;
    }
    ring_putv(&loom__sched.runq[gq_ring(g)], &g, 1);
    gq_count(1);
}

void loom__globrunqputbatch(G *head, G *tail, int n) {
    if (unlikely(LOAD_RLX(&loom__sched.prio.used))) {
        for (G *g = head, *nx; g; g = nx) { /* mixed levels: one by one */
            nx = g == tail ? NULL : g->schedlink;
            loom__globrunqput(g);
        }
        return;
    }
    (void)tail;
    G *g = head;
    for (int i = 0; i < n; i++) {
        G *nx = g->schedlink;
        g->schedlink = NULL;
        ring_putv(&loom__sched.runq[gq_ring(g)], &g, 1);
        g = nx;
    }
    gq_count(n);
}

G *loom__globrunqget(P *p, int max) {
    int size = (int)globq_len(); /* NORMAL */
    G *g;
    if (unlikely(LOAD_RLX(&loom__sched.prio.used)) && loom__prio_globrunqget(p, size, &g)) return g;
    if (size == 0) return NULL;
    int n = size / LOAD_RLX(&loom__sched.nprocs) + 1;
    if (n > size) n = size;
    if (max > 0 && n > max) n = max;
    if (n > LOOM_RUNQ_SIZE / 2) n = LOOM_RUNQ_SIZE / 2;
    /* one take (a turn, for FRESH_TURN): from the ring it starts with, then the other */
    gring *first = globq_first(), *other = &loom__sched.runq[first == &loom__sched.runq[GQ_RAN]];
    loom__sched.runqtakes++;
    g = ring_pop(first);
    /* the rest straight into p's ring (only the owner writes its tail; the global NORMAL
     * queue holds NORMAL goroutines only), as many as it has room for */
    uint32_t h = LOAD_ACQ(&p->runqhead), t = LOAD_RLX(&p->runqtail);
    uint32_t room = LOOM_RUNQ_SIZE - (t - h), k = (uint32_t)n - 1;
    if (k > room) k = room;
    for (uint32_t i = 0; i < k; i++) SLOT_STORE(p, t + i, ring_pop(first->n ? first : other));
    gq_count(-(int32_t)(k + 1));
    STORE_REL(&p->runqtail, t + k);
    return g;
}

/* The goroutine a P with an empty local queue would take next from the global queue, if it
 * is locked to a thread: popped and returned (sched.lock held); else NULL, nothing taken. */
G *loom__globrunq_pop_locked(void) {
    int prio = LOOM_PRIO_NORMAL;
    G *g;
    if (loom__sched.prio.gq_n[LVL(LOOM_PRIO_HIGH)]) g = loom__sched.prio.gq_head[LVL(prio = LOOM_PRIO_HIGH)];
    else if (globq_len()) g = loom__globrunq_peek();
    else g = loom__sched.prio.gq_head[LVL(prio = LOOM_PRIO_LOW)];
    if (!g || !g->lockedm) return NULL;
    if (prio != LOOM_PRIO_NORMAL) return loom__prio_globpop(prio);
    loom__globrunq_pop();
    return g;
}

/* The runtime's end: forget p's queued goroutines (they are abandoned, as in Go).  Thieves
 * may still be at work on p, so the ring is emptied as a thief empties it — head moved up
 * to tail with a CAS — never by setting both back to 0: a thief that read the new head and
 * the old tail would take the stale slots below as goroutines (long dead ones). */
void loom__runq_drain(P *p) {
    for (;;) {
        uint32_t h = LOAD_ACQ(&p->runqhead), t = LOAD_ACQ(&p->runqtail);
        if (h == t || CAS_REL(&p->runqhead, h, t)) break;
    }
    (void)XCHG(&p->runnext, NULL);
    loom__prio_drain(p);
}

/* Every goroutine queued on p (all levels), as a schedlink list.  Taken as a thief takes
 * (CAS on runnext and the ring's head, the level FIFOs under their lock), so the caller
 * need not own p (sysmon empties a lender's queue). */
/* One goroutine off p's NORMAL level as a thief takes it: runnext by CAS, then the ring's
 * head by CAS after acquire loads of head and tail (the owner published what it queued
 * with a release store of the tail or runnext). */
static G *take_normal(P *p) {
    for (;;) {
        G *next = LOAD(&p->runnext);
        if (!next) break;
        if (CAS(&p->runnext, next, NULL)) return next;
    }
    for (;;) {
        uint32_t h = LOAD_ACQ(&p->runqhead), t = LOAD_ACQ(&p->runqtail);
        if (t == h) return NULL;
        if (t - h > LOOM_RUNQ_SIZE) continue; /* read an inconsistent h and t */
        G *g = SLOT_LOAD(p, h);
        if (CAS_REL(&p->runqhead, h, h + 1)) return g;
    }
}

int loom__runq_takeall(P *p, G **headp, G **tailp) {
    G *head = NULL, *tail = NULL, *g;
    int n = 0;
    for (int prio = LOOM_PRIO_HIGH; prio >= LOOM_PRIO_LOW; prio--) {
        for (;;) {
            if (prio == LOOM_PRIO_NORMAL) g = take_normal(p);
            else g = loom__prio_take(p, prio);
            if (!g) break;
            g->schedlink = NULL;
            if (tail) tail->schedlink = g;
            else head = g;
            tail = g;
            n++;
        }
    }
    *headp = head;
    *tailp = tail;
    return n;
}

/* The head of p's ring, with its index in *h (NULL: empty), and its take by a CAS from h,
 * as a thief's (sysmon's aging, prio.c). */
G *loom__runq_peek(P *p, uint32_t *h) {
    *h = LOAD_ACQ(&p->runqhead);
    uint32_t t = LOAD_ACQ(&p->runqtail);
    return t != *h ? SLOT_LOAD(p, *h) : NULL;
}

bool loom__runq_take_head(P *p, uint32_t h) { return CAS_REL(&p->runqhead, h, h + 1); }
