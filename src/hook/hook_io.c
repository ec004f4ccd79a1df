/*
 * hook_io.c — read, write, recv*, send*, readv, writev, accept, connect, and the waits
 * they share.
 *
 * A call the program makes blocking, on an fd the hook keeps non-blocking in the kernel
 * (hook.c), is the kernel's blocking call rebuilt on its non-blocking one, as Go's net
 * package does: try; on EAGAIN wait until the fd may be ready (a goroutine parks in loom's
 * netpoller, a thread that cannot park polls), and try again.  What the caller sees is
 * what the blocking call would have given:
 *  - reads return what is there (at least a byte, or 0 at end of file); recv and recvfrom
 *    with MSG_WAITALL on a stream socket go on until the buffer is full, end of file or
 *    an error, as the kernel does;
 *  - writes go on until everything is written, as a blocking write on a stream socket or
 *    pipe does; a timeout or an error after part of it reports the part;
 *  - SO_RCVTIMEO / SO_SNDTIMEO bound the whole call: -1 with EAGAIN if nothing moved;
 *  - a parked call is not interrupted by signals (as if every handler had SA_RESTART);
 *    a thread's poll may be, and then the call says EINTR if nothing moved, as a
 *    blocking call with a handler without SA_RESTART does;
 *  - an fd closed by another goroutine while one waits on it: the waiter gets EBADF;
 *  - flags that ask for a non-blocking call (MSG_DONTWAIT) make it the plain call.
 * connect on a blocking socket does the EINPROGRESS dance for the caller: wait until the
 * socket is writable (SO_SNDTIMEO bounds it: then EINPROGRESS, as the kernel says), then
 * report SO_ERROR.  A Unix-domain connect whose listener's backlog is full says EAGAIN
 * where the blocking call would wait for room: it is retried, backing off from 100 us
 * to 10 ms, until it goes through or SO_SNDTIMEO passes.
 *
 * Waiting: loom_fd_park on the fd (the caller has just seen EAGAIN, or a zero-timeout look
 * said "not ready", and tries again after any wake-up: no look at the fd's level is spent
 * on either side).  When another goroutine already waits on it in the same direction
 * (-EBUSY: several acceptors of one listener, say), the waiter parks on a temporary epoll
 * set holding the fd instead, so any number can wait, as threads can.
 */
#include "hook.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* NOLINTNEXTLINE(bugprone-reserved-identifier): glibc's own name, which the hook defines */
extern void __chk_fail(void) __attribute__((noreturn));

int64_t loom__hook_deadline(int64_t timeout_ns) { return timeout_ns > 0 ? loom_now() + timeout_ns : 0; }

static short poll_events(int events) {
    return (short)(((events & LOOM_READABLE) ? POLLIN : 0) | ((events & LOOM_WRITABLE) ? POLLOUT : 0));
}

int loom__hook_wait(int fd, struct loom__hfd *e, int events, int64_t deadline, bool park) {
    int64_t left = -1;
    if (deadline) {
        left = deadline - loom_now();
        if (left <= 0) return -ETIMEDOUT;
    }
    if (!park) {
        struct pollfd p = { .fd = fd, .events = poll_events(events) };
        int ms = left < 0 ? -1 : left / 1000000 >= 0x7fffffff ? 0x7fffffff : (int)((left + 999999) / 1000000);
        int r = loom__real.poll(&p, 1, ms);
        if (r < 0) return -errno;
        if (r == 0 && deadline && loom_now() >= deadline) return -ETIMEDOUT;
        return 0;
    }
    if (e && !(__atomic_load_n(&e->flags, __ATOMIC_RELAXED) & HF_LOOM))
        __atomic_fetch_or(&e->flags, HF_LOOM, __ATOMIC_RELAXED); /* before loom knows it */
    int r = loom_fd_park(fd, events, left);                      /* (the caller has just seen EAGAIN) */
    if (r > 0) return 0;
    if (r == -EBUSY) {
        struct pollfd p = { .fd = fd, .events = poll_events(events) };
        return loom__hook_wait_set(&p, 1, deadline);
    }
    if (r == -ECANCELED) return -EBADF; /* closed under us */
    if (r == -EAGAIN) return -ETIMEDOUT;
    return r;
}

int loom__hook_wait_set(const struct pollfd *fds, nfds_t n, int64_t deadline) {
    int64_t left = -1;
    if (deadline) {
        left = deadline - loom_now();
        if (left <= 0) return -ETIMEDOUT;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -errno;
    const uint32_t asked = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDNORM | EPOLLRDBAND | EPOLLWRNORM |
                           EPOLLWRBAND | EPOLLMSG | EPOLLRDHUP; /* the poll bits, same values */
    for (nfds_t i = 0; i < n; i++) {
        if (fds[i].fd < 0) continue;
        struct epoll_event ev = { .events = (uint32_t)(unsigned short)fds[i].events & asked,
                                  .data.fd = fds[i].fd };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i].fd, &ev) == 0 || errno != EEXIST) continue;
        for (nfds_t j = 0; j < i; j++) /* the fd again: wait for every event asked */
            if (fds[j].fd == fds[i].fd) ev.events |= (uint32_t)(unsigned short)fds[j].events & asked;
        epoll_ctl(ep, EPOLL_CTL_MOD, fds[i].fd, &ev);
    }
    /* (fds epoll refuses, regular files, are always ready: the caller's first look saw it) */
    loom_fd_forget(ep); /* a number loom may know as a file closed behind it */
    int r = loom_fd_wait(ep, LOOM_READABLE, left);
    loom_fd_close(ep);
    if (r > 0) return 0;
    if (r == -EAGAIN) return -ETIMEDOUT;
    return r;
}

/* ------------------------------------------------------------------ reads and writes */

struct op {
    int dir;  /* LOOM_READABLE or LOOM_WRITABLE */
    bool all; /* go on after a partial transfer */
    size_t total;
    ssize_t (*fn)(int fd, struct op *o, size_t done);
    void *buf;
    int flags;
    __SOCKADDR_ARG addr;
    __CONST_SOCKADDR_ARG caddr;
    socklen_t *lenp, len;
    const struct iovec *iov;
    int iovcnt;
    struct msghdr *msg;
    const struct msghdr *cmsg;
};

/* Runs o on fd with the blocking semantics the program asked for (see the top). */
static ssize_t run(int fd, int mode, struct op *o) {
    struct loom__hfd *e = NULL;
    uint32_t f;
    if (mode == H_PARK) f = loom__hook_fd(fd, &e);
    else f = (e = loom__hook_fd_peek(fd)) ? __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) : 0;
    if (!loom__hook_blocking(f)) return o->fn(fd, o, 0);
    if (o->dir == LOOM_READABLE && !(f & HF_STREAM)) o->all = false;
    int64_t to = __atomic_load_n(o->dir == LOOM_READABLE ? &e->rcvtimeo : &e->sndtimeo, __ATOMIC_RELAXED);
    int64_t deadline = 0;
    size_t done = 0;
    int saved = loom__hook_errno();
    for (;;) {
        ssize_t r = o->fn(fd, o, done);
        if (r >= 0) {
            done += (size_t)r;
            if (r > 0 && o->all && done < o->total) continue;
            if (mode == H_PARK) loom__hook_preempt_point();
            loom__hook_set_errno(saved);
            return (ssize_t)done;
        }
        int err = loom__hook_errno();
        if (err != EAGAIN && err != EWOULDBLOCK) break;
        if (to && !deadline) deadline = loom_now() + to; /* from the first wait, as the kernel */
        int w = loom__hook_wait(fd, e, o->dir, deadline, mode == H_PARK);
        if (w == 0) continue;
        loom__hook_set_errno(w == -ETIMEDOUT ? EAGAIN : -w);
        break;
    }
    if (done == 0) return -1;
    loom__hook_set_errno(saved); /* the error shows at the next call */
    return (ssize_t)done;
}

/* The part of iov after its first `skip` bytes, in *out (which the caller frees if it is
 * not buf); returns its count. */
static int iov_rest(const struct iovec *iov, int cnt, size_t skip, struct iovec *buf, int bufn,
                    struct iovec **out) {
    int i = 0;
    while (i < cnt && skip >= iov[i].iov_len) skip -= iov[i++].iov_len;
    int rest = cnt - i;
    struct iovec *v = rest <= bufn ? buf : malloc((size_t)rest * sizeof *v);
    *out = v;
    if (!v) return -1;
    memcpy(v, iov + i, (size_t)rest * sizeof *v);
    if (rest > 0) {
        v[0].iov_base = (char *)v[0].iov_base + skip;
        v[0].iov_len -= skip;
    }
    return rest;
}

static size_t iov_total(const struct iovec *iov, int cnt) {
    size_t n = 0;
    for (int i = 0; i < cnt; i++) n += iov[i].iov_len;
    return n;
}

static ssize_t op_read(int fd, struct op *o, size_t done) {
    return loom__real.read(fd, (char *)o->buf + done, o->total - done);
}
static ssize_t op_write(int fd, struct op *o, size_t done) {
    return loom__real.write(fd, (const char *)o->buf + done, o->total - done);
}
static ssize_t op_recv(int fd, struct op *o, size_t done) {
    return loom__real.recv(fd, (char *)o->buf + done, o->total - done, o->flags);
}
static ssize_t op_recvfrom(int fd, struct op *o, size_t done) {
    return loom__real.recvfrom(fd, (char *)o->buf + done, o->total - done, o->flags, o->addr, o->lenp);
}
static ssize_t op_send(int fd, struct op *o, size_t done) {
    return loom__real.send(fd, (const char *)o->buf + done, o->total - done, o->flags);
}
static ssize_t op_sendto(int fd, struct op *o, size_t done) {
    return loom__real.sendto(fd, (const char *)o->buf + done, o->total - done, o->flags, o->caddr, o->len);
}
static ssize_t op_readv(int fd, struct op *o, size_t done) {
    (void)done;
    return loom__real.readv(fd, o->iov, o->iovcnt);
}
static ssize_t op_recvmsg(int fd, struct op *o, size_t done) {
    (void)done;
    return loom__real.recvmsg(fd, o->msg, o->flags);
}
static ssize_t op_writev(int fd, struct op *o, size_t done) {
    if (done == 0) return loom__real.writev(fd, o->iov, o->iovcnt);
    struct iovec buf[16], *v;
    int n = iov_rest(o->iov, o->iovcnt, done, buf, 16, &v);
    if (n < 0) return -1;
    ssize_t r = loom__real.writev(fd, v, n);
    if (v != buf) {
        int e = loom__hook_errno();
        free(v);
        loom__hook_set_errno(e);
    }
    return r;
}
static ssize_t op_sendmsg(int fd, struct op *o, size_t done) {
    if (done == 0) return loom__real.sendmsg(fd, o->cmsg, o->flags);
    struct iovec buf[16], *v;
    int n = iov_rest(o->cmsg->msg_iov, (int)o->cmsg->msg_iovlen, done, buf, 16, &v);
    if (n < 0) return -1;
    struct msghdr m = *o->cmsg; /* the rest: its control data went with the first part */
    m.msg_iov = v;
    m.msg_iovlen = (size_t)n;
    m.msg_control = NULL;
    m.msg_controllen = 0;
    ssize_t r = loom__real.sendmsg(fd, &m, o->flags);
    if (v != buf) {
        int e = loom__hook_errno();
        free(v);
        loom__hook_set_errno(e);
    }
    return r;
}

static ssize_t do_read(int fd, void *buf, size_t n, const void *caller) {
    int mode = loom__hook_mode(caller);
    if (mode == H_PLAIN) return loom__real.read(fd, buf, n);
    struct op o = { .dir = LOOM_READABLE, .total = n, .fn = op_read, .buf = buf };
    return run(fd, mode, &o);
}

static ssize_t do_recv(int fd, void *buf, size_t n, int flags, const void *caller) {
    int mode = loom__hook_mode(caller);
    if (mode == H_PLAIN || (flags & MSG_DONTWAIT)) return loom__real.recv(fd, buf, n, flags);
    struct op o = { .dir = LOOM_READABLE,
                    .all = (flags & MSG_WAITALL) != 0,
                    .total = n,
                    .fn = op_recv,
                    .buf = buf,
                    .flags = flags };
    return run(fd, mode, &o);
}

static ssize_t do_recvfrom(int fd, void *buf, size_t n, int flags, __SOCKADDR_ARG addr, socklen_t *len,
                           const void *caller) {
    int mode = loom__hook_mode(caller);
    if (mode == H_PLAIN || (flags & MSG_DONTWAIT)) return loom__real.recvfrom(fd, buf, n, flags, addr, len);
    struct op o = { .dir = LOOM_READABLE,
                    .all = (flags & MSG_WAITALL) != 0,
                    .total = n,
                    .fn = op_recvfrom,
                    .buf = buf,
                    .flags = flags,
                    .addr = addr,
                    .lenp = len };
    return run(fd, mode, &o);
}

/* glibc's _FORTIFY_SOURCE entries, which a fortified program calls instead of read, recv
 * and recvfrom (its headers declare them only when fortifying) */
/* NOLINTNEXTLINE(bugprone-reserved-identifier): glibc's own name, which the hook defines */
HOOK_API ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
/* NOLINTNEXTLINE(bugprone-reserved-identifier): glibc's own name, which the hook defines */
HOOK_API ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
/* NOLINTNEXTLINE(bugprone-reserved-identifier): glibc's own name, which the hook defines */
HOOK_API ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, __SOCKADDR_ARG addr,
                                socklen_t *len);

HOOK_API ssize_t read(int fd, void *buf, size_t n) { return do_read(fd, buf, n, HOOK_CALLER()); }

HOOK_API ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen) {
    if (n > buflen) __chk_fail();
    return do_read(fd, buf, n, HOOK_CALLER());
}

HOOK_API ssize_t write(int fd, const void *buf, size_t n) {
    int mode = loom__hook_mode(HOOK_CALLER());
    if (mode == H_PLAIN) return loom__real.write(fd, buf, n);
    struct op o = { .dir = LOOM_WRITABLE, .all = true, .total = n, .fn = op_write, .buf = (void *)buf };
    return run(fd, mode, &o);
}

HOOK_API ssize_t readv(int fd, const struct iovec *iov, int cnt) {
    int mode = loom__hook_mode(HOOK_CALLER());
    if (mode == H_PLAIN) return loom__real.readv(fd, iov, cnt);
    struct op o = { .dir = LOOM_READABLE, .fn = op_readv, .iov = iov, .iovcnt = cnt };
    return run(fd, mode, &o);
}

HOOK_API ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    int mode = loom__hook_mode(HOOK_CALLER());
    if (mode == H_PLAIN || cnt < 0) return loom__real.writev(fd, iov, cnt);
    struct op o = { .dir = LOOM_WRITABLE,
                    .all = true,
                    .total = iov_total(iov, cnt),
                    .fn = op_writev,
                    .iov = iov,
                    .iovcnt = cnt };
    return run(fd, mode, &o);
}

HOOK_API ssize_t recv(int fd, void *buf, size_t n, int flags) {
    return do_recv(fd, buf, n, flags, HOOK_CALLER());
}

HOOK_API ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags) {
    if (n > buflen) __chk_fail();
    return do_recv(fd, buf, n, flags, HOOK_CALLER());
}

HOOK_API ssize_t recvfrom(int fd, void *buf, size_t n, int flags, __SOCKADDR_ARG addr, socklen_t *len) {
    return do_recvfrom(fd, buf, n, flags, addr, len, HOOK_CALLER());
}

HOOK_API ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, __SOCKADDR_ARG addr,
                                socklen_t *len) {
    if (n > buflen) __chk_fail();
    return do_recvfrom(fd, buf, n, flags, addr, len, HOOK_CALLER());
}

HOOK_API ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
    int mode = loom__hook_mode(HOOK_CALLER());
    if (mode == H_PLAIN || (flags & MSG_DONTWAIT)) return loom__real.recvmsg(fd, msg, flags);
    struct op o = { .dir = LOOM_READABLE, .fn = op_recvmsg, .msg = msg, .flags = flags };
    return run(fd, mode, &o);
}

HOOK_API ssize_t send(int fd, const void *buf, size_t n, int flags) {
    int mode = loom__hook_mode(HOOK_CALLER());
    if (mode == H_PLAIN || (flags & MSG_DONTWAIT)) return loom__real.send(fd, buf, n, flags);
    struct op o = { .dir = LOOM_WRITABLE,
                    .all = true,
                    .total = n,
                    .fn = op_send,
                    .buf = (void *)buf,
                    .flags = flags };
    return run(fd, mode, &o);
}

HOOK_API ssize_t sendto(int fd, const void *buf, size_t n, int flags, __CONST_SOCKADDR_ARG addr,
                        socklen_t len) {
    int mode = loom__hook_mode(HOOK_CALLER());
    if (mode == H_PLAIN || (flags & MSG_DONTWAIT)) return loom__real.sendto(fd, buf, n, flags, addr, len);
    struct op o = { .dir = LOOM_WRITABLE,
                    .all = true,
                    .total = n,
                    .fn = op_sendto,
                    .buf = (void *)buf,
                    .flags = flags,
                    .caddr = addr,
                    .len = len };
    return run(fd, mode, &o);
}

HOOK_API ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    int mode = loom__hook_mode(HOOK_CALLER());
    if (mode == H_PLAIN || (flags & MSG_DONTWAIT) || !msg || (ssize_t)msg->msg_iovlen < 0)
        return loom__real.sendmsg(fd, msg, flags);
    struct op o = { .dir = LOOM_WRITABLE,
                    .all = true,
                    .total = iov_total(msg->msg_iov, (int)msg->msg_iovlen),
                    .fn = op_sendmsg,
                    .cmsg = msg,
                    .flags = flags };
    return run(fd, mode, &o);
}

/* ------------------------------------------------------------------ accept and connect */

static int do_accept(int fd, __SOCKADDR_ARG addr, socklen_t *len, int flags, bool four, const void *caller) {
    int mode = loom__hook_mode(caller);
    if (mode == H_PLAIN)
        return four ? loom__real.accept4(fd, addr, len, flags) : loom__real.accept(fd, addr, len);
    struct loom__hfd *e = NULL;
    uint32_t f;
    if (mode == H_PARK) f = loom__hook_fd(fd, &e);
    else f = (e = loom__hook_fd_peek(fd)) ? __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) : 0;
    bool block = loom__hook_blocking(f);
    int64_t deadline = 0;
    for (;;) {
        int r = four ? loom__real.accept4(fd, addr, len, flags) : loom__real.accept(fd, addr, len);
        if (r >= 0) {
            loom__hook_fd_reset(r); /* a new socket (blocking, whatever the listener is) */
            return r;
        }
        int err = loom__hook_errno();
        if (!block || (err != EAGAIN && err != EWOULDBLOCK)) return -1;
        int64_t to = __atomic_load_n(&e->rcvtimeo, __ATOMIC_RELAXED);
        if (to && !deadline) deadline = loom_now() + to;
        int w = loom__hook_wait(fd, e, LOOM_READABLE, deadline, mode == H_PARK);
        if (w == 0) continue;
        loom__hook_set_errno(w == -ETIMEDOUT ? EAGAIN : -w);
        return -1;
    }
}

HOOK_API int accept(int fd, __SOCKADDR_ARG addr, socklen_t *len) {
    return do_accept(fd, addr, len, 0, false, HOOK_CALLER());
}

HOOK_API int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *len, int flags) {
    return do_accept(fd, addr, len, flags, true, HOOK_CALLER());
}

/* A sleep of ns on this goroutine or thread. */
static void nap(int64_t ns, bool park) {
    if (park) {
        loom_sleep(ns);
    } else {
        struct timespec ts = { ns / 1000000000, ns % 1000000000 };
        loom__real.nanosleep(&ts, NULL);
    }
}

HOOK_API int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len) {
    int mode = loom__hook_mode(HOOK_CALLER());
    if (mode == H_PLAIN) return loom__real.connect(fd, addr, len);
    struct loom__hfd *e = NULL;
    uint32_t f;
    if (mode == H_PARK) f = loom__hook_fd(fd, &e);
    else f = (e = loom__hook_fd_peek(fd)) ? __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) : 0;
    if (!loom__hook_blocking(f)) return loom__real.connect(fd, addr, len);
    int saved = loom__hook_errno();
    int64_t to = __atomic_load_n(&e->sndtimeo, __ATOMIC_RELAXED);
    int64_t deadline = loom__hook_deadline(to), backoff = 100000;
    for (;;) {
        if (loom__real.connect(fd, addr, len) == 0) return 0;
        int err = loom__hook_errno();
        if (err != EAGAIN) {
            if (err != EINPROGRESS) return -1;
            break;
        }
        /* EAGAIN: a Unix-domain listener's backlog is full (the blocking call would wait
         * for room), or no local port is free (it would fail too) */
        int dom = 0;
        socklen_t dl = sizeof dom;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &dl) < 0 || dom != AF_UNIX) {
            loom__hook_set_errno(EAGAIN);
            return -1;
        }
        int64_t now = loom_now();
        if (deadline && now >= deadline) {
            loom__hook_set_errno(EAGAIN);
            return -1;
        }
        nap(deadline && deadline - now < backoff ? deadline - now : backoff, mode == H_PARK);
        if (backoff < 10000000) backoff *= 2;
    }
    for (;;) {
        int w = loom__hook_wait(fd, e, LOOM_WRITABLE, deadline, mode == H_PARK);
        if (w == -ETIMEDOUT) {
            loom__hook_set_errno(EINPROGRESS); /* as the kernel: it goes on connecting */
            return -1;
        }
        if (w < 0) {
            loom__hook_set_errno(-w);
            return -1;
        }
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        if (loom__real.poll(&p, 1, 0) <= 0) continue; /* not yet: a spurious wake */
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) return -1;
        if (soerr) {
            loom__hook_set_errno(soerr);
            return -1;
        }
        loom__hook_set_errno(saved);
        return 0;
    }
}
