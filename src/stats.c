/*
 * stats.c — loom_stats and LOOM_DEBUG=schedtrace (GODEBUG=schedtrace's loom twin).
 *
 * Counters are kept where they happen without sharing a cache line: each M counts its own
 * switches, steals and preemptions (relaxed stores by the M, relaxed loads here); sysmon
 * counts handoffs in loom__sched.  A snapshot walks the Ms, the Ps and the goroutine list;
 * nothing is stopped, so fields are each right but need not add up exactly.
 *
 * schedtrace: every MS milliseconds sysmon prints one line on stderr, as Go's
 *   loom: SCHED 1004ms: procs=2 idleprocs=1 threads=4 spinningthreads=0 idlethreads=2
 *         goroutines=12 runqueue=0 [3 0]
 * (uptime, Ps in use, idle Ps, threads, spinning and idle threads, live goroutines, the
 * global run queue and each P's local queue).  scheddetail=1 adds a line per P and per M,
 * and the goroutines counted by state and wait reason.
 */
#include "internal.h"
#include <limits.h>

/* True, with the value in *out, if the LOOM_DEBUG item e[0..len) sets option `name` ("key=")
 * to a decimal int.  A value that is not one sets nothing (as GODEBUG): the option keeps
 * its default. */
static bool debug_opt(const char *e, size_t len, const char *name, int *out) {
    size_t n = strlen(name);
    if (len <= n || strncmp(e, name, n) != 0) return false;
    char buf[24];
    if (len - n >= sizeof buf) return false;
    memcpy(buf, e + n, len - n);
    buf[len - n] = '\0';
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno || *end || v < INT_MIN || v > INT_MAX) return false;
    *out = (int)v;
    return true;
}

void loom__debug_init(void) {
    loom__sched.schedtrace_ms = 0;
    loom__sched.scheddetail = false;
    loom__sched.coopasync = false;
#if defined(LOOM_ASAN) || defined(LOOM_TSAN)
    loom__sched.check = true; /* the sanitizer builds always check */
#else
    loom__sched.check = false;
#endif
    const char *e = getenv("LOOM_DEBUG");
    while (e && *e) {
        const char *end = strchr(e, ',');
        size_t len = end ? (size_t)(end - e) : strlen(e);
        int v;
        if (debug_opt(e, len, "schedtrace=", &v)) loom__sched.schedtrace_ms = v;
        else if (debug_opt(e, len, "scheddetail=", &v)) loom__sched.scheddetail = v != 0;
        else if (debug_opt(e, len, "coopasync=", &v)) loom__sched.coopasync = v != 0;
        else if (debug_opt(e, len, "check=", &v)) loom__sched.check = v != 0;
        e = end ? end + 1 : NULL;
    }
    if (loom__sched.schedtrace_ms < 0) loom__sched.schedtrace_ms = 0;
}

static uint32_t runqlen(P *p) {
    uint32_t n = LOAD(&p->runqtail) - LOAD(&p->runqhead);
    if (n > LOOM_RUNQ_SIZE) n = 0; /* a torn read while it moved */
    return n + (LOAD(&p->runnext) != NULL);
}

/* Goroutines by state, and the waiting ones by reason. */
static void count_gs(struct loom_stats *st, uint64_t byreason[WAIT_COUNT]) {
    for (G *g = LOAD_ACQ(&loom__sched.allg); g; g = g->allnext) {
        switch (LOAD_RLX(&g->status)) {
        case G_RUNNABLE: st->runnable++; break;
        case G_RUNNING: st->running++; break;
        case G_SYSCALL: st->syscall++; break;
        case G_WAITING:
            st->waiting++;
            if (byreason) {
                uint32_t r = LOAD_RLX(&g->waitreason);
                byreason[r < WAIT_COUNT ? r : WAIT_NONE]++;
            }
            break;
        default: break;
        }
    }
}

bool loom__any_alive(void) {
    struct loom_stats st = { 0 };
    count_gs(&st, NULL);
    return st.runnable + st.running + st.waiting + st.syscall > 0;
}

static void snapshot(struct loom_stats *st, uint64_t byreason[WAIT_COUNT]) {
    memset(st, 0, sizeof *st);
    count_gs(st, byreason);
    st->goroutines = st->runnable + st->running + st->waiting + st->syscall;
    loom__lock_acquire(&loom__sched.lock);
    for (M *m = loom__sched.allm; m; m = m->alllink) {
        st->switches += LOAD_RLX(&m->nswitch);
        st->steals += LOAD_RLX(&m->nsteal);
        for (int t = 0; t < 3; t++) st->steals_by_tier[t] += LOAD_RLX(&m->nsteal_tier[t]);
        st->preemptions += LOAD_RLX(&m->npreempt);
        st->async_preemptions += LOAD_RLX(&m->nasync);
    }
    st->threads = (uint64_t)loom__sched.mcount;
    st->idle_threads = (uint64_t)loom__sched.nmidle;
    st->global_runq = (uint64_t)loom__sched.runqsize;
    loom__lock_release(&loom__sched.lock);
    st->handoffs = LOAD(&loom__sched.nhandoff);
    st->spare_lends = LOAD(&loom__sched.nlend);
    st->procs = LOAD(&loom__sched.nactive);
    st->idle_procs = LOAD(&loom__sched.npidle);
    st->spinning_threads = LOAD(&loom__sched.nmspinning);
    for (int i = 0; i < loom__nallp(); i++) st->timers += (uint64_t)loom__timers_count(loom__sched.allp[i]);
}

int loom_stats(struct loom_stats *out) {
    if (!out) return -EINVAL;
    if (!LOAD(&loom__sched.running)) return -EPERM;
    snapshot(out, NULL);
    return 0;
}

static const char *const pstatus_names[] = { "idle", "running", "syscall", "off" };

void loom__schedtrace(int64_t now) {
    struct loom_stats st;
    uint64_t byreason[WAIT_COUNT] = { 0 };
    snapshot(&st, loom__sched.scheddetail ? byreason : NULL);
    char line[4096];
    int n = snprintf(line, sizeof line,
                     "loom: SCHED %lldms: procs=%llu idleprocs=%llu threads=%llu spinningthreads=%llu "
                     "idlethreads=%llu goroutines=%llu runqueue=%llu [",
                     (long long)((now - loom__sched.start_time) / 1000000), (unsigned long long)st.procs,
                     (unsigned long long)st.idle_procs, (unsigned long long)st.threads,
                     (unsigned long long)st.spinning_threads, (unsigned long long)st.idle_threads,
                     (unsigned long long)st.goroutines, (unsigned long long)st.global_runq);
    for (int i = 0; i < loom__nallp() && n < (int)sizeof line - 32; i++) {
        P *p = loom__sched.allp[i];
        if (i >= LOAD_RLX(&loom__sched.nprocs) && LOAD(&p->status) == P_OFF) continue;
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%u", i ? " " : "", runqlen(p));
    }
    snprintf(line + n, sizeof line - (size_t)n, "]\n");
    fputs(line, stderr);
    if (!loom__sched.scheddetail) return;
    fprintf(stderr,
            "  switches=%llu steals=%llu preemptions=%llu (async %llu) handoffs=%llu (spares %llu) timers=%llu\n",
            (unsigned long long)st.switches, (unsigned long long)st.steals,
            (unsigned long long)st.preemptions, (unsigned long long)st.async_preemptions,
            (unsigned long long)st.handoffs, (unsigned long long)st.spare_lends,
            (unsigned long long)st.timers);
    for (int i = 0; i < loom__nallp(); i++) {
        P *p = loom__sched.allp[i];
        uint32_t ps = LOAD(&p->status);
        if (ps == P_OFF) continue;
        M *pm = LOAD(&p->m);
        fprintf(stderr,
                "  P%d: status=%s schedtick=%u syscalltick=%u m=%d runqsize=%u high=%u low=%u timers=%d%s\n",
                p->id, pstatus_names[ps < 4 ? ps : 0], LOAD_RLX(&p->schedtick), LOAD_RLX(&p->syscalltick),
                pm ? pm->id : -1, runqlen(p), LOAD_RLX(&p->prio.n[LVL(LOOM_PRIO_HIGH)]),
                LOAD_RLX(&p->prio.n[LVL(LOOM_PRIO_LOW)]), loom__timers_count(p),
                i >= LOAD_RLX(&loom__sched.nprocs) ? " (spare)" : "");
    }
    loom__lock_acquire(&loom__sched.lock);
    for (M *m = loom__sched.allm; m; m = m->alllink) {
        P *mp = LOAD_RLX(&m->p);
        G *cg = LOAD_RLX(&m->curg);
        G *lg = LOAD_RLX(&m->lockedg);
        fprintf(stderr, "  M%d: p=%d curg=%llu spinning=%d blocked=%d lockedg=%llu\n", m->id,
                mp ? mp->id : -1, (unsigned long long)(cg && cg != &m->g0 ? cg->id : 0),
                (int)LOAD_RLX(&m->spinning), (int)LOAD_RLX(&m->blocked),
                (unsigned long long)(lg ? lg->id : 0));
    }
    loom__lock_release(&loom__sched.lock);
    fprintf(stderr, "  goroutines: runnable=%llu running=%llu syscall=%llu waiting=%llu",
            (unsigned long long)st.runnable, (unsigned long long)st.running, (unsigned long long)st.syscall,
            (unsigned long long)st.waiting);
    for (int r = 0; r < WAIT_COUNT; r++)
        if (byreason[r]) fprintf(stderr, " [%s]=%llu", loom__wait_names[r], (unsigned long long)byreason[r]);
    fputc('\n', stderr);
}
