/*
 * io.c — the "I/O and blocking calls" API.
 *
 * loom_block_begin/end are Go's entersyscall/exitsyscall (proc.c): the P stays with the
 * thread in P_SYSCALL, and sysmon hands it to another thread if the call lasts (sysmon.c).
 *
 * The fd calls, from a goroutine: sockets, pipes and terminals are switched to O_NONBLOCK
 * and the goroutine parks in the netpoller when the kernel says EAGAIN (netpoll.c), so a
 * thousand idle connections cost a thousand parked goroutines and no thread.  Regular
 * files (which epoll cannot watch and which never say EAGAIN) take the blocking path.
 * From a thread that is not running a goroutine (a foreign thread, or outside loom_run)
 * every call is a plain blocking call: poll(), then the I/O.
 */
#include "netpoll.h"
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

void loom_block_begin(void) {
    M *m = loom__getm();
    if (!m || !m->p || m->curg == &m->g0 || m->blocked) return;
    loom__entersyscall(m);
}

void loom_block_end(void) {
    M *m = loom__getm();
    if (!m || !m->blocked) return;
    loom__exitsyscall(m);
}

static short poll_events(int events) {
    short e = 0;
    if (events & LOOM_READABLE) e |= POLLIN;
    if (events & LOOM_WRITABLE) e |= POLLOUT;
    return e;
}

/* poll() on one fd: the ready events among `events` (> 0), 0 if none yet, or -errno.
 * Hang-up and error count as ready for whatever was asked (API.md). */
static int poll_once(int fd, int events, int ms) {
    struct pollfd pfd = { .fd = fd, .events = poll_events(events) };
    int n = poll(&pfd, 1, ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    if (n == 0) return 0;
    if (pfd.revents & POLLNVAL) return -EBADF;
    int r = 0;
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) r |= LOOM_READABLE;
    if (pfd.revents & (POLLOUT | POLLHUP | POLLERR)) r |= LOOM_WRITABLE;
    return r & events;
}

/* The blocking path: poll() in a blocking section (a thread that runs no goroutine just
 * blocks; a goroutine lends its P out meanwhile). */
static int wait_blocking(int fd, int events, int64_t timeout_ns) {
    /* real time: a blocking call's timeout passes in the kernel, also in deterministic mode */
    int64_t deadline = timeout_ns > 0 ? loom__nanotime() + timeout_ns : 0;
    for (;;) {
        int ms = -1;
        if (timeout_ns == 0) ms = 0;
        else if (timeout_ns > 0) {
            int64_t left = deadline - loom__nanotime();
            if (left <= 0) return -ETIMEDOUT;
            ms = (int)((left + 999999) / 1000000);
        }
        if (ms != 0) loom_block_begin();
        int r = poll_once(fd, events, ms);
        if (ms != 0) loom_block_end();
        if (r != 0) return r;
        if (timeout_ns == 0) return -EAGAIN;
    }
}

/* The poll descriptor of fd if the calling goroutine should use the netpoller for it;
 * NULL for the blocking path.  *err gets a negative errno for a bad fd. */
static loom__pd *poller_pd(int fd, int *err) {
    *err = 0;
    if (!loom__in_goroutine()) return NULL;
    loom__pd *pd = loom__pd_get(fd);
    if (!pd) return NULL;
    int f = loom__pd_prepare(pd);
    if (f < 0) {
        *err = f;
        return NULL;
    }
    return (f & PD_BLOCKING) ? NULL : pd;
}

/* Parks in the netpoller until pd's fd may be ready for `events` (timeout_ns < 0: none),
 * as loom__netpoll_wait.  -EPERM from registration means epoll cannot watch this fd
 * (/dev/null, say): from then on it takes the blocking path, this time too. */
static int poller_wait(loom__pd *pd, int events, int64_t timeout_ns) {
    int r = loom__netpoll_wait(pd, events, timeout_ns);
    if (r != -EPERM) return r;
    STORE_RLX(&pd->flags, PD_KNOWN | PD_BLOCKING);
    return wait_blocking(pd->fd, events, timeout_ns);
}

/* After a failed I/O call: park until fd may be ready in `mode` (0), or the error to return. */
static int io_wait(loom__pd *pd, int mode, int err) {
    if (err == EINTR) return 0;
    if (err != EAGAIN) {
        if (err == EBADF) loom__pd_forget(pd);
        return -err;
    }
    int r = poller_wait(pd, mode, -1);
    return r < 0 ? r : 0;
}

/* events is LOOM_READABLE, LOOM_WRITABLE or both, and nothing else. */
static bool events_ok(int events) {
    return (events & (LOOM_READABLE | LOOM_WRITABLE)) && !(events & ~(LOOM_READABLE | LOOM_WRITABLE));
}

int loom_fd_wait(int fd, int events, int64_t timeout_ns) {
    if (fd < 0 || !events_ok(events)) return -EINVAL;
    if (fcntl(fd, F_GETFD) < 0) return -EBADF;
    int err;
    loom__pd *pd = poller_pd(fd, &err);
    if (err) return err;
    if (!pd) return wait_blocking(fd, events, timeout_ns);
    int64_t deadline = timeout_ns > 0 ? loom__now() + timeout_ns : 0;
    for (;;) {
        /* the netpoller reports edges; the caller asked for a level: check it */
        int r = poll_once(fd, events, 0);
        if (r != 0) return r;
        if (timeout_ns == 0) return -EAGAIN;
        int64_t left = -1;
        if (timeout_ns > 0) {
            left = deadline - loom__now();
            if (left <= 0) return -ETIMEDOUT;
        }
        r = poller_wait(pd, events, left);
        if (r < 0) return r;
    }
}

/* loom_fd_wait less its two looks at the fd's level (poll_once), for callers that have just
 * made one themselves (loom.h): they retry their own call after any wake-up. */
int loom_fd_park(int fd, int events, int64_t timeout_ns) {
    if (fd < 0 || !events_ok(events)) return -EINVAL;
    int err;
    loom__pd *pd = poller_pd(fd, &err);
    if (err) return err;
    if (!pd) return wait_blocking(fd, events, timeout_ns);
    return poller_wait(pd, events, timeout_ns);
}

int loom_fd_forget(int fd) {
    if (fd < 0) return -EINVAL;
    if (LOAD(&loom__sched.running)) {
        loom__pd *pd = loom__pd_get(fd);
        if (pd) loom__netpoll_close(pd);
    }
    return 0;
}

int loom_fd_close(int fd) {
    int r = loom_fd_forget(fd);
    if (r < 0) return r;
    return close(fd) < 0 ? -errno : 0;
}

int loom_can_park(void) { return loom__in_goroutine(); }

/* (src/arch/text_begin_elf.S says how the build keeps loom's code in one range) */
extern const char loom__text_begin[], loom__text_end[];

void loom_text_range(const void **begin, const void **end) {
    if (begin) *begin = loom__text_begin;
    if (end) *end = loom__text_end;
}

/* The I/O calls share one loop (do_io): an operation is tried without blocking; on EAGAIN
 * the goroutine parks in the poller and tries again.  kind says what the fd is known to be:
 * a socket (the call passes MSG_DONTWAIT, so it never depends on O_NONBLOCK), another
 * pollable fd (O_NONBLOCK is checked first), or unknown (blocking path). */
enum { FD_UNKNOWN, FD_SOCKET, FD_OTHER };
struct io_args {
    void *buf;
    size_t n;
    struct sockaddr *addr;
    socklen_t *len;
    loom__pd *pd; /* set by do_io for the poller path */
};
typedef ssize_t (*io_op)(int fd, struct io_args *a, int kind);

/* Reading a TCP socket: a server goroutine reads a request, answers, and reads again, and
 * that second read usually finds nothing (EAGAIN, one wasted system call of the ~4 a
 * request costs) before the goroutine parks.  Go pays it too.  loom asks the kernel for
 * TCP_INQ (Linux 4.18): every read then reports in a control message how many bytes were
 * left queued after it.  When that was none, and no edge has come from the poller since
 * (an arrival after the read makes one; a wait that consumes it clears rdrained), the next
 * read would say EAGAIN, so it parks at once.  (A FIN counts as a byte left, so
 * end-of-file is never skipped.)  A read that gets no count back is on a socket loom did
 * not ask: the number was reused behind loom's back, and the cache is refreshed. */
static uint32_t inq_enable(loom__pd *pd, int fd) {
    int one = 1;
    uint32_t f = PD_INQ_TRIED;
    if (setsockopt(fd, SOL_TCP, TCP_INQ, &one, sizeof one) == 0) f |= PD_INQ;
    return __atomic_or_fetch(&pd->flags, f, __ATOMIC_RELAXED);
}

static ssize_t recv_inq(int fd, struct io_args *a) {
    loom__pd *pd = a->pd;
    bool edge = loom__pd_take_read_edge(pd);
    if (!edge && LOAD_RLX(&pd->rdrained)) {
        errno = EAGAIN; /* empty at the last read, and nothing arrived since */
        return -1;
    }
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { a->buf, a->n };
    struct msghdr mh = { .msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = cbuf,
                         .msg_controllen = sizeof cbuf };
    ssize_t k = recvmsg(fd, &mh, MSG_DONTWAIT);
    if (k < 0) {
        if (errno == EAGAIN) STORE_RLX(&pd->rdrained, 1);
        return k;
    }
    int inq = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) memcpy(&inq, CMSG_DATA(c), sizeof inq);
    if (inq < 0) loom__pd_forget(pd); /* not the socket we asked: reused */
    else STORE_RLX(&pd->rdrained, inq == 0);
    return k;
}

static ssize_t read_op(int fd, struct io_args *a, int kind) {
    if (kind != FD_SOCKET) return read(fd, a->buf, a->n);
    uint32_t f = LOAD_RLX(&a->pd->flags);
    if (!(f & PD_INQ_TRIED)) f = inq_enable(a->pd, fd);
    return (f & PD_INQ) ? recv_inq(fd, a) : recv(fd, a->buf, a->n, MSG_DONTWAIT);
}

/* A write that cannot pass MSG_NOSIGNAL (to a pipe; sendfile) runs with SIGPIPE blocked:
 * the SIGPIPE it raises is directed at this thread, so it stays pending, and is dropped
 * before the mask comes back. */
struct nosigpipe {
    sigset_t pipe, old;
};

static void nosigpipe_begin(struct nosigpipe *s) {
    sigemptyset(&s->pipe);
    sigaddset(&s->pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s->pipe, &s->old);
}

/* k: the write's result, returned with its errno kept */
static ssize_t nosigpipe_end(struct nosigpipe *s, ssize_t k) {
    int err = errno;
    if (k < 0 && err == EPIPE) {
        struct timespec zero = { 0, 0 };
        sigtimedwait(&s->pipe, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &s->old, NULL);
    errno = err;
    return k;
}

/* MSG_DONTWAIT on the poller path, where a socket's calls never depend on O_NONBLOCK; the
 * blocking path passes the caller's flags alone. */
static int dontwait(int kind) { return kind == FD_SOCKET ? MSG_DONTWAIT : 0; }

/* A write that never raises SIGPIPE: MSG_NOSIGNAL for sockets; otherwise SIGPIPE blocked
 * around the write (nosigpipe). */
static ssize_t write_op(int fd, struct io_args *a, int kind) {
    if (kind != FD_OTHER) {
        ssize_t k = send(fd, a->buf, a->n, MSG_NOSIGNAL | dontwait(kind));
        if (k >= 0 || errno != ENOTSOCK || kind == FD_SOCKET) return k;
    }
    struct nosigpipe s;
    nosigpipe_begin(&s);
    return nosigpipe_end(&s, write(fd, a->buf, a->n));
}

static ssize_t accept_op(int fd, struct io_args *a, int kind) {
    (void)kind;
    for (;;) {
        int nfd = accept4(fd, a->addr, a->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (nfd >= 0 || errno != ECONNABORTED) return nfd;
    }
}

/* The cache for fd was found stale (the number names another file now): forget it and
 * classify the fd again, as poller_pd. */
static loom__pd *refresh_pd(int fd, loom__pd *pd, int *err) {
    loom__pd_forget(pd);
    return poller_pd(fd, err);
}

/* One successful op (its result, >= 0) or -errno. */
static ssize_t do_io(int fd, int mode, io_op op, struct io_args *a) {
    int err;
    loom__pd *pd = poller_pd(fd, &err);
    if (err) return err;
    for (;;) {
        if (!pd) {
            /* blocking path: a regular file from a goroutine (in a blocking section), or
             * any fd from a thread without one (after poll, so a non-blocking fd cannot
             * make it spin) */
            bool in_g = loom__in_goroutine();
            if (!in_g) {
                int r = wait_blocking(fd, mode, -1);
                if (r < 0) return r;
            } else {
                loom_block_begin();
            }
            ssize_t k = op(fd, a, FD_UNKNOWN);
            int e = errno;
            if (in_g) loom_block_end();
            if (k >= 0) return k;
            if (e == EAGAIN || e == EINTR) continue;
            return -e;
        }
        int kind = (LOAD_RLX(&pd->flags) & PD_SOCKET) ? FD_SOCKET : FD_OTHER;
        if (kind == FD_OTHER && (err = loom__fd_nonblock(fd)) != 0) {
            if (err < 0) return err;
            /* it was blocking again: a new file under this number (loom's own files
             * keep O_NONBLOCK), so its registration is stale: refresh the cache */
            pd = refresh_pd(fd, pd, &err);
            if (err) return err;
            continue;
        }
        a->pd = pd;
        ssize_t k = op(fd, a, kind);
        if (k >= 0) return k;
        int e = errno;
        if (e == ENOTSOCK && kind == FD_SOCKET) {
            /* the number now names another kind of file (closed behind our back) */
            pd = refresh_pd(fd, pd, &err);
            if (err) return err;
            continue;
        }
        int r = io_wait(pd, mode, e);
        if (r < 0) return r;
        if (LOAD_RLX(&pd->flags) & PD_BLOCKING) pd = NULL;
    }
}

ssize_t loom_read(int fd, void *buf, size_t n) {
    if (fd < 0 || (!buf && n)) return -EINVAL;
    return do_io(fd, LOOM_READABLE, read_op, &(struct io_args){ .buf = buf, .n = n });
}

ssize_t loom_write(int fd, const void *buf, size_t n) {
    if (fd < 0 || (!buf && n)) return -EINVAL;
    size_t done = 0;
    while (done < n) {
        struct io_args a = { .buf = (char *)buf + done, .n = n - done };
        ssize_t k = do_io(fd, LOOM_WRITABLE, write_op, &a);
        if (k < 0) return k;
        done += (size_t)k;
    }
    return (ssize_t)n;
}

int loom_accept(int fd, struct sockaddr *addr, socklen_t *len) {
    if (fd < 0) return -EINVAL;
    ssize_t nfd = do_io(fd, LOOM_READABLE, accept_op, &(struct io_args){ .addr = addr, .len = len });
    if (nfd >= 0 && loom__in_goroutine()) {
        /* a fresh socket under this number: whatever the cache said about it is stale */
        loom__pd *npd = loom__pd_get((int)nfd);
        if (npd) {
            loom__pd_forget(npd);
            STORE_RLX(&npd->flags, PD_KNOWN | PD_SOCKET);
        }
    }
    return (int)nfd;
}

int loom_connect(int fd, const struct sockaddr *addr, socklen_t len) {
    if (fd < 0 || !addr) return -EINVAL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    if (connect(fd, addr, len) == 0) return 0;
    if (errno != EINPROGRESS && errno != EINTR) return -errno;
    int r = loom_fd_wait(fd, LOOM_WRITABLE, -1);
    if (r < 0) return r;
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) return -errno;
    return err ? -err : 0;
}
