/*
 * spare.c — spare Ps: loom's own stand-ins for threads blocked in calls loom was not told
 * about.
 *
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
 * that has a stand-in of its own hands the stand-in to the lender, to be retired too.
 *
 * Detection is sysmon's look (loom__spare_look): a P whose goroutine has not switched for
 * BLOCKED_NS, whose thread used no CPU time since the last look and which the kernel shows
 * asleep (S or D in /proc/self/task/TID/stat), at every look for ASLEEP_NS (ASLEEP_THREAD_NS
 * if it waits on another thread: the process's memory map, or a lock).  A thread asleep on a
 * runtime lock (m->lockwait) is not blocked in a call.  A call loom was told about
 * (loom_block_begin/end, loom_read...) goes Go's way instead: its P is handed off
 * (proc.c, entersyscall) and no spare is needed.
 *
 * The core sees a spare only as p->spare.retire, checked where the P would be switched,
 * idled or handed off (schedule, findrunnable, handoffp, loom__async_preempt), and then
 * calls loom__spare_off or loom__spare_retirep.
 */
#include "proc.h"
#include <fcntl.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Go's default limit on threads (runtime/debug.SetMaxThreads). */
#define MAX_THREADS_DEFAULT 10000

/* How long a P's goroutine must have run without a schedule() before sysmon checks
 * whether its thread is asleep in the kernel.  1 ms: threads also wait in the kernel
 * briefly without blocking for real (a page fault that waits for reclaim, the mm lock
 * behind another thread's mmap), and lending a spare P for those only adds parallelism
 * nobody asked for; a 200 ms blocking read still keeps 99.5 % of its P's time in use. */
#define BLOCKED_NS 1000000

/* How long a thread must be seen asleep, using no CPU, before a spare stands in for it.
 * Calls that do not block for real also sleep in the kernel now and then (a socket's lock
 * behind another thread's send, a page fault that waits for reclaim): on a loaded 2-CPU
 * machine two looks 20 us apart caught such sleeps in goroutines that never block (their
 * hooked calls park them instead), and lent them spares.  Those sleeps end within
 * microseconds, a blocking call's does not; 1 ms more before the lend is nothing to a call
 * that blocks for real. */
#define ASLEEP_NS 1000000

/* ...and one that waits on another thread gets a spare only after this long: on the
 * process's memory map (malloc's mprotect or a page fault behind another thread's mmap or
 * munmap, which hold the mm lock for up to milliseconds here), or on a lock (a
 * pthread_mutex or one of libc's own).  Their holders are running, or waiting on the memory
 * map in turn, and let go soon: glibc's malloc grows a heap with mprotect under the arena's
 * lock, so while one thread waits on the mm lock the threads that free into that arena
 * wait on it, milliseconds each on a loaded machine.  A lock held across a blocking call is
 * still answered, only later. */
#define ASLEEP_THREAD_NS 20000000

/* LOOM_MAX_THREADS: Ps in service at most, spares included (at least nprocs). */
int loom__spare_limit(int nprocs) {
    int max = (int)loom__env_long("LOOM_MAX_THREADS", MAX_THREADS_DEFAULT, 1, 1000000);
    return max < nprocs ? nprocs : max;
}

/* Asks spare sp back (sched.lock held): true if it was idle, now taken off the idle list and
 * the caller's to give back (spare_off, after the lock); else its owner sees retire at its
 * next look, which it takes under sched.lock before it would make the P idle. */
bool loom__spare_retire_locked(P *sp) {
    STORE(&sp->spare.retire, 1);
    if (LOAD(&sp->status) != P_IDLE) return false;
    P **pp = &loom__sched.pidle;
    while (*pp && *pp != sp) pp = &(*pp)->link;
    if (!*pp) return false; /* someone took it meanwhile: its owner will see retire */
    *pp = sp->link;
    XADD(&loom__sched.npidle, -1);
    return true;
}

/* Gives back spare P sp, which the caller owns (it holds it, or took it off the idle
 * list) and which nobody else will take: queue to the global queue, timers to the lender;
 * a stand-in of sp's own goes to the lender, retiring. */
void loom__spare_off(P *sp) {
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
        child_idle = loom__spare_retire_locked(child);
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
    if (child_idle) loom__spare_off(child);
    /* wake a P for what went to the global queue (ours, or what our owner queued there
     * just before giving us up: a yielding locked goroutine), and for timers that were
     * left to this spare's thread when others went idle (handoffp counted us awake) */
    bool work = LOAD(&loom__sched.runqsize) > 0;
    for (int i = 0; i < loom__nallp() && !work; i++) work = LOAD(&loom__sched.allp[i]->timer0_when) != 0;
    if (work) loom__wakep();
}

/* Takes P p's stand-in off the idle list and retires it, or asks its owner to. */
void loom__spare_retire(P *sp) {
    LOOM__CHAOS(CH_SPARE);
    loom__lock_acquire(&loom__sched.lock);
    bool idle = loom__spare_retire_locked(sp);
    loom__lock_release(&loom__sched.lock);
    if (idle) loom__spare_off(sp);
}

/* A spare P not in service, made if none is and the limit allows; NULL otherwise (the
 * limit's warning the first time).  sched.lock held; called by sysmon only, the one
 * writer of nallp. */
static P *spare_get(void) {
    int nallp = loom__sched.nallp;
    for (int i = loom__sched.nprocs; i < nallp; i++)
        if (LOAD(&loom__sched.allp[i]->status) == P_OFF) return loom__sched.allp[i];
    if (nallp < loom__sched.maxprocs) {
        P *sp = loom__p_new(nallp);
        if (sp) {
            loom__sched.allp[nallp] = sp;
            STORE_REL(&loom__sched.nallp, nallp + 1); /* published whole (loom__nallp) */
            return sp;
        }
    }
    if (!loom__sched.spare_limit_said) {
        loom__sched.spare_limit_said = true;
        fprintf(stderr,
                "loom: LOOM_MAX_THREADS=%d Ps are in service, spares standing in for threads "
                "blocked in calls loom was not told about (a plain read(), usleep, a library's "
                "blocking I/O): no more spare Ps; ready goroutines wait until such a call returns "
                "(loom_block_begin/end and loom_read do not take spares)\n",
                loom__sched.maxprocs);
    }
    return NULL;
}

/* Puts a spare P into service for p, whose thread sleeps in the kernel.  Returns false if
 * p has one already or none can be had. */
bool loom__spare_lend(P *p) {
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
    sp->sysmon.cpu = -1; /* fresh sysmon state for its new life */
    sp->sysmon.cpu0 = -1;
    sp->sysmon.flag_cpu = -1;
    sp->sysmon.tick = sp->schedtick - 1;
    STORE(&sp->spare.retire, 0);
    XADD(&loom__sched.nactive, 1);
    XADD(&loom__sched.nhandoff, 1);
    XADD(&loom__sched.nlend, 1);
    STORE(&sp->status, P_IDLE); /* startm hands it over and makes it P_RUNNING */
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
    loom__startm(sp, true); /* a spinning M: it steals the lender's queue */
    return true;
}

/* The owner of P p sees p->spare.retire: gives the spare back and drops it (m->p = NULL). */
void loom__spare_retirep(M *m) {
    P *p = loom__releasep(m);
    if (m->spinning) {
        m->spinning = false;
        XADD(&loom__sched.nmspinning, -1);
    }
    loom__spare_off(p);
}

/* ------------------------------------------------------------------ sysmon's look */

/* The kernel's state letter for the thread that runs p (R running or runnable, S or D
 * asleep), from /proc/self/task/TID/stat; 0 if unknown. */
char loom__thread_state(P *p) {
    M *m = LOAD(&p->m);
    if (!m || !m->tid) return 0;
    char buf[256];
    if (m->statfd < 0) {
        /* opened once and kept (closed at runtime end): opening a file on every look
         * would briefly take fd numbers the program has just closed */
        char path[64];
        snprintf(path, sizeof path, "/proc/self/task/%d/stat", m->tid);
        m->statfd = open(path, O_RDONLY | O_CLOEXEC);
        if (m->statfd < 0) return 0;
    }
    ssize_t n = pread(m->statfd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *rp = strrchr(buf, ')'); /* the name may contain spaces and parens */
    if (!rp || rp[1] != ' ') return 0;
    return rp[2];
}

/* What p's thread, found asleep, waits in, from /proc/self/task/TID/syscall (its first
 * fields: the call's number, -1 outside any call, or "running"; then its arguments):
 * nothing any more (WAITS_NOT: it runs again), another thread (WAITS_THREAD: mmap,
 * mprotect, munmap, brk, mremap or madvise, or a page fault, all on the memory map; or a
 * lock: a futex wait for the value 2, which is how glibc's lll_lock and pthread_mutex_lock
 * wait, while condition variables, semaphores and joins wait with FUTEX_WAIT_BITSET), or a
 * call (WAITS_CALL, also when unknown). */
enum { WAITS_NOT, WAITS_THREAD, WAITS_CALL };
static int thread_waits(P *p) {
    M *m = LOAD(&p->m);
    if (!m || !m->tid) return WAITS_CALL;
    if (m->syscallfd < 0) { /* kept open, as statfd */
        char path[64];
        snprintf(path, sizeof path, "/proc/self/task/%d/syscall", m->tid);
        m->syscallfd = open(path, O_RDONLY | O_CLOEXEC);
        if (m->syscallfd < 0) return WAITS_CALL;
    }
    char buf[128];
    ssize_t n = pread(m->syscallfd, buf, sizeof buf - 1, 0);
    if (n <= 0) return WAITS_CALL;
    buf[n] = 0;
    if (buf[0] != '-' && (buf[0] < '0' || buf[0] > '9')) return WAITS_NOT; /* "running" */
    char *end;
    long nr = strtol(buf, &end, 10);
    if (nr == -1 || nr == SYS_mmap || nr == SYS_mprotect || nr == SYS_munmap || nr == SYS_brk ||
        nr == SYS_mremap || nr == SYS_madvise)
        return WAITS_THREAD;
    if (nr == SYS_futex) { /* "202 0xADDR 0xOP 0xVAL ...", in hex */
        strtoul(end, &end, 16);
        unsigned long op = strtoul(end, &end, 16), val = strtoul(end, &end, 16);
        if ((op & FUTEX_CMD_MASK) == FUTEX_WAIT && val == 2) return WAITS_THREAD;
    }
    return WAITS_CALL;
}

static bool thread_asleep(P *p) {
    M *m = LOAD(&p->m);
    if (m && LOAD_RLX(&m->lockwait)) return false; /* waits for a runtime lock */
    char st = loom__thread_state(p);
    return st == 'S' || st == 'D';
}

/* sysmon's look at running P p, whose goroutine has not gone through schedule() since the
 * last look; `known`: two samples of its thread's CPU clock were compared, `ran`: the
 * thread used the CPU between them (or it is not known).  Says what became of p. */
int loom__spare_look(P *p, int64_t now, bool known, bool ran, int64_t *next) {
    P *sp = LOAD(&p->spare.standin);
    if (sp) {
        if (known && ran && !LOAD(&sp->spare.retire)) loom__spare_retire(sp); /* it runs again */
        /* while the thread sleeps its spare stands in; once it runs again its goroutine
         * gets slices as usual, whenever the spare's thread gets round to giving it back
         * (loom__spare_lend lends no second one meanwhile) */
        if (!LOAD(&sp->spare.retire)) return SPARE_STANDS_IN;
    }
    bool asleep = !ran && now - p->sysmon.when >= BLOCKED_NS && thread_asleep(p);
    if (!asleep) {
        p->sysmon.asleep = 0;
        return SPARE_NONE;
    }
    if (p->sysmon.asleep++ == 0) p->sysmon.asleep_since = now;
    int64_t asleep_for = now - p->sysmon.asleep_since, due = ASLEEP_NS;
    if (p->sysmon.asleep >= 2 && asleep_for >= ASLEEP_NS) {
        int waits = thread_waits(p);
        if (waits == WAITS_NOT) { /* woke since the look at its state */
            p->sysmon.asleep = 0;
            return SPARE_NONE;
        }
        if (waits == WAITS_CALL || asleep_for >= ASLEEP_THREAD_NS) {
            /* asleep at every look for ASLEEP_NS (ASLEEP_THREAD_NS on another thread): lend
             * a spare P meanwhile */
            p->sysmon.asleep = 0;
            return loom__spare_lend(p) ? SPARE_LENT : SPARE_STANDS_IN;
        }
        due = ASLEEP_THREAD_NS;
    }
    int64_t at = p->sysmon.asleep_since + due; /* no sooner: it would see the same */
    if (at < *next) *next = at;
    return SPARE_ASLEEP;
}

/* sysmon: p's thread runs again (its P scheduled, or went idle): its stand-in goes back. */
void loom__spare_back(P *p) {
    P *sp = LOAD(&p->spare.standin);
    if (sp && !LOAD(&sp->spare.retire)) loom__spare_retire(sp);
}
