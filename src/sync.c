/*
 * sync.c — goroutine-level locks: mutex, rwmutex, cond, waitgroup, once.  All park
 * goroutines, never OS threads (mutex and rwmutex through sema.c, cond and waitgroup in
 * FIFOs of their own), and follow Go's sync package algorithms
 * (names kept: lockSlow, unlockSlow, rUnlockSlow).  Misuse that Go turns into a panic
 * (unlocking an unlocked mutex, a runlock with no reader in, a negative WaitGroup counter)
 * returns -EPERM / -EINVAL here and leaves the object as it was, whatever else waits on it.
 */
#include "internal.h"
#include <sched.h>

/* ---------------------------------------------------------------- mutex
 * state: bit 0 locked, bit 1 woken (an unlocker already woke a waiter), bit 2 starving,
 * bits 3.. number of waiters.  Normal mode: a woken waiter competes with newcomers (who
 * have the CPU, so they usually win: good throughput).  A waiter that has waited more
 * than 1 ms switches the mutex to starvation mode: unlock hands it straight to the
 * first waiter, newcomers queue at the tail; it goes back to normal when the last waiter
 * or one that waited < 1 ms gets it.  So no waiter is starved.  In deterministic mode
 * (det.c) time stands still while goroutines run, so there a waiter starves after losing
 * the race STARVATION_ROUNDS times instead: the same rule, counted in schedule steps. */
enum { M_LOCKED = 1, M_WOKEN = 2, M_STARVING = 4, M_SHIFT = 3 };
#define STARVATION_NS     1000000
#define STARVATION_ROUNDS 3

/* Deterministic mode: taking a lock or waiting is a scheduling point even when it would
 * not block (det.c), so that lock-order bugs are in reach of the schedules it draws. */
static inline void det_point(void) {
    if (unlikely(loom__det_on)) loom__preempt_check();
}

static bool can_spin(int iter) {
    if (iter >= 4 || LOAD_RLX(&loom__sched.nprocs) <= 1) return false;
    M *m = loom__getm();
    if (!m || !m->p) return false;
    /* only while other Ps are running (the holder may be about to unlock) and our own
     * queue is empty (else running those is better than spinning) */
    if ((uint32_t)LOAD_RLX(&loom__sched.nprocs) <=
        LOAD(&loom__sched.npidle) + LOAD(&loom__sched.nmspinning) + 1)
        return false;
    return loom__runqempty(m->p);
}

static void lock_slow(loom_mutex *m) {
    int64_t wait_start = 0;
    bool starving = false, awoke = false;
    int iter = 0, lost = 0;
    int old = LOAD(&m->_state);
    for (;;) {
        if ((old & (M_LOCKED | M_STARVING)) == M_LOCKED && can_spin(iter)) {
            if (!awoke && !(old & M_WOKEN) && (old >> M_SHIFT) != 0 && CAS(&m->_state, old, old | M_WOKEN))
                awoke = true;
            for (int i = 0; i < 30; i++) loom__cpu_relax();
            iter++;
            old = LOAD(&m->_state);
            continue;
        }
        int nw = old;
        if (!(old & M_STARVING)) nw |= M_LOCKED;
        if (old & (M_LOCKED | M_STARVING)) nw += 1 << M_SHIFT;
        if (starving && (old & M_LOCKED)) nw |= M_STARVING;
        if (awoke) nw &= ~M_WOKEN;
        if (CAS(&m->_state, old, nw)) {
            if (!(old & (M_LOCKED | M_STARVING))) return; /* got it */
            bool lifo = wait_start != 0;
            if (!wait_start) wait_start = loom__now();
            loom__semacquire(&m->_sema, lifo, WAIT_MUTEX);
            starving = starving || (unlikely(loom__det_on) ? ++lost >= STARVATION_ROUNDS
                                                           : loom__now() - wait_start > STARVATION_NS);
            old = LOAD(&m->_state);
            if (old & M_STARVING) {
                /* handed to us directly: fix up the state */
                int delta = M_LOCKED - (1 << M_SHIFT);
                if (!starving || (old >> M_SHIFT) == 1) delta -= M_STARVING;
                XADD(&m->_state, delta);
                return;
            }
            awoke = true;
            iter = 0;
        } else {
            old = LOAD(&m->_state);
        }
    }
}

void loom_mutex_lock(loom_mutex *m) {
    if (!m) return;
    det_point();
    if (CAS(&m->_state, 0, M_LOCKED)) return;
    lock_slow(m);
}

int loom_mutex_trylock(loom_mutex *m) {
    if (!m) return -EINVAL;
    int old = LOAD(&m->_state);
    if (old & (M_LOCKED | M_STARVING)) return -EBUSY;
    return CAS(&m->_state, old, old | M_LOCKED) ? 0 : -EBUSY;
}

static void unlock_slow(loom_mutex *m, int nw) {
    if (!(nw & M_STARVING)) {
        int old = nw;
        for (;;) {
            if ((old >> M_SHIFT) == 0 || (old & (M_LOCKED | M_WOKEN | M_STARVING))) return;
            nw = (old - (1 << M_SHIFT)) | M_WOKEN;
            if (CAS(&m->_state, old, nw)) {
                loom__semrelease(&m->_sema, false);
                return;
            }
            old = LOAD(&m->_state);
        }
    }
    loom__semrelease(&m->_sema, true);
}

int loom_mutex_unlock(loom_mutex *m) {
    if (!m) return -EINVAL;
    int old = LOAD(&m->_state);
    for (;;) {
        if (!(old & M_LOCKED)) return -EPERM;
        if (__atomic_compare_exchange_n(&m->_state, &old, old - M_LOCKED, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            break;
    }
    int nw = old - M_LOCKED;
    if (nw != 0) unlock_slow(m, nw);
    return 0;
}

/* ---------------------------------------------------------------- rwmutex
 * Go's RWMutex, with its readerCount and readerWait in one 64-bit word, _state, so that
 * runlock reads both at once and tells the readers that are in from those waiting behind
 * a writer.  (Go keeps them apart and counts both kinds in readerCount: its RUnlock cannot
 * tell whether a reader is in, so a runlock without one while a reader waits would pass and
 * take the waiting reader's count.)
 *
 *   bits  0..31  readerCount: readers between rlock and runlock, in or waiting.
 *   bits 32..62  readerWait: while a writer is announced, the readers that are in, which
 *                it waits for; 0 otherwise.
 *   bit  63      rwmutexWriter: a writer announced itself: it waits for readerWait to
 *                reach 0, then holds the lock until unlock.
 *
 * So the readers in are readerWait if rwmutexWriter is set, else readerCount; the others
 * (readerCount - readerWait) wait on _reader_sem.  A reader is in from the moment the lock
 * admits it: its own add when no writer is announced, or the unlock that releases it (which
 * counts it in before it runs again); from then on a writer waits for it.
 *
 * Who changes _state:
 *   rlock    adds 1 to readerCount (one atomic add).  If rwmutexWriter was clear the
 *            reader is in; else it waits on _reader_sem.
 *   runlock  takes 1 from readerCount, and from readerWait when rwmutexWriter is set,
 *            in one CAS; it refuses (-EPERM, no change) when no reader is in:
 *            readerCount 0 with no writer, readerWait 0 with one.  The runlock that
 *            brings readerWait to 0 releases _writer_sem (rUnlockSlow).
 *   lock     takes _w, so one writer at a time, then sets rwmutexWriter and readerWait =
 *            readerCount in one CAS (every reader counted then is in), and waits on
 *            _writer_sem unless that was 0.  New readers wait from then on: a stream of
 *            readers cannot starve a writer.
 *   unlock   only when a writer holds the lock (rwmutexWriter set, readerWait 0; else
 *            -EPERM, no change): clears rwmutexWriter in one CAS, which lets in the
 *            readerCount readers counted then (all were waiting), releases _reader_sem
 *            once for each, then unlocks _w.
 *
 * Invariants: readerWait <= readerCount; readerWait == 0 while rwmutexWriter is clear;
 * rwmutexWriter set implies _w is held by that writer.  _writer_sem is released once per
 * lock that found readers in, _reader_sem once per reader that found rwmutexWriter set,
 * so neither keeps a unit nobody waits for.  Each call checks and changes _state in one
 * atomic operation, so a refusal is exact: at that instant no reader was in (runlock), or
 * no writer held the lock (unlock); a call made while one is cannot be refused. */
#define RW_READER      1ull             /* readerCount's unit */
#define RW_WAITER      (1ull << 32)     /* readerWait's unit */
#define RW_WRITER      (1ull << 63)     /* rwmutexWriter */
#define RW_MAX_READERS ((1u << 31) - 1) /* readerWait's 31 bits hold at most this */

static inline uint32_t rw_count(unsigned long long s) { return (uint32_t)s; }
static inline uint32_t rw_wait(unsigned long long s) { return (uint32_t)(s >> 32) & 0x7fffffffu; }

void loom_rwmutex_rlock(loom_rwmutex *m) {
    if (!m) return;
    det_point();
    unsigned long long old = XADD(&m->_state, RW_READER);
    if (unlikely(rw_count(old) >= RW_MAX_READERS)) loom__fatal("rwmutex: too many readers");
    if (old & RW_WRITER) loom__semacquire(&m->_reader_sem, false, WAIT_RWMUTEX_R);
}

int loom_rwmutex_runlock(loom_rwmutex *m) {
    if (!m) return -EINVAL;
    unsigned long long old = LOAD(&m->_state), nw;
    do {
        if (likely(!(old & RW_WRITER))) {
            if (rw_count(old) == 0) return -EPERM;
            nw = old - RW_READER;
        } else {
            if (rw_wait(old) == 0) return -EPERM;
            nw = old - RW_READER - RW_WAITER;
        }
    } while (!__atomic_compare_exchange_n(&m->_state, &old, nw, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    if (unlikely(nw & RW_WRITER) && rw_wait(nw) == 0) /* rUnlockSlow: the last reader in */
        loom__semrelease(&m->_writer_sem, false);
    return 0;
}

void loom_rwmutex_lock(loom_rwmutex *m) {
    if (!m) return;
    loom_mutex_lock(&m->_w);
    unsigned long long old = LOAD(&m->_state), nw;
    do nw = old | RW_WRITER | (unsigned long long)rw_count(old) * RW_WAITER;
    while (!__atomic_compare_exchange_n(&m->_state, &old, nw, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    if (rw_count(old) != 0) loom__semacquire(&m->_writer_sem, false, WAIT_RWMUTEX_W);
}

int loom_rwmutex_unlock(loom_rwmutex *m) {
    if (!m) return -EINVAL;
    unsigned long long old = LOAD(&m->_state);
    do {
        if (!(old & RW_WRITER) || rw_wait(old) != 0) return -EPERM;
    } while (!__atomic_compare_exchange_n(&m->_state, &old, old & ~RW_WRITER, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST));
    for (uint32_t r = rw_count(old); r > 0; r--) loom__semrelease(&m->_reader_sem, false);
    loom_mutex_unlock(&m->_w);
    return 0;
}

/* ---------------------------------------------------------------- waiter lists
 * cond and waitgroup park goroutines in a FIFO of their own (_head/_tail under _lock);
 * the nodes live on the waiters' stacks. */
typedef struct lwaiter {
    G *g; /* NULL: a thread that runs no goroutine, spinning on done */
    struct lwaiter *next;
    uint32_t done; /* set by the waker for such a thread (atomic) */
    bool claim;    /* g has a context that may end the wait: wakers claim g first */
} lwaiter;

/* A waker's claim on w's goroutine (w->claim): false if its context's end won (context.c). */
static bool claim_waiter(lwaiter *w) {
    if (!w->claim) return true;
    if (!CAS(&w->g->selectdone, 0, 1)) return false;
    w->g->param = w;
    return true;
}

/* Takes w off the FIFO (head, tail) if it is still there; the object's _lock held. */
static bool waiters_remove(void **head, void **tail, lwaiter *w) {
    lwaiter *prev = NULL;
    for (lwaiter *x = *head; x; prev = x, x = x->next) {
        if (x != w) continue;
        if (prev) prev->next = x->next;
        else *head = x->next;
        if (*tail == x) *tail = prev;
        return true;
    }
    return false;
}

/* Parks g (on w) under lk, which the park releases; claimable if its context may end the
 * wait.  Returns the context's cause if that ended it (w may still be queued), else 0. */
static int waiter_park(lwaiter *w, loom__lock *lk, int reason) {
    G *g = w->g;
    if (!w->claim) {
        loom__park(loom__getm(), loom__unlock_after, lk, reason);
        return 0;
    }
    if (loom__park_timeout(loom__unlock_after, lk, reason, -1) || !g->ctxerr) return 0;
    return g->ctxerr;
}

/* w's goroutine, which has a context, is about to wait */
static void waiter_arm(lwaiter *w) {
    if (!w->g || !w->g->ctx) return;
    w->claim = true;
    STORE(&w->g->selectdone, 0);
    w->g->param = NULL;
}

static void waiters_push(void **head, void **tail, lwaiter *w) {
    if (*tail) ((lwaiter *)*tail)->next = w;
    else *head = w;
    *tail = w;
}

/* wakes a list taken off its object, with the object's _lock released; claimed: the
 * waker claimed each goroutine already (cond), else it claims them here, skipping those a
 * context's end claimed first */
static void waiters_wake(lwaiter *w, bool claimed) {
    while (w) {
        lwaiter *next = w->next; /* read before the wakeup: the node is on the waiter's stack */
        if (!w->g) STORE(&w->done, 1);
        else if (claimed || claim_waiter(w)) loom__ready(w->g);
        w = next;
    }
}

/* ---------------------------------------------------------------- cond
 * A FIFO of waiters under _lock.  Wait enqueues itself before releasing the user's
 * mutex, so a signal sent after that release always finds it. */
void loom_cond_wait(loom_cond *c, loom_mutex *m) {
    if (!c || !m) return;
    if (!loom__in_goroutine()) { /* foreign thread: a spurious wakeup is allowed */
        loom_mutex_unlock(m);
        sched_yield();
        loom_mutex_lock(m);
        return;
    }
    loom__lock *lk = (loom__lock *)&c->_lock;
    lwaiter me = { .g = loom__getg() };
    waiter_arm(&me);
    loom__lock_acquire(lk);
    waiters_push(&c->_head, &c->_tail, &me);
    loom_mutex_unlock(m);
    if (waiter_park(&me, lk, WAIT_COND)) { /* its context ended: off the queue, if on it */
        loom__lock_acquire(lk);
        waiters_remove(&c->_head, &c->_tail, &me);
        loom__lock_release(lk);
    }
    loom_mutex_lock(m);
}

/* A signal goes to the first waiter whose context has not ended it (claimed here, under
 * _lock), so none is lost on a waiter that is leaving. */
static void cond_wake(loom_cond *c, bool all) {
    if (!c) return;
    loom__lock *lk = (loom__lock *)&c->_lock;
    loom__lock_acquire(lk);
    lwaiter *list = NULL, **tail = &list;
    while (c->_head) {
        lwaiter *w = c->_head;
        c->_head = w->next;
        w->next = NULL;
        if (!w->g || claim_waiter(w)) {
            *tail = w;
            tail = &w->next;
            if (!all) break;
        }
    }
    if (!c->_head) c->_tail = NULL;
    loom__lock_release(lk);
    waiters_wake(list, true);
}

void loom_cond_signal(loom_cond *c) { cond_wake(c, false); }
void loom_cond_broadcast(loom_cond *c) { cond_wake(c, true); }

/* ---------------------------------------------------------------- waitgroup
 * _state: counter in the high 32 bits, waiters in the low 32 (as sync.WaitGroup).  The
 * waiters wait in the FIFO _head/_tail under _lock.
 *
 * Invariants: waiters is the number of nodes in the FIFO and changes only under _lock;
 * waiters > 0 implies counter > 0.  A waiter registers (waiters + 1) and enqueues itself
 * in one _lock section, and only while the counter is above 0; the add that brings the
 * counter to 0 with waiters takes _lock as well, sets the word to 0 and takes the whole
 * FIFO in one section.  So the waiters released are exactly those that registered before
 * the counter reached 0.  An add racing with that (Go's "Add called concurrently with
 * Wait", a panic there) lands either before (the counter does not reach 0 then) or after
 * (it starts a new round, whose waiters queue in a new FIFO): it is never lost, and it
 * neither releases a later waiter nor strands an earlier one.
 * The other adds (the counter stays above 0, or reaches 0 with no waiter) are one CAS
 * without the lock: a waiter that registers meanwhile changes the word, so the CAS fails
 * and the add looks again. */
int loom_wg_add(loom_waitgroup *wg, long delta) {
    if (!wg) return -EINVAL;
    if (delta > INT32_MAX || delta < -(long)INT32_MAX) return -EINVAL; /* never in range */
    loom__lock *lk = NULL;
    unsigned long long old = LOAD(&wg->_state), nw;
    long v;
    for (;;) {
        v = (long)(old >> 32) + delta;
        if (v < 0 || v > INT32_MAX) {
            if (lk) loom__lock_release(lk);
            return -EINVAL;
        }
        uint32_t waiters = (uint32_t)old;
        if (v == 0 && waiters != 0 && !lk) { /* releasing waiters: under _lock */
            lk = (loom__lock *)&wg->_lock;
            loom__lock_acquire(lk);
            old = LOAD(&wg->_state);
            continue;
        }
        nw = v == 0 ? 0 : ((unsigned long long)v << 32 | waiters);
        if (__atomic_compare_exchange_n(&wg->_state, &old, nw, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            break;
    }
    if (!lk) return 0;
    lwaiter *list = NULL;
    if (v == 0) {
        list = wg->_head;
        wg->_head = wg->_tail = NULL;
    }
    loom__lock_release(lk);
    waiters_wake(list, false);
    return 0;
}

void loom_wg_done(loom_waitgroup *wg) { (void)loom_wg_add(wg, -1); }

void loom_wg_wait(loom_waitgroup *wg) {
    if (!wg) return;
    det_point();
    if ((LOAD(&wg->_state) >> 32) == 0) return;
    bool in_g = loom__in_goroutine();
    lwaiter me = { .g = in_g ? loom__getg() : NULL };
    waiter_arm(&me);
    loom__lock *lk = (loom__lock *)&wg->_lock;
    loom__lock_acquire(lk);
    unsigned long long old = LOAD(&wg->_state);
    do {
        if ((old >> 32) == 0) {
            loom__lock_release(lk);
            return;
        }
    } while (!__atomic_compare_exchange_n(&wg->_state, &old, old + 1, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST));
    waiters_push(&wg->_head, &wg->_tail, &me);
    if (in_g) {
        if (waiter_park(&me, lk, WAIT_WAITGROUP)) {
            /* its context ended: off the queue and out of the count, unless the add that
             * released the waiters took the queue meanwhile */
            loom__lock_acquire(lk);
            if (waiters_remove(&wg->_head, &wg->_tail, &me)) XADD(&wg->_state, (unsigned long long)-1);
            loom__lock_release(lk);
        }
        return;
    }
    loom__lock_release(lk); /* a foreign thread: no goroutine to park */
    while (!LOAD(&me.done)) sched_yield();
}

/* ---------------------------------------------------------------- once */
void loom_once_do(loom_once *o, void (*fn)(void *), void *arg) {
    if (!o || !fn) return;
    if (LOAD_ACQ(&o->_done)) return;
    loom_mutex_lock(&o->_m);
    if (!o->_done) {
        fn(arg);
        STORE_REL(&o->_done, 1);
    }
    loom_mutex_unlock(&o->_m);
}
