/*
 * sysmon.c — the monitor thread (runtime.sysmon).  It runs without a P.
 *
 * It watches time slices: for each running P it remembers schedtick and when it last
 * changed; a P whose schedtick has not moved for a slice (LOOM_SLICE_US, default 2 ms) gets
 * p->preempt set, which makes its next schedule() stop a runnext ping-pong pair from
 * inheriting the slice, and makes loom's cooperative preemption points yield (and the
 * preemption signal for plain C code, preempt_signal.c).  It also retakes Ps left in blocking
 * calls, lends spare Ps for threads blocked without telling loom (spare.c),
 * polls the network when nobody has for 10 ms, ages priority levels, and repeats a
 * deadlock check that something might still have woken (census.c).
 * Sleep: 20 µs, doubling after 1 ms without anything to do, up to a time slice (at most
 * 10 ms; Go's backoff);
 * once every P has been idle for 20 ms it sleeps on sched.sysmonnote until a P starts
 * running again (pidleget wakes it), so an idle runtime costs no CPU.
 */
#include "internal.h"
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static loom__note stop_note; /* wakes the sleeping monitor: runtime exit */

/* CPU time used so far by the thread that runs p, or -1 if unknown. */
static int64_t thread_cpu(P *p) {
    M *m = LOAD(&p->m);
    clockid_t cid;
    struct timespec ts;
    if (!m || !m->tid || pthread_getcpuclockid(m->thread, &cid) != 0 || clock_gettime(cid, &ts) != 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A P left in P_SYSCALL by a thread in a blocking call (runtime.retake): hand it on once
 * the call has lasted a sysmon tick, unless nothing waits for it and idle Ps remain, for
 * up to 10 ms (as Go). */
static void retake_syscall(P *p, int64_t now, int *handoffs) {
    uint32_t t = LOAD_RLX(&p->syscalltick);
    if (t != p->sysmon.syscalltick) {
        p->sysmon.syscalltick = t;
        p->sysmon.syscallwhen = now;
        return;
    }
    if (loom__runqempty(p) && LOAD(&loom__sched.nmspinning) + LOAD(&loom__sched.npidle) > 0 &&
        now - p->sysmon.syscallwhen < 10000000)
        return;
    if (loom__retake_syscall(p)) (*handoffs)++;
}

/* When sysmon should look at running P p again: at the end of its slice, or a quarter
 * slice in (and 200 µs after) if a timer of p is due — so sysmon sleeps until the next
 * moment it may have to act instead of polling. */
static void deadline(P *p, int64_t now, int64_t *next) {
    int64_t slice = (int64_t)loom__sched.slice_us * 1000; /* (the longest, under chaos) */
    int64_t d = p->sysmon.when + slice;
    int64_t t0 = LOAD_RLX(&p->timer0_when);
    if (t0 != 0 && LOAD_RLX(&loom__sched.prio.used)) {
        if (t0 < d) d = t0; /* sysmon fires it (retake_running) */
    } else if (t0 != 0) {
        int64_t td = t0 + 200000;
        if (td < p->sysmon.when + slice / 4) td = p->sysmon.when + slice / 4;
        if (td < d) d = td;
    }
    if (d < now) d = now;
    if (d < *next) *next = d;
}

/* A P whose goroutine has not gone through schedule() since sysmon's last look. */
static void retake_running(P *p, int64_t now, int *acted, int *handoffs, int *signalling, int64_t *next) {
    int64_t slice = loom__chaos_slice((int64_t)loom__sched.slice_us * 1000); /* chaos: drawn */
    /* did its thread use the CPU since the last look?  (A blocked thread did not.) */
    int64_t cpu = thread_cpu(p);
    bool known = cpu >= 0 && p->sysmon.cpu >= 0; /* two samples to compare */
    bool ran = !known || cpu != p->sysmon.cpu;
    if (p->sysmon.cpu0 < 0) p->sysmon.cpu0 = cpu; /* the first sample of this slice */
    p->sysmon.cpu = cpu;
    /* it used the CPU during this slice (on a loaded machine a running thread may well
     * not have between two looks 20 us apart: it waits for a CPU, in state R), and how
     * much */
    bool ran_slice = cpu >= 0 && p->sysmon.cpu0 >= 0 && cpu != p->sysmon.cpu0;
    int64_t used = ran_slice ? cpu - p->sysmon.cpu0 : 0;
    /* a thread asleep in the kernel without having said so (spare.c) */
    switch (loom__spare_look(p, now, known, ran, next)) {
    case SPARE_LENT: (*handoffs)++; return;
    case SPARE_ASLEEP: /* look again when a spare is due (*next) */
    case SPARE_STANDS_IN: return;
    default: break;
    }
    if (loom__det_on) return; /* deterministic mode has no time slices (det.c) */
    if (LOAD(&loom__sched.npidle) > 0 && LOAD(&loom__sched.nmspinning) == 0 && !loom__runqempty(p)) {
        /* work has waited behind this P's running goroutine for a whole tick (a
         * runnext that loom__ready did not wake anyone for): let an idle P steal it */
        loom__wakep();
    }
    /* a timer on this P that is overdue shortens the slice to a quarter: a sleeper's
     * wakeup should not wait a whole slice behind a goroutine that never yields (with
     * priority levels, retake has fired it already) */
    int64_t t0 = LOAD_RLX(&p->timer0_when);
    bool timer_late = t0 != 0 && now - t0 >= 200000;
    deadline(p, now, next);
    /* a ready goroutine of a higher level waits behind this one (runq.c): now */
    bool outranked = loom__prio_outranked(p);
    if (outranked) *next = now;
    bool late = timer_late && now - p->sysmon.when >= slice / 4;
    if (now - p->sysmon.when >= slice || late || outranked) {
        /* a slice without a schedule(): ask for a yield at the next loom call, and
         * signal the thread in case it runs plain C code (preempt_signal.c) - only while it
         * uses the CPU, so as not to cut short a sleep in the kernel */
        if (!LOAD(&p->preempt)) {
            STORE(&p->preempt, 1);
            (*acted)++;
        }
        if (p->sysmon.flag_cpu < 0) p->sysmon.flag_cpu = cpu; /* first asked in this slice */
        /* (a signal would cut short a plain sleep in the kernel: nanosleep does not
         * restart; so only a thread seen using the CPU, and running right now) */
        /* ...and only if the same goroutine has run all along: a P whose thread
         * switched goroutines since the last look (a runnext pair sharing a slice)
         * is at loom calls anyway and yields at the next one */
        M *m = LOAD(&p->m);
        uint64_t sw = m ? LOAD_RLX(&m->nswitch) : 0;
        bool same_g = sw == p->sysmon.nswitch;
        p->sysmon.nswitch = sw;
        /* ...and only once the thread has had its time on a CPU since the slice began (half
         * a slice at a slice's end, a quarter for an overdue timer) and a tenth of a slice
         * more since the flag asked it to yield.  A goroutine switched out by the signal
         * keeps its thread waiting for it (preempt_policy.c), where one that makes loom calls
         * yields at the next for nothing; and on a loaded machine a thread that waits for a
         * CPU has not had its time.  A goroutine of a higher level waiting needs only some
         * use of the CPU. */
        bool had = outranked ? ran_slice
                             : used >= (now - p->sysmon.when >= slice ? slice / 2 : slice / 4) &&
                                       cpu - p->sysmon.flag_cpu >= slice / 10;
        if (!had && !outranked && ran_slice) (*signalling)++; /* look again soon */
        if (had && same_g && loom__preempt_enabled()) {
            (*signalling)++;
            if (now - p->sysmon.signal >= 50000 && loom__thread_state(p) == 'R') loom__preempt_signal(p, now);
        }
    }
}

/* An idle P's timers are watched by the thread that sleeps in the poller (findrunnable),
 * and run by spinning threads (stealwork).  With every other thread kept busy (goroutines
 * that always have work, threads that hold preempted goroutines and never look for more)
 * nobody may: a timer overdue by IDLE_TIMER_LATE_NS gets a spinning thread started for it,
 * as Go's sysmon starts an M for an overdue timer. */
#define IDLE_TIMER_LATE_NS 1000000

static void idle_timers(P *p, int64_t now, bool *wake, int64_t *next) {
    int64_t t0 = LOAD_RLX(&p->timer0_when);
    if (t0 == 0) return;
    if (now - t0 >= IDLE_TIMER_LATE_NS) *wake = true;
    else if (t0 + IDLE_TIMER_LATE_NS < *next) *next = t0 + IDLE_TIMER_LATE_NS;
}

static void retake(int64_t now, int *acted, int *handoffs, int *signalling, int64_t *next) {
    bool wake = false;
    for (int i = 0; i < loom__nallp(); i++) {
        P *p = loom__sched.allp[i];
        uint32_t st = LOAD(&p->status);
        P *sp = LOAD(&p->spare.standin);
        if (st == P_SYSCALL) retake_syscall(p, now, handoffs);
        if (st != P_RUNNING) {
            if (unlikely(sp)) loom__spare_back(p);
            if (st == P_IDLE && !loom__det_on) idle_timers(p, now, &wake, next); /* (det: virtual time) */
            continue;
        }
        /* Once priority levels are in use, sysmon fires due timers itself, whatever the P
         * does (its goroutines may rotate every slice, or it may be between threads): the
         * goroutine readied goes to the global queue and, if it outranks a running one,
         * kicks that P (runq.c).  Deterministic mode has neither levels nor real time. */
        if (unlikely(LOAD_RLX(&loom__sched.prio.used)) && !loom__det_on) loom__prio_sysmon(p, now);
        uint32_t t = LOAD_RLX(&p->schedtick);
        if (t != p->sysmon.tick) {
            p->sysmon.tick = t;
            p->sysmon.when = now;
            p->sysmon.cpu = -1;
            p->sysmon.cpu0 = thread_cpu(p); /* the new slice's CPU time counts from here */
            p->sysmon.flag_cpu = -1;
            p->sysmon.asleep = 0;
            if (unlikely(sp)) loom__spare_back(p);
            deadline(p, now, next);
            /* a HIGH goroutine waits while this P runs a new, lower one (one aged into the
             * HIGH FIFO, which runs first): kick now, not a slice later */
            if (unlikely(LOAD_RLX(&loom__sched.prio.used)) && loom__prio_kick_high(p)) *next = now;
            continue;
        }
        retake_running(p, now, acted, handoffs, signalling, next);
    }
    if (wake) {
        loom__wakep();
        (*acted)++;
    }
}

/* Polls the network if nobody has for 10 ms (all Ps busy running goroutines), as Go's
 * sysmon, and puts what became ready on the global queue. */
static void netpoll_check(int64_t now) {
    if (!loom__netpoll_has_waiters()) return;
    int64_t lp = LOAD(&loom__sched.lastpoll);
    if (lp == 0 || now - lp < 10000000 || !CAS(&loom__sched.lastpoll, lp, now)) return;
    G *list = loom__netpoll(0);
    if (!list) return;
    loom__injectglist(list);
}

/* How long every P must have been idle before sysmon sleeps until one runs again.  Not at
 * once: a server's Ps go idle and busy again thousands of times a second (each time its
 * goroutines catch up with the clients), and waking sysmon on each of those (a futex wake,
 * ~16 us for the waker and the woken here) and restarting its backoff at 20 us cost a
 * few percent of an HTTP server's CPU.  Meanwhile it keeps its backoff (at most a slice
 * between looks), so an idle runtime still wakes it only ~a dozen times before it sleeps. */
#define IDLE_DEEP_NS 20000000

/* How often sysmon looks for fd waiters whose registration a close() behind loom's back
 * may have made stale (netpoll.c), at least; while some remain unchecked it does not sleep
 * for good.  (A program with many fds is looked at less often: netpoll.c.) */
#define VERIFY_NS 5000000

/* How often sysmon repeats a deadlock check that a thread loom did not create stopped. */
#define DEADWAIT_NS 100000000

/* How often sysmon reads the CPU limit the number of Ps follows (when neither LOOM_PROCS
 * nor loom_set_procs set it), as Go 1.25's updateMaxProcsGoroutine, which looks once a
 * second.  Asleep for lack of work it looks when it wakes. */
#define PROCS_LOOK_NS 1000000000

static void *sysmon(void *arg) {
    (void)arg;
    STORE(&loom__sched.sysmon_tid, (int)syscall(SYS_gettid));
    int64_t delay = 20000, sleep = delay, idle_since = 0, lastverify = 0, procs_look = loom__nanotime();
    int idle = 0, unverified = 0;
    /* Once priority levels are in use, sysmon fires due timers and kicks the Ps that a
     * ready goroutine outranks; beside threads that spin, the kernel may make it wait
     * milliseconds for a CPU.  So it asks for a higher kernel priority (nice
     * LOOM_SYSMON_NICE, default -10), where the process may (CAP_SYS_NICE, or a
     * RLIMIT_NICE that allows it); it sleeps nearly all the time, so this costs others
     * little.  If refused, it runs at the process's nice. */
    long nice = loom__env_long("LOOM_SYSMON_NICE", -10, -20, 19);
    if (nice != 0) (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), (int)nice);
    /* (threads it creates, Ms started for a handoff, take back the process's nice: mstart) */
    int64_t trace_ns = (int64_t)loom__sched.schedtrace_ms * 1000000, lasttrace = loom__nanotime();
    while (!LOAD(&loom__sched.exiting)) {
        if (trace_ns && loom__nanotime() - lasttrace >= trace_ns) {
            lasttrace = loom__nanotime();
            loom__schedtrace(lasttrace);
        }
        int64_t t = loom__nanotime();
        if (t - lastverify >= loom__netpoll_verify_every(VERIFY_NS)) {
            lastverify = t;
            G *list = NULL;
            STORE(&loom__sched.sysmon_busy, 1);
            unverified = loom__netpoll_verify(&list);
            if (list) loom__injectglist(list);
            STORE(&loom__sched.sysmon_busy, 0);
        }
        bool all_idle = LOAD(&loom__sched.npidle) == LOAD(&loom__sched.nactive);
        if (!all_idle) idle_since = 0;
        else if (!idle_since) idle_since = t;
        if (all_idle && t - idle_since >= IDLE_DEEP_NS && !unverified) {
            STORE(&loom__sched.sysmonwait, 1);
            if (LOAD(&loom__sched.npidle) == LOAD(&loom__sched.nactive) && !LOAD(&loom__sched.exiting)) {
                if (LOAD(&loom__sched.deadwait)) {
                    /* only a thread loom did not create stopped a deadlock report: once it
                     * is gone without waking anyone, the report follows (census.c) */
                    loom__note_tsleep(&loom__sched.sysmonnote, DEADWAIT_NS);
                    loom__lock_acquire(&loom__sched.lock);
                    loom__checkdead();
                    loom__lock_release(&loom__sched.lock);
                } else if (trace_ns) {
                    loom__note_tsleep(&loom__sched.sysmonnote, trace_ns); /* keep tracing */
                } else {
                    loom__note_sleep(&loom__sched.sysmonnote);
                }
            }
            STORE(&loom__sched.sysmonwait, 0);
            loom__note_clear(&loom__sched.sysmonnote);
            delay = sleep = 20000;
            idle = 0;
            idle_since = 0;
            continue;
        }
        loom__note_tsleep(&stop_note, sleep);
        int acted = 0, handoffs = 0, signalling = 0;
        int64_t now = loom__nanotime(), next = INT64_MAX;
        STORE_RLX(&loom__sched.coarse_now, now);
        /* while sysmon may hold goroutines it took from a timer or the poller and has not
         * queued yet, the deadlock check waits for it (checkdead) */
        STORE(&loom__sched.sysmon_busy, 1);
        retake(now, &acted, &handoffs, &signalling, &next);
        if (now - procs_look >= PROCS_LOOK_NS) { /* the CPU limit, about once a second (Go 1.25) */
            procs_look = now;
            if (LOAD(&loom__sched.procs_auto)) {
                int n = loom__cpu_count();
                if (n != LOAD(&loom__sched.nprocs) && LOAD(&loom__sched.procs_auto)) loom__procresize(n);
            }
            loom__procs_check();
        }
        if (unlikely(LOAD_RLX(&loom__sched.prio.used)) && !loom__det_on) loom__prio_sysmon_global(now);
        netpoll_check(now);
        STORE(&loom__sched.sysmon_busy, 0);
        /* as Go, only handoffs reset the backoff (preempting a slice does not), from
         * 20 us up to a slice; while a preemption signal has not taken effect, come back
         * in 50 us to repeat it; and never sleep past the next slice end or due timer */
        if (handoffs) {
            idle = 0;
            delay = 20000;
        } else if (++idle > 50) {
            delay *= 2;
            int64_t max = (int64_t)loom__sched.slice_us * 1000;
            if (max > 10000000) max = 10000000;
            if (delay > max) delay = max;
        }
        sleep = signalling ? 50000 : delay;
        if (next != INT64_MAX && next - now < sleep) sleep = next - now > 20000 ? next - now : 20000;
    }
    return NULL;
}

int loom__sysmon_start(void) {
    errno = 0;
    int base = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    loom__sched.base_nice = errno ? 0 : base;
    loom__note_clear(&stop_note);
    loom__note_clear(&loom__sched.sysmonnote);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 128 * 1024);
    int err = pthread_create(&loom__sched.sysmon_thread, &a, sysmon, NULL);
    pthread_attr_destroy(&a);
    return err;
}

void loom__sysmon_wake(void) {
    if (LOAD(&loom__sched.sysmonwait)) loom__note_wakeup(&loom__sched.sysmonnote);
}

void loom__sysmon_stop(void) {
    loom__note_wakeup(&stop_note);
    loom__note_wakeup(&loom__sched.sysmonnote);
    pthread_join(loom__sched.sysmon_thread, NULL);
}
