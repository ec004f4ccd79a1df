/*
 * fatal.c — fatal errors, goroutine dumps and the stack-overflow handler.
 *
 * Every fatal condition prints one line "loom: fatal: <what>" and a list of goroutines to
 * stderr, then aborts.  A SIGSEGV/SIGBUS on a goroutine's guard page is a stack overflow;
 * the handler runs on a per-thread alternate signal stack (the faulting stack is full)
 * and prints "loom: fatal: goroutine N overflowed its stack (S KiB)".  Other faults are
 * passed on to the previous handler or the default action.
 */
#include "internal.h"
#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
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

static void print_pc(FILE *f, const char *prefix, void *pc) {
    Dl_info di;
    if (pc && dladdr(pc, &di) && di.dli_sname)
        fprintf(f, "%s%s+0x%lx (%s)\n", prefix, di.dli_sname,
                (unsigned long)((char *)pc - (char *)di.dli_saddr), di.dli_fname);
    else if (pc && dladdr(pc, &di) && di.dli_fname)
        fprintf(f, "%s%p (%s+0x%lx)\n", prefix, pc, di.dli_fname,
                (unsigned long)((char *)pc - (char *)di.dli_fbase));
    else
        fprintf(f, "%s%p\n", prefix, pc);
}

/* Walks a parked goroutine's frame-pointer chain from its saved context (see the frame
 * table in arch/ctx_x86_64_sysv_elf.S: rbp at +48, return address at +56). */
static void backtrace_g(FILE *f, G *g) {
    uintptr_t lo = (uintptr_t)g->stack_lo, hi = (uintptr_t)g;
    uintptr_t sp = (uintptr_t)g->sp;
    if (sp < lo || sp + 64 > hi) return;
    print_pc(f, "\t", *(void **)(sp + 56));
    uintptr_t fp = *(uintptr_t *)(sp + 48);
    for (int depth = 0; depth < 32 && fp >= lo && fp + 16 <= hi && (fp & 7) == 0; depth++) {
        void *ret = *(void **)(fp + 8);
        if (!ret) break;
        print_pc(f, "\t", ret);
        uintptr_t next = *(uintptr_t *)fp;
        if (next <= fp) break;
        fp = next;
    }
}

void loom__dump_goroutines(FILE *f) {
    int64_t now = loom__nanotime_coarse();
    int shown = 0;
    for (G *g = loom__sched.allg; g && shown < 1000; g = g->allnext) {
        uint32_t st = LOAD_RLX(&g->status);
        if (st == G_DEAD || st == G_IDLE) continue;
        shown++;
        fprintf(f, "\ngoroutine %llu [%s", (unsigned long long)g->id, status_name(st));
        if (st == G_WAITING) {
            fprintf(f, ", %s", g->waitreason < WAIT_COUNT ? loom__wait_names[g->waitreason] : "?");
            int64_t mins = (now - g->waitsince) / 60000000000LL;
            if (mins > 0) fprintf(f, ", %lld minutes", (long long)mins);
        }
        fprintf(f, "]%s%s:\n", g->name[0] ? " " : "", g->name);
        if (st == G_WAITING || st == G_RUNNABLE) backtrace_g(f, g);
        print_pc(f, "created by ", g->created_pc);
    }
}

void loom__fatal(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "loom: fatal: %s\n", buf);
    loom__dump_goroutines(stderr);
    fflush(stderr);
    abort();
}

/* ---------------------------------------------------------------- overflow handler */

static struct sigaction old_segv, old_bus;
static bool handlers_installed;

static void write_str(const char *s) {
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w; n -= (size_t)w;
    }
}

static void fmt_u64(char *out, uint64_t v) {
    char tmp[24]; int i = 0;
    do { tmp[i++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (i) *out++ = tmp[--i];
    *out = 0;
}

static void on_fault(int sig, siginfo_t *si, void *uctx) {
    G *g; uintptr_t lo, hi; bool guard;
    if (loom__stack_find((uintptr_t)si->si_addr, &g, &lo, &hi, &guard) && guard) {
        char num[24], kib[24];
        fmt_u64(num, g->id);
        fmt_u64(kib, g->stack_size / 1024);
        write_str("loom: fatal: goroutine ");
        write_str(num);
        write_str(" overflowed its stack (");
        write_str(kib);
        write_str(" KiB)\n");
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
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    handlers_installed = true;
}

void loom__signals_term(void) {
    if (!handlers_installed) return;
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    handlers_installed = false;
}

#define ALTSTACK_SIZE (64 * 1024)

void loom__sigaltstack_init(M *m) {
    (void)m;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) return;  /* someone set one */
    stack_t ss = { .ss_sp = malloc(ALTSTACK_SIZE), .ss_size = ALTSTACK_SIZE, .ss_flags = 0 };
    if (!ss.ss_sp) return;
    if (sigaltstack(&ss, NULL) != 0) { free(ss.ss_sp); return; }
    m->altstack = ss.ss_sp;
}

void loom__sigaltstack_term(M *m) {
    if (!m->altstack) return;
    stack_t ss = { .ss_flags = SS_DISABLE };
    sigaltstack(&ss, NULL);
    free(m->altstack);
    m->altstack = NULL;
}
