/*
 * runq.c — run queues: each P's bounded local queue with its runnext slot, and the global
 * queue.  The algorithms and names are Go's (runtime.runqput, runqget, runqgrab, runqsteal,
 * globrunqget in proc.go); this file is the one place where queueing policy lives, so the
 * priority levels and topology-aware stealing planned later replace these functions only.
 *
 * Local queue: a 256-slot ring.  Only the owner P writes runqtail and the slots between
 * tail and head+256; any M may take from the head with a CAS on runqhead (consumers are
 * the owner and thieves).  Slots are read and written with relaxed atomics because a thief
 * may read a slot the owner is about to reuse; the head CAS decides who got it.
 *
 * runnext: the goroutine the running one just spawned or woke.  It runs next, inheriting
 * the rest of the current time slice, so a producer/consumer pair keeps its data in cache.
 * Only the owner sets it; thieves may CAS it to NULL, and only after giving the owner
 * ~3 µs to run it itself (Go sleeps 3 µs there: a channel handoff takes ~50 ns, so the
 * owner is likely about to run it, and stealing it would split the pair across cores).
 *
 * Global queue: a linked list under sched.lock, filled when a local queue overflows (half
 * the queue moves in one batch) and by threads without a P; drained in batches.
 */
#include "internal.h"

#define SLOT_LOAD(p, i)     __atomic_load_n(&(p)->runq[(i) % LOOM_RUNQ_SIZE], __ATOMIC_RELAXED)
#define SLOT_STORE(p, i, g) __atomic_store_n(&(p)->runq[(i) % LOOM_RUNQ_SIZE], (g), __ATOMIC_RELAXED)

/* Puts half of p's local queue and g on the global queue (runtime.runqputslow).
 * Fails if a thief moved the head meanwhile: the caller retries the fast path. */
static bool runqputslow(P *p, G *g, uint32_t h, uint32_t t) {
    enum { HALF = LOOM_RUNQ_SIZE / 2 };
    G *batch[HALF + 1];
    uint32_t n = (t - h) / 2;
    if (n != HALF) loom__fatal("runqputslow: queue is not full");
    for (uint32_t i = 0; i < n; i++) batch[i] = SLOT_LOAD(p, h + i);
    if (!CAS_REL(&p->runqhead, h, h + n)) return false;
    batch[n] = g;
    for (uint32_t i = 0; i < n; i++) batch[i]->schedlink = batch[i + 1];
    g->schedlink = NULL;
    loom__lock_acquire(&loom__sched.lock);
    loom__globrunqputbatch(batch[0], g, (int)n + 1);
    loom__lock_release(&loom__sched.lock);
    return true;
}

void loom__runqput(P *p, G *g, bool next) {
    if (next) {
        G *old = LOAD_RLX(&p->runnext);
        while (!__atomic_compare_exchange_n(&p->runnext, &old, g, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            ;
        if (!old) return;
        g = old;                      /* the previous runnext goes to the tail */
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

G *loom__runqget(P *p, bool *inherit) {
    G *next = LOAD_RLX(&p->runnext);
    if (next && CAS(&p->runnext, next, NULL)) {
        *inherit = true;
        return next;
    }
    *inherit = false;
    for (;;) {
        uint32_t h = LOAD_ACQ(&p->runqhead);
        uint32_t t = LOAD_RLX(&p->runqtail);
        if (t == h) return NULL;
        G *g = SLOT_LOAD(p, h);
        if (CAS_REL(&p->runqhead, h, h + 1)) return g;
    }
}

bool loom__runqempty(P *p) {
    /* as runtime.runqempty: read head, tail, runnext, then check tail didn't move, so a
     * goroutine in flight from runnext to the queue is not missed */
    for (;;) {
        uint32_t h = LOAD(&p->runqhead);
        uint32_t t = LOAD(&p->runqtail);
        G *next = LOAD(&p->runnext);
        if (LOAD(&p->runqtail) == t) return h == t && next == NULL;
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
                    if (!CAS(&victim->runnext, next, NULL)) continue;
                    SLOT_STORE(dst, batchhead, next);
                    return 1;
                }
            }
            return 0;
        }
        if (n > LOOM_RUNQ_SIZE / 2) continue;   /* read an inconsistent h and t */
        for (uint32_t i = 0; i < n; i++) SLOT_STORE(dst, batchhead + i, SLOT_LOAD(victim, h + i));
        if (CAS_REL(&victim->runqhead, h, h + n)) return n;
    }
}

G *loom__runqsteal(P *p, P *victim, bool stealrunnext) {
    uint32_t t = LOAD_RLX(&p->runqtail);
    uint32_t n = runqgrab(victim, p, t, stealrunnext);
    if (n == 0) return NULL;
    n--;
    G *g = SLOT_LOAD(p, t + n);
    if (n == 0) return g;
    uint32_t h = LOAD_ACQ(&p->runqhead);
    if (t - h + n >= LOOM_RUNQ_SIZE) loom__fatal("runqsteal: runq overflow");
    STORE_REL(&p->runqtail, t + n);
    return g;
}

void loom__globrunqput(G *g) {
    g->schedlink = NULL;
    if (loom__sched.runqtail) loom__sched.runqtail->schedlink = g;
    else loom__sched.runqhead = g;
    loom__sched.runqtail = g;
    STORE(&loom__sched.runqsize, loom__sched.runqsize + 1);
}

void loom__globrunqputbatch(G *head, G *tail, int n) {
    tail->schedlink = NULL;
    if (loom__sched.runqtail) loom__sched.runqtail->schedlink = head;
    else loom__sched.runqhead = head;
    loom__sched.runqtail = tail;
    STORE(&loom__sched.runqsize, loom__sched.runqsize + n);
}

static G *globpop(void) {
    G *g = loom__sched.runqhead;
    loom__sched.runqhead = g->schedlink;
    if (!loom__sched.runqhead) loom__sched.runqtail = NULL;
    return g;
}

G *loom__globrunqget(P *p, int max) {
    int size = loom__sched.runqsize;
    if (size == 0) return NULL;
    int n = size / loom__sched.nprocs + 1;
    if (n > size) n = size;
    if (max > 0 && n > max) n = max;
    if (n > LOOM_RUNQ_SIZE / 2) n = LOOM_RUNQ_SIZE / 2;
    STORE(&loom__sched.runqsize, size - n);
    G *g = globpop();
    while (--n > 0) loom__runqput(p, globpop(), false);
    return g;
}

void loom__runq_drain(P *p) {
    STORE(&p->runqhead, 0);
    STORE(&p->runqtail, 0);
    STORE(&p->runnext, NULL);
}
