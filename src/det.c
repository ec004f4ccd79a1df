/*
 * det.c — deterministic schedules (LOOM_SEED=N, LOOM_SCHED=random|pct:D[:K]), for tests.
 *
 * A concurrency bug that shows once in a thousand runs is found by running a thousand
 * schedules, and fixed by replaying the one that failed.  With LOOM_SEED=N loom runs one P
 * on one thread at a time, and every choice the scheduler makes comes from a PRNG seeded
 * by N, so the same program with the same input and seed makes the same sequence of
 * goroutine switches:
 *   - which runnable goroutine runs next: at each pick every runnable goroutine (runnext,
 *     the P's queue, the global queue) is gathered into one run set and one is drawn
 *     (det_next); the order in which a channel, lock or WaitGroup readied its waiters
 *     therefore does not decide the run order either (channels keep their FIFO promise);
 *   - which ready case a select takes (loom__fastrand draws from the same PRNG);
 *   - where a goroutine is preempted: every loom call that may block (send, receive,
 *     select, lock, sleep, I/O, loom_go, loom_yield) is a scheduling point where the
 *     running goroutine is one candidate among the run set (det_yield); there is no
 *     time slice and no preemption signal;
 *   - time is virtual: loom_now() starts at the real clock and stands still while any
 *     goroutine can run; when none can, it jumps to the earliest timer (sleeps, timeouts,
 *     deadlines), which fires.  Goroutines blocked on channels, select, mutexes, conds and
 *     WaitGroups count as blocked (Go's synctest cannot count mutexes: golang/go#77687).
 * LOOM_SCHED=pct:D is PCT (Burckhardt et al., ASPLOS 2010): each goroutine gets a random
 * priority when spawned, the highest-priority runnable one always runs, and at D-1 steps
 * drawn from the first K (default 100; pct:D:K sets it) the running goroutine drops below
 * every initial priority.  A bug that needs D ordering constraints among n goroutines is
 * found with probability at least 1/(n * K^(D-1)) per run, where uniform random choice may
 * need exponentially many.
 *
 * What stays real, and so is not replayed exactly: fds (the poller is asked without
 * blocking before virtual time jumps, and blocked in only when no timer is left), blocking
 * system calls (loom_block_begin/end, or plain ones sysmon notices: the P is handed to
 * another thread meanwhile, and virtual time waits for them), threads loom did not create
 * (their loom_try_send, loom_close reach the global queue when they happen), priority
 * levels (ignored: the PRNG or PCT decides), loom_lock_thread (a locked goroutine runs on
 * its own thread, still one at a time).  All of it still works.
 *
 * loom_sched_hash() returns a hash of the goroutine ids picked so far, to check a replay.
 * Every fatal error and every abnormal exit (a signal that kills, exit with a non-zero
 * status) prints "loom: seed N" on stderr.
 *
 * State: one run at a time uses it; det.lock guards it (a second thread reaches it only
 * around blocking calls, when a P was handed on).
 */
#include "internal.h"
#include <signal.h>
#include <time.h>
#include <unistd.h>

bool loom__det_on;

enum { SCHED_RANDOM, SCHED_PCT };

static struct {
    loom__lock lock;
    uint64_t seed, rng;
    int mode;
    int depth;          /* PCT's D */
    int64_t k;          /* PCT's K: steps the change points are drawn from */
    int64_t change[16]; /* step of each change point, in order drawn */
    int64_t step;       /* picks made */
    int64_t vclock;     /* virtual time (ns); under lock, read relaxed */
    G **v;              /* the run set */
    uint32_t n, cap;
    G *chosen;        /* picked by det_yield, to run next */
    uint32_t waiting; /* n + (chosen != NULL), for readers without the lock
                                   (checkdead holds sched.lock, which nests inside det.lock) */
    uint64_t hash;
} det;

static void count(void);
static bool said_seed;
static bool exit_hooks;

/* ------------------------------------------------------------------ the seed, at the end */

void loom__det_say_seed(void) {
    if (!loom__det_on || __atomic_exchange_n(&said_seed, true, __ATOMIC_RELAXED)) return;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "loom: seed %llu\n", (unsigned long long)det.seed);
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
}

static void on_exit_status(int status, void *arg) {
    (void)arg;
    if (status != 0) loom__det_say_seed();
}

static void on_kill(int sig) {
    loom__det_say_seed();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Where the program left a signal that kills at its default: print the seed first. */
static void hook_signal(int sig) {
    struct sigaction cur;
    if (sigaction(sig, NULL, &cur) != 0 || (cur.sa_flags & SA_SIGINFO) || cur.sa_handler != SIG_DFL) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_kill;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

/* ------------------------------------------------------------------ setup */

static uint64_t det_rand(void) {
    uint64_t x = det.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    det.rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint32_t loom__det_rand32(void) {
    loom__lock_acquire(&det.lock);
    uint32_t r = (uint32_t)(det_rand() >> 32);
    loom__lock_release(&det.lock);
    return r;
}

/* Reads LOOM_SEED and LOOM_SCHED; returns false (normal mode) without a seed. */
bool loom__det_init(void) {
    long seed = loom__env_long("LOOM_SEED", 0, 0, (long)(~0ul >> 1));
    free(det.v);
    memset(&det, 0, sizeof det);
    said_seed = false;
    loom__det_on = seed > 0;
    if (!loom__det_on) return false;
    det.seed = (uint64_t)seed;
    det.rng = (uint64_t)seed * 0x9E3779B97F4A7C15ull ^ 0xD1B54A32D192ED03ull;
    if (det.rng == 0) det.rng = 1;
    det.vclock = loom__nanotime();
    const char *s = getenv("LOOM_SCHED");
    if (s && !strncmp(s, "pct:", 4)) {
        /* D, then an optional :K, and nothing after */
        char *end;
        errno = 0;
        long d = strtol(s + 4, &end, 10), k = 100;
        bool ok = end != s + 4;
        if (ok && *end == ':') {
            const char *ks = end + 1;
            k = strtol(ks, &end, 10);
            ok = end != ks;
        }
        if (!ok || errno || *end || d < 1 || d > 16 || k < 1) {
            fprintf(stderr,
                    "loom: LOOM_SCHED=%s: want random, pct:D or pct:D:K (1 <= D <= 16, K >= 1); "
                    "using random\n",
                    s);
        } else {
            det.mode = SCHED_PCT;
            det.depth = (int)d;
            det.k = k;
            for (int i = 0; i < det.depth - 1; i++) det.change[i] = 1 + (int64_t)(det_rand() % (uint64_t)k);
        }
    } else if (s && *s && strcmp(s, "random") != 0) {
        fprintf(stderr, "loom: LOOM_SCHED=%s: want random, pct:D or pct:D:K; using random\n", s);
    }
    if (!exit_hooks) { /* once a process */
        exit_hooks = true;
        on_exit(on_exit_status, NULL);
        int sigs[] = { SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTERM };
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) hook_signal(sigs[i]);
    }
    return true;
}

/* ------------------------------------------------------------------ time */

int64_t loom__det_now(void) { return LOAD_RLX(&det.vclock); }

void loom__det_advance(int64_t to) {
    loom__lock_acquire(&det.lock);
    if (to > det.vclock) STORE_RLX(&det.vclock, to);
    loom__lock_release(&det.lock);
}

/* ------------------------------------------------------------------ picks */

/* PCT: a fresh goroutine's priority, above every change point's (1 .. D-1). */
void loom__det_spawn(G *g) {
    loom__lock_acquire(&det.lock);
    g->detprio = det.mode == SCHED_PCT ? 16 + (det_rand() >> 5) : 0;
    loom__lock_release(&det.lock);
}

static void set_add(G *g) {
    if (det.n == det.cap) {
        uint32_t cap = det.cap ? det.cap * 2 : 256;
        G **v = realloc(det.v, sizeof(G *) * cap);
        if (!v) loom__fatal("out of memory for the deterministic run set (%u goroutines)", det.n);
        det.v = v;
        det.cap = cap;
    }
    det.v[det.n++] = g;
}

/* Everything runnable on p and globally joins the run set. */
static void gather(P *p) {
    for (;;) {
        bool inh;
        G *g = loom__runqget(p, &inh);
        if (!g && LOAD(&loom__sched.runqsize) != 0) {
            loom__lock_acquire(&loom__sched.lock);
            g = loom__globrunqget(p, 0);
            loom__lock_release(&loom__sched.lock);
        }
        if (!g) return;
        set_add(g);
    }
}

/* Index of the run set's next goroutine: drawn (random), or the highest priority (PCT,
 * after lowering the running one's at a change point).  `self`: the running goroutine,
 * a candidate at det.v[n-1] (det_yield), else NULL. */
static uint32_t highest(void) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < det.n; i++)
        if (det.v[i]->detprio > det.v[best]->detprio) best = i;
    return best;
}

static uint32_t choose(G *self) {
    det.step++;
    if (det.mode != SCHED_PCT) return (uint32_t)(det_rand() % det.n);
    /* the i-th change point (counting from 1) gives the goroutine at this step priority
     * D - i: the running one, or the one that was about to run */
    for (int i = 0; i < det.depth - 1; i++)
        if (det.change[i] == det.step) {
            G *g = self ? self : det.v[highest()];
            /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): the run set holds no NULL */
            g->detprio = (uint64_t)(det.depth - 1 - i);
        }
    return highest();
}

static G *take(uint32_t i) {
    G *g = det.v[i];
    det.v[i] = det.v[--det.n];
    det.hash = (det.hash ^ g->id) * 0x100000001B3ull;
    return g;
}

/* The next goroutine for p (runtime.runqget's place in deterministic mode), or NULL. */
G *loom__det_next(P *p) {
    STORE_RLX(&p->preempt, 1); /* every blocking loom call reaches det_yield */
    loom__lock_acquire(&det.lock);
    G *g = det.chosen;
    det.chosen = NULL;
    if (!g) {
        gather(p);
        if (det.n) g = take(choose(NULL));
    }
    count();
    loom__lock_release(&det.lock);
    return g;
}

/* A scheduling point of running goroutine `self` on p: true if another goroutine was
 * picked (det_next hands it out next), false if self goes on. */
bool loom__det_yield(P *p, G *self) {
    loom__lock_acquire(&det.lock);
    /* A pick that no det_next handed out: the yield it was made for went another way (a
     * goroutine locked to its thread resumed at once in stoplockedm, a spare P being given
     * back went to g0): back into the run set, never lost. */
    if (unlikely(det.chosen)) {
        set_add(det.chosen);
        det.chosen = NULL;
    }
    gather(p);
    bool other = false;
    if (det.n) {
        set_add(self);
        uint32_t i = choose(self);
        if (det.v[i] == self) {
            det.n--; /* self is the last: drop it again */
            det.hash = (det.hash ^ self->id) * 0x100000001B3ull;
        } else {
            det.chosen = take(i);
            /* self was at the end: find it again (take moved the last into i) */
            for (uint32_t j = 0; j < det.n; j++)
                if (det.v[j] == self) {
                    det.v[j] = det.v[--det.n];
                    break;
                }
            other = true;
        }
    }
    count();
    loom__lock_release(&det.lock);
    return other;
}

/* Goroutines gathered but not run (checkdead, handoffp): relaxed, as runqsize is read. */
uint32_t loom__det_waiting(void) { return LOAD(&det.waiting); }

static void count(void) { STORE(&det.waiting, det.n + (det.chosen != NULL)); }

uint64_t loom_sched_hash(void) {
    if (!loom__det_on) return 0;
    loom__lock_acquire(&det.lock);
    uint64_t h = det.hash;
    loom__lock_release(&det.lock);
    return h;
}
