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
    if (f < 0) { *err = f; return NULL; }
    return (f & PD_BLOCKING) ? NULL : pd;
}

/* After a failed I/O call: park until fd may be ready in `mode` (0), or the error to return.
 * -EPERM from registration means epoll cannot watch this fd (/dev/null, say): from then on
 * it takes the blocking path. */
static int io_wait(loom__pd *pd, int mode, int err) {
    if (err == EINTR) return 0;
    if (err != EAGAIN) {
        if (err == EBADF) loom__pd_forget(pd);
        return -err;
    }
    int r = loom__netpoll_wait(pd, mode, -1);
    if (r == -EPERM) {
        STORE_RLX(&pd->flags, PD_KNOWN | PD_BLOCKING);
        r = wait_blocking(pd->fd, mode, -1);
    }
    return r < 0 ? r : 0;
}

int loom_fd_wait(int fd, int events, int64_t timeout_ns) {
    if (fd < 0 || !(events & (LOOM_READABLE | LOOM_WRITABLE)) || (events & ~(LOOM_READABLE | LOOM_WRITABLE)))
        return -EINVAL;
    if (fcntl(fd, F_GETFD) < 0) return -EBADF;
    int err;
    loom__pd *pd = poller_pd(fd, &err);
    if (err) return err;
    if (!pd) return wait_blocking(fd, events, timeout_ns);
    int64_t deadline = timeout_ns > 0 ? loom__nanotime() + timeout_ns : 0;
    for (;;) {
        /* the netpoller reports edges; the caller asked for a level: check it */
        int r = poll_once(fd, events, 0);
        if (r != 0) return r;
        if (timeout_ns == 0) return -EAGAIN;
        int64_t left = -1;
        if (timeout_ns > 0) {
            left = deadline - loom__nanotime();
            if (left <= 0) return -ETIMEDOUT;
        }
        r = loom__netpoll_wait(pd, events, left);
        if (r == -EPERM) return wait_blocking(fd, events, left);
        if (r < 0) return r;
    }
}

int loom_fd_close(int fd) {
    if (fd < 0) return -EINVAL;
    if (LOAD(&loom__sched.running)) {
        loom__pd *pd = loom__pd_get(fd);
        if (pd) loom__netpoll_close(pd);
    }
    return close(fd) < 0 ? -errno : 0;
}

ssize_t loom_read(int fd, void *buf, size_t n) {
    if (fd < 0 || (!buf && n)) return -EINVAL;
    int err;
    loom__pd *pd = poller_pd(fd, &err);
    if (err) return err;
    for (;;) {
        if (!pd) {
            /* regular file, or not a goroutine: block (after waiting, on a pipe or socket
             * we did not make non-blocking, so a foreign thread's read cannot spin) */
            int r = wait_blocking(fd, LOOM_READABLE, -1);
            if (r < 0) return r;
            loom_block_begin();
        }
        ssize_t k = read(fd, buf, n);
        int e = errno;
        if (!pd) loom_block_end();
        if (k >= 0) return k;
        if (!pd) {
            if (e == EAGAIN || e == EINTR) continue;
            return -e;
        }
        int r = io_wait(pd, LOOM_READABLE, e);
        if (r < 0) return r;
        if (LOAD_RLX(&pd->flags) & PD_BLOCKING) pd = NULL;
    }
}

/* One write that never raises SIGPIPE: send(MSG_NOSIGNAL) for sockets; for pipes, SIGPIPE
 * blocked around the write and a pending one dropped. */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t n) {
    ssize_t k = send(fd, buf, n, MSG_NOSIGNAL);
    if (k >= 0 || errno != ENOTSOCK) return k;
    sigset_t pipe, old;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    k = write(fd, buf, n);
    int err = errno;
    if (k < 0 && err == EPIPE) {
        struct timespec zero = { 0, 0 };
        sigtimedwait(&pipe, NULL, &zero);   /* drop the pending SIGPIPE */
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return k;
}

ssize_t loom_write(int fd, const void *buf, size_t n) {
    if (fd < 0 || (!buf && n)) return -EINVAL;
    int err;
    loom__pd *pd = poller_pd(fd, &err);
    if (err) return err;
    size_t done = 0;
    while (done < n) {
        if (!pd) {
            int r = wait_blocking(fd, LOOM_WRITABLE, -1);
            if (r < 0) return r;
            loom_block_begin();
        }
        ssize_t k = write_nosigpipe(fd, (const char *)buf + done, n - done);
        int e = errno;
        if (!pd) loom_block_end();
        if (k >= 0) { done += (size_t)k; continue; }
        if (!pd) {
            if (e == EAGAIN || e == EINTR) continue;
            return -e;
        }
        int r = io_wait(pd, LOOM_WRITABLE, e);
        if (r < 0) return r;
        if (LOAD_RLX(&pd->flags) & PD_BLOCKING) pd = NULL;
    }
    return (ssize_t)n;
}

int loom_accept(int fd, struct sockaddr *addr, socklen_t *len) {
    if (fd < 0) return -EINVAL;
    int err;
    loom__pd *pd = poller_pd(fd, &err);
    if (err) return err;
    for (;;) {
        if (!pd) {
            int r = wait_blocking(fd, LOOM_READABLE, -1);
            if (r < 0) return r;
        }
        int nfd = accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (nfd >= 0) {
            /* a fresh file under this number: whatever the cache said about it is stale */
            loom__pd *npd = loom__in_goroutine() ? loom__pd_get(nfd) : NULL;
            if (npd) STORE_RLX(&npd->flags, PD_KNOWN);
            return nfd;
        }
        int e = errno;
        if (e == ECONNABORTED) continue;
        if (!pd) {
            if (e == EAGAIN || e == EINTR) continue;
            return -e;
        }
        int r = io_wait(pd, LOOM_READABLE, e);
        if (r < 0) return r;
        if (LOAD_RLX(&pd->flags) & PD_BLOCKING) pd = NULL;
    }
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
