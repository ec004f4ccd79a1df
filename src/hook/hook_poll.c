/*
 * hook_poll.c — poll, ppoll, select, pselect, epoll_wait, epoll_pwait, epoll_pwait2.
 *
 * From a goroutine each first looks with a zero timeout (the plain call: exact results,
 * and nothing to do when something is ready or no wait was asked for); then it parks
 * once for all of its fds, and after each wake-up looks again with a zero timeout, until
 * something is ready or the timeout passes.  So results and errors are the kernel's own.
 * A wait on one fd with plain read/write interest parks on that fd (loom_fd_wait); on
 * several fds, on fds 0-2, on other events (POLLPRI, none) or on an fd the program left
 * blocking and the hook has not made non-blocking yet (a poll must not change the flag
 * under a stdio stream reading that fd), it parks on a temporary epoll set holding them
 * all (hook_io.c, loom__hook_wait_set).  epoll_wait parks on the program's own epoll fd.
 * A wait with a signal mask (ppoll, pselect, epoll_pwait with a mask) cannot apply that
 * mask to a goroutine, which may move between threads: it takes the blocking path (the
 * plain call between loom_block_begin and loom_block_end), exact but holding a thread.
 * Zero-timeout looks that a signal interrupts (loom's own preemption signal among them)
 * are retried; a parked wait is not interrupted by signals.  select, as Linux's, leaves
 * the time not slept in its timeval; pselect and ppoll leave theirs alone.
 */
#include "hook.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

/* NOLINTNEXTLINE(bugprone-reserved-identifier): glibc's own name, which the hook defines */
extern void __chk_fail(void) __attribute__((noreturn));

#define RD_EVENTS (POLLIN | POLLRDNORM | POLLRDHUP)
#define WR_EVENTS (POLLOUT | POLLWRNORM)

static int poll_now(struct pollfd *fds, nfds_t n) {
    int r;
    while ((r = loom__real.poll(fds, n, 0)) < 0 && loom__hook_errno() == EINTR) {}
    return r;
}

static int ms_left(int64_t deadline) {
    if (!deadline) return -1;
    int64_t left = deadline - loom_now();
    if (left <= 0) return 0;
    return left / 1000000 >= 0x7fffffff ? 0x7fffffff : (int)((left + 999999) / 1000000);
}

/* The flags of fd for a poll: classified if it is known or already non-blocking in the
 * kernel (classifying it changes nothing then), else 0. */
static uint32_t poll_class(int fd, struct loom__hfd **ep) {
    struct loom__hfd *e = loom__hook_fd_peek(fd);
    uint32_t f = e ? __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) : 0;
    *ep = e;
    if (f & HF_KNOWN) return f;
    int fl = loom__real.fcntl(fd, F_GETFL);
    if (fl < 0 || !(fl & O_NONBLOCK)) return 0;
    return loom__hook_fd(fd, ep);
}

/* One wait for any of fds until deadline (0: none): 0 (look again), -ETIMEDOUT, -errno. */
static int wait_fds(struct pollfd *fds, nfds_t n, int64_t deadline) {
    nfds_t valid = 0, one = 0;
    for (nfds_t i = 0; i < n; i++)
        if (fds[i].fd >= 0) {
            valid++;
            one = i;
        }
    if (valid == 0) { /* a sleep */
        int64_t left = deadline ? deadline - loom_now() : INT64_MAX / 2;
        if (left <= 0) return -ETIMEDOUT;
        loom_sleep(left);
        return 0;
    }
    short ev = fds[one].events;
    if (valid == 1 && ev && !(ev & ~(RD_EVENTS | WR_EVENTS))) {
        struct loom__hfd *e;
        uint32_t f = poll_class(fds[one].fd, &e);
        if (f & HF_PARK)
            return loom__hook_wait(fds[one].fd, e,
                                   ((ev & RD_EVENTS) ? LOOM_READABLE : 0) |
                                           ((ev & WR_EVENTS) ? LOOM_WRITABLE : 0),
                                   deadline, true);
    }
    return loom__hook_wait_set(fds, n, deadline);
}

/* poll from a goroutine; timeout_ns < 0: none. */
static int park_poll(struct pollfd *fds, nfds_t n, int64_t timeout_ns) {
    int saved = loom__hook_errno();
    int r = poll_now(fds, n);
    if (r > 0) loom__hook_preempt_point(); /* (poll leaves errno alone when it succeeds) */
    if (r != 0 || timeout_ns == 0) return r;
    int64_t deadline = timeout_ns > 0 ? loom_now() + timeout_ns : 0;
    for (;;) {
        int w = wait_fds(fds, n, deadline);
        if ((r = poll_now(fds, n)) != 0) return r;
        if (w == -ETIMEDOUT || (deadline && loom_now() >= deadline)) {
            loom__hook_set_errno(saved);
            return 0;
        }
        if (w < 0 && w != -EBADF) {
            /* no room for a temporary epoll set, say: the blocking path, always right */
            return HOOK_BLOCKING(int, loom__real.poll(fds, n, ms_left(deadline)));
        }
    }
}

static int do_poll(struct pollfd *fds, nfds_t n, int ms, const void *caller) {
    if (loom__hook_mode(caller) != H_PARK) return loom__real.poll(fds, n, ms);
    return park_poll(fds, n, ms < 0 ? -1 : (int64_t)ms * 1000000);
}

/* glibc's _FORTIFY_SOURCE entries for poll and ppoll (declared only when fortifying) */
/* NOLINTNEXTLINE(bugprone-reserved-identifier): glibc's own name, which the hook defines */
HOOK_API int __poll_chk(struct pollfd *fds, nfds_t n, int ms, size_t fdslen);
/* NOLINTNEXTLINE(bugprone-reserved-identifier): glibc's own name, which the hook defines */
HOOK_API int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
                         size_t fdslen);

HOOK_API int poll(struct pollfd *fds, nfds_t n, int ms) { return do_poll(fds, n, ms, HOOK_CALLER()); }

HOOK_API int __poll_chk(struct pollfd *fds, nfds_t n, int ms, size_t fdslen) {
    if (fdslen / sizeof *fds < n) __chk_fail();
    return do_poll(fds, n, ms, HOOK_CALLER());
}

static bool ts_bad(const struct timespec *ts) {
    return ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000);
}

static int64_t ts_ns(const struct timespec *ts) {
    if (!ts) return -1;
    if (ts->tv_sec >= INT64_MAX / 1000000000 - 1) return INT64_MAX / 2;
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static int do_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
                    const void *caller) {
    if (loom__hook_mode(caller) != H_PARK || ts_bad(ts)) return loom__real.ppoll(fds, n, ts, mask);
    if (mask) return HOOK_BLOCKING(int, loom__real.ppoll(fds, n, ts, mask));
    return park_poll(fds, n, ts_ns(ts));
}

HOOK_API int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask) {
    return do_ppoll(fds, n, ts, mask, HOOK_CALLER());
}

HOOK_API int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
                         size_t fdslen) {
    if (fdslen / sizeof *fds < n) __chk_fail();
    return do_ppoll(fds, n, ts, mask, HOOK_CALLER());
}

/* ------------------------------------------------------------------ select */

#define LBITS (8 * (int)sizeof(unsigned long))

static bool isset(const fd_set *s, int fd) {
    return s && (((const unsigned long *)(const void *)s)[fd / LBITS] >> (fd % LBITS)) & 1;
}

static void copy_set(fd_set *dst, const fd_set *src, int nfds) {
    if (src && dst) memcpy(dst, src, (size_t)(nfds + LBITS - 1) / LBITS * sizeof(unsigned long));
}

/* The zero-timeout look of select on copies of the sets; a result > 0 goes back to the
 * caller's sets, as does 0 when it is final (clear). */
static int select_now(int nfds, fd_set *r, fd_set *w, fd_set *x, bool final) {
    fd_set cr, cw, cx;
    copy_set(&cr, r, nfds);
    copy_set(&cw, w, nfds);
    copy_set(&cx, x, nfds);
    int k;
    for (;;) {
        struct timeval zero = { 0, 0 };
        k = loom__real.select(nfds, r ? &cr : NULL, w ? &cw : NULL, x ? &cx : NULL, &zero);
        if (k >= 0 || loom__hook_errno() != EINTR) break;
        copy_set(&cr, r, nfds);
        copy_set(&cw, w, nfds);
        copy_set(&cx, x, nfds);
    }
    if (k > 0 || (k == 0 && final)) {
        copy_set(r, &cr, nfds);
        copy_set(w, &cw, nfds);
        copy_set(x, &cx, nfds);
    }
    return k;
}

static int park_select(int nfds, fd_set *r, fd_set *w, fd_set *x, int64_t timeout_ns, struct timeval *tv) {
    int saved = loom__hook_errno();
    int k = select_now(nfds, r, w, x, timeout_ns == 0);
    if (k != 0 || timeout_ns == 0) return k;
    int64_t start = loom_now(), deadline = timeout_ns > 0 ? start + timeout_ns : 0;
    nfds_t n = 0;
    for (int fd = 0; fd < nfds; fd++)
        if (isset(r, fd) || isset(w, fd) || isset(x, fd)) n++;
    struct pollfd buf[32], *fds = n <= 32 ? buf : malloc(n * sizeof *fds);
    if (!fds) {
        loom__hook_set_errno(ENOMEM);
        return -1;
    }
    n = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = (short)((isset(r, fd) ? POLLIN : 0) | (isset(w, fd) ? POLLOUT : 0) |
                           (isset(x, fd) ? POLLPRI : 0));
        if (ev) fds[n++] = (struct pollfd){ .fd = fd, .events = ev };
    }
    for (;;) {
        int wr = wait_fds(fds, n, deadline);
        bool late = wr == -ETIMEDOUT || (deadline && loom_now() >= deadline);
        if (wr < 0 && !late && wr != -EBADF) {
            /* the blocking path, for the time left */
            struct timeval left = { 0, 0 }, *lp = NULL;
            if (deadline) {
                int64_t ns = deadline - loom_now();
                if (ns > 0) left = (struct timeval){ ns / 1000000000, ns % 1000000000 / 1000 };
                lp = &left;
            }
            k = HOOK_BLOCKING(int, loom__real.select(nfds, r, w, x, lp));
            break;
        }
        k = select_now(nfds, r, w, x, late);
        if (k != 0 || late) break;
    }
    if (fds != buf) free(fds);
    if (k >= 0) loom__hook_set_errno(saved);
    if (tv && k >= 0) { /* Linux: the time not slept */
        int64_t left = deadline ? deadline - loom_now() : 0;
        if (left < 0) left = 0;
        tv->tv_sec = left / 1000000000;
        tv->tv_usec = left % 1000000000 / 1000;
    }
    return k;
}

HOOK_API int select(int nfds, fd_set *r, fd_set *w, fd_set *x, struct timeval *tv) {
    if (loom__hook_mode(HOOK_CALLER()) != H_PARK || nfds < 0 || nfds > FD_SETSIZE ||
        (tv && (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000)))
        return loom__real.select(nfds, r, w, x, tv); /* (errors, or sets larger than fd_set) */
    int64_t ns = -1;
    if (tv)
        ns = tv->tv_sec >= INT64_MAX / 1000000000 - 1 ? INT64_MAX / 2
                                                      : (int64_t)tv->tv_sec * 1000000000 + tv->tv_usec * 1000;
    return park_select(nfds, r, w, x, ns, tv);
}

HOOK_API int pselect(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *ts,
                     const sigset_t *mask) {
    if (loom__hook_mode(HOOK_CALLER()) != H_PARK || nfds < 0 || nfds > FD_SETSIZE || ts_bad(ts))
        return loom__real.pselect(nfds, r, w, x, ts, mask);
    if (mask) return HOOK_BLOCKING(int, loom__real.pselect(nfds, r, w, x, ts, mask));
    return park_select(nfds, r, w, x, ts_ns(ts), NULL);
}

/* ------------------------------------------------------------------ epoll */

static int epoll_now(int epfd, struct epoll_event *ev, int max) {
    int r;
    while ((r = loom__real.epoll_wait(epfd, ev, max, 0)) < 0 && loom__hook_errno() == EINTR) {}
    return r;
}

/* epoll_wait from a goroutine: park on the epoll fd itself. */
static int park_epoll(int epfd, struct epoll_event *ev, int max, int64_t timeout_ns) {
    int saved = loom__hook_errno();
    int r = epoll_now(epfd, ev, max);
    if (r != 0 || timeout_ns == 0) return r;
    int64_t deadline = timeout_ns > 0 ? loom_now() + timeout_ns : 0;
    struct loom__hfd *e;
    uint32_t f = loom__hook_fd(epfd, &e);
    for (;;) {
        int w = -EPERM;
        if (f & HF_PARK) w = loom__hook_wait(epfd, e, LOOM_READABLE, deadline, true);
        if ((r = epoll_now(epfd, ev, max)) != 0) return r;
        if (w == -ETIMEDOUT || (deadline && loom_now() >= deadline)) {
            loom__hook_set_errno(saved);
            return 0;
        }
        if (w < 0) return HOOK_BLOCKING(int, loom__real.epoll_wait(epfd, ev, max, ms_left(deadline)));
    }
}

HOOK_API int epoll_wait(int epfd, struct epoll_event *ev, int max, int ms) {
    if (loom__hook_mode(HOOK_CALLER()) != H_PARK || max <= 0) return loom__real.epoll_wait(epfd, ev, max, ms);
    return park_epoll(epfd, ev, max, ms < 0 ? -1 : (int64_t)ms * 1000000);
}

HOOK_API int epoll_pwait(int epfd, struct epoll_event *ev, int max, int ms, const sigset_t *mask) {
    if (loom__hook_mode(HOOK_CALLER()) != H_PARK || max <= 0)
        return loom__real.epoll_pwait(epfd, ev, max, ms, mask);
    if (mask) return HOOK_BLOCKING(int, loom__real.epoll_pwait(epfd, ev, max, ms, mask));
    return park_epoll(epfd, ev, max, ms < 0 ? -1 : (int64_t)ms * 1000000);
}

HOOK_API int epoll_pwait2(int epfd, struct epoll_event *ev, int max, const struct timespec *ts,
                          const sigset_t *mask) {
    int mode = loom__hook_mode(HOOK_CALLER());
    if (!loom__real.epoll_pwait2) {
        loom__hook_set_errno(ENOSYS);
        return -1;
    }
    if (mode != H_PARK || max <= 0 || ts_bad(ts)) return loom__real.epoll_pwait2(epfd, ev, max, ts, mask);
    if (mask) return HOOK_BLOCKING(int, loom__real.epoll_pwait2(epfd, ev, max, ts, mask));
    return park_epoll(epfd, ev, max, ts_ns(ts));
}
