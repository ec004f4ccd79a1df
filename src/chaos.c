/*
 * chaos.c — LOOM_CHAOS=N: the real multi-threaded runtime with its race windows stretched.
 *
 * A lost wakeup or a goroutine queued twice needs two threads to interleave inside a window
 * of a few instructions; stress runs meet such an interleaving once in hundreds of runs.
 * Chaos mode makes the windows wide where loom knows they are: each place marked
 * LOOM__CHAOS(site) (publishing a parked goroutine, readying one, taking runnext or a queue
 * slot by CAS, a spinning M giving up its P, a timer firing, the poller's wakeups, lending
 * and retiring spare Ps, the preemption signal's switch) draws from a PRNG seeded by N and
 * now and then spins a few microseconds, yields the CPU or sleeps up to 100 µs, so the other
 * thread runs through the window meanwhile.  sysmon draws each time slice at random between
 * a tenth and twice LOOM_SLICE_US, and thieves pick victims in Go's topology-blind random
 * order.  Invariant checks (LOOM_DEBUG=check=1) are on as well, so a bad interleaving ends in
 * a `loom: fatal:` line where it happens rather than in corruption seen later.
 *
 * Threads interleave as the kernel schedules them, so a seed does not replay a run (that is
 * what LOOM_SEED is for); it changes which windows are stretched and by how much.  With
 * chaos off every site costs one load of a read-mostly flag and a predicted branch.
 */
#include "internal.h"
#include <sched.h>
#include <time.h>

bool loom__chaos_on;
static uint64_t chaos_seed;
static uint32_t chaos_threads; /* threads that drew so far: each gets its own stream */
static __thread uint64_t chaos_state;

void loom__chaos_init(void) {
    long n = loom__env_long("LOOM_CHAOS", 0, 0, (long)(~0ul >> 1));
    loom__chaos_on = n > 0;
    chaos_seed = (uint64_t)n;
    if (!loom__chaos_on) return;
    loom__sched.check = true;
    fprintf(stderr, "loom: chaos seed %ld\n", n);
}

static uint64_t chaos_rand(void) {
    uint64_t x = chaos_state;
    if (unlikely(x == 0)) {
        uint32_t k = __atomic_add_fetch(&chaos_threads, 1, __ATOMIC_RELAXED);
        x = (chaos_seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)k * 0xBF58476D1CE4E5B9ull) ^
            0x94D049BB133111EBull;
        if (x == 0) x = 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    chaos_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* One race window: mostly nothing; else a spin of up to 3 µs, a yield, or a short sleep.
 * Safe in the preemption signal's handler (sched_yield and nanosleep are
 * async-signal-safe) and under runtime locks (the others wait a little longer). */
void loom__chaos_point(int site) {
    (void)site;
    uint64_t r = chaos_rand();
    if ((r & 3) != 0) return; /* three times in four: straight through */
    uint32_t what = (uint32_t)(r >> 8) % 16, amount = (uint32_t)(r >> 32);
    int saved_errno = errno; /* the goroutine's (a sleep cut short: EINTR) */
    if (what < 10) {
        int64_t end = loom__nanotime() + amount % 3000;
        while (loom__nanotime() < end) loom__cpu_relax();
    } else if (what < 15) {
        sched_yield();
    } else {
        struct timespec ts = { 0, (long)(1000 + amount % 100000) };
        nanosleep(&ts, NULL);
    }
    errno = saved_errno;
}

/* A time slice for sysmon: in chaos mode drawn between slice/10 and 2 * slice. */
int64_t loom__chaos_slice(int64_t slice) {
    if (likely(!loom__chaos_on)) return slice;
    return slice / 10 + (int64_t)(chaos_rand() % (uint64_t)(2 * slice - slice / 10));
}
