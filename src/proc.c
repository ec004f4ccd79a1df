/*
 * proc.c — the scheduler: goroutines (G), OS threads (M), processors (P).
 *
 * Design story
 * ------------
 * loom is Go's scheduler (src/runtime/proc.go) rebuilt for C programs.
 *
 *   G  a goroutine: a function, a stack carved from an arena (stack.c) with its record at
 *      the top, and a saved stack pointer.  Cheap: a parked goroutine costs one page.
 *   M  an OS thread.  Its own (pthread) stack is its g0, where schedule() runs whenever
 *      there is no goroutine to switch to directly.  Idle Ms sleep on a futex (m->park)
 *      in a pool, so starting a thread is rare.
 *   P  the right to run goroutines, LOOM_PROCS of them (default: the CPUs this process may
 *      use, cpus.c).  An M must hold a P to run goroutines.  Each P has a local run queue
 *      and a runnext slot (runq.c), a cache of dead goroutines for warm reuse, and a timer
 *      heap (timer.c).
 *
 * Finding work (schedule → findrunnable) follows Go: runnext and the local queue; the
 * global queue every 61st tick so it can't starve (in it, goroutines that have run go
 * before fresh ones, with a share kept for the fresh: runq.c); own due timers; then, as a
 * spinning M, other Ps' due timers and half of a random victim's queue (4 passes, random
 * order, the last one may take a running P's runnext); then release the P, re-check
 * everything, and block: one M in netpoll (epoll) until the next timer, the others on
 * their futex.
 *
 * Spinning Ms and wakeups (the part with the lost-wakeup races, see Go's proc.go header
 * and golang/go#43997): a goroutine made ready goes to the readier's runnext, then
 * wakep() starts a spinning M if there is an idle P and no M is spinning already.  The
 * number of spinning Ms is bounded (2*nmspinning < procs - npidle).  A spinning M that
 * finds work stops spinning and, if it was the last spinner, wakes another (so the next
 * ready goroutine is found).  A spinning M that finds nothing first drops its P, then
 * stops spinning (nmspinning--), then re-checks every run queue: a producer that queued
 * work after our checks saw nmspinning != 0 and did not wake anyone, so we must look once
 * more after announcing we are no longer spinning.  Go rejected three simpler designs
 * (centralised state, handing off to a thread on every readying, and unparking a thread
 * per ready goroutine) because they either serialised everything or woke threads that
 * found nothing to do; loom keeps Go's design for the same reasons — a futex wake costs
 * ~16 µs on these VMs.
 *
 * Switching: goroutines switch directly to each other when the local queue has work
 * (loom_yield and a channel handoff are one register swap, no trip through g0); only when
 * the P runs dry does the goroutine switch to g0 to run findrunnable.  Whatever must happen
 * after the old goroutine's context is saved — releasing the lock that guards the wait
 * queue it joined, arming its timer, putting a yielding goroutine back on a queue, freeing
 * a dead one — is an "after switch" hook (m->after_fn), run by the context switched to
 * (Go's gopark does the same with unlockf on g0).  That is the whole park/unpark protocol:
 * a goroutine becomes visible to wakers only once it is fully switched out, so no waker
 * can ever resume a goroutine whose stack is still in use.  Hooks must copy what they
 * need from the parked goroutine's stack before the step that publishes it.
 *
 * errno belongs to the goroutine: it is saved at every switch and restored on the thread
 * the goroutine resumes on (through non-inlined helpers, because __errno_location is a
 * const function whose result the compiler may keep across the switch).
 *
 * Time slices: a goroutine taken from runnext inherits the current slice (schedtick is not
 * bumped), so a ping-pong pair shares one slice; sysmon (sysmon.c) sets p->preempt when a
 * P's schedtick has not moved for a slice, and the next schedule() then puts runnext at
 * the tail and runs the queue head instead: the pair cannot starve the queue behind it.
 *
 * Beyond Go: three policies of loom's own, each in a file that tells its story, hooked in
 * here by one direct call behind a check of its own state (proc.h):
 *   preempt_policy.c  goroutines preempted by signal (preempt_signal.c) must resume on
 *                     their thread: each waits locked to it, as a goroutine locked by
 *                     the program does, and the thread runs nothing else meanwhile;
 *   spare.c           a thread blocked in a call loom was not told about gets a stand-in P
 *                     from sysmon, given back when the thread runs again (p->spare.retire);
 *   prio.c            priority levels: their queues, the kick that lets a HIGH goroutine
 *                     jump the queue, aging (sched.prio.used).
 */
#include "proc.h"
#include "symbolize.h"
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct loom__sched loom__sched;
static loom__note exit_note; /* loom_run's thread waits here for main to return */
static bool stuck_threads;   /* a previous run left threads we could not stop */

const char *const loom__wait_names[WAIT_COUNT] = {
    [WAIT_NONE] = "running",
    [WAIT_CHAN_SEND] = "chan send",
    [WAIT_CHAN_RECV] = "chan receive",
    [WAIT_SELECT] = "select",
    [WAIT_SELECT_NOCASES] = "select (no cases)",
    [WAIT_SLEEP] = "sleep",
    [WAIT_MUTEX] = "sync.Mutex.Lock",
    [WAIT_RWMUTEX_R] = "sync.RWMutex.RLock",
    [WAIT_RWMUTEX_W] = "sync.RWMutex.Lock",
    [WAIT_COND] = "sync.Cond.Wait",
    [WAIT_WAITGROUP] = "sync.WaitGroup.Wait",
    [WAIT_SEMA] = "semacquire",
    [WAIT_IO] = "IO wait",
    [WAIT_LOCKED_THREAD] = "locked to thread",
};

/* ------------------------------------------------------------------ helpers */

int64_t loom_now(void) { return loom__now(); }

/* errno through the M's own pointer to its thread's errno, read afresh from the M at each
 * switch: never a location the compiler computed on another thread (see the design story) */
static inline __attribute__((always_inline)) int errno_get(M *m) { return *(volatile int *)m->errnop; }
static inline __attribute__((always_inline)) void errno_set(M *m, int v) { *(volatile int *)m->errnop = v; }

uint32_t loom__fastrand(M *m) {
    if (unlikely(loom__det_on)) return loom__det_rand32(); /* LOOM_SEED: one stream */
    /* xorshift64*, per M */
    uint64_t x = m->fastrand64;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    m->fastrand64 = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

uint32_t loom__fastrandn(M *m, uint32_t n) { return (uint32_t)(((uint64_t)loom__fastrand(m) * n) >> 32); }

bool loom__in_goroutine(void) { return loom__m_runs_g(loom__getm()); }

/* ------------------------------------------------------------------ switching */

static const char *const gstatus_names[] = { "idle", "runnable", "running", "waiting", "syscall", "dead" };

static const char *gstatus_name(uint32_t st) { return st < 6 ? gstatus_names[st] : "?"; }

/* casgstatus found g in status st, not old (proc.h, "invariant checks") */
void loom__bad_gstatus(G *g, uint32_t st, uint32_t old, uint32_t want, const char *where) {
    M *m = loom__getm();
    char last[96] = "";
    const char *lw = LOAD_RLX(&g->statuswhere);
    if (loom__sched.check && lw) /* recorded only while the checks are on */
        snprintf(last, sizeof last, "; it became %s at %s on M%d", gstatus_name(st), lw,
                 (int)LOAD_RLX(&g->statusm));
    loom__fatal("casgstatus: goroutine %llu is %s, not %s, when it should become %s (%s, M%d)%s",
                (unsigned long long)g->id, gstatus_name(st), gstatus_name(old), gstatus_name(want), where,
                m ? m->id : -1, last);
}

static ALWAYS_INLINE void after_switch(G *self);

static __attribute__((noreturn, noinline)) void stack_overflow(G *g) {
    loom__fatal("goroutine %llu overflowed its stack (%zu KiB)", (unsigned long long)g->id,
                g->stack_size / 1024);
}

static void start_stack(M *m, G *g);

static void goroutine_entry(void);

/* Switches from `from` (the running context of M m) to `to`.  `after` runs on `to`'s side
 * once from's context is saved.  Returns when someone switches back to `from`, possibly on
 * another M. */
static ALWAYS_INLINE void gogo(M *m, G *from, G *to, void (*after)(G *, void *), void *arg, bool dying) {
    LOOM__TRACE(loom__trace_switch(m, from, to, dying));
    m->after_fn = after;
    m->after_arg = arg;
    m->after_prev = from;
    m->curg = to;
    to->m = m;
    if (m->p) {
        STORE_RLX(&m->p->prio.running, to != &m->g0 ? to->prio : LOOM__PRIO_NONE);
        if (unlikely(LOAD_RLX(&loom__sched.prio.used)) && to != &m->g0) loom__preempt_rearm(m);
    }
    if (to != &m->g0) {
        if (unlikely(!to->stack_base)) start_stack(m, to);
        LOOM__COUNT(m, nswitch);
        if (unlikely(loom__sched.check)) {
            casgstatus(to, G_RUNNABLE, G_RUNNING);
        } else {
            uint32_t st = LOAD_RLX(&to->status);
            STORE_RLX(&to->status, G_RUNNING);
            if (unlikely(st != G_RUNNABLE))
                loom__bad_gstatus(to, st, G_RUNNABLE, G_RUNNING, __FILE_NAME__ ":" LOOM__STR(__LINE__));
        }
    }
    from->saved_errno = errno_get(m);
    if (from != &m->g0 && !dying) {
        void *sp = __builtin_frame_address(0);
        if (unlikely(!loom__stack_ok(from, sp))) stack_overflow(from);
    }
    loom__fiber_start_switch(from, to, dying);
    loom__ctx_switch(&from->sp, to->sp);
    after_switch(from);
}

/* First thing a context does when switched to: finish the tools' bookkeeping, take back
 * its errno, run the switcher's hook.  `self->m` was set by whoever switched to us. */
static ALWAYS_INLINE void after_switch(G *self) {
    M *m = self->m;
    loom__fiber_finish_switch(self);
    errno_set(m, self->saved_errno);
    void (*fn)(G *, void *) = m->after_fn;
    if (fn) {
        m->after_fn = NULL;
        fn(m->after_prev, m->after_arg);
    }
}

void loom__unlock_after(G *prev, void *lock) {
    (void)prev;
    LOOM__CHAOS(CH_PARK);
    loom__lock_release((loom__lock *)lock);
}

void loom__spin_unlock_after(G *prev, void *lock) {
    (void)prev;
    LOOM__CHAOS(CH_PARK);
    loom__spin_unlock((loom__spinlock *)lock);
}

/* ------------------------------------------------------------------ Ps and Ms */

static void pidleput(P *p) { /* sched.lock held */
    if (!loom__runqempty(p)) loom__fatal("pidleput: P has a non-empty run queue");
    STORE_RLX(&p->m, NULL);
    STORE(&p->status, P_IDLE);
    p->link = loom__sched.pidle;
    loom__sched.pidle = p;
    XADD(&loom__sched.npidle, 1);
}

static P *pidleget(void) { /* sched.lock held */
    P *p = loom__sched.pidle;
    if (p) {
        loom__sched.pidle = p->link;
        if (XADD(&loom__sched.npidle, -1) == LOAD(&loom__sched.nactive) && LOAD(&loom__sched.sysmonwait))
            loom__sysmon_wake();
    }
    return p;
}

static P *pidleget_lock(void) {
    loom__lock_acquire(&loom__sched.lock);
    P *p = pidleget();
    loom__lock_release(&loom__sched.lock);
    return p;
}

/* A P being acquired by M m has no owner (invariant checks). */
static __attribute__((noinline)) void check_unowned(P *p, M *m) {
    M *was = LOAD(&p->m);
    if (was && was != m) loom__fatal("P%d acquired by M%d while M%d owns it", p->id, m->id, was->id);
}

static void acquirep(M *m, P *p) {
    int cpu = loom__topo_cpu(p->id);
    if (unlikely(cpu != m->pin_cpu) && loom__topo_pin_self(p->id) == 0) m->pin_cpu = cpu; /* LOOM_PIN=1 */
    m->p = p;
    if (unlikely(loom__sched.check)) check_unowned(p, m);
    /* sysmon reads it to watch and signal the thread: release, so that it sees what
     * mstart wrote (m->tid; a plain mov on x86 all the same) */
    STORE_REL(&p->m, m);
    STORE(&p->status, P_RUNNING);
}

static P *releasep(M *m) {
    P *p = m->p;
    m->p = NULL;
    /* until another M acquires it, sysmon must not take this M's sleep for a blocked P */
    if (p) STORE_RLX(&p->m, NULL);
    /* the deadline timer is for its P's timers: a thread that sleeps without one is not
     * woken by it (whoever takes the P arms their own, in gogo) */
    if (m->dtimer_when) loom__preempt_arm(m, 0);
    return p;
}

static void mput(M *m) { /* sched.lock held */
    m->schedlink = loom__sched.midle;
    loom__sched.midle = m;
    loom__sched.nmidle++;
}

static M *mget(void) { /* sched.lock held */
    M *m = loom__sched.midle;
    if (m) {
        loom__sched.midle = m->schedlink;
        loom__sched.nmidle--;
    }
    return m;
}

static void *mstart(void *arg);
static void preempt_point(M *m);

static M *allocm(void) {
    M *m = calloc(1, sizeof *m);
    if (!m) loom__fatal("out of memory allocating an M");
    loom__lock_acquire(&loom__sched.lock);
    m->id = loom__sched.mcount++;
    m->alllink = loom__sched.allm;
    STORE_REL(&loom__sched.allm, m); /* loom_run's exit walks it without the lock */
    loom__lock_release(&loom__sched.lock);
    m->g0.m = m;
    m->curg = &m->g0;
    m->statfd = -1;
    m->syscallfd = -1;
    m->pin_cpu = -1;
    m->tr_start = -1;
    m->fastrand64 =
            (uint64_t)loom__nanotime() * 0x9E3779B97F4A7C15ull + (uint64_t)m->id * 0xBF58476D1CE4E5B9ull + 1;
    strcpy(m->g0.name, "g0");
    return m;
}

/* Creates a thread that starts with P p (runtime.newm); `here`: see mwake. */
static void newm(P *p, bool spinning, bool here) {
    M *m = allocm();
    m->nextp = p;
    m->spinning = spinning;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    if (here && loom__topo_lend_cpu_attr(&attr, &m->lend_mask) == 0) m->cpu_lent = true;
    /* the new thread starts with every signal blocked, then unblocks its own set */
    int saved_errno = errno;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    m->sigmask = old; /* mstart restores the creator's mask once set up */
    int err = pthread_create(&m->thread, &attr, mstart, m);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err) loom__fatal("pthread_create failed: %s", strerror(err));
    errno = saved_errno;
}

/* Wakes M mp, parked in mpark, which has its P.  `here`: the caller is about to sleep
 * (it hands its own P on), so mp goes to the caller's CPU, which is about to be free:
 * woken plainly, the kernel may queue it behind a busy CPU's running thread for a tick
 * (4 ms here) while the caller's CPU idles, and a P handed on at every preemption (a
 * goroutine preempted by signal keeps its thread: preempt_policy.c) would be lost that
 * long each time.  mpark gives the woken M its mask back. */
static void mwake(M *mp, bool here) {
    if (here && loom__topo_lend_cpu(mp->tid, &mp->lend_mask) == 0) mp->cpu_lent = true;
    loom__note_wakeup(&mp->park);
}

/* Runs some M on P p, or on an idle P if p is NULL (runtime.startm).  If spinning, the
 * caller already counted the M in nmspinning.  `here`: see mwake. */
static void startm_here(P *p, bool spinning, bool here) {
    loom__lock_acquire(&loom__sched.lock);
    if (!p) {
        p = pidleget();
        if (!p) {
            loom__lock_release(&loom__sched.lock);
            if (spinning) XADD(&loom__sched.nmspinning, -1);
            return;
        }
    }
    M *nm = mget();
    loom__lock_release(&loom__sched.lock);
    if (!nm) {
        newm(p, spinning, here);
        return;
    }
    nm->spinning = spinning;
    nm->nextp = p;
    LOOM__CHAOS(CH_SPIN);
    mwake(nm, here);
}

static void startm(P *p, bool spinning) { startm_here(p, spinning, false); }

/* Tries to add one more spinning M to run goroutines (runtime.wakep). */
void loom__wakep(void) {
    LOOM__CHAOS(CH_WAKE);
    if (LOAD(&loom__sched.npidle) == 0) return;
    if (LOAD(&loom__sched.nmspinning) != 0 || !CAS(&loom__sched.nmspinning, 0, 1)) return;
    startm(NULL, true);
}

/* Hands off P from an M that is about to block or sleep (runtime.handoffp); `here`: the
 * caller is that M, not sysmon (see mwake). */
static void handoffp_here(P *p, bool here) {
    if (unlikely(LOAD(&p->spare.retire))) { /* a spare being given back */
        loom__spare_off(p);
        return;
    }
    if (!loom__runqempty(p) || LOAD(&loom__sched.runqsize) != 0 ||
        (unlikely(loom__det_on) && loom__det_waiting())) {
        startm_here(p, false, here);
        return;
    }
    if (LOAD(&loom__sched.nmspinning) + LOAD(&loom__sched.npidle) == 0 &&
        CAS(&loom__sched.nmspinning, 0, 1)) {
        startm_here(p, true, here);
        return;
    }
    loom__lock_acquire(&loom__sched.lock);
    if (LOAD(&loom__sched.runqsize) != 0) {
        loom__lock_release(&loom__sched.lock);
        startm_here(p, false, here);
        return;
    }
    if (loom__timers_next(p) != 0 && LOAD(&loom__sched.npidle) + 1 == LOAD(&loom__sched.nactive)) {
        /* this P's timers must not be left unwatched: keep it running */
        loom__lock_release(&loom__sched.lock);
        startm_here(p, false, here);
        return;
    }
    if (unlikely(LOAD(&p->spare.retire))) { /* asked back since the look above */
        loom__lock_release(&loom__sched.lock);
        loom__spare_off(p);
        return;
    }
    pidleput(p);
    loom__lock_release(&loom__sched.lock);
}

static void handoffp(P *p) { handoffp_here(p, false); }

/* A P record, zeroed, numbered id, P_OFF; NULL when out of memory. */
P *loom__p_new(int id) {
    P *p = aligned_alloc(64, (sizeof(P) + 63) & ~(size_t)63);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->id = id;
    p->status = P_OFF;
    p->sysmon.cpu = -1; /* sysmon has no sample yet, */
    p->sysmon.cpu0 = -1;
    p->sysmon.flag_cpu = -1;
    p->sysmon.tick = UINT32_MAX; /* and starts a slice at its first look */
    return p;
}

/* Sleeps on m->park until another M hands over a P in m->nextp; takes it.  Returns false
 * at runtime exit. */
static bool mpark(M *m) {
    LOOM__TRACE(loom__trace_idle(m, true));
    loom__note_sleep(&m->park);
    STORE_RLX(&loom__sched.coarse_now, loom__nanotime()); /* sysmon may sleep deeply */
    LOOM__TRACE(loom__trace_idle(m, false));
    loom__note_clear(&m->park);
    if (m->cpu_lent) { /* woken onto its waker's CPU (mwake) */
        m->cpu_lent = false;
        loom__topo_lent_back(m->lend_mask);
        m->pin_cpu = -1; /* acquirep pins it again with LOOM_PIN=1 */
    }
    if (LOAD(&loom__sched.exiting)) return false;
    acquirep(m, m->nextp);
    m->nextp = NULL;
    return true;
}

/* Stops the M until it is given a P (runtime.stopm).  Returns false at runtime exit. */
static bool stopm(M *m) {
    loom__lock_acquire(&loom__sched.lock);
    mput(m);
    loom__checkdead();
    loom__lock_release(&loom__sched.lock);
    LOOM__CHAOS(CH_SPIN);
    return mpark(m);
}

static void resetspinning(M *m) {
    m->spinning = false;
    uint32_t n = XADD(&loom__sched.nmspinning, -1) - 1;
    if ((int32_t)n < 0) loom__fatal("resetspinning: negative nmspinning");
    /* we were the last spinner and found work: there may be more, wake another */
    loom__wakep();
}

/* ------------------------------------------------------------------ dead Gs */

/* Free G records: a LIFO list per P (p->gfree, owner only), and a global stack of batches
 * of GFREE_BATCH (sched.gfree, under gfree_lock): the batch's Gs are linked through
 * schedlink, the batches through their first G's param (unused while a G is dead). */
#define GFREE_BATCH 32

static void gfput(P *p, G *g) {
    loom__fiber_destroy(g);
    casgstatus(g, G_RUNNING, G_DEAD);
    loom__stack_put(p, g);
    g->schedlink = p->gfree;
    p->gfree = g;
    if (++p->ngfree >= 2 * GFREE_BATCH) {
        /* the colder half, cut off here, goes to the global list as one batch: a single
         * store under the lock, where moving the Gs one by one took a cache miss per G
         * while another P waited for it (skynet) */
        G *cut = p->gfree;
        for (int i = 1; i < GFREE_BATCH; i++) cut = cut->schedlink;
        G *batch = cut->schedlink;
        cut->schedlink = NULL;
        p->ngfree = GFREE_BATCH;
        loom__lock_acquire(&loom__sched.gfree_lock);
        batch->param = loom__sched.gfree;
        STORE_RLX(&loom__sched.gfree, batch);
        loom__lock_release(&loom__sched.gfree_lock);
    }
}

/* A G record without a stack (the stack comes at its first run, loom__stack_get); p NULL:
 * a thread without a P (loom__spawn), which allocates a fresh one. */
static G *gfget(P *p) {
    if (p && !p->gfree && LOAD_RLX(&loom__sched.gfree)) {
        loom__lock_acquire(&loom__sched.gfree_lock);
        G *batch = loom__sched.gfree;
        if (batch) STORE_RLX(&loom__sched.gfree, (G *)batch->param);
        loom__lock_release(&loom__sched.gfree_lock);
        if (batch) {
            batch->param = NULL;
            p->gfree = batch;
            p->ngfree = GFREE_BATCH;
        }
    }
    G *g = p ? p->gfree : NULL;
    if (g) {
        p->gfree = g->schedlink;
        p->ngfree--;
        return g;
    }
    g = loom__g_alloc(p ? loom__topo_node(p->id) : 0);
    if (!g) return NULL;
    /* pushed without a lock: the first write to a fresh record may take a page fault
     * (~µs here), which must not happen while another P waits; records are never removed */
    G *head = LOAD_RLX(&loom__sched.allg);
    do g->allnext = head;
    while (!__atomic_compare_exchange_n(&loom__sched.allg, &head, g, true, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED));
    return g;
}

/* A goroutine's first run: give it a stack and the first frame (see gogo). */
static __attribute__((noinline)) void start_stack(M *m, G *g) {
    if (!loom__stack_get(m->p, g))
        loom__fatal("out of memory for the stack of goroutine %llu", (unsigned long long)g->id);
    g->sp = loom__ctx_init(g->stack_lo + g->stack_size, goroutine_entry);
}

/* ------------------------------------------------------------------ goroutine life */

static void goexit0(G *prev, void *arg);

static __attribute__((noreturn)) void goexit(bool main_returned) {
    M *m = loom__getm();
    G *g = m->curg;
    if (g->lockedm) { /* a locked goroutine that exits frees its thread */
        g->lockedm = NULL;
        m->lockedg = NULL;
    }
    if (unlikely(!loom__stack_redzone_ok(g))) stack_overflow(g);
    if (main_returned) {
        STORE(&loom__sched.exiting, 1);
        loom__wake_all_ms();
        loom__note_wakeup(&exit_note);
    }
    g->waitreason = WAIT_NONE;
    gogo(m, g, &m->g0, goexit0, NULL, true);
    __builtin_unreachable();
}

static void goexit0(G *prev, void *arg) {
    (void)arg;
    M *m = prev->m;
    gfput(m->p, prev);
}

static int main_result;
static int (*main_fn_ptr)(void *);

/* goroutine 1: when main_fn returns, the runtime ends */
static void main_goroutine(void *arg) {
    main_result = main_fn_ptr(arg);
    loom__sched.exit_code = main_result;
    goexit(true);
}

/* Every goroutine starts here, on its own stack, switched to by gogo. */
static void goroutine_entry(void) {
    M *m = loom__getm();
    G *g = m->curg;
    after_switch(g);
    g->fn(g->arg);
    goexit(false);
}

static void trace_spawn(uint64_t id) {
    M *m = loom__getm();
    if (m) loom__trace_spawn(m, id);
}

/* Goroutine ids a P takes from sched.goidgen at once (runtime's _GoidCacheBatch): ids
 * stay unique and 1 is main, but they no longer follow spawn order across Ps, as in Go. */
#define GOID_BATCH 16

/* Creates a goroutine on P p's runnext (runtime.newproc); p NULL: on the global queue,
 * from a thread without a P (loom__spawn). */
static uint64_t newproc(P *p, void (*fn)(void *), void *arg, const loom_attr *attr, void *pc, loom_ctx *ctx) {
    size_t want = attr ? attr->stack_size : 0;
    size_t slot = loom__stack_class_size(want);
    if (slot == 0) {
        errno = EINVAL;
        return 0;
    }
    if (attr && (attr->priority < LOOM_PRIO_LOW || attr->priority > LOOM_PRIO_HIGH)) {
        errno = EINVAL;
        return 0;
    }
    G *g = gfget(p);
    if (!g) {
        errno = ENOMEM;
        return 0;
    }
    g->slot_size = slot;
    g->sp = NULL;
    if (!p) {
        g->id = XADD(&loom__sched.goidgen, 1) + 1;
    } else {
        if (p->goidcache == p->goidcacheend) { /* as runtime.newproc1's goid cache refill */
            p->goidcache = XADD(&loom__sched.goidgen, GOID_BATCH) + 1;
            p->goidcacheend = p->goidcache + GOID_BATCH;
        }
        g->id = p->goidcache++;
    }
    g->fn = fn;
    g->arg = arg;
    g->param = NULL;
    g->schedlink = NULL;
    g->lockedm = NULL;
    g->saved_errno = 0;
    g->waitreason = WAIT_NONE;
    g->selectdone = 0;
    g->prio = attr ? attr->priority : LOOM_PRIO_NORMAL;
    if (unlikely(g->prio != LOOM_PRIO_NORMAL)) loom__prio_use();
    g->timer.pp = NULL;
    STORE_RLX(&g->timer.state, TIMER_IDLE); /* g is ours alone until runqput publishes it */
    g->created_pc = pc;
    g->ctx = ctx; /* the spawner's current context (API.md) */
    g->ctxq = NULL;
    if (attr && attr->name) {
        strncpy(g->name, attr->name, sizeof g->name - 1);
        g->name[sizeof g->name - 1] = 0;
        g->named = true;
    } else if (g->named) { /* name[] sits on a line of its own: leave it */
        g->name[0] = 0;    /* untouched unless a name must be cleared */
        g->named = false;
    }
    loom__fiber_create(g);
    if (unlikely(loom__det_on)) loom__det_spawn(g);
    casgstatus(g, g->status == G_IDLE ? G_IDLE : G_DEAD, G_RUNNABLE);
    uint64_t id = g->id;          /* once queued, g may run, exit and be reused */
    LOOM__TRACE(trace_spawn(id)); /* before it is queued: a thief may run it at once */
    if (p) {
        runqput(p, g, true);
    } else {
        loom__lock_acquire(&loom__sched.lock);
        loom__globrunqput(g);
        loom__lock_release(&loom__sched.lock);
    }
    return id;
}

/* A goroutine started by the runtime itself (an after-func timer's fire), from any thread
 * while loom runs: on this thread's P if it holds one, else on the global queue. */
uint64_t loom__spawn(void (*fn)(void *), void *arg) {
    M *m = loom__getm();
    P *p = m && m->p && !m->blocked ? m->p : NULL;
    uint64_t id = newproc(p, fn, arg, NULL, (void *)fn, NULL);
    if (id) loom__wakep();
    return id;
}

uint64_t loom_go_attr(void (*fn)(void *), void *arg, const loom_attr *attr) {
    if (!fn) {
        errno = EINVAL;
        return 0;
    }
    M *m = loom__getm();
    if (!m || !m->p || !LOAD(&loom__sched.running)) {
        errno = EPERM;
        return 0;
    }
    uint64_t id = newproc(m->p, fn, arg, attr, __builtin_return_address(0), m->curg->ctx);
    /* failed: errno is set on this thread, where the caller reads it (API.md), so no switch */
    if (!id) return 0;
    loom__wakep();
    preempt_point(m); /* a loop spawning goroutines yields at its slice's end */
    return id;
}

uint64_t loom_go(void (*fn)(void *), void *arg) { return loom_go_attr(fn, arg, NULL); }

/* ------------------------------------------------------------------ schedule */

/* The slice is used up (p->preempt): a runnext filled during it loses its claim to the rest
 * of it and goes to the tail, behind what waited meanwhile (a ping-pong pair that shares
 * one slice cannot starve the queue).  One filled before the slice began has waited a
 * whole slice already (readied as a goroutine preempted by signal was switched out, which
 * then got the P back by the global queue's turn): it keeps runnext and runs next.  A
 * goroutine readied after this (a due timer's) takes runnext afresh. */
static ALWAYS_INLINE void slice_end(P *p) {
    STORE(&p->preempt, 0);
    if (!LOAD_RLX(&p->runnext) || p->runnexttick != p->schedtick) return;
    G *next = loom__runnext_take(p);
    if (next) runqput(p, next, false);
}

/* The top of runtime.schedule: the end of a slice's bookkeeping, the global queue on every
 * 61st tick (returned, if it had a goroutine), then due timers (if `timers`: see
 * schedule_from). */
static ALWAYS_INLINE G *runq_first(P *p, bool timers) {
    if (unlikely(LOAD_RLX(&p->preempt))) {
        /* deterministic mode keeps p->preempt set (det.c): its picks branch off here, off
         * the common path */
        if (unlikely(loom__det_on)) return loom__det_next(p);
        if (LOAD_RLX(&p->prio.kick)) STORE(&p->prio.kick, 0);
        slice_end(p);
    }
    if (p->schedtick % 61 == 0 && LOAD_RLX(&loom__sched.runqsize) > 0) {
        loom__lock_acquire(&loom__sched.lock);
        G *g = loom__globrunqget(p, 1);
        loom__lock_release(&loom__sched.lock);
        if (g) return g;
    }
    if (timers && LOAD_RLX(&p->timer0_when) != 0) loom__timers_run(p, loom__now());
    return NULL;
}

/* A batch from the global queue into p's, and the first of it, if it has any
 * (runtime.globrunqget, under sched.lock). */
static G *globrunq_take(P *p) {
    if (LOAD(&loom__sched.runqsize) == 0) return NULL;
    loom__lock_acquire(&loom__sched.lock);
    G *g = loom__globrunqget(p, 0);
    loom__lock_release(&loom__sched.lock);
    return g;
}

/* The next goroutine from P p's queues, or NULL. */
static ALWAYS_INLINE G *runq_next_timers(P *p, bool *inherit, bool timers) {
    *inherit = false;
    G *g = runq_first(p, timers);
    return g ? g : loom__runqget(p, inherit);
}

static ALWAYS_INLINE G *runq_next(P *p, bool *inherit) { return runq_next_timers(p, inherit, true); }

/* Steals from other Ps (runtime.stealWork): 4 passes in random order; the last one may
 * also take a running P's runnext.  Also runs other Ps' due timers. */
static bool steal_blind; /* LOOM_STEAL=random; set by schedinit */

static G *stealwork(M *m, P *p, int64_t now, bool *rantimers) {
    int n = loom__nallp();
    int order[n];
    for (int pass = 0; pass < 4; pass++) {
        bool last = pass == 3;
        /* victims nearest first: sharing a cache, then the node, then other nodes; in a
         * random order within each tier (topo.c) — Go's random order on one node */
        int nv = 0;
        if (likely(!steal_blind)) {
            nv = loom__topo_steal_order(p->id, n, loom__fastrand(m), order);
        } else { /* LOOM_STEAL=random: Go's order, for comparison */
            uint32_t start = loom__fastrandn(m, (uint32_t)n);
            for (int i = 0; i < n; i++) {
                int v = (int)((start + (uint32_t)i) % (uint32_t)n);
                if (v != p->id) order[nv++] = v;
            }
        }
        for (int i = 0; i < nv; i++) {
            if (LOAD(&loom__sched.exiting)) return NULL;
            P *v = loom__sched.allp[order[i]];
            if (last && LOAD_RLX(&v->timer0_when) != 0 && LOAD_RLX(&v->timer0_when) <= now) {
                loom__timers_run(v, now);
                *rantimers = true;
                bool inh;
                G *g = loom__runqget(p, &inh);
                if (g) return g;
            }
            uint32_t vs = LOAD(&v->status);
            if (vs == P_IDLE || vs == P_OFF) continue;
            uint32_t t0 = LOAD_RLX(&p->runqtail);
            G *g = loom__runqsteal(p, v, last);
            if (g) {
                LOOM__COUNT(m, nsteal);
                LOOM__COUNT(m, nsteal_tier[loom__topo_tier(p->id, v->id)]);
                LOOM__TRACE(loom__trace_steal(m, v, g, (int)(LOAD_RLX(&p->runqtail) - t0) + 1));
                return g;
            }
        }
    }
    return NULL;
}

/* Goroutines the poller made ready, found by an M holding P p: run the first, queue the
 * rest (and wake Ps for them). */
static void trace_ready(G *g) {
    M *m = loom__getm();
    if (m) loom__trace_unblock(m, g);
}

static G *take_polled(P *p, G *list) {
    LOOM__TRACE(for (G *x = list; x; x = x->schedlink) trace_ready(x));
    loom__ready_list(list->schedlink);
    casgstatus(list, G_WAITING, G_RUNNABLE);
    ran(p, false);
    return list;
}

/* The earliest timer of any P (0: none). */
static int64_t earliest_timer(void) {
    int64_t next = 0;
    for (int i = 0; i < loom__nallp(); i++) {
        int64_t w = LOAD(&loom__sched.allp[i]->timer0_when);
        if (w != 0 && (next == 0 || w < next)) next = w;
    }
    return next;
}

/* Deterministic mode's part of findrunnable (det.c): the run set, then fds that are ready,
 * then virtual time jumps to the earliest timer.  While a blocking call is in flight on
 * another thread (its P handed on, or a spare lent) time does not jump: the call may ready
 * a goroutine first; the thread waits a millisecond of real time and looks again (*again).
 * NULL without *again: nothing but fds or other threads can make work; findrunnable goes
 * on as usual (the poller, or stopm and the deadlock check). */
static G *det_findrunnable(M *m, P *p, bool *again) {
    G *g = loom__det_next(p);
    if (g) return g;
    if (loom__netpoll_has_waiters()) {
        G *list = loom__netpoll(0);
        if (list) return take_polled(p, list);
    }
    bool others = LOAD(&loom__sched.nactive) > 1;
    for (M *x = LOAD_ACQ(&loom__sched.allm); x && !others; x = x->alllink) others = LOAD_RLX(&x->blocked);
    if (others) {
        /* what a blocked thread's P (or a spare's) holds may be what its call waits for */
        bool rantimers = false;
        g = stealwork(m, p, loom__now(), &rantimers);
        if (g) return g;
        struct timespec ts = { 0, 1000000 };
        STORE_RLX(&m->lockwait, 1); /* not a blocked call: sysmon lends no spare */
        nanosleep(&ts, NULL);
        STORE_RLX(&m->lockwait, 0);
        *again = true;
        return NULL;
    }
    int64_t next = earliest_timer();
    if (next == 0) return NULL;
    loom__det_advance(next);
    for (int i = 0; i < loom__nallp(); i++) loom__timers_run(loom__sched.allp[i], loom__now());
    *again = true;
    return NULL;
}

/* Blocks until there is work and returns it, with m->p set (runtime.findRunnable).
 * Returns NULL at runtime exit. */
static G *findrunnable(M *m) {
    for (;;) {
        P *p = m->p;
        if (LOAD(&loom__sched.exiting)) return NULL;
        if (unlikely(LOAD_RLX(&p->spare.retire))) { /* a spare P to give back */
            loom__spare_retirep(m);
            if (!stopm(m)) return NULL;
            continue;
        }
        if (unlikely(loom__det_on)) {
            bool again = false;
            G *g = det_findrunnable(m, p, &again);
            if (g) {
                ran(p, false);
                return g;
            }
            if (again) continue;
        }
        int64_t now = loom__now();
        if (LOAD_RLX(&p->timer0_when) != 0) loom__timers_run(p, now);
        bool inh;
        G *g = loom__runqget(p, &inh);
        if (g) {
            ran(p, inh);
            return g;
        }
        if ((g = globrunq_take(p))) {
            ran(p, false);
            return g;
        }
        /* non-blocking netpoll when someone waits on fds and nobody is polling */
        if (loom__netpoll_has_waiters() && LOAD(&loom__sched.lastpoll) != 0) {
            G *list = loom__netpoll(0);
            if (list) return take_polled(p, list);
        }
        /* steal, spinning, while few enough Ms spin */
        if (m->spinning ||
            2 * LOAD(&loom__sched.nmspinning) < LOAD(&loom__sched.nactive) - LOAD(&loom__sched.npidle)) {
            if (!m->spinning) {
                m->spinning = true;
                XADD(&loom__sched.nmspinning, 1);
            }
            bool rantimers = false;
            g = stealwork(m, p, now, &rantimers);
            if (g) {
                ran(p, false);
                return g;
            }
            if (rantimers) continue;
        }
        /* nothing: give up the P, then re-check everything before sleeping */
        loom__lock_acquire(&loom__sched.lock);
        /* (with priority levels it may give nothing: a local level outranks the global
         * ones — and a NULL from here would end this M) */
        if (LOAD(&loom__sched.runqsize) != 0 && (g = loom__globrunqget(p, 0))) {
            loom__lock_release(&loom__sched.lock);
            ran(p, false);
            return g;
        }
        if (!loom__runqempty(p)) { /* a timer or netpoll readied into our queue */
            loom__lock_release(&loom__sched.lock);
            continue;
        }
        releasep(m);
        if (unlikely(LOAD(&p->spare.retire))) { /* a spare asked back since our look: give it back */
            loom__lock_release(&loom__sched.lock);
            loom__spare_off(p);
        } else {
            pidleput(p);
            loom__lock_release(&loom__sched.lock);
        }
        LOOM__CHAOS(CH_SPIN);

        bool was_spinning = m->spinning;
        if (m->spinning) {
            m->spinning = false;
            if ((int32_t)(XADD(&loom__sched.nmspinning, -1) - 1) < 0)
                loom__fatal("findrunnable: negative nmspinning");
            LOOM__CHAOS(CH_SPIN);
            /* the re-check after dropping nmspinning (see the design story): the global
             * queue first (as Go since 1.21): a thread without a P that queued a goroutine
             * there (a timer fired by sysmon, a send from a thread outside the runtime) saw
             * us spinning and woke nobody */
            bool work = LOAD(&loom__sched.runqsize) != 0;
            for (int i = 0; i < loom__nallp() && !work; i++) work = !loom__runqempty(loom__sched.allp[i]);
            P *np = work ? pidleget_lock() : NULL;
            if (np) { /* spin again, on an idle P */
                acquirep(m, np);
                m->spinning = true;
                XADD(&loom__sched.nmspinning, 1);
                goto next;
            }
        }
        /* earliest timer anywhere */
        int64_t polluntil = earliest_timer();
        if ((loom__netpoll_has_waiters() || polluntil != 0)) {
            int64_t lp = LOAD(&loom__sched.lastpoll);
            if (lp != 0 && CAS(&loom__sched.lastpoll, lp, 0)) {
                /* this M becomes the poller: sleep in epoll until the next timer or fd */
                STORE(&loom__sched.polluntil, polluntil);
                int64_t delay = -1;
                if (polluntil != 0) {
                    delay = polluntil - loom__now();
                    if (delay < 0) delay = 0;
                }
                G *list = loom__netpoll(delay);
                now = loom__nanotime();
                STORE_RLX(&loom__sched.coarse_now, now);
                STORE(&loom__sched.polluntil, 0);
                STORE(&loom__sched.lastpoll, now);
                loom__lock_acquire(&loom__sched.lock);
                P *np = pidleget();
                if (!np) {
                    loom__lock_release(&loom__sched.lock);
                    if (list) loom__injectglist(list);
                } else {
                    loom__lock_release(&loom__sched.lock);
                    acquirep(m, np);
                    if (list) return take_polled(np, list);
                    if (was_spinning) {
                        m->spinning = true;
                        XADD(&loom__sched.nmspinning, 1);
                    }
                    goto next;
                }
            } else if (polluntil != 0) {
                /* another M polls: make sure it wakes up for our earliest timer */
                int64_t pu = LOAD(&loom__sched.polluntil);
                if (pu == 0 || pu > polluntil) loom__netpoll_break();
            }
        }
        if (!stopm(m)) return NULL;
    next:;
    }
}

/* Hands P p and goroutine g to the M that g is locked to, asleep in stoplockedm. */
static void handlockedm(P *p, G *g) {
    M *lm = g->lockedm;
    loom__lock_acquire(&loom__sched.lock);
    loom__sched.nmlockedidle--; /* counted awake from here on, for checkdead */
    loom__lock_release(&loom__sched.lock);
    lm->nextp = p;
    STORE(&lm->pending_g, g);
    mwake(lm, true); /* the caller sleeps next (stoplockedm, startlockedm) */
}

/* Gives our P to the M that g is locked to, then waits for a P (runtime.startlockedm). */
static void startlockedm(M *m, G *g) { handlockedm(releasep(m), g); }

/* A locked M whose goroutine is not runnable gives up its P and sleeps until someone
 * hands the goroutine back with a P (runtime.stoplockedm).
 * Beyond Go: if the P's local queue is empty and the global queue's next goroutine is
 * locked to a thread — the usual case among spinning goroutines, each locked to its thread
 * by an async preemption — the P goes straight to that thread (or this M keeps it, if the
 * goroutine is its own), instead of to an idle thread that would only pass it on: one
 * thread wakeup instead of two, each of which can wait milliseconds for a CPU here. */
static bool stoplockedm(M *m) {
    P *p = m->p;
    /* what a thread taking p would do first: run its due timers (they may ready work) */
    if (p) timers_at_switch(p);
    p = releasep(m);
    G *next = NULL;
    /* (not in deterministic mode: det.c picks what runs next, handoffp wakes it) */
    if (p && !LOAD_RLX(&p->spare.retire) && !loom__det_on && LOAD_RLX(&loom__sched.runqsize) != 0 &&
        loom__runqempty(p)) {
        loom__lock_acquire(&loom__sched.lock);
        next = loom__globrunq_pop_locked();
        loom__lock_release(&loom__sched.lock);
    }
    if (next && next->lockedm == m) { /* ours, runnable already: run it */
        acquirep(m, p);
        STORE(&m->pending_g, next);
        return true;
    }
    if (next) {
        handlockedm(p, next);
    } else if (p) {
        handoffp_here(p, true);
    }
    loom__lock_acquire(&loom__sched.lock);
    loom__sched.nmlockedidle++;
    loom__checkdead();
    loom__lock_release(&loom__sched.lock);
    return mpark(m);
}

/* The scheduler loop on an M's g0 (runtime.schedule).  Returns at runtime exit. */
static void schedule(M *m) {
    for (;;) {
        if (LOAD(&loom__sched.exiting)) return;
        if (m->p && unlikely(LOAD_RLX(&m->p->spare.retire))) { /* a spare P to give back */
            if (m->nextg) {                                    /* with the goroutine picked to start here */
                runqput(m->p, m->nextg, true);
                m->nextg = NULL;
            }
            loom__spare_retirep(m);
        }
        if (!m->p && !m->lockedg) { /* back from a blocking call without a P */
            if (!stopm(m)) return;
            continue;
        }
        G *g;
        if (m->lockedg) {
            /* only the locked goroutine may run here: give up the P and sleep until some
             * M hands the goroutine back with a P (startlockedm), as Go's schedule() */
            if (!stoplockedm(m)) return;
            g = XCHG(&m->pending_g, NULL);
            if (!g) continue;
            ran(m->p, false); /* a slice of its own (Go: execute(gp, false)) */
        } else if (m->nextg) {
            g = m->nextg; /* picked by schedule_from, to start here */
            m->nextg = NULL;
        } else {
            bool inherit;
            g = runq_next(m->p, &inherit);
            if (g) ran(m->p, inherit);
            else {
                g = findrunnable(m);
                if (!g) return;
            }
            if (m->spinning) resetspinning(m);
            if (g->lockedm && g->lockedm != m) {
                startlockedm(m, g);
                continue;
            }
        }
        gogo(m, &m->g0, g, NULL, NULL, false);
    }
}

/* Switches from the running goroutine g to the next one: directly when this P has local
 * work, else through g0's schedule().  `after` runs once g is switched out. */
static ALWAYS_INLINE void schedule_from(M *m, G *g, void (*after)(G *, void *), void *arg) {
    P *p = m->p;
    /* A timer's callback may take a channel's lock (a timer channel's send), which `after`
     * may still hold (g parked under it): due timers run on g0, after `after`. */
    int64_t t0 = after ? LOAD_RLX(&p->timer0_when) : 0;
    if (!m->lockedg && !LOAD_RLX(&loom__sched.exiting) && !LOAD_RLX(&p->spare.retire) &&
        likely(t0 == 0 || t0 > loom__now())) {
        bool inherit;
        G *next = runq_next_timers(p, &inherit, !after);
        if (next) {
            /* a goroutine's first run on a fresh stack faults in a page (~10 µs here):
             * not while `after` still holds the lock g parked under — go through g0;
             * a warm stack from the P's cache costs nothing: switch straight to it */
            if (likely(next->lockedm == NULL) || next->lockedm == m) {
                ran(p, inherit);
                if (likely(next->stack_base != 0) || loom__stack_cached(p, next)) {
                    gogo(m, g, next, after, arg, false);
                    return;
                }
                m->nextg = next; /* g0 starts it (schedule) */
            } else {
                runqput(p, next, true); /* g0 hands it to its thread */
            }
        }
    }
    gogo(m, g, &m->g0, after, arg, false);
}

/* ------------------------------------------------------------------ the number of Ps */

/* Sets the number of Ps to n while goroutines run (runtime.procresize, without Go's stop of
 * the world).  Ps n.. go out of service as spares given back do (spare.c): each is asked
 * back with spare.retire, which its thread honours where it would switch, idle or hand it
 * off (an idle one is taken back here), its queue going to the global queue and its timers
 * to P 0.  Ps below n come into service idle, made if they never existed; one standing in
 * as a spare becomes a P of its own.  Ps n.. that are off then serve as spares.  Returns
 * the previous number.  Callers: loom_set_procs, and sysmon when the count follows the
 * CPU limit. */
int loom__procresize(int n) {
    if (n > loom__sched.maxprocs) n = loom__sched.maxprocs;
    P *back = NULL; /* Ps taken off the idle list, to give back after the lock */
    int woke = 0;
    loom__lock_acquire(&loom__sched.lock);
    int old = loom__sched.nprocs;
    STORE(&loom__sched.nprocs, n);
    for (int i = loom__sched.nallp; i < n; i++) { /* under sched.lock, as spare.c's spare_get */
        P *np = loom__p_new(i);
        if (!np) {
            STORE(&loom__sched.nprocs, n = i);
            break;
        }
        loom__sched.allp[i] = np;
        STORE_REL(&loom__sched.nallp, i + 1);
    }
    for (int i = 0; i < loom__sched.nallp; i++) {
        P *p = loom__sched.allp[i];
        int st = (int)LOAD(&p->status);
        if (i < n) {
            if (p->spare.lender) { /* a spare in service: a P of its own now */
                STORE(&p->spare.lender->spare.standin, NULL);
                p->spare.lender = NULL;
            }
            STORE(&p->spare.retire, 0);
            if (st == P_OFF) { /* (sysmon starts a slice afresh at its first goroutine) */
                XADD(&loom__sched.nactive, 1);
                pidleput(p);
                woke++;
            }
            continue;
        }
        /* above n: out of service, but for spares standing in for a blocked thread */
        if (st == P_OFF || p->spare.lender || LOAD(&p->spare.retire)) continue;
        if (loom__spare_retire_locked(p)) { /* it was idle: ours to give back */
            p->link = back;
            back = p;
        }
    }
    loom__lock_release(&loom__sched.lock);
    while (back) {
        P *p = back;
        back = p->link;
        loom__spare_off(p);
    }
    for (int i = 0; i < woke; i++) loom__wakep(); /* for work that waits for them */
    return old;
}

/* sysmon: Ps that are not as loom__procresize left them (one below nprocs that went off,
 * its retire begun before it was asked in again): resize again. */
void loom__procs_check(void) {
    loom__lock_acquire(&loom__sched.lock);
    int n = loom__sched.nprocs, bad = 0;
    for (int i = 0; i < loom__sched.nallp && !bad; i++) {
        P *p = loom__sched.allp[i];
        int st = (int)LOAD(&p->status);
        if (i < n) bad = st == P_OFF;
        else bad = st != P_OFF && !p->spare.lender && !LOAD(&p->spare.retire);
    }
    loom__lock_release(&loom__sched.lock);
    if (bad) loom__procresize(n);
}

int loom_set_procs(int n) {
    if (!LOAD(&loom__sched.running)) return -EPERM;
    if (n <= 0 || loom__det_on) return LOAD(&loom__sched.nprocs); /* a query; one P there */
    STORE(&loom__sched.procs_auto, 0); /* set by the program: no longer the CPU limit's */
    return loom__procresize(n);
}

/* ------------------------------------------------------------------ for the policy files
 * Out-of-line entries to the above for preempt_policy.c, spare.c and prio.c (proc.h): off the
 * paths where a switch's cost is counted. */

P *loom__releasep(M *m) { return releasep(m); }
void loom__startm(P *p, bool spinning) { startm(p, spinning); }
void loom__slice_end(P *p) { slice_end(p); }

/* ------------------------------------------------------------------ park / ready */

void loom__park(M *m, void (*after)(G *, void *), void *arg, int reason) {
    LOOM__CHAOS(CH_PARK);
    G *g = m->curg;
    STORE_RLX(&g->waitreason, (uint32_t)reason);
    g->waitsince = LOAD_RLX(&loom__sched.coarse_now); /* within a sysmon tick: no clock read */
    casgstatus(g, G_RUNNING, G_WAITING);
    schedule_from(m, g, after, arg);
}

/* Queues a runnable g: on this thread's P (runnext if `next`), or on the global queue from
 * a thread without a P.  Returns the P used, or NULL. */
static P *runqput_here(M *m, G *g, bool next) {
    casgstatus(g, G_WAITING, G_RUNNABLE);
    if (m && m->p) {
        runqput(m->p, g, next);
        return m->p;
    }
    loom__lock_acquire(&loom__sched.lock);
    globrunqput(g);
    loom__lock_release(&loom__sched.lock);
    return NULL;
}

void loom__ready(G *g) { loom__ready_m(loom__getm(), g); }

void loom__ready_m(M *m, G *g) {
    uint32_t st = LOAD_RLX(&g->status);
    if (unlikely(st != G_WAITING))
        loom__fatal("ready of goroutine %llu in status %u", (unsigned long long)g->id, st);
    STORE_RLX(&g->waitreason, WAIT_NONE);
    LOOM__CHAOS(CH_WAKE);
    LOOM__TRACE(trace_ready(g));
    bool normal = g->prio == LOOM_PRIO_NORMAL; /* once queued, g may run, exit and be reused */
    P *p = runqput_here(m, g, true);
    /* Unlike Go, a goroutine made ready into runnext alone does not wake another
     * thread: the readier usually blocks next (a channel handoff) and this P runs
     * it at once, while a thread woken for it would find nothing — and on these VMs a
     * futex wake costs ~16 µs and a stolen runnext splits the pair across caches.
     * Once anything waits behind runnext, or the running goroutine keeps the P past
     * a sysmon tick (sysmon.c), idle Ps are woken to steal as in Go. */
    if (p && LOAD_RLX(&p->runqtail) == LOAD_RLX(&p->runqhead) && normal) return;
    loom__wakep();
}

/* Puts a schedlink-ed list of goroutines made ready by a thread without a P on the global
 * queue and wakes a P for them (runtime.injectglist). */
void loom__injectglist(G *list) {
    LOOM__TRACE(for (G *x = list; x; x = x->schedlink) trace_ready(x));
    G *tail = list;
    int cnt = 1;
    casgstatus(list, G_WAITING, G_RUNNABLE);
    while (tail->schedlink) {
        tail = tail->schedlink;
        casgstatus(tail, G_WAITING, G_RUNNABLE);
        cnt++;
    }
    loom__lock_acquire(&loom__sched.lock);
    globrunqputbatch(list, tail, cnt);
    loom__lock_release(&loom__sched.lock);
    for (int i = 0; i < cnt && LOAD(&loom__sched.npidle) > 0; i++) {
        if (LOAD(&loom__sched.nmspinning) != 0) break;
        loom__wakep();
    }
}

void loom__ready_list(G *head) {
    LOOM__TRACE(for (G *x = head; x; x = x->schedlink) trace_ready(x));
    while (head) {
        G *next = head->schedlink;
        head->schedlink = NULL;
        runqput_here(loom__getm(), head, false);
        head = next;
    }
    loom__wakep();
}

/* timed park: the timer claims the goroutine through selectdone, as channel wakers do */
struct timed_park {
    void (*after)(G *, void *);
    void *arg;
    int64_t when;
};

static int64_t timed_fire(loom__timer *t) {
    G *g = t->arg;
    if (CAS(&g->selectdone, 0, 1)) {
        g->param = NULL;
        loom__ready(g);
    }
    return 0;
}

/* The after-switch hook of loom__park_timeout.  The caller's hook runs first, the timer
 * is armed after it: the hook may publish prev (an fd word, a channel lock released) and
 * a waker may then run prev at once, so prev must not leave loom__park_timeout while the
 * hook still works with its stack or its words (pd_commit publishing the second direction
 * of an fd wait) or before its timer is armed (a timer armed after prev moved on would wake
 * a later wait).  prev waits for `parking` to drop; the window is the rest of this hook, a
 * few hundred nanoseconds. */
static void timed_after(G *prev, void *arg) {
    struct timed_park *tp = arg;
    int64_t when = tp->when;
    M *m = prev->m; /* this M: once published, prev may run elsewhere */
    if (tp->after) tp->after(prev, tp->arg);
    if (when >= 0 && LOAD(&prev->selectdone) == 0) {
        loom__timer_add(m->p, &prev->timer, when);
        if (unlikely(LOAD_RLX(&loom__sched.prio.used))) loom__preempt_rearm(m);
    }
    /* its context is one more waker (context.c); ended already, it wakes prev at once */
    if (unlikely(prev->ctx) && LOAD(&prev->selectdone) == 0 && loom__ctx_park_hook(prev))
        loom__ready_m(m, prev);
    STORE_REL(&prev->parking, 0);
}

/* Parks with a timeout (ns < 0: none); the waker must claim g with CAS(&g->selectdone, 0, 1)
 * and set g->param to non-NULL.  Returns true if woken by the waker, false on timeout or
 * when g's current context ended (then g->ctxerr holds its cause, else it is 0).
 * Returns only once `after` has finished, wherever it ran. */
bool loom__park_timeout(void (*after)(G *, void *), void *arg, int reason, int64_t ns) {
    M *m = loom__getm();
    G *g = m->curg;
    struct timed_park tp = { after, arg, -1 };
    g->ctxerr = 0;
    if (ns >= 0) {
        g->timer.fn = timed_fire;
        g->timer.arg = g;
        tp.when = loom__now() + ns;
    }
    STORE_RLX(&g->parking, 1);
    loom__park(loom__getm(), timed_after, &tp, reason);
    for (int spins = 0; LOAD_ACQ(&g->parking); spins++) {
        if (spins < 100) loom__cpu_relax();
        else sched_yield(); /* the hook's thread lost its CPU */
    }
    if (unlikely(g->ctx)) {
        loom__ctx_park_done(g);
        if (g->ctxerr) {
            if (ns >= 0) loom__timer_del(&g->timer);
            return false;
        }
    }
    if (ns < 0) return true;
    loom__timer_del(&g->timer);
    return g->param != NULL;
}

static int64_t sleep_fire(loom__timer *t) {
    loom__ready((G *)t->arg);
    return 0;
}

static void sleep_after(G *prev, void *arg) {
    int64_t when = *(int64_t *)arg;
    M *m = prev->m; /* this M: once the timer is armed, prev may run elsewhere */
    loom__timer_add(m->p, &prev->timer, when);
    if (unlikely(LOAD_RLX(&loom__sched.prio.used))) loom__preempt_rearm(m);
}

void loom_sleep(int64_t ns) {
    if (!loom__in_goroutine()) {
        if (ns > 0) {
            struct timespec ts = { ns / 1000000000, ns % 1000000000 };
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
        }
        return;
    }
    if (ns <= 0) {
        loom_yield();
        return;
    }
    M *m = loom__getm();
    G *g = m->curg;
    if (unlikely(g->ctx)) { /* its context's end cuts the sleep short: a claimable park */
        STORE(&g->selectdone, 0);
        g->param = NULL;
        (void)loom__park_timeout(NULL, NULL, WAIT_SLEEP, ns);
        return;
    }
    g->timer.fn = sleep_fire;
    g->timer.arg = g;
    int64_t when = loom__now() + ns;
    loom__park(loom__getm(), sleep_after, &when, WAIT_SLEEP);
    /* the firing M may still be finishing with the timer (it readied us from inside the
     * callback): wait it out before the timer, or this G, can be reused */
    loom__timer_del(&g->timer);
}

static void yield_after(G *prev, void *arg) {
    (void)arg;
    M *m = prev->m;
    casgstatus(prev, G_RUNNING, G_RUNNABLE);
    if (prev->lockedm) {
        loom__lock_acquire(&loom__sched.lock);
        globrunqput(prev);
        loom__lock_release(&loom__sched.lock);
    } else if (!loom__runqput_tail(m->p, prev)) {
        runqput(m->p, prev, false);
    }
}

/* With priority levels in use a goroutine that outranks every ready one keeps running.  Not
 * in deterministic mode, which ignores levels: there det_yield has already picked the next
 * goroutine (det.chosen, which det_next hands out), so the switch must happen, or the next
 * pick would overwrite that choice and lose the goroutine. */
static ALWAYS_INLINE void yield_m(M *m) {
    if (!loom__m_runs_g(m)) {
        sched_yield();
        return;
    }
    G *g = m->curg;
    if (unlikely(LOAD_RLX(&loom__sched.prio.used)) && !loom__det_on && loom__prio_keeps(m, g)) return;
    schedule_from(m, g, yield_after, NULL);
}

/* loom_yield: in deterministic mode the yielding goroutine is a candidate too (det.c). */
void loom_yield(void) {
    M *m = loom__getm();
    if (unlikely(loom__det_on) && loom__m_runs_g(m) && !loom__det_yield(m->p, m->curg)) return;
    yield_m(m);
}

/* A cooperative preemption point on M m: yield if sysmon says the slice is used up.
 * LOOM_DEBUG=coopasync=1 switches the goroutine out as the signal would (locked to this
 * thread, counted and traced as asynchronous): that path then runs where the signal is
 * off, in the sanitizer builds' tests (tests/test_preempt_turns.c, test_preempt_lock.c). */
static void preempt_point(M *m) {
    if (m->p && LOAD_RLX(&m->p->preempt) && m->curg != &m->g0) {
        if (unlikely(loom__det_on)) { /* LOOM_SEED: a scheduling point (det.c) */
            if (loom__det_yield(m->p, m->curg)) yield_m(m);
            return;
        }
        if (unlikely(loom__sched.coopasync)) {
            loom__async_preempt(m);
            return;
        }
        LOOM__COUNT(m, npreempt);
        LOOM__TRACE(loom__trace_preempt(m, m->curg, false));
        loom_yield();
    }
}

void loom__preempt_check(void) {
    M *m = loom__getm();
    if (m) preempt_point(m);
}

M *loom__enter_blocking(void) {
    M *m = loom__getm();
    if (!loom__m_runs_g(m)) return NULL;
    if (unlikely(LOAD_RLX(&m->p->preempt))) {
        preempt_point(m);
        m = loom__getm(); /* the goroutine may resume on another thread */
    }
    return m;
}

void loom_exit(void) {
    if (!loom__in_goroutine()) return;
    goexit(false);
}

uint64_t loom_id(void) {
    M *m = loom__getm();
    if (!m || m->curg == &m->g0) return 0;
    return m->curg->id;
}

int loom_procs(void) {
    return LOAD_RLX(&loom__sched.nprocs) > 0 ? LOAD_RLX(&loom__sched.nprocs) : loom__cpu_count();
}

void loom_lock_thread(void) {
    M *m = loom__getm();
    if (!m || m->curg == &m->g0) return;
    G *g = m->curg;
    if (g->lockedm == m) return;
    m->lockedg = g;
    g->lockedm = m;
}

void loom_unlock_thread(void) {
    M *m = loom__getm();
    if (!m || m->curg == &m->g0 || m->lockedg != m->curg) return;
    m->lockedg = NULL;
    m->curg->lockedm = NULL;
}

/* ------------------------------------------------------------------ blocking calls */

/* runtime.entersyscall: this goroutine is about to make a call that may block in the
 * kernel.  The M keeps its P in P_SYSCALL (in m->oldp): if the call returns soon, the P is
 * taken straight back; if it lasts, sysmon retakes the P and hands it to another M
 * (sysmon.c, runtime.retake), so a short call costs no thread wakeup at all. */
void loom__entersyscall(M *m) {
    G *g = m->curg;
    casgstatus(g, G_RUNNING, G_SYSCALL);
    LOOM__TRACE(loom__trace_syscall(m, g, true));
    P *p = m->p;
    STORE_RLX(&m->blocked, true);
    m->oldp = p;
    m->p = NULL;
    STORE_RLX(&p->m, NULL);
    STORE_RLX(&p->syscalltick, p->syscalltick + 1);
    STORE(&p->status, P_SYSCALL); /* from here on sysmon may retake it */
}

/* Called by sysmon: takes P p from an M in a blocking call, if it is still there, and
 * hands it on (runtime.retake's syscall half).  Returns true if it did. */
bool loom__retake_syscall(P *p) {
    LOOM__CHAOS(CH_SPIN);
    if (!CAS(&p->status, P_SYSCALL, P_IDLE)) return false;
    XADD(&loom__sched.nhandoff, 1);
    handoffp(p);
    return true;
}

static void exitsyscall_queue(G *prev, void *arg) {
    (void)arg;
    loom__lock_acquire(&loom__sched.lock);
    globrunqput(prev);
    loom__lock_release(&loom__sched.lock);
    loom__wakep();
}

/* runtime.exitsyscall: take back the P we left in P_SYSCALL (exitsyscallfast), else an
 * idle P; otherwise queue the goroutine on the global run queue and let this M go idle. */
void loom__exitsyscall(M *m) {
    G *g = m->curg;
    P *old = m->oldp;
    m->oldp = NULL;
    LOOM__CHAOS(CH_SPIN);
    if (old && CAS(&old->status, P_SYSCALL, P_RUNNING)) {
        m->p = old;
        if (unlikely(loom__sched.check)) check_unowned(old, m);
        STORE_REL(&old->m, m); /* as acquirep */
        STORE_RLX(&m->blocked, false);
        casgstatus(g, G_SYSCALL, G_RUNNING);
        LOOM__TRACE(loom__trace_syscall(m, g, false));
        return;
    }
    for (;;) {
        P *p = pidleget_lock();
        if (p) {
            acquirep(m, p);
            STORE_RLX(&m->blocked, false);
            casgstatus(g, G_SYSCALL, G_RUNNING);
            LOOM__TRACE(loom__trace_syscall(m, g, false));
            return;
        }
        /* a locked goroutine must stay on this thread: wait for a P to free up */
        if (!g->lockedm || LOAD(&loom__sched.exiting)) break;
        struct timespec ts = { 0, 50000 };
        nanosleep(&ts, NULL);
    }
    STORE_RLX(&m->blocked, false);
    casgstatus(g, G_SYSCALL, G_RUNNABLE);
    LOOM__TRACE(loom__trace_syscall(m, g, false));
    gogo(m, g, &m->g0, exitsyscall_queue, NULL, false);
}

/* ------------------------------------------------------------------ deadlock */

/* Called with sched.lock held when an M goes idle (runtime.checkdead). */
void loom__checkdead(void) {
    if (unlikely(LOAD_RLX(&loom__sched.deadwait))) STORE(&loom__sched.deadwait, 0);
    if (LOAD(&loom__sched.exiting) || !loom__sched.running) return;
    /* Ms in blocking calls count as running: their goroutines will come back */
    int run = loom__sched.mcount - loom__sched.nmidle - loom__sched.nmlockedidle;
    if (run > 0) return;
    if (LOAD(&loom__sched.lastpoll) == 0) return; /* an M waits in the poller */
    if (loom__netpoll_has_waiters()) return;
    if (loom__sched.runqsize > 0 || loom__det_waiting()) return;
    for (int i = 0; i < loom__nallp(); i++) {
        P *p = loom__sched.allp[i];
        if (LOAD(&p->timer0_when) != 0 || !loom__runqempty(p)) return;
    }
    /* sysmon fires timers and polls without a P: a goroutine it took off a timer heap or
     * the poller (after setting sysmon_busy, before the timer word or the poller's count
     * changed, both read above) may be on its way to the global queue, blocked on
     * sched.lock, which we hold: not dead.  It looks again once it is done (deadwait). */
    if (LOAD(&loom__sched.sysmon_busy)) {
        STORE(&loom__sched.deadwait, 1);
        loom__sysmon_wake();
        return;
    }
    /* a thread loom did not create may wake a goroutine at any time (census.c); sysmon
     * looks again while that is all that stops the report */
    if (loom__census_foreign()) {
        STORE(&loom__sched.deadwait, 1);
        loom__sysmon_wake();
        return;
    }
    if (!loom__any_alive()) loom__fatal("no goroutines (main called loom_exit) - deadlock!");
    loom__fatal("all goroutines are asleep - deadlock!");
}

/* ------------------------------------------------------------------ threads */

static void mexit(M *m);

static void *mstart(void *arg) {
    M *m = arg;
    loom__setm(m);
    m->tid = (int)syscall(SYS_gettid);
    loom__topo_unpin_self(); /* not the creator's one-CPU mask: acquirep pins anew */
    if (m->cpu_lent) {       /* started on its creator's CPU (newm) */
        m->cpu_lent = false;
        loom__topo_lent_back(m->lend_mask);
    }
    /* nor the creator's nice: sysmon, which starts Ms for handoffs, runs at a lower one */
    if (getpriority(PRIO_PROCESS, (id_t)m->tid) != loom__sched.base_nice)
        (void)setpriority(PRIO_PROCESS, (id_t)m->tid, loom__sched.base_nice);
    loom__fiber_init_g0(&m->g0);
    loom__sigaltstack_init(m);
    pthread_sigmask(SIG_SETMASK, &m->sigmask, NULL);
    LOOM__TRACE(loom__trace_mstart(m));
    loom__preempt_mstart(m);
    acquirep(m, m->nextp);
    m->nextp = NULL;
    schedule(m);
    mexit(m);
    return NULL;
}

static void mexit(M *m) {
    if (m->p) {
        P *p = releasep(m);
        loom__lock_acquire(&loom__sched.lock);
        loom__runq_drain(p);
        pidleput(p);
        loom__lock_release(&loom__sched.lock);
    }
    loom__sigaltstack_term(m);
    loom__preempt_mexit(m);
    if (m->tbuf) loom__trace_mexit(m);
    STORE(&m->exited, true);
}

/* At exit: wakes every sleeping M (idle, locked or polling) so it sees sched.exiting. */
void loom__wake_all_ms(void) {
    loom__lock_acquire(&loom__sched.lock);
    for (M *m = loom__sched.allm; m; m = m->alllink) loom__note_wakeup(&m->park);
    loom__lock_release(&loom__sched.lock);
    loom__netpoll_break();
    loom__sysmon_wake();
}

/* ------------------------------------------------------------------ loom_run */

/* As Go 1.19: lift the soft RLIMIT_NOFILE to the hard limit, so a server can hold tens of
 * thousands of connections without the program asking (select()-based code in the same
 * process must then cope with fds >= FD_SETSIZE, as in Go). */
static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int schedinit(void) {
    memset(&loom__sched, 0, sizeof loom__sched);
    int n = (int)loom__env_long("LOOM_PROCS", 0, 1, 1024);
    if (loom__det_init()) n = 1; /* LOOM_SEED: one P (det.c) */
    if (n <= 0) {
        n = loom__cpu_count();
        loom__sched.procs_auto = !loom__det_on; /* follows the CPU limit (sysmon) */
    }
    if (n < 1) n = 1;
    loom__sched.nprocs = n;
    loom__topo_term(); /* a run that ended without schedterm */
    loom__topo_init(n);
    const char *ss = getenv("LOOM_STEAL");
    steal_blind = ss && !strcmp(ss, "random");
    loom__sched.slice_us = (int)loom__env_long("LOOM_SLICE_US", 2000, 100, 1000000);
    loom__prio_init();
    loom__debug_init();
    loom__chaos_init();            /* after LOOM_DEBUG: chaos turns the checks on */
    steal_blind |= loom__chaos_on; /* chaos: Go's random victims, no tiers */
    loom__stack_init();
    loom__sched.maxprocs = loom__spare_limit(n);
    loom__sched.nactive = (uint32_t)n;
    loom__sched.allp = calloc((size_t)loom__sched.maxprocs, sizeof(P *));
    if (!loom__sched.allp) return -ENOMEM;
    for (int i = 0; i < n; i++) {
        P *p = loom__p_new(i);
        if (!p) return -ENOMEM;
        p->status = P_IDLE;
        loom__sched.allp[i] = p;
    }
    loom__sched.nallp = n;
    /* every P but P0 starts idle; P0 goes to M0 */
    for (int i = n - 1; i >= 1; i--) pidleput(loom__sched.allp[i]);
    if (loom__det_on) loom__sched.allp[0]->preempt = 1; /* det.c's picks start at once */
    raise_fd_limit();
    loom__sched.lastpoll = loom__nanotime();
    loom__sched.start_time = loom__sched.lastpoll;
    loom__sched.coarse_now = loom__sched.lastpoll;
    loom__trace_init();
    int err = loom__netpoll_init();
    if (err) return err;
    loom__signals_init();
    loom__preempt_init();
    return 0;
}

static void schedterm(void) {
    /* free every G record's tool state, then the arenas */
    for (G *g = loom__sched.allg; g; g = g->allnext) loom__fiber_destroy(g);
    loom__stack_term();
    loom__globrunq_term();
    for (int i = 0; i < loom__sched.nallp; i++) { /* every other thread has stopped */
        loom__timers_term(loom__sched.allp[i]);
        free(loom__sched.allp[i]);
    }
    free(loom__sched.allp);
    M *m = loom__sched.allm;
    while (m) {
        M *next = m->alllink;
        if (m->statfd >= 0) close(m->statfd);
        if (m->syscallfd >= 0) close(m->syscallfd);
        free(m->lend_mask);
        free(m);
        m = next;
    }
    loom__netpoll_term();
    loom__preempt_term();
    loom__signals_term();
    loom__topo_term();
    loom__symbolize_term();
}

/* loom_run's own thread runs no goroutine: it starts M1 with goroutine 1 on P0 and waits
 * for main_fn to return.  So it can always come back, even while some goroutine blocks in
 * a system call on one of loom's threads (such goroutines are abandoned, as in Go). */
int loom_run(int (*main_fn)(void *), void *arg) {
    if (!main_fn) return -EINVAL;
    if (stuck_threads) return -EBUSY; /* threads of an earlier run still use the runtime */
    if (loom__getm() || LOAD(&loom__sched.running)) return -EPERM; /* nested loom_run */
    int err = schedinit();
    if (err) return err;
    loom__census_init();
    main_fn_ptr = main_fn;
    main_result = 0;
    loom__note_clear(&exit_note);
    STORE(&loom__sched.running, true);
    if (loom__sysmon_start() != 0) loom__fatal("cannot start sysmon");
    P *p0 = loom__sched.allp[0]; /* schedinit left P0 out of the idle list */
    /* goroutine 1 has no creator pc, so dumps print no "created by" line for it, as Go
     * prints none for the main goroutine: loom_run's return address would name its caller
     * only when the call is not a tail call (`return loom_run(...)` in main leaves libc's
     * start code there) */
    if (newproc(p0, main_goroutine, arg, &(loom_attr){ .name = "main" }, NULL, NULL) != 1)
        loom__fatal("cannot create the main goroutine");
    newm(p0, false, false);
    loom__note_sleep(&exit_note);
    /* main returned: stop the others.  A thread that still runs a goroutine (one that
     * never yields, or blocks in the kernel) cannot be stopped: after a second we leave
     * it, and its memory, behind. */
    STORE(&loom__sched.exiting, 1);
    loom__sysmon_stop();
    int64_t deadline = loom__nanotime() + 1000000000LL;
    bool all_exited;
    do {
        all_exited = true;
        for (M *m = LOAD_ACQ(&loom__sched.allm); m; m = m->alllink)
            if (!LOAD(&m->exited)) all_exited = false;
        loom__wake_all_ms();
        if (!all_exited) {
            struct timespec ts = { 0, 200000 };
            nanosleep(&ts, NULL);
        }
    } while (!all_exited && loom__nanotime() < deadline);
    int code = loom__sched.exit_code;
    if (!all_exited) {
        fprintf(stderr, "loom: warning: a goroutine still running at exit keeps its thread; "
                        "its memory is not freed and loom_run cannot be called again\n");
        stuck_threads = true;
        for (M *m = loom__sched.allm; m; m = m->alllink) {
            if (LOAD(&m->exited)) pthread_join(m->thread, NULL);
            else pthread_detach(m->thread);
        }
        return code;
    }
    for (M *m = loom__sched.allm; m; m = m->alllink) pthread_join(m->thread, NULL);
    STORE(&loom__sched.running, false);
    loom__trace_term();
    schedterm();
    return code;
}
