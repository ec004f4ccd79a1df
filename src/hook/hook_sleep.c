/*
 * hook_sleep.c — nanosleep, clock_nanosleep, usleep, sleep.
 *
 * From a goroutine a sleep parks it on a timer (loom_sleep) until the time asked has
 * passed on loom's clock, and returns as the plain call does when it was not interrupted:
 * a parked sleep is not cut short by signals (loom's preemption signal would otherwise
 * end a plain nanosleep early).  Relative sleeps measure on loom_now, so in deterministic
 * mode (LOOM_SEED) they follow its virtual time, as loom_sleep does; an absolute
 * clock_nanosleep waits for the clock it names.  A clock loom cannot sleep on (a CPU-time
 * clock) takes the blocking path.  Arguments the kernel rejects get its errors.
 */
#include "hook.h"
#include <errno.h>

static void sleep_ns(int64_t ns) {
    int64_t end = loom_now() + ns;
    loom_sleep(ns); /* ns <= 0: a yield, as the kernel's */
    for (int64_t left; (left = end - loom_now()) > 0;) loom_sleep(left);
}

static int64_t ts_ns(const struct timespec *ts) {
    if (ts->tv_sec >= INT64_MAX / 1000000000 - 1) return INT64_MAX / 2;
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static bool ts_bad(const struct timespec *ts) {
    return ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000;
}

HOOK_API int nanosleep(const struct timespec *req, struct timespec *rem) {
    if (loom__hook_mode(HOOK_CALLER()) != H_PARK || !req || ts_bad(req))
        return loom__real.nanosleep(req, rem);
    sleep_ns(ts_ns(req));
    return 0;
}

HOOK_API int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req, struct timespec *rem) {
    if (loom__hook_mode(HOOK_CALLER()) != H_PARK || !req || ts_bad(req))
        return loom__real.clock_nanosleep(clk, flags, req, rem);
    if (clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC && clk != CLOCK_BOOTTIME && clk != CLOCK_TAI) {
        loom_block_begin();
        int r = loom__real.clock_nanosleep(clk, flags, req, rem);
        loom_block_end();
        return r;
    }
    if (!(flags & TIMER_ABSTIME)) {
        sleep_ns(ts_ns(req));
        return 0;
    }
    int64_t until = ts_ns(req);
    for (;;) {
        struct timespec now;
        if (clock_gettime(clk, &now) != 0) return EINVAL;
        int64_t left = until - ts_ns(&now);
        if (left <= 0) return 0;
        loom_sleep(left);
    }
}

HOOK_API int usleep(useconds_t us) {
    if (loom__hook_mode(HOOK_CALLER()) != H_PARK) return loom__real.usleep(us);
    sleep_ns((int64_t)us * 1000);
    return 0;
}

HOOK_API unsigned sleep(unsigned s) {
    if (loom__hook_mode(HOOK_CALLER()) != H_PARK) return loom__real.sleep(s);
    sleep_ns((int64_t)s * 1000000000);
    return 0;
}
