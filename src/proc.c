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
 * Preemption by signal (preempt.c) switches a goroutine out in the middle of C code, so it
 * must resume on the same thread: the M holds it ("held goroutines" below) and rotates its
 * held goroutines with its P's queues, as Go rotates preempted goroutines through the
 * global queue; threads stay as many as Ps however many goroutines spin.
 */
#include "internal.h"
#include "symbolize.h"
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct loom__sched loom__sched;
static loom__note exit_note;       /* loom_run's thread waits here for main to return */
static bool stuck_threads;         /* a previous run left threads we could not stop */

const char *const loom__wait_names[WAIT_COUNT] = {
    [WAIT_NONE] = "running", [WAIT_CHAN_SEND] = "chan send", [WAIT_CHAN_RECV] = "chan receive",
    [WAIT_SELECT] = "select", [WAIT_SELECT_NOCASES] = "select (no cases)", [WAIT_SLEEP] = "sleep",
    [WAIT_MUTEX] = "sync.Mutex.Lock", [WAIT_RWMUTEX_R] = "sync.RWMutex.RLock",
    [WAIT_RWMUTEX_W] = "sync.RWMutex.Lock", [WAIT_COND] = "sync.Cond.Wait",
    [WAIT_WAITGROUP] = "sync.WaitGroup.Wait", [WAIT_SEMA] = "semacquire", [WAIT_IO] = "IO wait",
    [WAIT_LOCKED_THREAD] = "locked to thread",
};


/* ------------------------------------------------------------------ helpers */

int64_t loom__nanotime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t loom_now(void) { return loom__now(); }

int64_t loom__nanotime_coarse(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* errno through the M's own pointer to its thread's errno, read afresh from the M at each
 * switch: never a location the compiler computed on another thread (see the design story) */
static inline __attribute__((always_inline)) int errno_get(M *m) { return *(volatile int *)m->errnop; }
static inline __attribute__((always_inline)) void errno_set(M *m, int v) { *(volatile int *)m->errnop = v; }

uint32_t loom__fastrand(M *m) {
    if (unlikely(loom__det_on)) return loom__det_rand32();    /* LOOM_SEED: one stream */
    /* xorshift64*, per M */
    uint64_t x = m->fastrand64;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    m->fastrand64 = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

uint32_t loom__fastrandn(M *m, uint32_t n) {
    return (uint32_t)(((uint64_t)loom__fastrand(m) * n) >> 32);
}

bool loom__in_goroutine(void) { return loom__m_runs_g(loom__getm()); }

/* ------------------------------------------------------------------ switching */

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ------------------------------------------------------------------ invariant checks
 * LOOM_DEBUG=check=1 (on in the sanitizer builds and under LOOM_CHAOS): every change of a
 * goroutine's status is a compare-and-swap from the status it must have (Go's casgstatus),
 * a P is acquired only when no M owns it, and a goroutine queued on a P must not be in that
 * P's queue already.  A violation is a fatal error naming both states, with the dump: the
 * interleaving that broke the invariant is caught where it happens.  Off, a status change is
 * a plain store. */
static const char *const gstatus_names[] = { "idle", "runnable", "running", "waiting", "syscall", "dead" };

static const char *gstatus_name(uint32_t st) { return st < 6 ? gstatus_names[st] : "?"; }

static __attribute__((noinline, noreturn, cold)) void bad_gstatus(G *g, uint32_t st, uint32_t old, uint32_t new, int line) {
    M *m = loom__getm();
    char where[64] = "";
    if (loom__sched.check)            /* recorded only while the checks are on */
        snprintf(where, sizeof where, "; it became %s at proc.c:%u on M%d", gstatus_name(st),
                 LOAD_RLX(&g->statusline), (int)LOAD_RLX(&g->statusm));
    loom__fatal("casgstatus: goroutine %llu is %s, not %s, when it should become %s (proc.c:%d, M%d)%s",
                (unsigned long long)g->id, gstatus_name(st), gstatus_name(old), gstatus_name(new), line,
                m ? m->id : -1, where);
}

#define casgstatus(g, old, new) casgstatus_at(g, old, new, __LINE__)

static ALWAYS_INLINE void casgstatus_at(G *g, uint32_t old, uint32_t new, int line) {
    if (likely(!loom__sched.check)) {
        STORE_RLX(&g->status, new);
        return;
    }
    uint32_t st = old;
    if (!__atomic_compare_exchange_n(&g->status, &st, new, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        bad_gstatus(g, st, old, new, line);
    M *m = loom__getm();
    STORE_RLX(&g->statusline, (uint32_t)line);
    STORE_RLX(&g->statusm, m ? m->id : -1);
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
        if (unlikely(LOAD_RLX(&loom__sched.prio.used)) && to != &m->g0) loom__prio_rearm(m);
    }
    if (to != &m->g0) {
        if (unlikely(!to->stack_base)) start_stack(m, to);
        LOOM__COUNT(m, nswitch);
        if (unlikely(loom__sched.check)) {
            casgstatus(to, G_RUNNABLE, G_RUNNING);
        } else {
            uint32_t st = LOAD_RLX(&to->status);
            STORE_RLX(&to->status, G_RUNNING);
            if (unlikely(st != G_RUNNABLE)) bad_gstatus(to, st, G_RUNNABLE, G_RUNNING, __LINE__);
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

/* ------------------------------------------------------------------ queueing
 * runq.c's queues, and with priority levels in use the kick for a goroutine that outranks
 * a running one (prio.c).  The level is read before g is queued: once queued, g may run,
 * exit and be reused. */

static ALWAYS_INLINE void runqput(P *p, G *g, bool next) {
    int prio = g->prio;
    loom__runqput(p, g, next);
    if (unlikely(prio != LOOM_PRIO_NORMAL)) loom__prio_queued(p, prio);
}

static void globrunqput(G *g) {          /* sched.lock held */
    int prio = g->prio;
    loom__globrunqput(g);
    if (unlikely(LOAD_RLX(&loom__sched.prio.used))) loom__prio_queued_global(prio);
}

static void globrunqputbatch(G *head, G *tail, int n) {    /* sched.lock held */
    bool levels[LOOM__NLEVELS] = { false };
    bool used = LOAD_RLX(&loom__sched.prio.used);
    if (unlikely(used))
        for (G *g = head; g; g = g == tail ? NULL : g->schedlink) levels[LVL(g->prio)] = true;
    loom__globrunqputbatch(head, tail, n);
    for (int prio = LOOM_PRIO_LOW; unlikely(used) && prio <= LOOM_PRIO_HIGH; prio++)
        if (levels[LVL(prio)]) loom__prio_queued_global(prio);
}

/* ------------------------------------------------------------------ Ps and Ms */

static void pidleput(P *p) {          /* sched.lock held */
    if (!loom__runqempty(p)) loom__fatal("pidleput: P has a non-empty run queue");
    STORE_RLX(&p->m, NULL);
    STORE(&p->status, P_IDLE);
    p->link = loom__sched.pidle;
    loom__sched.pidle = p;
    XADD(&loom__sched.npidle, 1);
}

static P *pidleget(void) {           /* sched.lock held */
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
    if (unlikely(cpu != m->pin_cpu) && loom__topo_pin_self(p->id) == 0) m->pin_cpu = cpu;   /* LOOM_PIN=1 */
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
    return p;
}

static void mput(M *m) {             /* sched.lock held */
    m->schedlink = loom__sched.midle;
    loom__sched.midle = m;
    loom__sched.nmidle++;
}

static M *mget(void) {               /* sched.lock held */
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
    STORE_REL(&loom__sched.allm, m);      /* loom_run's exit walks it without the lock */
    loom__lock_release(&loom__sched.lock);
    m->g0.m = m;
    m->curg = &m->g0;
    m->statfd = -1;
    m->pin_cpu = -1;
    m->tr_start = -1;
    m->fastrand64 = (uint64_t)loom__nanotime() * 0x9E3779B97F4A7C15ull + (uint64_t)m->id * 0xBF58476D1CE4E5B9ull + 1;
    strcpy(m->g0.name, "g0");
    return m;
}

/* Creates a thread that starts with P p (runtime.newm). */
static void newm(P *p, bool spinning) {
    M *m = allocm();
    m->nextp = p;
    m->spinning = spinning;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    /* the new thread starts with every signal blocked, then unblocks its own set */
    int saved_errno = errno;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    m->sigmask = old;        /* mstart restores the creator's mask once set up */
    int err = pthread_create(&m->thread, &attr, mstart, m);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err) loom__fatal("pthread_create failed: %s", strerror(err));
    errno = saved_errno;
}

/* Runs some M on P p, or on an idle P if p is NULL (runtime.startm).  If spinning, the
 * caller already counted the M in nmspinning. */
static void startm(P *p, bool spinning) {
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
        newm(p, spinning);
        return;
    }
    nm->spinning = spinning;
    nm->nextp = p;
    LOOM__CHAOS(CH_SPIN);
    loom__note_wakeup(&nm->park);
}

/* Tries to add one more spinning M to run goroutines (runtime.wakep). */
void loom__wakep(void) {
    LOOM__CHAOS(CH_WAKE);
    if (LOAD(&loom__sched.npidle) == 0) return;
    if (LOAD(&loom__sched.nmspinning) != 0 || !CAS(&loom__sched.nmspinning, 0, 1)) return;
    startm(NULL, true);
}

static void spare_off(P *sp);

/* Hands off P from an M that is about to block or sleep (runtime.handoffp). */
static void handoffp(P *p) {
    if (unlikely(LOAD(&p->spare.retire))) {     /* a spare being given back */
        spare_off(p);
        return;
    }
    if (!loom__runqempty(p) || LOAD(&loom__sched.runqsize) != 0 || (unlikely(loom__det_on) && loom__det_waiting())) {
        startm(p, false);
        return;
    }
    if (LOAD(&loom__sched.nmspinning) + LOAD(&loom__sched.npidle) == 0 &&
        CAS(&loom__sched.nmspinning, 0, 1)) {
        startm(p, true);
        return;
    }
    loom__lock_acquire(&loom__sched.lock);
    if (LOAD(&loom__sched.runqsize) != 0) {
        loom__lock_release(&loom__sched.lock);
        startm(p, false);
        return;
    }
    if (loom__timers_next(p) != 0 && LOAD(&loom__sched.npidle) + 1 == LOAD(&loom__sched.nactive)) {
        /* this P's timers must not be left unwatched: keep it running */
        loom__lock_release(&loom__sched.lock);
        startm(p, false);
        return;
    }
    if (unlikely(LOAD(&p->spare.retire))) {        /* asked back since the look above */
        loom__lock_release(&loom__sched.lock);
        spare_off(p);
        return;
    }
    pidleput(p);
    loom__lock_release(&loom__sched.lock);
}

/* ------------------------------------------------------------------ spare Ps
 * C code blocks in the kernel without telling loom (a plain read(), usleep, a library's
 * blocking I/O).  Its thread keeps its P, and taking the P away would race with the
 * thread using it the moment the call returns.  So sysmon lends the parallelism instead:
 * it puts a spare P (P_OFF until then) into service, with the blocked P's timers, and its
 * M steals the blocked P's queue as any idle P would.  When the blocked thread runs
 * again — sysmon sees its CPU clock move, or its P schedule — the spare is retired at its
 * next schedule(): its queue goes to the global queue and its timers to the lender.  A
 * false alarm (a thread that was only slow) costs a short burst of extra parallelism.
 *
 * A spare's own thread may block in turn: it gets a spare of its own, and so on, so any
 * number of goroutines may sleep in plain calls while the rest run (Go's syscall handoff
 * gives the same guarantee with a thread per blocked call).  Spares are made as needed and
 * kept, P_OFF, for reuse; Ps in service are at most LOOM_MAX_THREADS (default 10000, Go's
 * default thread limit), and past it loom says so once and lends no more until a spare
 * comes back: ready goroutines then wait for a blocked call to return.  Retiring a spare
 * that has a stand-in of its own hands the stand-in to the lender, to be retired too. */

/* Go's default limit on threads (runtime/debug.SetMaxThreads). */
#define MAX_THREADS_DEFAULT 10000

/* A P record, zeroed, numbered i; NULL when out of memory. */
static P *p_new(int i) {
    P *p = aligned_alloc(64, (sizeof(P) + 63) & ~(size_t)63);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->id = i;
    p->status = P_OFF;
    p->sysmon.cpu = -1;                   /* sysmon has no sample yet, */
    p->sysmon.tick = UINT32_MAX;          /* and starts a slice at its first look */
    return p;
}

/* Asks spare sp back (sched.lock held): true if it was idle, now taken off the idle list and
 * the caller's to give back (spare_off, after the lock); else its owner sees retire at its
 * next look, which it takes under sched.lock before it would make the P idle. */
static bool retire_locked(P *sp) {
    STORE(&sp->spare.retire, 1);
    if (LOAD(&sp->status) != P_IDLE) return false;
    P **pp = &loom__sched.pidle;
    while (*pp && *pp != sp) pp = &(*pp)->link;
    if (!*pp) return false;              /* someone took it meanwhile: its owner will see retire */
    *pp = sp->link;
    XADD(&loom__sched.npidle, -1);
    return true;
}

/* Gives back spare P sp, which the caller owns (it holds it, or took it off the idle
 * list) and which nobody else will take: queue to the global queue, timers to the lender;
 * a stand-in of sp's own goes to the lender, retiring. */
static void spare_off(P *sp) {
    LOOM__CHAOS(CH_SPARE);
    G *head, *tail;
    int n = loom__runq_takeall(sp, &head, &tail);
    loom__lock_acquire(&loom__sched.lock);
    if (n) globrunqputbatch(head, tail, n);
    P *lender = sp->spare.lender;
    P *child = sp->spare.standin;
    bool child_idle = false;
    if (child) {
        child->spare.lender = lender;
        STORE(&sp->spare.standin, NULL);
        child_idle = retire_locked(child);
    }
    if (lender) STORE(&lender->spare.standin, child);
    sp->spare.lender = NULL;
    STORE(&sp->spare.retire, 0);
    STORE_RLX(&sp->m, NULL);
    STORE(&sp->status, P_OFF);
    XADD(&loom__sched.nactive, -1);
    loom__lock_release(&loom__sched.lock);
    /* (after the lock: moving timers may wake a thread) if the lender went off meanwhile
     * itself, before our timers got there, they go on to P0, which is never off */
    P *to = lender ? lender : loom__sched.allp[0];
    loom__timers_move(sp, to);
    if (LOAD(&to->status) == P_OFF) loom__timers_move(to, loom__sched.allp[0]);
    if (child_idle) spare_off(child);
    /* wake a P for what went to the global queue (ours, or what our owner queued there
     * just before giving us up: a yielding locked goroutine), and for timers that were
     * left to this spare's thread when others went idle (handoffp counted us awake) */
    bool work = LOAD(&loom__sched.runqsize) > 0;
    for (int i = 0; i < loom__nallp() && !work; i++)
        work = LOAD(&loom__sched.allp[i]->timer0_when) != 0;
    if (work) loom__wakep();
}

/* Takes P p's stand-in off the idle list and retires it, or asks its owner to. */
void loom__retire_spare(P *sp) {
    LOOM__CHAOS(CH_SPARE);
    loom__lock_acquire(&loom__sched.lock);
    bool idle = retire_locked(sp);
    loom__lock_release(&loom__sched.lock);
    if (idle) spare_off(sp);
}

/* A spare P not in service, made if none is and the limit allows; NULL otherwise (the
 * limit's warning the first time).  sched.lock held; called by sysmon only, the one
 * writer of nallp. */
static P *spare_get(void) {
    int nallp = loom__sched.nallp;
    for (int i = loom__sched.nprocs; i < nallp; i++)
        if (LOAD(&loom__sched.allp[i]->status) == P_OFF) return loom__sched.allp[i];
    if (nallp < loom__sched.maxprocs) {
        P *sp = p_new(nallp);
        if (sp) {
            loom__sched.allp[nallp] = sp;
            STORE_REL(&loom__sched.nallp, nallp + 1);    /* published whole (loom__nallp) */
            return sp;
        }
    }
    if (!loom__sched.spare_limit_said) {
        loom__sched.spare_limit_said = true;
        fprintf(stderr, "loom: LOOM_MAX_THREADS=%d Ps are in service, spares standing in for threads "
                        "blocked in calls loom was not told about (a plain read(), usleep, a library's "
                        "blocking I/O): no more spare Ps; ready goroutines wait until such a call returns "
                        "(loom_block_begin/end and loom_read do not take spares)\n", loom__sched.maxprocs);
    }
    return NULL;
}

/* Puts a spare P into service for p, whose thread sleeps in the kernel.  Returns false if
 * p has one already or none can be had. */
bool loom__lend_spare(P *p) {
    loom__lock_acquire(&loom__sched.lock);
    if (p->spare.standin || LOAD(&loom__sched.exiting)) {
        loom__lock_release(&loom__sched.lock);
        return false;
    }
    P *sp = spare_get();
    if (!sp) {
        loom__lock_release(&loom__sched.lock);
        return false;
    }
    STORE(&p->spare.standin, sp);
    sp->spare.lender = p;
    sp->sysmon.cpu = -1;                  /* fresh sysmon state for its new life */
    sp->sysmon.tick = sp->schedtick - 1;
    STORE(&sp->spare.retire, 0);
    XADD(&loom__sched.nactive, 1);
    XADD(&loom__sched.nhandoff, 1);
    XADD(&loom__sched.nlend, 1);
    STORE(&sp->status, P_IDLE);      /* startm hands it over and makes it P_RUNNING */
    loom__lock_release(&loom__sched.lock);
    /* the lender's thread will not run its timers while it sleeps: the spare does */
    LOOM__CHAOS(CH_SPARE);
    loom__timers_move(p, sp);
    /* nor its queue: a spare whose own goroutine never runs out of work (a spinner beside
     * the plain read) would never steal it, so it goes to the global queue now, taken as
     * a thief takes (the owner may only have been slow), where every P looks */
    G *head, *tail;
    int n = loom__runq_takeall(p, &head, &tail);
    if (n) {
        loom__lock_acquire(&loom__sched.lock);
        globrunqputbatch(head, tail, n);
        loom__lock_release(&loom__sched.lock);
    }
    XADD(&loom__sched.nmspinning, 1);
    startm(sp, true);                /* a spinning M: it steals the lender's queue */
    return true;
}

/* The owner of P p sees p->spare.retire: gives the spare back and drops it (m->p = NULL). */
static void retirep(M *m) {
    P *p = releasep(m);
    if (m->spinning) {
        m->spinning = false;
        XADD(&loom__sched.nmspinning, -1);
    }
    spare_off(p);
}

/* Sleeps on m->park until another M hands over a P in m->nextp; takes it.  Returns false
 * at runtime exit. */
static bool mpark(M *m) {
    LOOM__TRACE(loom__trace_idle(m, true));
    loom__note_sleep(&m->park);
    STORE_RLX(&loom__sched.coarse_now, loom__nanotime());   /* sysmon may sleep deeply */
    LOOM__TRACE(loom__trace_idle(m, false));
    loom__note_clear(&m->park);
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

/* A G record without a stack (the stack comes at its first run, loom__stack_get). */
static G *gfget(P *p) {
    if (!p->gfree && LOAD_RLX(&loom__sched.gfree)) {
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
    G *g = p->gfree;
    if (g) {
        p->gfree = g->schedlink;
        p->ngfree--;
        return g;
    }
    g = loom__g_alloc(loom__topo_node(p->id));
    if (!g) return NULL;
    /* pushed without a lock: the first write to a fresh record may take a page fault
     * (~µs here), which must not happen while another P waits; records are never removed */
    G *head = LOAD_RLX(&loom__sched.allg);
    do g->allnext = head;
    while (!__atomic_compare_exchange_n(&loom__sched.allg, &head, g, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    return g;
}

/* A goroutine's first run: give it a stack and the first frame (see gogo). */
static __attribute__((noinline)) void start_stack(M *m, G *g) {
    if (!loom__stack_get(m->p, g)) loom__fatal("out of memory for the stack of goroutine %llu", (unsigned long long)g->id);
    g->sp = loom__ctx_init(g->stack_lo + g->stack_size, goroutine_entry);
}

/* ------------------------------------------------------------------ goroutine life */

static void goexit0(G *prev, void *arg);

static __attribute__((noreturn)) void goexit(bool main_returned) {
    M *m = loom__getm();
    G *g = m->curg;
    if (g->lockedm) {           /* a locked goroutine that exits frees its thread */
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

/* Creates a goroutine on P p's runnext (runtime.newproc). */
static uint64_t newproc(P *p, void (*fn)(void *), void *arg, const loom_attr *attr, void *pc) {
    size_t want = attr ? attr->stack_size : 0;
    size_t slot = loom__stack_class_size(want);
    if (slot == 0) { errno = EINVAL; return 0; }
    if (attr && (attr->priority < LOOM_PRIO_LOW || attr->priority > LOOM_PRIO_HIGH)) { errno = EINVAL; return 0; }
    G *g = gfget(p);
    if (!g) { errno = ENOMEM; return 0; }
    g->slot_size = slot;
    g->sp = NULL;
    if (p->goidcache == p->goidcacheend) {  /* as runtime.newproc1's goid cache refill */
        p->goidcache = XADD(&loom__sched.goidgen, GOID_BATCH) + 1;
        p->goidcacheend = p->goidcache + GOID_BATCH;
    }
    g->id = p->goidcache++;
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
    STORE_RLX(&g->timer.state, TIMER_IDLE);   /* g is ours alone until runqput publishes it */
    g->created_pc = pc;
    if (attr && attr->name) {
        strncpy(g->name, attr->name, sizeof g->name - 1);
        g->name[sizeof g->name - 1] = 0;
        g->named = true;
    } else if (g->named) {                    /* name[] sits on a line of its own: leave it */
        g->name[0] = 0;                       /* untouched unless a name must be cleared */
        g->named = false;
    }
    loom__fiber_create(g);
    if (unlikely(loom__det_on)) loom__det_spawn(g);
    casgstatus(g, g->status == G_IDLE ? G_IDLE : G_DEAD, G_RUNNABLE);
    uint64_t id = g->id;                  /* once queued, g may run, exit and be reused */
    LOOM__TRACE(trace_spawn(id));         /* before it is queued: a thief may run it at once */
    runqput(p, g, true);
    return id;
}

uint64_t loom_go_attr(void (*fn)(void *), void *arg, const loom_attr *attr) {
    if (!fn) { errno = EINVAL; return 0; }
    M *m = loom__getm();
    if (!m || !m->p || !LOAD(&loom__sched.running)) { errno = EPERM; return 0; }
    uint64_t id = newproc(m->p, fn, arg, attr, __builtin_return_address(0));
    if (id) loom__wakep();
    preempt_point(m);          /* a loop spawning goroutines yields at its slice's end */
    return id;
}

uint64_t loom_go(void (*fn)(void *), void *arg) {
    return loom_go_attr(fn, arg, NULL);
}

/* ------------------------------------------------------------------ schedule */

/* The top of runtime.schedule: the end of a slice's bookkeeping, the global queue on every
 * 61st tick (returned, if it had a goroutine), then due timers. */
static ALWAYS_INLINE G *runq_first(P *p) {
    if (unlikely(LOAD_RLX(&p->preempt))) {
        /* deterministic mode keeps p->preempt set (det.c): its picks branch off here, off
         * the common path */
        if (unlikely(loom__det_on)) return loom__det_next(p);
        /* the slice is used up: runnext loses its claim to the rest of it */
        STORE(&p->preempt, 0);
        if (LOAD_RLX(&p->prio.kick)) STORE(&p->prio.kick, 0);
        G *next = loom__runnext_take(p);
        if (next) runqput(p, next, false);
    }
    if (p->schedtick % 61 == 0 && LOAD_RLX(&loom__sched.runqsize) > 0) {
        loom__lock_acquire(&loom__sched.lock);
        G *g = loom__globrunqget(p, 1);
        loom__lock_release(&loom__sched.lock);
        if (g) return g;
    }
    if (LOAD_RLX(&p->timer0_when) != 0) loom__timers_run(p, loom__now());
    return NULL;
}

/* The quick look at local work: runq_first, then runnext and the local queue. */
static ALWAYS_INLINE G *runq_fast(P *p, bool *inherit) {
    *inherit = false;
    G *g = runq_first(p);
    return g ? g : loom__runqget(p, inherit);
}

static ALWAYS_INLINE void ran(P *p, bool inherit) {
    if (!inherit) STORE_RLX(&p->schedtick, p->schedtick + 1);
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

/* ------------------------------------------------------------------ held goroutines
 * A goroutine switched out by the preemption signal must resume on the thread it was
 * interrupted on (preempt.c, "thread affinity").  Go's way for a goroutine tied to its
 * thread (runtime.startlockedm/stoplockedm) hands the P to that thread whenever the
 * goroutine's turn comes: with N goroutines that spin, N threads and a futex wakeup per
 * time slice, and each woken thread may wait milliseconds for a CPU beside the spinning
 * ones (EEVDF lets the running thread finish its slice).  So the M keeps the goroutines it
 * preempted itself, in a FIFO of its own (m->heldq; locked to it, g->alocked), and runs
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
 * LOOM_PRIO_AGE_MS the oldest is due whatever waits (aging, as runq.c: a queue's head
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
 * thread first (movelock). */

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
    if (front) {
        g->schedlink = m->held.head;
        m->held.head = g;
        if (!m->held.tail) m->held.tail = g;
    } else {
        g->schedlink = NULL;
        if (m->held.tail) m->held.tail->schedlink = g;
        else m->held.head = g;
        m->held.tail = g;
    }
    STORE_RLX(&m->held.n[LVL(g->prio)], m->held.n[LVL(g->prio)] + 1);
}

static G *held_get(M *m) {
    G *g = m->held.head;
    if (!g) return NULL;
    m->held.head = g->schedlink;
    if (!m->held.head) m->held.tail = NULL;
    g->schedlink = NULL;
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
            m->held.aged = h;            /* it gets its turn whatever waits (no "again") */
            return true;
        }
        if (h->prio < LOOM_PRIO_HIGH && loom__prio_ready(p, h->prio + 1)) return false;
        if (!loom__prio_ready(p, h->prio)) return true;
    }
    return p->schedtick % 61 == 30;
}

/* runq_fast for an M that holds goroutines: a held one whose turn has come goes before the
 * P's queues; then the P's queues, the global queue (where Go's preempted goroutines would
 * be, in line with the rest), and the held ones before this M looks further: it never
 * idles while it holds goroutines, since nobody else may run them. */
static G *held_or_runq(M *m, P *p, bool *inherit) {
    *inherit = false;
    G *g = runq_first(p);
    if (!g && held_due(m, p)) return held_get(m);
    if (!g) g = loom__runqget(p, inherit);
    if (!g) g = globrunq_take(p);
    return g ? g : held_get(m);
}

/* The next goroutine for M m from its P p and its held ones, or NULL. */
static ALWAYS_INLINE G *runq_next(M *m, P *p, bool *inherit) {
    if (likely(!m->held.head)) return runq_fast(p, inherit);
    return held_or_runq(m, p, inherit);
}

/* Steals from other Ps (runtime.stealWork): 4 passes in random order; the last one may
 * also take a running P's runnext.  Also runs other Ps' due timers. */
static bool steal_blind;        /* LOOM_STEAL=random; set by schedinit */

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
        } else {                               /* LOOM_STEAL=random: Go's order, for comparison */
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
        G *g = stealwork(m, p, loom__now(), &rantimers);
        if (g) return g;
        struct timespec ts = { 0, 1000000 };
        STORE_RLX(&m->lockwait, 1);          /* not a blocked call: sysmon lends no spare */
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
        if (unlikely(LOAD_RLX(&p->spare.retire))) {      /* a spare P to give back */
            retirep(m);
            if (!stopm(m)) return NULL;
            continue;
        }
        if (unlikely(loom__det_on)) {
            bool again = false;
            G *g = det_findrunnable(m, p, &again);
            if (g) { ran(p, false); return g; }
            if (again) continue;
        }
        int64_t now = loom__now();
        if (LOAD_RLX(&p->timer0_when) != 0) loom__timers_run(p, now);
        bool inh;
        G *g = loom__runqget(p, &inh);
        if (g) { ran(p, inh); return g; }
        if ((g = globrunq_take(p))) { ran(p, false); return g; }
        /* non-blocking netpoll when someone waits on fds and nobody is polling */
        if (loom__netpoll_has_waiters() && LOAD(&loom__sched.lastpoll) != 0) {
            G *list = loom__netpoll(0);
            if (list) return take_polled(p, list);
        }
        /* steal, spinning, while few enough Ms spin */
        if (m->spinning || 2 * LOAD(&loom__sched.nmspinning) < LOAD(&loom__sched.nactive) - LOAD(&loom__sched.npidle)) {
            if (!m->spinning) {
                m->spinning = true;
                XADD(&loom__sched.nmspinning, 1);
            }
            bool rantimers = false;
            g = stealwork(m, p, now, &rantimers);
            if (g) { ran(p, false); return g; }
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
        if (!loom__runqempty(p)) {          /* a timer or netpoll readied into our queue */
            loom__lock_release(&loom__sched.lock);
            continue;
        }
        releasep(m);
        if (unlikely(LOAD(&p->spare.retire))) {   /* a spare asked back since our look: give it back */
            loom__lock_release(&loom__sched.lock);
            spare_off(p);
        } else {
            pidleput(p);
            loom__lock_release(&loom__sched.lock);
        }
        LOOM__CHAOS(CH_SPIN);

        bool was_spinning = m->spinning;
        if (m->spinning) {
            m->spinning = false;
            if ((int32_t)(XADD(&loom__sched.nmspinning, -1) - 1) < 0) loom__fatal("findrunnable: negative nmspinning");
            LOOM__CHAOS(CH_SPIN);
            /* the re-check after dropping nmspinning (see the design story): the global
             * queue first (as Go since 1.21): a thread without a P that queued a goroutine
             * there (held_wait, a timer fired by sysmon) saw us spinning and woke nobody */
            bool work = LOAD(&loom__sched.runqsize) != 0;
            for (int i = 0; i < loom__nallp() && !work; i++) work = !loom__runqempty(loom__sched.allp[i]);
            P *np = work ? pidleget_lock() : NULL;
            if (np) {                        /* spin again, on an idle P */
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
    loom__sched.nmlockedidle--;          /* counted awake from here on, for checkdead */
    loom__lock_release(&loom__sched.lock);
    lm->nextp = p;
    STORE(&lm->pending_g, g);
    loom__note_wakeup(&lm->park);
}

/* Gives our P to the M that g is locked to, then waits for a P (runtime.startlockedm). */
static void startlockedm(M *m, G *g) {
    handlockedm(releasep(m), g);
}

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
    if (p && LOAD_RLX(&p->timer0_when) != 0) loom__timers_run(p, loom__now());
    p = releasep(m);
    G *next = NULL;
    /* (not in deterministic mode: det.c picks what runs next, handoffp wakes it) */
    if (p && !LOAD_RLX(&p->spare.retire) && !loom__det_on && LOAD_RLX(&loom__sched.runqsize) != 0 && loom__runqempty(p)) {
        loom__lock_acquire(&loom__sched.lock);
        next = loom__globrunq_pop_locked();
        loom__lock_release(&loom__sched.lock);
    }
    if (next && next->lockedm == m) {        /* ours, runnable already: run it */
        acquirep(m, p);
        STORE(&m->pending_g, next);
        return true;
    }
    if (next) {
        handlockedm(p, next);
    } else if (p) {
        handoffp(p);
    }
    loom__lock_acquire(&loom__sched.lock);
    loom__sched.nmlockedidle++;
    loom__checkdead();
    loom__lock_release(&loom__sched.lock);
    return mpark(m);
}

/* An M holding goroutines lost its P (see "held goroutines"): queue the oldest globally,
 * still locked here, and sleep until whoever takes it hands this M its P with it
 * (startlockedm); it then runs first.  Returns false at runtime exit. */
static bool held_wait(M *m) {
    G *g = held_get(m);
    loom__lock_acquire(&loom__sched.lock);
    globrunqput(g);
    loom__sched.nmlockedidle++;
    loom__lock_release(&loom__sched.lock);
    loom__wakep();                           /* an idle P takes it at once */
    if (!mpark(m)) return false;
    G *back = XCHG(&m->pending_g, NULL);
    if (back) held_put(m, back, true);
    return true;
}

/* Goroutine g, moving off a thread that holds others to lock a thread of its own
 * (loom_lock_thread), was picked by M m that holds some too: it goes to the P's runnext
 * and the P to another M, which runs it; m waits for a P back (held_wait). */
static void movelock_handoff(M *m, G *g) {
    runqput(m->p, g, true);
    startm(releasep(m), false);
}

/* The scheduler loop on an M's g0 (runtime.schedule).  Returns at runtime exit. */
static void schedule(M *m) {
    for (;;) {
        if (LOAD(&loom__sched.exiting)) return;
        if (m->p && unlikely(LOAD_RLX(&m->p->spare.retire))) {   /* a spare P to give back */
            if (m->nextg) {                  /* with the goroutine picked to start here */
                runqput(m->p, m->nextg, true);
                m->nextg = NULL;
            }
            retirep(m);
        }
        if (!m->p && !m->lockedg) {         /* back from a blocking call without a P */
            if (!(m->held.head ? held_wait(m) : stopm(m))) return;
            continue;
        }
        G *g;
        if (m->lockedg) {
            /* only the locked goroutine may run here: give up the P and sleep until some
             * M hands the goroutine back with a P (startlockedm), as Go's schedule() */
            if (!stoplockedm(m)) return;
            g = XCHG(&m->pending_g, NULL);
            if (!g) continue;
        } else if (m->nextg) {
            g = m->nextg;                    /* picked by schedule_from, to start here */
            m->nextg = NULL;
        } else {
            bool inherit;
            g = runq_next(m, m->p, &inherit);
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
            if (unlikely(g->movelock) && m->held.head) {
                movelock_handoff(m, g);
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
    if (!m->lockedg && !LOAD_RLX(&loom__sched.exiting) && !LOAD_RLX(&p->spare.retire)) {
        bool inherit;
        G *next = runq_next(m, p, &inherit);
        if (next) {
            /* a goroutine's first run on a fresh stack faults in a page (~10 µs here):
             * not while `after` still holds the lock g parked under — go through g0;
             * a warm stack from the P's cache costs nothing: switch straight to it */
            if (likely(next->lockedm == NULL) ? likely(!m->held.head) || !next->movelock : next->lockedm == m) {
                ran(p, inherit);
                if (likely(next->stack_base != 0) || loom__stack_cached(p, next)) {
                    gogo(m, g, next, after, arg, false);
                    return;
                }
                m->nextg = next;             /* g0 starts it (schedule) */
            } else {
                runqput(p, next, true);   /* g0 hands it to its thread */
            }
        }
    }
    gogo(m, g, &m->g0, after, arg, false);
}

/* ------------------------------------------------------------------ park / ready */

void loom__park(M *m, void (*after)(G *, void *), void *arg, int reason) {
    LOOM__CHAOS(CH_PARK);
    G *g = m->curg;
    STORE_RLX(&g->waitreason, (uint32_t)reason);
    g->waitsince = LOAD_RLX(&loom__sched.coarse_now);   /* within a sysmon tick: no clock read */
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
    if (unlikely(st != G_WAITING)) loom__fatal("ready of goroutine %llu in status %u", (unsigned long long)g->id, st);
    STORE_RLX(&g->waitreason, WAIT_NONE);
    LOOM__CHAOS(CH_WAKE);
    LOOM__TRACE(trace_ready(g));
    bool normal = g->prio == LOOM_PRIO_NORMAL;   /* once queued, g may run, exit and be reused */
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

static void timed_fire(loom__timer *t) {
    G *g = t->arg;
    if (CAS(&g->selectdone, 0, 1)) {
        g->param = NULL;
        loom__ready(g);
    }
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
    M *m = prev->m;                   /* this M: once published, prev may run elsewhere */
    if (tp->after) tp->after(prev, tp->arg);
    if (when >= 0 && LOAD(&prev->selectdone) == 0) {
        loom__timer_add(m->p, &prev->timer, when);
        if (unlikely(LOAD_RLX(&loom__sched.prio.used))) loom__prio_rearm(m);
    }
    STORE_REL(&prev->parking, 0);
}

/* Parks with a timeout (ns < 0: none); the waker must claim g with CAS(&g->selectdone, 0, 1)
 * and set g->param to non-NULL.  Returns true if woken by the waker, false on timeout.
 * Returns only once `after` has finished, wherever it ran. */
bool loom__park_timeout(void (*after)(G *, void *), void *arg, int reason, int64_t ns) {
    M *m = loom__getm();
    G *g = m->curg;
    struct timed_park tp = { after, arg, -1 };
    if (ns >= 0) {
        g->timer.fn = timed_fire;
        g->timer.arg = g;
        tp.when = loom__now() + ns;
    }
    STORE_RLX(&g->parking, 1);
    loom__park(loom__getm(), timed_after, &tp, reason);
    for (int spins = 0; LOAD_ACQ(&g->parking); spins++) {
        if (spins < 100) loom__cpu_relax();
        else sched_yield();           /* the hook's thread lost its CPU */
    }
    if (ns < 0) return true;
    loom__timer_del(&g->timer);
    return g->param != NULL;
}

static void sleep_fire(loom__timer *t) { loom__ready((G *)t->arg); }

static void sleep_after(G *prev, void *arg) {
    int64_t when = *(int64_t *)arg;
    M *m = prev->m;                   /* this M: once the timer is armed, prev may run elsewhere */
    loom__timer_add(m->p, &prev->timer, when);
    if (unlikely(LOAD_RLX(&loom__sched.prio.used))) loom__prio_rearm(m);
}

void loom_sleep(int64_t ns) {
    if (!loom__in_goroutine()) {
        if (ns > 0) {
            struct timespec ts = { ns / 1000000000, ns % 1000000000 };
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
        }
        return;
    }
    if (ns <= 0) { loom_yield(); return; }
    M *m = loom__getm();
    G *g = m->curg;
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
    if (!loom__m_runs_g(m)) { sched_yield(); return; }
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

static void hold_after(G *prev, void *arg) {
    (void)arg;
    casgstatus(prev, G_RUNNING, G_RUNNABLE);
    held_put(prev->m, prev, false);
}

/* Called by the preemption signal handler on the goroutine's stack (preempt.c): switch
 * out, to resume on this same thread.  The goroutine is locked to its M until it resumes
 * and held by it (see "held goroutines"): the M runs the next goroutine of its P, or a
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
    /* a spare P being given back (see "spare Ps"): schedule() on g0 gives it back, and
     * sysmon leaves its lender's goroutine alone until it has.  Rotating held goroutines
     * here, from one to the next, would keep it for good. */
    bool retire = LOAD_RLX(&p->spare.retire);
    if (!next && !m->held.head && loom__sched.nprocs > 1 && !crowded()) {
        /* few goroutines ready: Go's way (runtime.stoplockedm), so that no two share this
         * thread and an idle P can take any of them (at one P there is no other P: hold).
         * (schedule_from, under loom_yield, gives back a retiring spare.) */
        if (LOAD_RLX(&p->timer0_when) != 0) loom__timers_run(p, loom__now());
        if (!retire && loom__runqempty(p) && LOAD_RLX(&loom__sched.runqsize) == 0) {
            STORE(&p->preempt, 0);       /* nothing else to run: go on, a new slice */
            return;
        }
        g->lockedm = m;
        g->alocked = true;
        m->lockedg = g;
        loom_yield();                    /* to the global queue; this thread waits for it */
        m = loom__getm();                /* the same M, by the lock */
        g->lockedm = NULL;
        g->alocked = false;
        m->lockedg = NULL;
        return;
    }
    if (unlikely(retire)) {
        if (next) runqput(p, next, true);
        next = &m->g0;                   /* g is held; this M waits with it for a P (held_wait) */
    } else if (!next) {
        bool inherit;
        next = runq_next(m, p, &inherit);
        if (!next) next = globrunq_take(p);   /* runq_fast looks there every 61st tick */
        if (!next) return;               /* nothing else to run here: go on */
        ran(p, inherit);
    }
    if ((next->lockedm && next->lockedm != m) || (next->movelock && m->held.head)) {
        runqput(p, next, true);    /* schedule() on g0 hands it on */
        next = &m->g0;
    }
    g->lockedm = m;
    g->alocked = true;
    gogo(m, g, next, hold_after, NULL, false);
    /* resumed, on this same thread (it was locked here) */
    g->lockedm = NULL;
    g->alocked = false;
    /* maybe long after: a goroutine readied meanwhile for this P while it had no running
     * goroutine (so nobody was kicked) may outrank g: go round once more rather than spin
     * on until sysmon, itself waiting for a CPU, notices */
    m = loom__getm();
    if (m->held.aged == g) {
        m->held.aged = NULL;             /* resumed by aging: a turn whatever waits */
        return;
    }
    if (unlikely(LOAD_RLX(&loom__sched.prio.used)) && m->p && !g->nopreempt && loom__prio_outranked(m->p))
        goto again;
}

/* A cooperative preemption point on M m: yield if sysmon says the slice is used up.
 * LOOM_DEBUG=coopheld=1 switches the goroutine out as the signal would (held by this thread,
 * counted and traced as asynchronous): the held goroutines' paths then run where the signal
 * is off, in the sanitizer builds' tests (tests/test_held.c), and from points a test picks. */
static void preempt_point(M *m) {
    if (m->p && LOAD_RLX(&m->p->preempt) && m->curg != &m->g0) {
        if (unlikely(loom__det_on)) {         /* LOOM_SEED: a scheduling point (det.c) */
            if (loom__det_yield(m->p, m->curg)) yield_m(m);
            return;
        }
        if (unlikely(loom__sched.coopheld)) {
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
        m = loom__getm();          /* the goroutine may resume on another thread */
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
    return loom__sched.nprocs > 0 ? loom__sched.nprocs : loom__cpu_count();
}

/* Moves the running goroutine off an M that holds an async-preempted one: to the global
 * queue, from which another thread takes it, while this M resumes the held goroutine. */
static void move_after(G *prev, void *arg) {
    (void)arg;
    casgstatus(prev, G_RUNNING, G_RUNNABLE);
    loom__lock_acquire(&loom__sched.lock);
    globrunqput(prev);
    loom__lock_release(&loom__sched.lock);
    loom__wakep();
}

void loom_lock_thread(void) {
    M *m = loom__getm();
    if (!m || m->curg == &m->g0) return;
    G *g = m->curg;
    if (g->lockedm == m) return;
    /* this thread holds preempted goroutines that must resume here: lock elsewhere */
    while (m->held.head) {
        g->movelock = true;
        gogo(m, g, &m->g0, move_after, NULL, false);
        m = loom__getm();
    }
    g->movelock = false;
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
    STORE(&p->status, P_SYSCALL);     /* from here on sysmon may retake it */
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
        STORE_REL(&old->m, m);       /* as acquirep */
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
    if (LOAD(&loom__sched.lastpoll) == 0) return;        /* an M waits in the poller */
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
    if (!loom__any_alive())
        loom__fatal("no goroutines (main called loom_exit) - deadlock!");
    loom__fatal("all goroutines are asleep - deadlock!");
}

/* ------------------------------------------------------------------ threads */

static void mexit(M *m);

static void *mstart(void *arg) {
    M *m = arg;
    loom__setm(m);
    m->tid = (int)syscall(SYS_gettid);
    loom__topo_unpin_self();      /* not the creator's one-CPU mask: acquirep pins anew */
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
    for (M *m = loom__sched.allm; m; m = m->alllink)
        loom__note_wakeup(&m->park);
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
    if (loom__det_init()) n = 1;           /* LOOM_SEED: one P (det.c) */
    if (n <= 0) n = loom__cpu_count();
    if (n < 1) n = 1;
    loom__sched.nprocs = n;
    loom__topo_term();                     /* a run that ended without schedterm */
    loom__topo_init(n);
    const char *ss = getenv("LOOM_STEAL");
    steal_blind = ss && !strcmp(ss, "random");
    loom__sched.slice_us = (int)loom__env_long("LOOM_SLICE_US", 2000, 100, 1000000);
    loom__sched.prio.age_ns = loom__env_long("LOOM_PRIO_AGE_MS", 20, 1, 60000) * 1000000;
    loom__debug_init();
    loom__chaos_init();                    /* after LOOM_DEBUG: chaos turns the checks on */
    steal_blind |= loom__chaos_on;         /* chaos: Go's random victims, no tiers */
    loom__stack_init();
    loom__sched.maxprocs = (int)loom__env_long("LOOM_MAX_THREADS", MAX_THREADS_DEFAULT, 1, 1000000);
    if (loom__sched.maxprocs < n) loom__sched.maxprocs = n;
    loom__sched.nactive = (uint32_t)n;
    loom__sched.allp = calloc((size_t)loom__sched.maxprocs, sizeof(P *));
    if (!loom__sched.allp) return -ENOMEM;
    for (int i = 0; i < n; i++) {
        P *p = p_new(i);
        if (!p) return -ENOMEM;
        p->status = P_IDLE;
        loom__sched.allp[i] = p;
    }
    loom__sched.nallp = n;
    /* every P but P0 starts idle; P0 goes to M0 */
    for (int i = n - 1; i >= 1; i--) pidleput(loom__sched.allp[i]);
    if (loom__det_on) loom__sched.allp[0]->preempt = 1;   /* det.c's picks start at once */
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
    for (int i = 0; i < loom__sched.nallp; i++) {     /* every other thread has stopped */
        loom__timers_term(loom__sched.allp[i]);
        free(loom__sched.allp[i]);
    }
    free(loom__sched.allp);
    M *m = loom__sched.allm;
    while (m) {
        M *next = m->alllink;
        if (m->statfd >= 0) close(m->statfd);
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
    if (stuck_threads) return -EBUSY;   /* threads of an earlier run still use the runtime */
    if (loom__getm() || LOAD(&loom__sched.running)) return -EPERM;   /* nested loom_run */
    int err = schedinit();
    if (err) return err;
    loom__census_init();
    main_fn_ptr = main_fn;
    main_result = 0;
    loom__note_clear(&exit_note);
    STORE(&loom__sched.running, true);
    if (loom__sysmon_start() != 0) loom__fatal("cannot start sysmon");
    P *p0 = loom__sched.allp[0];           /* schedinit left P0 out of the idle list */
    /* goroutine 1 has no creator pc, so dumps print no "created by" line for it, as Go
     * prints none for the main goroutine: loom_run's return address would name its caller
     * only when the call is not a tail call (`return loom_run(...)` in main leaves libc's
     * start code there) */
    if (newproc(p0, main_goroutine, arg, &(loom_attr){ .name = "main" }, NULL) != 1)
        loom__fatal("cannot create the main goroutine");
    newm(p0, false);
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
