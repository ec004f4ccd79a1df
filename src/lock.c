/*
 * lock.c — the runtime's own low-level synchronisation: loom__lock (runtime.lock on a
 * futex, as Go's lock_futex.go) and loom__note (runtime.note: one-shot sleep/wakeup of an
 * OS thread).  Goroutine-level locks that park goroutines are in sync.c and sema.c.
 *
 * loom__lock key: 0 unlocked, 1 locked, 2 locked and a thread may sleep in futex_wait.
 * Acquire spins a little first (critical sections are a few dozen instructions), then
 * sleeps.  Release wakes one sleeper only when the key was 2.
 *
 * loom__note key: 0 clear, 1 woken.  One thread sleeps, one thread wakes; note_clear
 * re-arms it.  A wakeup before the sleep is not lost: sleep returns at once.
 */
#include "internal.h"
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The runtime's own system calls must not change errno: it belongs to the goroutine
 * that happens to run on this thread (a futex wait that finds the word changed sets
 * EAGAIN, for instance). */
static long futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts) {
    int saved = errno;
    long r = syscall(SYS_futex, addr, op | FUTEX_PRIVATE_FLAG, val, ts, NULL, 0);
    errno = saved;
    return r;
}

enum { SPIN_ACTIVE = 4, SPIN_ACTIVE_CNT = 30, SPIN_PASSIVE = 1 };

bool loom__lock_try(loom__lock *l) { return CAS(&l->key, 0, 1); }

void loom__lock_acquire(loom__lock *l) {
    uint32_t v = XCHG(&l->key, 1);
    if (likely(v == 0)) return;
    /* v is 1 or 2: what we must leave behind if we sleep, so the unlocker wakes others */
    uint32_t wait = v;
    for (;;) {
        for (int i = 0; i < SPIN_ACTIVE; i++) {
            while (LOAD_RLX(&l->key) == 0)
                if (CAS(&l->key, 0, wait)) return;
            for (int j = 0; j < SPIN_ACTIVE_CNT; j++) loom__cpu_relax();
        }
        for (int i = 0; i < SPIN_PASSIVE; i++) {
            while (LOAD_RLX(&l->key) == 0)
                if (CAS(&l->key, 0, wait)) return;
            loom__osyield();
        }
        v = XCHG(&l->key, 2);
        if (v == 0) return;
        wait = 2;
        /* tell sysmon this sleep is ours, not a blocking call of the goroutine's */
        M *m = loom__getm();
        if (m) STORE_RLX(&m->lockwait, 1);
        futex(&l->key, FUTEX_WAIT, 2, NULL);
        if (m) STORE_RLX(&m->lockwait, 0);
    }
}

void loom__lock_release(loom__lock *l) {
    uint32_t v = XCHG(&l->key, 0);
    if (unlikely(v == 0)) loom__fatal("unlock of unlocked runtime lock");
    if (v == 2) futex(&l->key, FUTEX_WAKE, 1, NULL);
}

void loom__note_clear(loom__note *n) { STORE(&n->key, 0); }

void loom__note_wakeup(loom__note *n) {
    /* a second wakeup is harmless (runtime exit wakes every M) */
    if (XCHG(&n->key, 1) != 0) return;
    futex(&n->key, FUTEX_WAKE, 1, NULL);
}

void loom__note_sleep(loom__note *n) {
    while (LOAD(&n->key) == 0) futex(&n->key, FUTEX_WAIT, 0, NULL);
}

bool loom__note_tsleep(loom__note *n, int64_t ns) {
    if (ns < 0) {
        loom__note_sleep(n);
        return true;
    }
    int64_t deadline = loom__nanotime() + ns;
    while (LOAD(&n->key) == 0) {
        int64_t left = deadline - loom__nanotime();
        if (left <= 0) return false;
        struct timespec ts = { left / 1000000000, left % 1000000000 };
        futex(&n->key, FUTEX_WAIT, 0, &ts);
    }
    return true;
}

void loom__osyield(void) {
    int saved = errno;
    sched_yield();
    errno = saved;
}

void loom__spin_lock_slow(loom__spinlock *l) {
    for (int i = 0;; i++) {
        while (__atomic_load_n(&l->key, __ATOMIC_RELAXED) != 0) {
            if (i < 64) loom__cpu_relax();
            else loom__osyield(); /* the holder may have been descheduled */
            i++;
        }
        if (loom__spin_try(l)) return;
    }
}

/* ---- the current M: one TLS word, read through a function the compiler can't see into */
static __thread M *tls_m;

LOOM_OPAQUE M *loom__getm(void) {
    LOOM_OPAQUE_BODY();
    return tls_m;
}
LOOM_OPAQUE void loom__setm(M *m) {
    LOOM_OPAQUE_BODY();
    tls_m = m;
    if (m) m->errnop = &errno; /* this thread's errno, for switches (proc.c) */
}

long loom__env_long(const char *name, long dflt, long lo, long hi) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    bool digits = end != s;
    /* accept k/m suffixes for sizes */
    long unit = 1;
    if (*end == 'k' || *end == 'K') unit = 1024;
    else if (*end == 'm' || *end == 'M') unit = 1024 * 1024;
    if (unit != 1) end++;
    bool fits = v <= LONG_MAX / unit && v >= LONG_MIN / unit;
    if (!digits || errno || *end || !fits || v * unit < lo || v * unit > hi) {
        fprintf(stderr, "loom: ignoring %s=%s (want %ld..%ld)\n", name, s, lo, hi);
        return dflt;
    }
    return v * unit;
}
