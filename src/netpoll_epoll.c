/*
 * netpoll_epoll.c — the Linux backend of the poller: epoll, edge-triggered, each fd
 * registered once for both directions, plus an eventfd that breaks a blocked wait
 * (Go's netpollBreak).  Waits use epoll_pwait2 for nanosecond timeouts when the kernel
 * has it (5.11+), else epoll_wait with the timeout rounded up to whole milliseconds.
 */
#include "netpoll.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int epfd = -1, evfd = -1;
static uint32_t wake_sig; /* a break is pending: one eventfd write is enough */
static bool no_pwait2;

int loom__pollb_init(void) {
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) return -errno;
    evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (evfd < 0) {
        int e = -errno;
        close(epfd);
        epfd = -1;
        return e;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, evfd, &ev) < 0) return -errno;
    STORE(&wake_sig, 0);
    return 0;
}

void loom__pollb_term(void) {
    if (evfd >= 0) close(evfd);
    if (epfd >= 0) close(epfd);
    evfd = epfd = -1;
}

int loom__pollb_add(int fd, void *ud) {
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = ud };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int loom__pollb_del(int fd) {
    struct epoll_event ev = { 0 };
    return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev) < 0 ? -errno : 0;
}

void loom__pollb_break(void) {
    if (evfd < 0 || !CAS(&wake_sig, 0, 1)) return;
    int saved = errno; /* called from goroutines: their errno stays theirs */
    uint64_t one = 1;
    while (write(evfd, &one, sizeof one) < 0 && errno == EINTR) {}
    errno = saved;
}

int loom__pollb_wait(int64_t ns, loom__poll_event *out, int max) {
    struct epoll_event ev[128];
    if (max > 128) max = 128;
    int n;
    if (!no_pwait2) {
        struct timespec ts = { ns / 1000000000, ns % 1000000000 };
        n = (int)syscall(SYS_epoll_pwait2, epfd, ev, max, ns < 0 ? NULL : &ts, NULL, 0);
        if (n < 0 && errno == ENOSYS) no_pwait2 = true;
    }
    if (no_pwait2) {
        int ms = ns < 0 ? -1 : (int)((ns + 999999) / 1000000);
        n = epoll_wait(epfd, ev, max, ms);
    }
    if (n < 0) return 0; /* EINTR: the caller loops in the scheduler */
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].data.ptr == NULL) {
            uint64_t v;
            while (read(evfd, &v, sizeof v) < 0 && errno == EINTR) {}
            STORE(&wake_sig, 0);
            continue;
        }
        int e = 0;
        if (ev[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) e |= LOOM_READABLE;
        if (ev[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) e |= LOOM_WRITABLE;
        if (ev[i].events & (EPOLLHUP | EPOLLERR)) e |= LOOM__POLL_ERR;
        out[k].ud = ev[i].data.ptr;
        out[k].events = e;
        k++;
    }
    return k;
}
