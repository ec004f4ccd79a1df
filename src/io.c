/*
 * io.c — the "I/O and blocking calls" API.
 *
 * loom_block_begin/end are Go's entersyscallblock/exitsyscall: the P is handed to another
 * M for the duration of the call, and on return the goroutine takes a P again or queues
 * itself on the global run queue while its M goes idle.
 *
 * The fd calls here take the blocking path (a poll() inside a block section).  They are
 * correct but cost a thread per blocked goroutine; the netpoller path (epoll, parking the
 * goroutine instead of the thread) replaces them for sockets and pipes.
 */
#include "internal.h"
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

int loom_fd_wait(int fd, int events, int64_t timeout_ns) {
    if (fd < 0 || !(events & (LOOM_READABLE | LOOM_WRITABLE)) || (events & ~(LOOM_READABLE | LOOM_WRITABLE)))
        return -EINVAL;
    if (fcntl(fd, F_GETFD) < 0) return -EBADF;
    struct pollfd pfd = { .fd = fd, .events = poll_events(events) };
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
        int n = poll(&pfd, 1, ms);
        int err = errno;
        if (ms != 0) loom_block_end();
        if (n < 0) {
            if (err == EINTR) continue;
            return -err;
        }
        if (n == 0) {
            if (timeout_ns == 0) return -EAGAIN;
            continue;
        }
        if (pfd.revents & POLLNVAL) return -EBADF;
        int r = 0;
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) r |= LOOM_READABLE;
        if (pfd.revents & (POLLOUT | POLLHUP | POLLERR)) r |= LOOM_WRITABLE;
        r &= events;
        if (r) return r;
    }
}

int loom_fd_close(int fd) {
    if (fd < 0) return -EINVAL;
    return close(fd) < 0 ? -errno : 0;
}

ssize_t loom_read(int fd, void *buf, size_t n) {
    if (fd < 0 || (!buf && n)) return -EINVAL;
    for (;;) {
        int r = loom_fd_wait(fd, LOOM_READABLE, -1);
        if (r < 0) return r;
        ssize_t k = read(fd, buf, n);
        if (k >= 0) return k;
        if (errno != EAGAIN && errno != EINTR) return -errno;
    }
}

ssize_t loom_write(int fd, const void *buf, size_t n) {
    if (fd < 0 || (!buf && n)) return -EINVAL;
    size_t done = 0;
    while (done < n) {
        int r = loom_fd_wait(fd, LOOM_WRITABLE, -1);
        if (r < 0) return r;
        ssize_t k = send(fd, (const char *)buf + done, n - done, MSG_NOSIGNAL);
        if (k < 0 && errno == ENOTSOCK) {
            /* a pipe or file: block SIGPIPE around the write so EPIPE comes back instead */
            sigset_t pipe, old;
            sigemptyset(&pipe);
            sigaddset(&pipe, SIGPIPE);
            pthread_sigmask(SIG_BLOCK, &pipe, &old);
            k = write(fd, (const char *)buf + done, n - done);
            int err = errno;
            if (k < 0 && err == EPIPE) {
                struct timespec zero = { 0, 0 };
                sigtimedwait(&pipe, NULL, &zero);   /* drop the pending SIGPIPE */
            }
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            errno = err;
        }
        if (k < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return -errno;
        }
        done += (size_t)k;
    }
    return (ssize_t)n;
}

int loom_accept(int fd, struct sockaddr *addr, socklen_t *len) {
    if (fd < 0) return -EINVAL;
    for (;;) {
        int r = loom_fd_wait(fd, LOOM_READABLE, -1);
        if (r < 0) return r;
        int nfd = accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (nfd >= 0) return nfd;
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) return -errno;
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
