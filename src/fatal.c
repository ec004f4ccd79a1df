/*
 * fatal.c — fatal errors, goroutine dumps and the stack-overflow handler.
 *
 * Every fatal condition prints one line "loom: fatal: <what>" and a dump of every goroutine
 * (state, wait reason and for how long, symbolized frames, where it was created; see
 * loom__dump_goroutines) to stderr, then aborts.  SIGQUIT prints the same dump and exits
 * with status 2, as Go does, unless the program installed a SIGQUIT handler of its own
 * (see on_quit).  A SIGSEGV/SIGBUS on a goroutine's guard page is a stack overflow, and
 * so is a signal whose frame did not fit on a goroutine's nearly full stack (overflowed);
 * the handler runs on a per-thread alternate signal stack (the faulting stack is full)
 * and prints "loom: fatal: goroutine N overflowed its stack (S KiB)".  Other faults are
 * passed on to the previous handler or the default action.
 */
#include "internal.h"
#include "symbolize.h"
#include <signal.h>
#include <stdarg.h>
#include <sys/auxv.h>
#include <ucontext.h>
#include <unistd.h>

static const char *status_name(uint32_t s) {
    switch (s) {
    case G_IDLE: return "idle";
    case G_RUNNABLE: return "runnable";
    case G_RUNNING: return "running";
    case G_WAITING: return "waiting";
    case G_SYSCALL: return "syscall";
    case G_DEAD: return "dead";
    }
    return "?";
}

/* ---------------------------------------------------------------- dump output
 * The dump is written with write(2) from a stack buffer, never stdio: it runs in fatal
 * paths (possibly from a signal handler, possibly while the dying thread holds stdio's
 * lock) and from the SIGQUIT handler. */

/* one frame: "\t<function>+0x<off> (<module>)"; pc is a return address, so the call
 * site (pc - 1) is what gets symbolized */
static void d_frame(loom__wbuf *d, const char *prefix, uintptr_t pc, bool is_return) {
    char sym[256];
    loom__symbolize(is_return ? pc - 1 : pc, sym, sizeof sym);
    loom__wb_str(d, prefix);
    loom__wb_str(d, sym);
    loom__wb_str(d, "\n");
}

/* Walks a parked goroutine's frame-pointer chain from its saved context (see the frame
 * table in arch/ctx_x86_64_sysv_elf.S: rbp at +48, return address at +56).  Every frame
 * pointer must lie inside the goroutine's stack and grow upward, so a frame of code built
 * without frame pointers ends the walk instead of sending it astray. */
static void backtrace_g(loom__wbuf *d, G *g) {
    uintptr_t lo = (uintptr_t)g->stack_lo, hi = (uintptr_t)g->stack_lo + g->stack_size;
    uintptr_t sp = (uintptr_t)g->sp;
    if (sp < lo || sp + 64 > hi) return;
    d_frame(d, "\t", *(uintptr_t *)(sp + 56), true);
    uintptr_t fp = *(uintptr_t *)(sp + 48);
    for (int depth = 0; depth < 64 && fp >= lo && fp + 16 <= hi && (fp & 7) == 0; depth++) {
        uintptr_t ret = *(uintptr_t *)(fp + 8);
        if (!ret) break;
        d_frame(d, "\t", ret, true);
        uintptr_t next = *(uintptr_t *)fp;
        if (next <= fp) break;
        fp = next;
    }
}

/* "12 ms", "3 s", "5 minutes": how long a goroutine has waited */
static void d_duration(loom__wbuf *d, int64_t ns) {
    if (ns < 0) ns = 0;
    if (ns < 10000000000LL) {
        loom__wb_u64(d, (uint64_t)(ns / 1000000));
        loom__wb_str(d, " ms");
    } else if (ns < 120000000000LL) {
        loom__wb_u64(d, (uint64_t)(ns / 1000000000));
        loom__wb_str(d, " s");
    } else {
        loom__wb_u64(d, (uint64_t)(ns / 60000000000LL));
        loom__wb_str(d, " minutes");
    }
}

#if defined(LOOM_TSAN)
/* ThreadSanitizer's dynamic annotations (its runtime defines them; no header declares them) */
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#endif

/* Every live goroutine: id, state, wait reason and for how long, name, the frames of a
 * goroutine that is not running (a running one's stack is in use on its thread), and
 * where it was created (not for goroutine 1, which loom_run creates: see there).  Nothing
 * is stopped meanwhile and no lock is taken (the SIGQUIT handler may have interrupted a
 * holder): a goroutine that changes state during the dump may show a stale picture, never
 * a crash (the walk stays inside its stack).  Those reads race with the goroutines' owners
 * by design, so ThreadSanitizer is told to ignore them. */
void loom__dump_goroutines(int fd) {
#if defined(LOOM_TSAN)
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
#endif
    char buf[1024];
    loom__wbuf d = { .fd = fd, .cap = sizeof buf, .buf = buf };
    int64_t now = loom__nanotime_coarse();
    int shown = 0, hidden = 0;
    for (G *g = loom__sched.allg; g; g = g->allnext) {
        uint32_t st = LOAD_RLX(&g->status);
        if (st == G_DEAD || st == G_IDLE) continue;
        if (shown == 1000) {
            hidden++;
            continue;
        }
        shown++;
        loom__wb_str(&d, "\ngoroutine ");
        loom__wb_u64(&d, g->id);
        loom__wb_str(&d, " [");
        loom__wb_str(&d, status_name(st));
        if (st == G_WAITING) {
            uint32_t r = LOAD_RLX(&g->waitreason);
            loom__wb_str(&d, ", ");
            loom__wb_str(&d, r < WAIT_COUNT ? loom__wait_names[r] : "?");
            loom__wb_str(&d, ", ");
            d_duration(&d, now - g->waitsince);
        }
        M *m = LOAD_RLX(&g->m);
        if ((st == G_RUNNING || st == G_SYSCALL) && m) {
            loom__wb_str(&d, ", on thread M");
            loom__wb_u64(&d, (uint64_t)m->id);
        }
        if (g->lockedm) loom__wb_str(&d, ", locked to thread");
        loom__wb_str(&d, "]");
        if (g->name[0]) {
            loom__wb_str(&d, " ");
            loom__wb_str(&d, g->name);
        }
        loom__wb_str(&d, ":\n");
        if (st == G_WAITING || st == G_RUNNABLE) backtrace_g(&d, g);
        if (g->created_pc) d_frame(&d, "created by ", (uintptr_t)g->created_pc, true); /* not goroutine 1 */
    }
    if (hidden) {
        loom__wb_str(&d, "\n... and ");
        loom__wb_u64(&d, (uint64_t)hidden);
        loom__wb_str(&d, " more goroutines\n");
    }
    loom__wb_flush(&d);
#if defined(LOOM_TSAN)
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
#endif
}

void loom__fatal(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char out[256];
    loom__wbuf d = { .fd = 2, .cap = sizeof out, .buf = out };
    loom__wb_str(&d, "loom: fatal: ");
    loom__wb_str(&d, buf);
    loom__wb_str(&d, "\n");
    loom__wb_flush(&d);
    loom__det_say_seed();
    loom__dump_goroutines(2);
    abort();
}

/* SIGQUIT (as in Go): print every goroutine and exit with status 2.  Installed over the
 * default action and over SIG_IGN: a program started as a background job of a shell script
 * inherits SIGQUIT ignored, and Go respects an inherited SIG_IGN only for SIGHUP and
 * SIGINT.  A handler of the program's own (a function, or SA_SIGINFO) is left in place.
 * loom__signals_term puts back whatever was there before. */
static struct sigaction old_quit;
static bool quit_installed;

static void on_quit(int sig) {
    (void)sig;
    static const char msg[] = "SIGQUIT: quit\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    if (LOAD(&loom__sched.running)) loom__dump_goroutines(2);
    _exit(2);
}

/* ---------------------------------------------------------------- overflow handler */

static struct sigaction old_segv, old_bus;
static bool handlers_installed;

static void write_str(const char *s) {
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void fmt_u64(char *out, uint64_t v) {
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i) *out++ = tmp[--i];
    *out = 0;
}

/* The most a signal frame may take below the stack pointer (the kernel's AT_MINSIGSTKSZ,
 * which grows with the CPU's vector state: ~12 KiB with AMX), plus the red zone. */
static uintptr_t sigframe_room;

/* Is this fault goroutine *g overflowing its stack?  Either it touched its guard page, or a
 * signal delivered on its stack (the preemption signal runs there: preempt_signal.c) found
 * no room for its frame below the stack pointer: the kernel then sends SIGSEGV with
 * si_code SI_KERNEL and no address, and the registers handed to us are the goroutine's,
 * its stack pointer within a frame's size of the end of its stack. */
static bool overflowed(int sig, siginfo_t *si, void *uctx, G **g, bool *byframe) {
    uintptr_t lo, hi;
    bool guard;
    *byframe = false;
    if (loom__stack_find((uintptr_t)si->si_addr, g, &lo, &hi, &guard) && guard) return true;
#if defined(__x86_64__)
    if (sig != SIGSEGV || si->si_code != SI_KERNEL || !uctx) return false;
    uintptr_t sp = (uintptr_t)((ucontext_t *)uctx)->uc_mcontext.gregs[REG_RSP];
    if (!loom__stack_find(sp, g, &lo, &hi, &guard)) return false;
    *byframe = guard || sp - (uintptr_t)(*g)->stack_lo < sigframe_room;
    return *byframe;
#else
    (void)uctx;
    return false;
#endif
}

static void on_fault(int sig, siginfo_t *si, void *uctx) {
    G *g;
    bool byframe;
    if (overflowed(sig, si, uctx, &g, &byframe)) {
        char num[24], kib[24];
        fmt_u64(num, g->id);
        fmt_u64(kib, g->stack_size / 1024);
        write_str("loom: fatal: goroutine ");
        write_str(num);
        write_str(" overflowed its stack (");
        write_str(kib);
        write_str(byframe ? " KiB; a signal's frame did not fit below its stack pointer)\n" : " KiB)\n");
        loom__det_say_seed();
        loom__dump_goroutines(2);
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    /* not ours: hand it to whoever was there before, or die the default way */
    struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, si, uctx);
        return;
    }
    if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void loom__signals_init(void) {
    if (handlers_installed) return;
    unsigned long room = 0;
#ifdef AT_MINSIGSTKSZ
    room = getauxval(AT_MINSIGSTKSZ);
#endif
    sigframe_room = (room ? room : SIGSTKSZ) + 128;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    handlers_installed = true;
    struct sigaction cur;
    if (sigaction(SIGQUIT, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
        (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN)) {
        struct sigaction q;
        memset(&q, 0, sizeof q);
        q.sa_handler = on_quit;
        q.sa_flags = SA_ONSTACK | SA_RESTART;
        sigfillset(&q.sa_mask);
        if (sigaction(SIGQUIT, &q, &old_quit) == 0) quit_installed = true;
    }
}

void loom__signals_term(void) {
    if (!handlers_installed) return;
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    if (quit_installed) sigaction(SIGQUIT, &old_quit, NULL);
    quit_installed = false;
    handlers_installed = false;
}

#define ALTSTACK_SIZE (64 * 1024)

void loom__sigaltstack_init(M *m) {
    (void)m;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) return; /* someone set one */
    stack_t ss = { .ss_sp = malloc(ALTSTACK_SIZE), .ss_size = ALTSTACK_SIZE, .ss_flags = 0 };
    if (!ss.ss_sp) return;
    if (sigaltstack(&ss, NULL) != 0) {
        free(ss.ss_sp);
        return;
    }
    m->altstack = ss.ss_sp;
}

void loom__sigaltstack_term(M *m) {
    if (!m->altstack) return;
    stack_t ss = { .ss_flags = SS_DISABLE };
    sigaltstack(&ss, NULL);
    free(m->altstack);
    m->altstack = NULL;
}
