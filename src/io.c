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
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
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
 * pollable fd (O_NONBLOCK is checked first), or unknown (blocking path).  io_args holds
 * every call's arguments; each op reads its own. */
enum { FD_UNKNOWN, FD_SOCKET, FD_OTHER };
struct io_args {
    void *buf;
    size_t n;
    struct sockaddr *addr; /* accept's and recvfrom's peer */
    socklen_t *len;
    int flags;                 /* the caller's recv/send flags */
    const struct sockaddr *to; /* sendto's destination */
    socklen_t tolen;
    struct msghdr *msg;        /* recvmsg's */
    const struct msghdr *cmsg; /* sendmsg's */
    const struct iovec *iov;   /* readv's and writev's */
    int iovcnt;
    int in_fd;     /* sendfile's source, and its offset (NULL: the file's own) */
    off_t *off;    /* (sendfile) */
    bool nonblock; /* the op relies on O_NONBLOCK on a socket too: it has no MSG_DONTWAIT */
    loom__pd *pd;  /* set by do_io for the poller path */
};
typedef ssize_t (*io_op)(int fd, struct io_args *a, int kind);

/* Reading a TCP socket: a server goroutine reads a request, answers, and reads again, and
 * that second read usually finds nothing (EAGAIN, one wasted system call of the ~4 a
 * request costs) before the goroutine parks.  Go pays it too.  loom asks the kernel for
 * TCP_INQ (Linux 4.18): every read then reports in a control message how many bytes were
 * left queued after it.  When that was none, and no edge has come from the poller since
 * (an arrival after the read makes one; a wait that consumes it clears rdrained), the next
 * read would say EAGAIN, so it parks at once.  (A FIN counts as a byte left, so
 * end-of-file is never skipped.  A reset does not: once the poller has seen an error or
 * hang-up on the socket (PD_ERR) every read goes to the kernel, which reports it.)  A read that gets no count back is on a socket loom did
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
    if (!edge && LOAD_RLX(&pd->rdrained) && !(LOAD(&pd->flags) & PD_ERR)) {
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
        if ((kind == FD_OTHER || a->nonblock) && (err = loom__fd_nonblock(fd)) != 0) {
            if (err < 0) return err;
            /* it was blocking again: a new file under this number (loom's own files,
             * sockets included, keep O_NONBLOCK), so its registration is stale: refresh
             * the cache */
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

/* A write that sends all, stopped by err after `done` bytes: a write cut short by the
 * goroutine's context reports the bytes written (API.md); any other error reports itself
 * (a partial write before it is not reported, as a failed write(2) after a short one). */
static ssize_t cut_short(size_t done, ssize_t err) {
    G *g = loom__getg();
    if (done > 0 && g && err == loom__ctx_ended(g)) return (ssize_t)done;
    return err;
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
        if (k < 0) return cut_short(done, k);
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

/* ------------------------------------------------------------------ More I/O
 * The same loop (do_io) with other system calls.  A caller's MSG_DONTWAIT asks for one try
 * that never waits: the plain call, on any thread.  Sends go on until everything is sent,
 * as loom_write (and as a blocking send on a stream socket does); a datagram is sent whole
 * or not at all, so on a datagram socket that is one call, one datagram. */

/* The result of one plain call that must not wait: a count, or -errno.  (Not a tail call:
 * libloom_hook tells loom's calls by their return address, tests/test_hook_tailcall.sh.) */
static ssize_t plain_result(ssize_t k) { return k < 0 ? -errno : k; }

static ssize_t recvfrom_op(int fd, struct io_args *a, int kind) {
    return recvfrom(fd, a->buf, a->n, a->flags | dontwait(kind), a->addr, a->len);
}

static ssize_t sendto_op(int fd, struct io_args *a, int kind) {
    return sendto(fd, a->buf, a->n, a->flags | MSG_NOSIGNAL | dontwait(kind), a->to, a->tolen);
}

static ssize_t recvmsg_op(int fd, struct io_args *a, int kind) {
    return recvmsg(fd, a->msg, a->flags | dontwait(kind));
}

static ssize_t sendmsg_op(int fd, struct io_args *a, int kind) {
    return sendmsg(fd, a->cmsg, a->flags | MSG_NOSIGNAL | dontwait(kind));
}

/* readv and writev on a socket are recvmsg and sendmsg of the same iovecs, which take
 * MSG_DONTWAIT (and MSG_NOSIGNAL); the kernel reads the array and never writes it. */
static ssize_t readv_op(int fd, struct io_args *a, int kind) {
    if (kind != FD_SOCKET) return readv(fd, a->iov, a->iovcnt);
    struct msghdr mh = { .msg_iov = (struct iovec *)a->iov, .msg_iovlen = (size_t)a->iovcnt };
    return recvmsg(fd, &mh, MSG_DONTWAIT);
}

/* as write_op: the unknown kind tries the socket call first */
static ssize_t writev_op(int fd, struct io_args *a, int kind) {
    if (kind != FD_OTHER) {
        struct msghdr mh = { .msg_iov = (struct iovec *)a->iov, .msg_iovlen = (size_t)a->iovcnt };
        ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL | dontwait(kind));
        if (k >= 0 || errno != ENOTSOCK || kind == FD_SOCKET) return k;
    }
    struct nosigpipe s;
    nosigpipe_begin(&s);
    return nosigpipe_end(&s, writev(fd, a->iov, a->iovcnt));
}

/* sendfile takes no flags: O_NONBLOCK on out_fd (a->nonblock makes do_io see to it for a
 * socket too) and SIGPIPE blocked.  in_fd is a regular file or block device, so EAGAIN
 * can only be out_fd's.  Reading in_fd may still wait for the disk with the P held, as
 * Go's sendfile does; sysmon lends a spare P if that lasts (README, "Blocking calls"). */
static ssize_t sendfile_op(int fd, struct io_args *a, int kind) {
    (void)kind;
    struct nosigpipe s;
    nosigpipe_begin(&s);
    return nosigpipe_end(&s, sendfile(fd, a->in_fd, a->off, a->n));
}

/* The sum of cnt iovecs' lengths in *total; false if it exceeds SSIZE_MAX, which the
 * kernel refuses too (EINVAL). */
static bool iov_total(const struct iovec *iov, size_t cnt, size_t *total) {
    size_t t = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (iov[i].iov_len > (size_t)SSIZE_MAX - t) return false;
        t += iov[i].iov_len;
    }
    *total = t;
    return true;
}

/* The calls that send everything from an iovec array go on after a partial write from
 * where it stopped, without touching the caller's array: from the start of an entry they
 * pass the rest of that array as it is; from inside one, a copy of that entry with its
 * start moved on, followed by copies of up to IOV_WINDOW - 1 entries after it.  A call
 * then moves at most IOV_WINDOW entries: more calls when a partial write lands inside an
 * entry with many small ones after it, but no allocation and nothing that can fail. */
enum { IOV_WINDOW = 16 };
struct iov_cursor {
    const struct iovec *iov;
    size_t cnt;
    size_t i;   /* the first entry not written in full */
    size_t off; /* the bytes of it written */
    struct iovec win[IOV_WINDOW];
};

/* Moves c on by the k bytes just written (no more than are left) and returns the rest: an
 * array of *cnt entries, in the caller's array or in c->win. */
static const struct iovec *iov_next(struct iov_cursor *c, size_t k, size_t *cnt) {
    while (c->i < c->cnt && k >= c->iov[c->i].iov_len - c->off) {
        k -= c->iov[c->i].iov_len - c->off;
        c->i++;
        c->off = 0;
    }
    c->off += k;
    size_t rest = c->cnt - c->i;
    if (c->off == 0 || rest == 0) {
        *cnt = rest;
        return c->iov + c->i;
    }
    size_t m = rest < IOV_WINDOW ? rest : IOV_WINDOW;
    memcpy(c->win, c->iov + c->i, m * sizeof *c->win);
    c->win[0].iov_base = (char *)c->win[0].iov_base + c->off;
    c->win[0].iov_len -= c->off;
    *cnt = m;
    return c->win;
}

/* Is fd a stream socket (SOCK_STREAM)? */
static bool is_stream(int fd) {
    int type = 0;
    socklen_t tl = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM;
}

ssize_t loom_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *len) {
    /* an address without a length: the kernel would take the datagram, then fail */
    if (fd < 0 || (!buf && n) || (addr && !len)) return -EINVAL;
    if (flags & MSG_DONTWAIT) return plain_result(recvfrom(fd, buf, n, flags, addr, len));
    struct io_args a = { .buf = buf, .n = n, .flags = flags, .addr = addr, .len = len };
    ssize_t k = do_io(fd, LOOM_READABLE, recvfrom_op, &a);
    if (k <= 0 || (size_t)k >= n || (flags & (MSG_WAITALL | MSG_PEEK)) != MSG_WAITALL || !is_stream(fd))
        return k;
    /* MSG_WAITALL on a stream socket: MSG_DONTWAIT made the kernel return what there was,
     * so go on as its blocking call would, until n bytes, end of file or an error (then
     * what came before it; the error shows at the next call).  The address, if any, is
     * the first part's. */
    size_t done = (size_t)k;
    a.addr = NULL;
    a.len = NULL;
    while (done < n) {
        a.buf = (char *)buf + done;
        a.n = n - done;
        k = do_io(fd, LOOM_READABLE, recvfrom_op, &a);
        if (k <= 0) break;
        done += (size_t)k;
    }
    return (ssize_t)done;
}

ssize_t loom_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
                    socklen_t len) {
    if (fd < 0 || (!buf && n)) return -EINVAL;
    if (flags & MSG_DONTWAIT) return plain_result(sendto(fd, buf, n, flags | MSG_NOSIGNAL, addr, len));
    /* at least one call, even for n == 0: an empty datagram is one */
    struct io_args a = { .buf = (void *)buf, .n = n, .flags = flags, .to = addr, .tolen = len };
    for (;;) {
        ssize_t k = do_io(fd, LOOM_WRITABLE, sendto_op, &a);
        if (k < 0) return cut_short(n - a.n, k);
        if ((size_t)k >= a.n) return (ssize_t)n;
        a.buf = (char *)a.buf + k;
        a.n -= (size_t)k;
    }
}

ssize_t loom_recvmsg(int fd, struct msghdr *msg, int flags) {
    if (fd < 0 || !msg) return -EINVAL;
    if (flags & MSG_DONTWAIT) return plain_result(recvmsg(fd, msg, flags));
    /* a failed recvmsg writes nothing back into msg, so every try sees the caller's */
    return do_io(fd, LOOM_READABLE, recvmsg_op, &(struct io_args){ .msg = msg, .flags = flags });
}

ssize_t loom_sendmsg(int fd, const struct msghdr *msg, int flags) {
    if (fd < 0 || !msg || (!msg->msg_iov && msg->msg_iovlen)) return -EINVAL;
    if (msg->msg_iovlen > IOV_MAX) return -EMSGSIZE; /* as the kernel says */
    size_t total;
    if (!iov_total(msg->msg_iov, msg->msg_iovlen, &total)) return -EINVAL;
    if (flags & MSG_DONTWAIT) return plain_result(sendmsg(fd, msg, flags | MSG_NOSIGNAL));
    struct msghdr m = *msg;
    struct iov_cursor c = { .iov = msg->msg_iov, .cnt = msg->msg_iovlen };
    struct io_args a = { .cmsg = &m, .flags = flags };
    size_t done = 0;
    for (;;) { /* at least one call: a datagram may be empty, or carry control data alone */
        ssize_t k = do_io(fd, LOOM_WRITABLE, sendmsg_op, &a);
        if (k < 0) return cut_short(done, k);
        done += (size_t)k;
        if (done >= total) return (ssize_t)total;
        /* the rest of a stream: the control data went with the first part */
        m.msg_control = NULL;
        m.msg_controllen = 0;
        m.msg_iov = (struct iovec *)iov_next(&c, (size_t)k, &m.msg_iovlen);
    }
}

ssize_t loom_readv(int fd, const struct iovec *iov, int iovcnt) {
    if (fd < 0 || iovcnt < 0 || iovcnt > IOV_MAX || (!iov && iovcnt)) return -EINVAL;
    return do_io(fd, LOOM_READABLE, readv_op, &(struct io_args){ .iov = iov, .iovcnt = iovcnt });
}

ssize_t loom_writev(int fd, const struct iovec *iov, int iovcnt) {
    if (fd < 0 || iovcnt < 0 || iovcnt > IOV_MAX || (!iov && iovcnt)) return -EINVAL;
    size_t total;
    if (!iov_total(iov, (size_t)iovcnt, &total)) return -EINVAL;
    struct iov_cursor c = { .iov = iov, .cnt = (size_t)iovcnt };
    struct io_args a = { .iov = iov, .iovcnt = iovcnt };
    size_t done = 0;
    while (done < total) { /* nothing to write: 0 without a call, as loom_write */
        ssize_t k = do_io(fd, LOOM_WRITABLE, writev_op, &a);
        if (k < 0) return cut_short(done, k);
        done += (size_t)k;
        size_t m;
        a.iov = iov_next(&c, (size_t)k, &m);
        a.iovcnt = (int)m;
    }
    return (ssize_t)total;
}

ssize_t loom_sendfile(int out_fd, int in_fd, off_t *offset, size_t n) {
    if (out_fd < 0 || in_fd < 0) return -EINVAL;
    struct stat st;
    if (fstat(in_fd, &st) < 0) return -errno;
    /* anything else might say EAGAIN for in_fd, and a wait on out_fd would not end it */
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) return -EINVAL;
    /* nothing to send: the kernel checks the fds and returns at once */
    if (n == 0) return plain_result(sendfile(out_fd, in_fd, offset, 0));
    if (n > SSIZE_MAX) n = SSIZE_MAX;
    size_t done = 0;
    while (done < n) {
        /* the kernel moves *offset, or in_fd's own offset, on by what each call sent */
        struct io_args a = { .n = n - done, .in_fd = in_fd, .off = offset, .nonblock = true };
        ssize_t k = do_io(out_fd, LOOM_WRITABLE, sendfile_op, &a);
        if (k < 0) return cut_short(done, k);
        if (k == 0) break; /* end of file */
        done += (size_t)k;
    }
    return (ssize_t)done;
}
