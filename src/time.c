/*
 * time.c — loom_timer: Go's time.Timer, time.Ticker and time.AfterFunc, on the per-P timer
 * heaps of timer.c.
 *
 * A loom_timer is a heap entry (loom__timer) and, for the channel kinds, a channel of
 * capacity 1 that each fire offers the fire's loom_now() with a non-blocking send: a
 * receiver that falls behind finds the one value and misses the fires meanwhile (Go's
 * ticker drops them too).  An after-func timer spawns a goroutine for fn at each fire.  A
 * million pending timers are a million heap entries: no goroutine, no thread.
 *
 * Go 1.23's rule: once reset or stop returns, no value sent before it can be received.
 * Both take the timer's lock (serialising them), take the entry off its heap
 * (loom__timer_del waits out a fire in progress, and removes a ticker that fire put back)
 * and empty the channel.  After that nothing can send: the entry is in no heap and no
 * callback runs.  A value still in the channel was never received, so the fire it came
 * from counts as stopped (stop and reset return 1), as a Go 1.23 timer channel, which is
 * unbuffered, behaves.
 *
 * Who touches what: `tm` belongs to timer.c's heap locks, `period`, `fn`, `arg` and `c`
 * are written under `lock` while the entry is in no heap and read by the callback, which
 * runs only while it is (the heap lock orders the two).
 */
#include "internal.h"

struct loom_timer {
    loom__timer tm;
    loom__lock lock; /* serialises reset, stop and free */
    int64_t period;  /* ns between fires, 0: once */
    loom_chan *c;    /* the channel kinds: capacity 1, int64_t; NULL for an after-func */
    void (*fn)(void *);
    void *arg;
};

/* A fire (on whichever thread runs the heap's timers); a ticker goes back on the heap
 * after it (timer.c). */
static int64_t fire(loom__timer *tm) {
    loom_timer *t = (loom_timer *)tm->arg;
    if (t->c) {
        int64_t now = loom__now();
        (void)loom_try_send(t->c, &now); /* full: the receiver has not taken the last one */
    } else if (!loom__spawn(t->fn, t->arg)) {
        loom__fatal("out of memory for an after-func goroutine");
    }
    return t->period;
}

/* Takes t's entry off its heap and empties its channel; t->lock held.  1 if a fire was
 * pending (in the heap, or sent and not received), else 0. */
static int disarm(loom_timer *t) {
    int pending = loom__timer_del(&t->tm);
    if (t->c && loom_try_recv(t->c, NULL) == 0) pending = 1;
    return pending;
}

static void arm(loom_timer *t, int64_t ns) {
    loom__timer_add(loom__timer_home(), &t->tm, loom__deadline_after(ns));
}

static loom_timer *timer_new(int64_t ns, int64_t period_ns, void (*fn)(void *), void *arg) {
    if (period_ns < 0) {
        errno = EINVAL;
        return NULL;
    }
    if (!LOAD(&loom__sched.running)) {
        errno = EPERM;
        return NULL;
    }
    loom_timer *t = calloc(1, sizeof *t);
    if (!t) {
        errno = ENOMEM;
        return NULL;
    }
    if (!fn && !(t->c = loom_chan_new(sizeof(int64_t), 1))) {
        free(t);
        errno = ENOMEM;
        return NULL;
    }
    t->tm.fn = fire;
    t->tm.arg = t;
    t->period = period_ns;
    t->fn = fn;
    t->arg = arg;
    arm(t, ns);
    return t;
}

loom_timer *loom_timer_new(int64_t ns, int64_t period_ns) { return timer_new(ns, period_ns, NULL, NULL); }

loom_timer *loom_after_func(int64_t ns, void (*fn)(void *), void *arg) {
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    return timer_new(ns, 0, fn, arg);
}

loom_chan *loom_timer_chan(loom_timer *t) { return t ? t->c : NULL; }

int loom_timer_reset(loom_timer *t, int64_t ns, int64_t period_ns) {
    if (!t || period_ns < 0) return -EINVAL;
    loom__lock_acquire(&t->lock);
    int pending = disarm(t);
    t->period = period_ns;
    arm(t, ns);
    loom__lock_release(&t->lock);
    return pending;
}

int loom_timer_stop(loom_timer *t) {
    if (!t) return -EINVAL;
    loom__lock_acquire(&t->lock);
    int pending = disarm(t);
    loom__lock_release(&t->lock);
    return pending;
}

void loom_timer_free(loom_timer *t) {
    if (!t) return;
    loom_timer_stop(t);
    loom_chan_free(t->c);
    free(t);
}
