/*
 * internal.h — loom's internal types and the names modules share.
 *
 * Naming: public names are loom_*, internal non-static names loom__* (as libuv's uv__*),
 * file-local names are static and short.  Where loom follows Go's runtime, the function
 * keeps Go's name after the prefix (loom__runqput is runtime.runqput) so the reader can
 * put the two side by side.
 *
 * Atomics: shared words are plain integers accessed through the __atomic builtins
 * (LOAD/STORE/CAS below), which both gcc and clang (and ThreadSanitizer) understand.
 * Every shared field below says who may touch it.
 */
#ifndef LOOM_INTERNAL_H
#define LOOM_INTERNAL_H

#include "loom.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include "topo.h"

/* A function the optimiser must treat as opaque: never inlined, never assumed pure, so
 * its result is not reused across a goroutine switch (which may change the thread). */
#if defined(__clang__)
#define LOOM_OPAQUE __attribute__((noinline))
#else
#define LOOM_OPAQUE __attribute__((noinline, noipa))
#endif
#define LOOM_OPAQUE_BODY() __asm__ __volatile__("" ::: "memory")
#define likely(x)          __builtin_expect(!!(x), 1)
#define unlikely(x)        __builtin_expect(!!(x), 0)

#define LOAD(p)         __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define LOAD_ACQ(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RLX(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v)     __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define STORE_RLX(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define XADD(p, v)      __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define XCHG(p, v)      __atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)
#define CAS(p, o, n) \
    __extension__({ \
        __typeof__(*(p)) o_ = (o); \
        __atomic_compare_exchange_n((p), &o_, (n), false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); \
    })
#define CAS_REL(p, o, n) \
    __extension__({ \
        __typeof__(*(p)) o_ = (o); \
        __atomic_compare_exchange_n((p), &o_, (n), false, __ATOMIC_RELEASE, __ATOMIC_RELAXED); \
    })

/* The runtime's clocks: CLOCK_MONOTONIC in ns (through the vDSO), and its coarse variant
 * (~ms resolution, cheaper).  Timers and deadlines use loom__now (below), which is
 * virtual in deterministic mode. */
static inline int64_t loom__nanotime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t loom__nanotime_coarse(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void loom__cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

/* LOOM_CHAOS (chaos.c): a race window.  One branch on a read-mostly flag when off. */
extern bool loom__chaos_on;
enum { CH_PARK, CH_WAKE, CH_RUNNEXT, CH_RUNQ, CH_SPIN, CH_TIMER, CH_NETPOLL, CH_SPARE, CH_PREEMPT, CH_LOCK };
#define LOOM__CHAOS(site) \
    do { \
        if (unlikely(loom__chaos_on)) loom__chaos_point(site); \
    } while (0)
void loom__chaos_init(void);
void loom__chaos_point(int site);
int64_t loom__chaos_slice(int64_t slice);

/* Priority levels: a level is a LOOM_PRIO_* value (loom.h) everywhere — g->prio, the level
 * running on a P, the argument of every function that takes one — and per-level arrays are
 * indexed by LVL(level).  LOOM__PRIO_NONE: no goroutine runs on the P. */
#define LOOM__NLEVELS   (LOOM_PRIO_HIGH - LOOM_PRIO_LOW + 1)
#define LVL(prio)       (-LOOM_PRIO_LOW + (prio))
#define LOOM__PRIO_NONE (LOOM_PRIO_LOW - 1)

typedef struct loom__g G;
typedef struct loom__m M;
typedef struct loom__p P;
typedef struct loom__timer loom__timer;

/* ------------------------------------------------------------------ lock.c
 * loom__lock: the runtime's internal mutex (runtime.lock, lock_futex.go): a futex word,
 * 0 unlocked, 1 locked, 2 locked with sleepers.  Spins briefly, then sleeps in the kernel.
 * Held only for short critical sections, never across a blocking operation; it may be held
 * across a goroutine switch only as the "unlock after switch" of loom__park.
 * loom__note: a one-shot wakeup (runtime.note) an M sleeps on while idle. */
typedef struct {
    uint32_t key;
} loom__lock;
typedef struct {
    uint32_t key;
} loom__note;
/* clang-format off */
#define LOOM__LOCK_INIT { 0 }
/* clang-format on */
void loom__lock_acquire(loom__lock *l);
void loom__lock_release(loom__lock *l);
bool loom__lock_try(loom__lock *l);
void loom__note_clear(loom__note *n);
void loom__note_wakeup(loom__note *n);
void loom__note_sleep(loom__note *n);
bool loom__note_tsleep(loom__note *n, int64_t ns); /* false on timeout */
void loom__osyield(void);

/* loom__spinlock: for the shortest critical sections on the hottest paths (a channel's
 * state): acquire is one atomic exchange, release a plain store-release (no atomic
 * read-modify-write, unlike loom__lock, which must look for sleepers).  A contended
 * acquire spins, then yields the thread. */
typedef struct {
    uint32_t key;
} loom__spinlock;
static inline bool loom__spin_try(loom__spinlock *l) {
    return __atomic_exchange_n(&l->key, 1, __ATOMIC_ACQUIRE) == 0;
}
void loom__spin_lock_slow(loom__spinlock *l);
static inline void loom__spin_lock(loom__spinlock *l) {
    if (likely(loom__spin_try(l))) return;
    loom__spin_lock_slow(l);
}
static inline void loom__spin_unlock(loom__spinlock *l) { __atomic_store_n(&l->key, 0, __ATOMIC_RELEASE); }

/* ------------------------------------------------------------------ arch/
 * loom__ctx_switch saves the callee-saved registers, MXCSR and the x87 control word on
 * the current stack, stores the stack pointer in *save_sp, loads load_sp and restores the
 * same frame from there.  loom__ctx_init builds the first frame of a fresh stack so that
 * switching to it calls entry() — see src/arch/ctx_x86_64_sysv_elf.S for the layout. */
void loom__ctx_switch(void **save_sp, void *load_sp);
void *loom__ctx_init(void *stack_top, void (*entry)(void));

/* ------------------------------------------------------------------ stack.c */
/* The default slot: 64 KiB (~60 KiB usable).  Measured on these VMs with a million parked
 * goroutines: with 128 KiB slots (128 GiB of address space, one touched page in each)
 * waking them all cost 9.8 µs a goroutine, with 64 KiB slots 0.66 µs and with 16 KiB
 * 0.6 µs — a cliff between 64 and 128 KiB in the cost of touching sparse, already
 * faulted pages (the VM's shadow page tables, most likely).  Sanitizer frames are two to
 * three times larger, so those builds keep 128 KiB. */
#if defined(LOOM_ASAN) || defined(LOOM_TSAN)
#define LOOM_STACK_DEFAULT (128u * 1024)
#else
#define LOOM_STACK_DEFAULT (64u * 1024)
#endif
#define LOOM_STACK_MIN    (16u * 1024)
#define LOOM_STACK_MAX    (256u * 1024 * 1024)
#define LOOM_STACK_CANARY 0x6c6f6f6d2d737461ull /* "loom-sta" */
size_t loom__stack_class_size(size_t want);     /* rounds to the size class */
G *loom__g_alloc(int node);                     /* a fresh zeroed G record (dense arenas of node) */
bool loom__stack_get(P *p, G *g);               /* attach a stack (first run); false: no memory */
bool loom__stack_cached(P *p, G *g);            /* get would take a warm one from p's cache */
void loom__stack_put(P *p, G *g);               /* detach a dead G's stack into p's cache */
void loom__stack_init(void);
void loom__stack_term(void); /* unmaps every arena */
bool loom__stack_find(uintptr_t addr, G **g, uintptr_t *lo, uintptr_t *hi, bool *guard);
extern size_t loom__stack_default;
bool loom__stack_redzone_ok(G *g); /* overflow check at exit */

/* ------------------------------------------------------------------ fiber.c
 * Sanitizer and valgrind annotations for stack switches; in plain builds the switch hooks
 * are empty inlines so the hot path pays nothing. */
#if defined(LOOM_ASAN) || defined(LOOM_TSAN)
void loom__fiber_create(G *g);
void loom__fiber_destroy(G *g);
void loom__fiber_reuse_stack(G *g); /* a reused slot: clear stale ASan poison */
#else
static inline void loom__fiber_create(G *g) { (void)g; }
static inline void loom__fiber_destroy(G *g) { (void)g; }
static inline void loom__fiber_reuse_stack(G *g) { (void)g; }
#endif
/* The switch hooks are inlined into the function that switches: TSan's shadow call stack
 * must see that function enter and leave on the same fiber, which an out-of-line hook
 * (entered on the old fiber, left on the new one) would break. */
#if defined(LOOM_TSAN)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(LOOM_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif
static inline __attribute__((always_inline)) void loom__fiber_start_switch(G *from, G *to, bool dying);
static inline __attribute__((always_inline)) void loom__fiber_finish_switch(G *g);
void loom__fiber_init_g0(G *g0);
unsigned loom__fiber_new_stack(char *lo, size_t size); /* a fresh slot: tell valgrind; its id */
void loom__fiber_free_stack(unsigned id);

/* ------------------------------------------------------------------ timer.c
 * A timer fires fn(arg, seq) once at `when` on the P whose heap holds it (per-P 4-ary heaps,
 * as Go since 1.14).  Timers live inside the objects that use them (a G's sleep timer), never
 * allocated per use.  Fields after `when` belong to the heap's owner under p->timers_lock. */
struct loom__timer {
    int64_t when;                  /* deadline, loom_now() ns; written under the heap lock */
    int64_t (*fn)(loom__timer *t); /* returns the period (> 0: fire again, a ticker) or 0 */
    void *arg;
    P *pp;          /* heap holding it, or NULL; under that P's timers_lock */
    int32_t idx;    /* index in pp's heap */
    uint32_t state; /* TIMER_IDLE / TIMER_PENDING / TIMER_FIRING, atomic */
};
enum { TIMER_IDLE = 0, TIMER_PENDING = 1, TIMER_FIRING = 2 };
void loom__timer_add(P *p, loom__timer *t, int64_t when);
bool loom__timer_del(loom__timer *t); /* true if removed before firing; waits out a firing */
int64_t loom__timer_next_fire(int64_t when, int64_t now, int64_t period); /* a periodic timer's */
P *loom__timer_home(void);                   /* the heap for a timer the caller starts */
int64_t loom__deadline_after(int64_t ns);    /* loom_now() + ns, saturated */
int64_t loom__timers_run(P *p, int64_t now); /* runs due timers; returns next deadline or 0 */
int64_t loom__timers_next(P *p);             /* earliest deadline of p's heap, 0 = none */
int loom__timers_count(P *p);
void loom__timers_term(P *p);
void loom__timers_move(P *from, P *to); /* every timer of from onto to's heap */

/* ------------------------------------------------------------------ G, M, P
 * Status of a G, and who owns its stack in each (as runtime2.go):
 *   G_IDLE      just allocated or in a free list; nobody runs it.
 *   G_RUNNABLE  in a run queue or runnext; not running; the scheduler owns the stack.
 *   G_RUNNING   running on an M that holds a P; the G owns its stack.
 *   G_WAITING   parked (channel, lock, sleep…); the object it waits on owns the right to
 *               ready it (through loom__ready); nobody runs it.
 *   G_SYSCALL   inside loom_block_begin/end: running without a P.
 *   G_DEAD      finished; its record and stack wait in a free list for reuse.
 * A G's saved context is valid whenever it is not G_RUNNING: loom__park publishes the G
 * (releases the lock guarding its wait queue, arms its timer) only after the switch away
 * from it is complete, in the "after switch" hook run on the next context. */
enum { G_IDLE, G_RUNNABLE, G_RUNNING, G_WAITING, G_SYSCALL, G_DEAD };

/* wait reasons, shown in dumps */
enum {
    WAIT_NONE,
    WAIT_CHAN_SEND,
    WAIT_CHAN_RECV,
    WAIT_SELECT,
    WAIT_SELECT_NOCASES,
    WAIT_SLEEP,
    WAIT_MUTEX,
    WAIT_RWMUTEX_R,
    WAIT_RWMUTEX_W,
    WAIT_COND,
    WAIT_WAITGROUP,
    WAIT_SEMA,
    WAIT_IO,
    WAIT_LOCKED_THREAD,
    WAIT_COUNT
};
extern const char *const loom__wait_names[WAIT_COUNT];

typedef struct loom__sudog loom__sudog;

/* A FIFO of goroutines linked through schedlink (the priority levels' queues); the caller
 * owns or locks it.  g goes at the tail, or at the head (it runs
 * next); get takes the head off. */
static inline void loom__glist_put(G **head, G **tail, G *g, bool front);
static inline G *loom__glist_get(G **head, G **tail);

/* Field order is cache-line order (G records are 64-byte aligned, 256 bytes in plain
 * builds): line 0 holds what queueing, stealing and switching touch, line 1 the rest of
 * what newproc and the first run write, so a goroutine that waited long in a queue costs
 * two cache misses to start, not five. */
struct loom__g {
    /* line 0 */
    void *sp;        /* saved stack pointer while not running; owner: the switcher */
    M *m;            /* M running it; written by whoever switches to it */
    G *schedlink;    /* run-queue / free-list link; owner: the queue holding it */
    uint64_t id;     /* > 0; fixed while alive */
    uint32_t status; /* G_*; atomic, for dumps and assertions */
    int prio;        /* LOOM_PRIO_*: its priority level (prio.c) */
    void (*fn)(void *);
    void *arg;
    /* the stack (stack.c): attached at the first run, detached at exit; owner: the G's M */
    char *stack_lo; /* lowest usable address (above the guard page), NULL: none */
    /* line 1 */
    size_t stack_size;    /* usable bytes from stack_lo to the slot header */
    uintptr_t stack_base; /* start of the slot (the guard page), 0: no stack yet */
    size_t slot_size;     /* size class of the slot it wants / has */
    void *created_pc;     /* where loom_go was called, for dumps; NULL: goroutine 1 */
    M *lockedm;           /* loom_lock_thread; owner: the G itself */
    void *param;          /* wakeup parameter (a sudog, or NULL), set by the waker */
    uint32_t waitreason;  /* WAIT_*, set before parking */
    int saved_errno;      /* the goroutine's errno while not running */
    uint32_t nopreempt;   /* loom_preempt_disable depth; owner: the G */
    bool guarded;         /* a guard page sits below stack_lo */
    bool named;           /* name[] holds a loom_attr.name (else it is not read) */
    /* line 2 */
    int64_t waitsince;   /* loom_now() when it parked */
    uint32_t selectdone; /* select / timed park: 0 armed, 1 claimed by a waker; atomic */
    uint32_t parkseq;    /* bumped at each select that parks (stale-waiter check) */
    uint32_t parking;    /* timed park: 1 until its after-switch hook is done; atomic */
    loom__timer timer;   /* sleep / select timeout; owner: the G */
    /* line 3 */
    G *allnext;              /* list of every G ever allocated; fixed once pushed (sched.allg) */
    char name[32];           /* loom_attr.name, copied; shown in dumps */
    uint64_t detprio;        /* LOOM_SCHED=pct: its PCT priority (det.c); under det.lock */
    uint32_t waitseq;        /* fd wait: the pd's seq when the wait began (netpoll.c); atomic */
    int32_t statusm;         /* invariant checks: the M that made the last status change */
    const char *statuswhere; /* (-1: none), and where ("proc.c:123"); for the fatal message */
    loom_ctx *ctx;           /* its current context, NULL: background (context.c); owner: the G */
    loom_ctx *ctxq;          /* the context whose waiters it is on, or NULL; under ctxq's lock */
    G *ctxnext, *ctxprev;    /* links on ctxq's waiters */
    int ctxerr;              /* the cause, when its context's end woke it (context.c) */
#if defined(LOOM_ASAN) || defined(LOOM_TSAN)
    void *fiber; /* TSan fiber */
    void *asan_fake_stack;
    const void *asan_bottom; /* for g0: the thread stack, learned on the first switch */
    size_t asan_size;
#endif
};
_Static_assert(offsetof(struct loom__g, stack_size) == 64 && offsetof(struct loom__g, waitsince) == 128 &&
                       offsetof(struct loom__g, allnext) == 192,
               "G fields moved off their cache lines");

static inline void loom__glist_put(G **head, G **tail, G *g, bool front) {
    if (front) {
        g->schedlink = *head;
        *head = g;
        if (!*tail) *tail = g;
    } else {
        g->schedlink = NULL;
        if (*tail) (*tail)->schedlink = g;
        else *head = g;
        *tail = g;
    }
}

static inline G *loom__glist_get(G **head, G **tail) {
    G *g = *head;
    if (!g) return NULL;
    *head = g->schedlink;
    if (!*head) *tail = NULL;
    g->schedlink = NULL;
    return g;
}

/* An M is an OS thread.  Fields are owned by the M itself unless noted. */
struct loom__m {
    G g0;          /* the thread's own stack: runs schedule() */
    G *curg;       /* goroutine running now (or &g0) */
    P *p;          /* attached P, or NULL */
    P *nextp;      /* P handed over by startm; written by the waker before note_wakeup */
    bool spinning; /* looking for work; counted in sched.nmspinning */
    bool blocked;  /* in loom_block_begin/end (entersyscall) */
    P *oldp;       /* the P left in P_SYSCALL by entersyscall; owner: the M */
    int id;
    pthread_t thread;
    loom__note park; /* sleeps here while idle (stopm) */
    M *schedlink;    /* idle list link; under sched.lock */
    M *alllink;      /* list of all Ms; under sched.lock */
    G *lockedg;      /* goroutine locked to this thread */
    G *pending_g;    /* locked goroutine handed back with a P (startlockedm); set before park wakeup */
    G *nextg;        /* picked to run next but without a stack yet: g0 starts it; this M only */
    /* the "after switch" hook: set by the context switching away, run by the one switched to */
    void (*after_fn)(G *prev, void *arg);
    void *after_arg;
    G *after_prev;
    uint32_t fastrand; /* per-M PRNG state */
    uint64_t fastrand64;
    int tid;     /* kernel thread id; written by the M in mstart before it first
                                * publishes itself in a P (acquirep: release), read by sysmon */
    int *errnop; /* this thread's errno (set with loom__setm) */
    bool exited;
    void *altstack;                   /* our sigaltstack, if we installed one */
    sigset_t sigmask;                 /* signal mask to run goroutines with (the creator's) */
    volatile sig_atomic_t in_preempt; /* the preemption handler runs; this thread only */
    uint32_t lockwait;                /* sleeps on a runtime lock (not a blocking call); atomic */
    int statfd;                       /* /proc/self/task/TID/stat, or -1; sysmon only */
    int syscallfd;                    /* /proc/self/task/TID/syscall, or -1; sysmon only */
    /* LOOM_TRACE (trace.c): this M's event buffer and open slices; this M only */
    struct loom__tbuf *tbuf;
    int64_t tr_start; /* start of the running goroutine's slice, or -1 */
    int64_t tr_idle;  /* start of an idle or blocking-call slice */
    int tr_p;         /* P of the open run slice */
    int tr_why;       /* LOOM__TR_* that ends the slice, if not block/yield/exit */
    /* counters for loom_stats: written by this M only (relaxed stores), read by anyone */
    uint64_t nswitch, nsteal, npreempt, nasync;
    uint64_t nsteal_tier[3]; /* steals by victim distance (topo.c tiers) */
    int pin_cpu;             /* CPU this thread is pinned to (LOOM_PIN=1), or -1 */
    bool cpu_lent;           /* woken onto its waker's CPU (proc.c, mwake); set before the wakeup */
    void *lend_mask;         /* ...and the affinity mask it had before, to go back to */
    timer_t dtimer;          /* deadline timer: SIGURG to this thread (preempt_signal.c) */
    bool dtimer_ok;
    int64_t dtimer_when; /* what it is armed for, 0: not */
};

/* Local run queue size, as Go's 256-slot ring. */
#define LOOM_RUNQ_SIZE 256

/* A P is the right to run goroutines.  The owner is the M that holds it (p->m). */
struct loom__p {
    int id;
    uint32_t status;    /* P_IDLE / P_RUNNING; atomic */
    M *m;               /* owning M; written by acquirep/releasep */
    P *link;            /* idle list; under sched.lock */
    uint32_t schedtick; /* incremented per schedule(); owner only (sysmon reads) */
    /* local run queue: lock-free ring, one producer (the owner), many consumers (thieves),
     * as runtime.runqput/runqget/runqgrab. head is CASed by consumers, tail stored by the owner */
    uint32_t runqhead;
    uint32_t runqtail;
    G *runq[LOOM_RUNQ_SIZE];
    G *runnext;           /* filled by the owner only; the owner and foreign takers CAS
                                   it to NULL (runq.c, "runnext") */
    uint32_t runnexttick; /* schedtick when runnext was filled; owner only */
    /* priority levels (prio.c): a FIFO per level but NORMAL, which uses the ring above,
     * linked through schedlink, under lock (the owner, thieves and sysmon's aging take it);
     * n[] counts them, atomic, read without the lock */
    struct {
        loom__spinlock lock;
        G *head[LOOM__NLEVELS], *tail[LOOM__NLEVELS];
        uint32_t n[LOOM__NLEVELS];
        int32_t running;      /* level of the goroutine running here (LOOM__PRIO_NONE: none);
                                   stored by the owner at each switch, read by readiers */
        uint32_t kick;        /* preempt was set by a priority kick (loom__prio_kick); atomic */
        G *age_g[3];          /* sysmon's aging watch: the head seen at each AGE_* place, */
        int64_t age_since[3]; /* and since when; sysmon only */
    } prio;
    /* free G records (no stack), LIFO; and free stack slots of the default class (slot
     * header addresses, stack.c), LIFO for warm reuse; owner only */
    G *gfree;
    int ngfree;
    /* goroutine ids to hand out, [goidcache, goidcacheend), taken from sched.goidgen a
     * batch at a time (as runtime's pp.goidcache): no shared counter per spawn; owner only */
    uint64_t goidcache, goidcacheend;
    uintptr_t stackcache;
    int nstackcache;
    /* timers: 4-ary min-heap on when; guarded by timers_lock (other Ps run due timers too) */
    loom__lock timers_lock;
    loom__timer **timers;
    int ntimers, timers_cap;
    int64_t timer0_when; /* heap[0]->when or 0; atomic, read without the lock */
    /* the slice is used up (sysmon), or a priority kick: yield at the next chance; atomic */
    uint32_t preempt;
    uint32_t syscalltick; /* bumped at each entersyscall; by the M, before P_SYSCALL */
    /* spare Ps (spare.c): a P whose thread sleeps in the kernel has a spare P stand in */
    struct {
        P *standin;      /* the spare in service on our behalf; under sched.lock */
        P *lender;       /* for a spare: the P it stands in for; under sched.lock */
        uint32_t retire; /* for a spare: give it back at the next schedule(); atomic */
    } spare;
    /* sysmon's view of this P (sysmon.c): sysmon only */
    struct {
        uint32_t tick;        /* schedtick at the last look */
        int64_t when;         /* when schedtick was seen to change */
        int64_t signal;       /* when the preemption signal was last sent */
        int64_t cpu;          /* the owner thread's CPU time at the last look */
        int64_t cpu0;         /* ... at the first look in this slice */
        int64_t flag_cpu;     /* ... when this slice's preempt flag was first set, or -1 */
        int asleep;           /* looks in a row that found its thread asleep */
        int64_t asleep_since; /* the first of them */
        uint64_t nswitch;     /* the owner M's switch count at the last look */
        uint32_t syscalltick; /* syscalltick at the last look */
        int64_t syscallwhen;  /* when this syscall was first seen */
    } sysmon;
};
/* P status: P_IDLE in the idle list (under sched.lock); P_RUNNING owned by p->m;
 * P_SYSCALL left by an M in a blocking call (m->oldp): the M takes it back with
 * CAS(P_SYSCALL -> P_RUNNING), sysmon retakes it with CAS(P_SYSCALL -> P_IDLE). */
enum { P_IDLE, P_RUNNING, P_SYSCALL, P_OFF /* a spare not in use */ };

/* The scheduler's global state (runtime.schedt). */
struct loom__sched {
    loom__lock lock; /* guards the fields up to runqsize */
    M *midle;        /* idle Ms */
    int nmidle;
    int mcount;          /* Ms created */
    int nmlockedidle;    /* locked Ms sleeping until their goroutine is ready */
    P *pidle;            /* idle Ps */
    uint32_t npidle;     /* atomic (read without lock) */
    uint32_t nmspinning; /* atomic */
    /* global run queue, NORMAL level (runq.c): goroutines that have run, and fresh ones that
     * have not (runq[GQ_FRESH]), each a ring of cap (a power of two) pointers from first, n of
     * them; growing by doubling.  Arrays, not lists through the Gs: moving a batch between
     * them and a P's ring copies pointers and touches no G under the lock.  sched.lock. */
    struct loom__gring {
        G **v;
        uint32_t cap, first, n;
    } runq[2];
    uint32_t runqtakes; /* takes from the global NORMAL queue (the fresh ring's turns) */
    int32_t runqsize;   /* goroutines in the global queues of all levels; atomic reads allowed */
    /* priority levels (prio.c) */
    struct {
        uint32_t used;  /* a goroutine left NORMAL once: the level checks are on; atomic */
        int64_t age_ns; /* LOOM_PRIO_AGE_MS */
        G *gq_head[LOOM__NLEVELS], *gq_tail[LOOM__NLEVELS]; /* global FIFOs but NORMAL; sched.lock */
        uint32_t gq_n[LOOM__NLEVELS];                       /* their lengths; atomic reads allowed */
        G *gage_g[LOOM__NLEVELS];          /* aging watch on the global NORMAL and LOW heads; */
        int64_t gage_since[LOOM__NLEVELS]; /* sysmon only */
    } prio;
    G *gfree; /* batches of free Gs of any stack size (proc.c gfput); under gfree_lock */
    loom__lock gfree_lock;
    G *allg;               /* every G record, newest first: pushed with a CAS (gfget), never
                                   removed; readers load it with acquire and walk allnext */
    M *allm;               /* under lock */
    P **allp;              /* nprocs Ps, then the spares made so far (P_OFF until lent):
                                   room for maxprocs pointers, fixed for the run */
    int nprocs;            /* LOOM_PROCS or loom_set_procs; written under lock, read atomically */
    int procs_auto;        /* nprocs follows the CPU limit (neither set it); atomic */
    int nallp;             /* Ps made so far; grows (sysmon, under lock) as spares are
                                   made, never shrinks; read it with loom__nallp() */
    int maxprocs;          /* LOOM_MAX_THREADS: Ps in service at most, spares included */
    bool spare_limit_said; /* the limit's warning is printed once a run; under lock */
    uint32_t nactive;      /* Ps in use: nprocs + spares lent; atomic */
    uint64_t goidgen;      /* ids handed to the Ps' caches, GOID_BATCH at a time; atomic */
    uint32_t exiting;      /* loom_run's main returned; atomic */
    int exit_code;
    int64_t lastpoll;     /* 0 while an M blocks in netpoll; atomic */
    int64_t polluntil;    /* that M's wake deadline; atomic */
    uint32_t deadwait;    /* checkdead found only threads loom did not create to stop a
                                   deadlock report: sysmon looks again; atomic */
    int sysmon_tid;       /* for census.c; atomic */
    uint32_t sysmon_busy; /* sysmon is in its work (it may be readying goroutines); atomic */
    uint32_t sysmonwait;  /* sysmon sleeps on sysmonnote; atomic */
    loom__note sysmonnote;
    pthread_t sysmon_thread;
    bool running; /* between loom_run's start and end */
    int64_t start_time;
    int base_nice;            /* the nice of the thread that called loom_run; set at start */
    int64_t coarse_now;       /* a recent loom__nanotime(), for wait stamps: sysmon stores it
                                   each look, an M each time it leaves idle; relaxed atomic */
    int slice_us;             /* time slice */
    uint64_t nhandoff, nlend; /* loom_stats: Ps handed on by sysmon; atomic */
    int schedtrace_ms;        /* LOOM_DEBUG=schedtrace=MS (0: off) */
    bool scheddetail;         /* LOOM_DEBUG=scheddetail=1 */
    bool coopasync;           /* LOOM_DEBUG=coopasync=1 (proc.c, preempt_point) */
    bool check;               /* LOOM_DEBUG=check=1, chaos and sanitizer builds: invariant checks */
};
extern struct loom__sched loom__sched;

/* How many Ps exist (allp[0 .. loom__nallp()-1] are valid): acquire, so that a P made by
 * sysmon is seen whole by whoever finds it through the count. */
static inline int loom__nallp(void) { return __atomic_load_n(&loom__sched.nallp, __ATOMIC_ACQUIRE); }

/* The current M: a thread-local pointer read through a non-inlined call, so no compiler
 * can cache its address across a goroutine switch (which may change the thread). */
M *loom__getm(void);
void loom__setm(M *m);
static inline G *loom__getg(void) {
    M *m = loom__getm();
    return m ? m->curg : NULL;
}

/* ------------------------------------------------------------------ proc.c */
void loom__park(M *m, void (*after)(G *prev, void *arg), void *arg,
                int reason);                         /* gopark; m: this thread's */
uint64_t loom__spawn(void (*fn)(void *), void *arg); /* a goroutine, from any thread (0: out of memory) */
int loom__procresize(int n);  /* the number of Ps, while goroutines run; returns the old one */
void loom__procs_check(void); /* sysmon: Ps as loom__procresize left them */
/* context.c: the parking side of a goroutine's current context (see there) */
bool loom__ctx_park_hook(G *prev);
void loom__ctx_park_done(G *g);
int loom__ctx_ended(G *g);
void loom__ready(G *g);          /* goready */
void loom__ready_m(M *m, G *g);  /* the same, m: this thread's M (or NULL), already read */
void loom__ready_list(G *head);  /* readies a schedlink-ed list */
void loom__injectglist(G *list); /* the same from a thread without a P */
bool loom__park_timeout(void (*after)(G *, void *), void *arg, int reason, int64_t ns);
void loom__wakep(void);
void loom__wake_netpoller(int64_t when);
void loom__checkdead(void);
void loom__entersyscall(M *m);   /* hand the P off: the goroutine may block */
void loom__exitsyscall(M *m);    /* take a P again, or queue and wait */
bool loom__retake_syscall(P *p); /* sysmon: hand on a P left in P_SYSCALL */
void loom__wake_all_ms(void);
bool loom__in_goroutine(void); /* a G (not g0, not a foreign thread) runs here */
/* the same for M m (the current one, NULL on a foreign thread) */
static inline bool loom__m_runs_g(M *m) { return m && m->curg != &m->g0 && m->p != NULL; }
uint32_t loom__fastrand(M *m);
uint32_t loom__fastrandn(M *m, uint32_t n);
void loom__preempt_check(void); /* cooperative preemption point */
/* The start of a loom call that may block or switch: in a goroutine, its preemption point,
 * then this thread's M (one look at the M instead of loom__in_goroutine and
 * loom__preempt_check); NULL outside a goroutine. */
M *loom__enter_blocking(void);
void loom__unlock_after(G *prev, void *lock);      /* an "after switch" hook: releases a loom__lock */
void loom__spin_unlock_after(G *prev, void *lock); /* the same for a loom__spinlock */

/* ------------------------------------------------------------------ prio.c
 * Priority levels.  The FIFOs of the levels but NORMAL, reached from runq.c: */
void loom__prio_runqput(P *p, G *g);
void loom__prio_globrunqput(G *g);                     /* sched.lock held */
G *loom__prio_globpop(int prio);                       /* sched.lock held */
bool loom__prio_globrunqget(P *p, int nnormal, G **g); /* sched.lock held */
G *loom__prio_runqget(P *p, bool *inherit);            /* loom__runqget once levels are in use */
G *loom__prio_take(P *p, int prio);                    /* one off the head, as a thief */
G *loom__prio_steal(P *p, P *victim, int prio);
bool loom__prio_holds(P *p, G *g); /* invariant checks */
void loom__prio_drain(P *p);
/* ...and the policy, reached from the scheduler, each call behind a check of prio.used: */
void loom__prio_init(void);                 /* schedinit: LOOM_PRIO_AGE_MS */
void loom__prio_use(void);                  /* a goroutine left NORMAL: levels in use */
bool loom__prio_ready(P *p, int prio);      /* a goroutine of level >= prio is ready */
bool loom__prio_outranked(P *p);            /* a ready goroutine outranks p's running one */
bool loom__prio_keeps(M *m, G *g);          /* g outranks every ready one: it keeps the P */
void loom__prio_kick(P *p);                 /* switch p's goroutine out soon */
void loom__prio_queued(P *p, int prio);     /* level prio queued on p: kick if it outranks */
void loom__prio_queued_global(int prio);    /* ...queued globally: kick the lowest Ps */
bool loom__prio_kick_high(P *p);            /* sysmon: a HIGH one waits behind p's */
void loom__prio_sysmon(P *p, int64_t now);  /* sysmon: aging, due timers */
void loom__prio_sysmon_global(int64_t now); /* sysmon: aging of the global queues */

/* ------------------------------------------------------------------ preempt_policy.c
 * Held goroutines (the rest of preempt_policy.c's interface is the core's: proc.h). */
void loom__async_preempt(M *m); /* from the signal handler: switch out, resume on m */

/* ------------------------------------------------------------------ runq.c */
void loom__runqput(P *p, G *g, bool next);
G *loom__runnext_steal(P *v, G *want);       /* a foreign taker's CAS, if it still holds want */
G *loom__runq_peek(P *p, uint32_t *h);       /* the ring's head and its index */
bool loom__runq_take_head(P *p, uint32_t h); /* ...taken as a thief takes */
G *loom__globrunq_peek(void);                /* sched.lock held: the next global NORMAL take */
G *loom__globrunq_pop(void);                 /* sched.lock held: ...taken */
/* runnext, the owner's take: a CAS to NULL, as the thieves' (runq.c, "runnext"). */
static inline __attribute__((always_inline)) G *loom__runnext_take(P *p) {
    G *next = LOAD_RLX(&p->runnext);
    if (!next) return NULL;
    return CAS(&p->runnext, next, NULL) ? next : NULL; /* (chaos stretches the thieves' side) */
}

/* runq.c's fast path, inline here for the switch: runnext, then the ring (the NORMAL level;
 * runtime.runqget).  The ring's consumers are the owner and thieves: both CAS the head. */
static inline __attribute__((always_inline)) G *loom__runqget_normal(P *p, bool *inherit) {
    G *next = loom__runnext_take(p);
    if (next) {
        *inherit = true;
        return next;
    }
    *inherit = false;
    for (;;) {
        uint32_t h = LOAD_ACQ(&p->runqhead);
        uint32_t t = LOAD_RLX(&p->runqtail);
        if (t == h) return NULL;
        G *g = __atomic_load_n(&p->runq[h % LOOM_RUNQ_SIZE], __ATOMIC_RELAXED);
        if (CAS_REL(&p->runqhead, h, h + 1)) {
            if (t - h > 1) {
                /* the next one is likely cold (skynet queues ~70,000 Gs): start fetching
                 * the two lines its switch reads while this one runs (~5 % of skynet) */
                G *nx = __atomic_load_n(&p->runq[(h + 1) % LOOM_RUNQ_SIZE], __ATOMIC_RELAXED);
                __builtin_prefetch(nx, 1);
                __builtin_prefetch((char *)nx + 64, 1);
            }
            return g;
        }
    }
}
/* runq.c's loom__runqput(p, g, false) for the common case, inline: a NORMAL goroutine at
 * the tail of a ring with room (only the owner writes the tail).  False: use runqput. */
static inline __attribute__((always_inline)) bool loom__runqput_tail(P *p, G *g) {
    if (unlikely(g->prio != LOOM_PRIO_NORMAL)) return false;
    uint32_t h = LOAD_ACQ(&p->runqhead);
    uint32_t t = LOAD_RLX(&p->runqtail);
    if (unlikely(t - h >= LOOM_RUNQ_SIZE)) return false;
    __atomic_store_n(&p->runq[t % LOOM_RUNQ_SIZE], g, __ATOMIC_RELAXED);
    STORE_REL(&p->runqtail, t + 1);
    return true;
}
/* stack.c: the overflow check at each switch (the saved sp must lie above stack_lo) */
static inline __attribute__((always_inline)) bool loom__stack_ok(G *g, void *sp) {
    return (char *)sp >= g->stack_lo;
}
/* The next goroutine from p's own queues, by level (runtime.runqget). */
static inline __attribute__((always_inline)) G *loom__runqget(P *p, bool *inherit) {
    if (unlikely(LOAD_RLX(&loom__sched.prio.used))) return loom__prio_runqget(p, inherit);
    return loom__runqget_normal(p, inherit);
}
G *loom__globrunq_pop_locked(void);
bool loom__runqempty(P *p);
G *loom__runqsteal(P *p, P *victim, bool stealrunnext);
void loom__globrunqput(G *g);                         /* sched.lock held */
void loom__globrunqputbatch(G *head, G *tail, int n); /* sched.lock held */
void loom__globrunq_term(void);                       /* loom_run's end: free the global ring */
G *loom__globrunqget(P *p, int max);                  /* sched.lock held */
void loom__runq_drain(P *p);                          /* runtime end: forget the queue */
int loom__runq_takeall(P *p, G **head, G **tail);     /* every queued G of p as a list */

/* ------------------------------------------------------------------ netpoll.c
 * The core's view of the poller (backend: netpoll_epoll.c).  loom__netpoll blocks up to ns
 * (< 0 forever, 0 just checks) and returns a schedlink-ed list of goroutines made ready. */
int loom__netpoll_init(void);
void loom__netpoll_term(void);
G *loom__netpoll(int64_t ns); /* also in netpoll.h: the fd side */
void loom__netpoll_break(void);
bool loom__netpoll_has_waiters(void);
int loom__netpoll_verify(G **list); /* sysmon: fd waiters to wake to re-register (netpoll.c) */
int64_t loom__netpoll_verify_every(int64_t min_ns);

/* ------------------------------------------------------------------ spare.c
 * sysmon's side of spare Ps (the core's is in sched.h). */
enum { SPARE_NONE, SPARE_LENT, SPARE_ASLEEP, SPARE_STANDS_IN };
/* SPARE_*: what became of p; on SPARE_ASLEEP *next is lowered to when to look again */
int loom__spare_look(P *p, int64_t now, bool known, bool ran, int64_t *next);
void loom__spare_back(P *p);    /* p's thread runs again: its stand-in goes back */
bool loom__spare_lend(P *p);    /* put a spare in service for p */
void loom__spare_retire(P *sp); /* ask spare sp back */
char loom__thread_state(P *p);  /* kernel state letter of p's thread, 0: unknown */

/* ------------------------------------------------------------------ census.c */
void loom__census_init(void);    /* loom_run: its caller is loom's */
bool loom__census_foreign(void); /* does a thread loom did not create exist? */

/* ------------------------------------------------------------------ sysmon.c */
int loom__sysmon_start(void);
void loom__sysmon_stop(void);
void loom__sysmon_wake(void);

/* ------------------------------------------------------------------ preempt_signal.c */
void loom__preempt_init(void);
void loom__preempt_term(void);
void loom__preempt_signal(P *p, int64_t now); /* sysmon: signal p's thread */
bool loom__preempt_enabled(void);
void loom__preempt_kick(P *p);   /* any thread: signal p's thread now */
void loom__preempt_mstart(M *m); /* the M's deadline timer */
void loom__preempt_mexit(M *m);
void loom__preempt_arm(M *m, int64_t when); /* 0: disarm */
void loom__preempt_rearm(M *m);             /* ...to the earliest timer of m's P */

/* ------------------------------------------------------------------ stats.c */
#define LOOM__COUNT(m, field) STORE_RLX(&(m)->field, (m)->field + 1) /* an M's own counter */
void loom__debug_init(void);                                         /* parses LOOM_DEBUG */

/* LOOM_SEED (det.c): deterministic schedules.  One branch on a read-mostly flag when off. */
extern bool loom__det_on;
bool loom__det_init(void);           /* schedinit: LOOM_SEED, LOOM_SCHED */
G *loom__det_next(P *p);             /* the next goroutine to run, or NULL */
bool loom__det_yield(P *p, G *self); /* a scheduling point: true if another runs */
void loom__det_spawn(G *g);
int64_t loom__det_now(void);
void loom__det_advance(int64_t to); /* virtual time jumps to `to` */
uint32_t loom__det_waiting(void);   /* goroutines in the run set */
uint32_t loom__det_rand32(void);
void loom__det_say_seed(void); /* "loom: seed N" on stderr, once */
/* The clock of timers and deadlines: virtual in deterministic mode, else CLOCK_MONOTONIC. */
static inline int64_t loom__now(void) { return unlikely(loom__det_on) ? loom__det_now() : loom__nanotime(); }

/* LOOM_TRACE (trace.c).  Hooks are called through LOOM__TRACE, one branch when off. */
extern bool loom__trace_on;
#define LOOM__TRACE(call) \
    do { \
        if (unlikely(loom__trace_on)) { call; } \
    } while (0)
enum { LOOM__TR_YIELD = 1, LOOM__TR_BLOCK, LOOM__TR_PREEMPT, LOOM__TR_EXIT, LOOM__TR_SYSCALL };
void loom__trace_init(void);
void loom__trace_term(void);
void loom__trace_mstart(M *m);
void loom__trace_mexit(M *m);
void loom__trace_switch(M *m, G *from, G *to, bool dying);
void loom__trace_spawn(M *m, uint64_t id);
void loom__trace_unblock(M *m, G *g);
void loom__trace_steal(M *m, P *victim, G *g, int n);
void loom__trace_preempt(M *m, G *g, bool async);
void loom__trace_idle(M *m, bool begin);
void loom__trace_syscall(M *m, G *g, bool begin);
void loom__schedtrace(int64_t now); /* sysmon: one schedtrace report */
bool loom__any_alive(void);         /* a goroutine has not returned (walks allg) */

/* ------------------------------------------------------------------ fatal.c */
void loom__fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void loom__dump_goroutines(int fd); /* every goroutine, symbolized, to fd */
void loom__signals_init(void);
void loom__signals_term(void);
void loom__sigaltstack_init(M *m);
void loom__sigaltstack_term(M *m);

/* ------------------------------------------------------------------ cpus.c */
int loom__cpu_count(void);
int loom__cpu_count_at(const char *cgroup_root, const char *proc_self_cgroup, int affinity_cpus);

/* ------------------------------------------------------------------ sema.c
 * Semaphore with a FIFO of parked goroutines (runtime.semacquire / semrelease). */
void loom__semacquire(struct loom__sema *s, bool lifo, int reason);
void loom__semrelease(struct loom__sema *s, bool handoff);

/* ------------------------------------------------------------------ fiber switch hooks */
static inline __attribute__((always_inline)) void loom__fiber_start_switch(G *from, G *to, bool dying) {
#if defined(LOOM_ASAN)
    const void *bottom = to->asan_bottom ? to->asan_bottom : to->stack_lo;
    size_t size = to->asan_bottom ? to->asan_size : to->stack_size;
    __sanitizer_start_switch_fiber(dying ? NULL : &from->asan_fake_stack, bottom, size);
#endif
#if defined(LOOM_TSAN)
    __tsan_switch_to_fiber(to->fiber, 0);
#endif
    (void)from;
    (void)to;
    (void)dying;
}

static inline __attribute__((always_inline)) void loom__fiber_finish_switch(G *g) {
#if defined(LOOM_ASAN)
    __sanitizer_finish_switch_fiber(g->asan_fake_stack, NULL, NULL);
#endif
    (void)g;
}

/* ------------------------------------------------------------------ wbuf.c */
typedef struct {
    int fd;
    size_t n, cap;
    char *buf;
} loom__wbuf; /* caller-owned buffer */
void loom__wb_flush(loom__wbuf *w);
void loom__wb_str(loom__wbuf *w, const char *s);
void loom__wb_u64(loom__wbuf *w, uint64_t v);
void loom__wb_i64(loom__wbuf *w, int64_t v);
ssize_t loom__read_small(const char *path, char *buf, size_t size); /* NUL-terminated; length or -1 */

/* env helpers */
long loom__env_long(const char *name, long dflt, long lo, long hi);

#endif
