/*
 * preempt_signal.c — asynchronous preemption (Go 1.14's, adapted to C): when and where a
 * goroutine may be stopped by the signal (what becomes of it is preempt_policy.c's).
 *
 * sysmon (sysmon.c) sets p->preempt when a goroutine has held its P for a whole time slice
 * (LOOM_SLICE_US, default 2 ms); loom's calls yield when they see it (cooperative).  A
 * goroutine that makes no loom call — a plain C loop — also gets a signal, SIGURG (as Go:
 * rarely used by programs, and harmless when it arrives unexpected), sent to its thread;
 * sysmon repeats it every 50 µs while the goroutine keeps the P (a goroutine that spends
 * most of its time inside libc may need many tries).
 *
 * The handler runs on the goroutine's own stack and switches away from inside itself: the
 * kernel's signal frame on that stack holds every register, the FP/vector state and the
 * signal mask of the interrupted code, and sigreturn restores them all when the goroutine
 * is resumed and the handler returns.  It does so only where a switch is safe for C:
 *   - the interrupted PC is in the program's own code: not in libc, the dynamic loader,
 *     the vDSO, libgcc_s/libstdc++ (they hold locks and per-thread state), nor in loom
 *     itself (loom's code lies between loom__text_begin and loom__text_end, see
 *     CMakeLists.txt; if loom is a shared library its whole object counts too);
 *   - the thread runs a goroutine (not the scheduler on g0), holds a P, and the goroutine
 *     has not disabled preemption (loom_preempt_disable);
 * otherwise the handler returns at once and sysmon tries again.  Runtime locks are only
 * held inside loom code, so the PC test also keeps a goroutine from being switched out
 * while it holds one.  Interrupted system calls restart (SA_RESTART); handlers of other
 * signals are untouched.
 *
 * Thread affinity: compilers keep thread-local addresses in registers (errno's
 * __errno_location() is a const function, %fs-relative addresses are computed once), and
 * the interrupted code may be anywhere.  So an asynchronously preempted goroutine resumes
 * on the thread it was interrupted on: it is locked to that thread until it resumes.  What
 * the thread does meanwhile — hold it and run others, or hand its P on and wait — is the
 * policy of preempt_policy.c (loom__async_preempt), which this handler calls.  A goroutine
 * that switches at a loom call (cooperatively) may resume anywhere, as API.md says.
 *
 * Timer deadlines (once priority levels are in use): the monitor thread is an ordinary
 * thread, and the kernel may let it wait for a CPU a whole scheduler slice or tick (4 ms
 * here) when the CPUs run spinning goroutines, so a HIGH goroutine's sleep would end that
 * late.  So each M also has a POSIX timer that sends SIGURG to its own thread at the
 * earliest timer of the P it runs (armed in gogo and when a timer is added, if that
 * changes: loom__preempt_rearm): the kernel's timer interrupt reaches the running thread
 * on time, the handler sees a due timer, and the goroutine is switched out after running
 * the P's due timers.  Without levels a due timer waits for sysmon (sysmon.c), which
 * switches out only a goroutine that has computed for a while: one switched out by the
 * signal keeps its thread waiting for it (preempt_policy.c), which a goroutine that makes
 * loom calls would not need.
 *
 * Sanitizer builds leave asynchronous preemption off: the sanitizer runtimes live inside
 * the executable with per-thread state that a switch in their middle would corrupt, and
 * ThreadSanitizer defers signals to its own points anyway.  Cooperative preemption works;
 * with LOOM_DEBUG=coopasync=1 a cooperative point switches the goroutine out as the signal
 * would (proc.c, preempt_point), which is how their tests reach that path.
 * The outermost loom_preempt_enable is such a point, as Go's releasem re-arms a preemption
 * refused while preemption was off.
 */
#include "internal.h"
#include <link.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

extern const char loom__text_begin[], loom__text_end[];

#define MAX_RANGES 32
static struct { uintptr_t lo, hi; } unsafe_ranges[MAX_RANGES];
static int nranges;
static bool enabled;
static struct sigaction old_urg;
static sigset_t urg_set; /* {SIGURG} */

static void add_range(uintptr_t lo, uintptr_t hi) {
    if (nranges < MAX_RANGES && lo < hi) {
        unsafe_ranges[nranges].lo = lo;
        unsafe_ranges[nranges].hi = hi;
        nranges++;
    }
}

/* Objects whose code must never be interrupted by a switch. */
static bool unsafe_object(const char *name) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    static const char *const prefixes[] = { "libc.",    "ld-linux",  "linux-vdso", "linux-gate", "libpthread",
                                            "libgcc_s", "libstdc++", "libdl.",     "librt.",     "libloom.",
                                            "libasan",  "libtsan",   "libubsan" };
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (strncmp(base, prefixes[i], strlen(prefixes[i])) == 0) return true;
    return false;
}

static int collect(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    (void)arg;
    if (!info->dlpi_name || !unsafe_object(info->dlpi_name)) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X))
            add_range(info->dlpi_addr + ph->p_vaddr, info->dlpi_addr + ph->p_vaddr + ph->p_memsz);
    }
    return 0;
}

static bool in_loom(uintptr_t pc) {
    return pc >= (uintptr_t)loom__text_begin && pc < (uintptr_t)loom__text_end;
}

/* May a goroutine interrupted at pc be switched out?  Not in loom nor in the objects
 * above.  loom is built with -fno-plt (CMakeLists.txt): its calls into libc go through
 * the GOT, never through a PLT stub, which a static link would place in the executable,
 * outside loom's text: a signal landing in such a stub while loom held a channel lock
 * would switch the holder out, and other threads would spin on that lock.
 * (Checking the return address on the stack instead cannot work: a goroutine's own fn,
 * spinning without a frame, has goroutine_entry's return address there.) */
static bool pc_preemptible(uintptr_t pc) {
    if (in_loom(pc)) return false;
    for (int i = 0; i < nranges; i++)
        if (pc >= unsafe_ranges[i].lo && pc < unsafe_ranges[i].hi) return false;
    return true;
}

/* A timer of p is due while priority levels are in use (the deadline timer's case). */
static bool timer_due(P *p) {
    int64_t w = LOAD_RLX(&p->timer0_when);
    return w != 0 && LOAD_RLX(&loom__sched.prio.used) && w <= loom__nanotime();
}

/* The M's deadline timer (see above): created at thread start, armed in gogo. */
void loom__preempt_mstart(M *m) {
    m->dtimer_ok = false;
    m->dtimer_when = 0;
    if (!enabled) return;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGURG;
    ev._sigev_un._tid = m->tid;
    if (timer_create(CLOCK_MONOTONIC, &ev, &m->dtimer) == 0) m->dtimer_ok = true;
}

void loom__preempt_mexit(M *m) {
    if (m->dtimer_ok) timer_delete(m->dtimer);
    m->dtimer_ok = false;
}

void loom__preempt_arm(M *m, int64_t when) {
    m->dtimer_when = when;
    if (!m->dtimer_ok) return;
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (when) { /* 0 disarms; loom__nanotime is CLOCK_MONOTONIC */
        its.it_value.tv_sec = when / 1000000000;
        its.it_value.tv_nsec = when % 1000000000;
    }
    timer_settime(m->dtimer, TIMER_ABSTIME, &its, NULL);
}

static void on_preempt(int sig, siginfo_t *si, void *uctx) {
    (void)sig;
    (void)si;
    int saved_errno = errno;
    M *m = loom__getm();
    if (m && si->si_code == SI_TIMER) m->dtimer_when = 0; /* it fired: no longer armed */
    if (!m || m->in_preempt) goto out;
    m->in_preempt = 1;
    G *g = m->curg;
    P *p = m->p;
    bool due = p && timer_due(p);
    if (g != &m->g0 && p && !m->blocked && (LOAD_RLX(&p->preempt) || due) && !g->nopreempt) {
        ucontext_t *uc = uctx;
        uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
        if (pc_preemptible(pc)) {
            m->in_preempt = 0;
            /* the kernel blocked SIGURG for the handler; what runs here while g is
             * switched out must be preemptible too.  (sigreturn restores g's own mask.) */
            pthread_sigmask(SIG_UNBLOCK, &urg_set, NULL);
            loom__async_preempt(m); /* returns on this thread, when resumed */
            goto out;
        }
    }
    /* a due timer that cannot be run from here (the scheduler on g0, an unsafe PC, a
     * blocking call): ask again in 20 us, and the next switch to a goroutine re-arms
     * (gogo arms only when the deadline differs from the armed one) */
    if (due) loom__preempt_arm(m, loom__nanotime() + 20000);
    m->in_preempt = 0;
out:
    errno = saved_errno;
}

void loom__preempt_rearm(M *m) {
    if (!m->dtimer_ok || !m->p) return;
    int64_t w = LOAD_RLX(&m->p->timer0_when);
    if (w != m->dtimer_when) loom__preempt_arm(m, w);
}

#if defined(LOOM_TSAN) || defined(LOOM_ASAN)
static const bool sanitized = true;
#else
static const bool sanitized = false;
#endif

void loom__preempt_init(void) {
    enabled = false;
    /* (deterministic mode preempts at loom calls only: det.c) */
    if (sanitized || loom__det_on || loom__env_long("LOOM_ASYNCPREEMPT", 1, 0, 1) == 0) return;
    nranges = 0;
    dl_iterate_phdr(collect, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_preempt;
    /* Not SA_NODEFER: SIGURG stays blocked while the handler runs.  With it, a thread
     * that sysmon signalled every 50 us while it could not run (a loaded VM: each
     * nested frame on the alternate stack faulted in a fresh page, and the next signal
     * came in before the handler's first instruction) nested handler frames until the
     * alternate stack overflowed.  The handler unblocks SIGURG itself before it
     * switches away (the thread runs other goroutines meanwhile). */
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&urg_set);
    sigaddset(&urg_set, SIGURG);
    if (sigaction(SIGURG, &sa, &old_urg) == 0) enabled = true;
}

void loom__preempt_term(void) {
    if (enabled) sigaction(SIGURG, &old_urg, NULL);
    enabled = false;
}

/* sysmon: ask the goroutine running on p to stop (p->preempt is set). */
/* Signals p's thread now, from any thread (a P that a ready goroutine outranks, runq.c). */
void loom__preempt_kick(P *p) {
    M *m = LOAD(&p->m);
    if (!enabled || !m || !m->tid) return;
    syscall(SYS_tgkill, getpid(), m->tid, SIGURG);
}

/* The same from sysmon, which remembers when (it repeats the signal every 50 us). */
void loom__preempt_signal(P *p, int64_t now) {
    M *m = LOAD(&p->m);
    if (!enabled || !m || !m->tid) return;
    p->sysmon.signal = now;
    loom__preempt_kick(p);
}

bool loom__preempt_enabled(void) { return enabled; }

void loom_preempt_disable(void) {
    G *g = loom__getg();
    if (g) g->nopreempt++;
}

/* The outermost enable is a preemption point, as Go's releasem: a slice that ended while
 * the signal was refused ends here. */
void loom_preempt_enable(void) {
    G *g = loom__getg();
    if (g && g->nopreempt > 0 && --g->nopreempt == 0) loom__preempt_check();
}
