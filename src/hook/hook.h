/*
 * hook.h — what the files of libloom_hook share (hook.c tells the design).
 */
#ifndef LOOM_HOOK_INTERNAL_H
#define LOOM_HOOK_INTERNAL_H

#undef _FORTIFY_SOURCE /* the hook defines read, poll...: no inline wrappers */
#include <loom.h>
#include <loom_hook.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#define HOOK_API      __attribute__((visibility("default")))
#define HOOK_CALLER() __builtin_return_address(0)
#define likely(x)     __builtin_expect(!!(x), 1)
#define unlikely(x)   __builtin_expect(!!(x), 0)

/* The libc functions the hook stands in front of, found with dlsym(RTLD_NEXT). */
struct loom__hook_real {
    ssize_t (*read)(int, void *, size_t);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*readv)(int, const struct iovec *, int);
    ssize_t (*writev)(int, const struct iovec *, int);
    ssize_t (*recv)(int, void *, size_t, int);
    ssize_t (*recvfrom)(int, void *, size_t, int, __SOCKADDR_ARG, socklen_t *);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    ssize_t (*send)(int, const void *, size_t, int);
    ssize_t (*sendto)(int, const void *, size_t, int, __CONST_SOCKADDR_ARG, socklen_t);
    ssize_t (*sendmsg)(int, const struct msghdr *, int);
    int (*accept)(int, __SOCKADDR_ARG, socklen_t *);
    int (*accept4)(int, __SOCKADDR_ARG, socklen_t *, int);
    int (*connect)(int, __CONST_SOCKADDR_ARG, socklen_t);
    int (*poll)(struct pollfd *, nfds_t, int);
    int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
    int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
    int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
    int (*epoll_wait)(int, struct epoll_event *, int, int);
    int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
    int (*epoll_pwait2)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *);
    int (*nanosleep)(const struct timespec *, struct timespec *);
    int (*clock_nanosleep)(clockid_t, int, const struct timespec *, struct timespec *);
    int (*usleep)(useconds_t);
    unsigned (*sleep)(unsigned);
    int (*fcntl)(int, int, ...);
    int (*fcntl64)(int, int, ...);
    int (*ioctl)(int, unsigned long, ...);
    int (*setsockopt)(int, int, int, const void *, socklen_t);
    int (*close)(int);
    int (*dup)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    int (*socket)(int, int, int);
    int (*socketpair)(int, int, int, int *);
    int (*pipe)(int *);
    int (*pipe2)(int *, int);
    int (*getaddrinfo)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    int (*getnameinfo)(const struct sockaddr *, socklen_t, char *, socklen_t, char *, socklen_t, int);
    struct hostent *(*gethostbyname)(const char *);
    struct hostent *(*gethostbyname2)(const char *, int);
    struct hostent *(*gethostbyaddr)(const void *, socklen_t, int);
    int (*gethostbyname_r)(const char *, struct hostent *, char *, size_t, struct hostent **, int *);
    int (*gethostbyname2_r)(const char *, int, struct hostent *, char *, size_t, struct hostent **, int *);
    int (*gethostbyaddr_r)(const void *, socklen_t, int, struct hostent *, char *, size_t, struct hostent **,
                           int *);
};
extern struct loom__hook_real loom__real;

/* Where a hooked call comes from decides what it does (hook.c, loom__hook_mode). */
enum {
    H_PLAIN,  /* the plain call: hook off, loom calling libc, a forked child */
    H_THREAD, /* a thread that cannot park: plain, but blocking where the hook made
                       a blocking fd non-blocking behind the program's back */
    H_PARK,   /* a goroutine that may park */
};
extern int loom__hook_state; /* HS_*; atomic */
enum { HS_RESOLVING = -1, HS_UNRESOLVED, HS_OFF, HS_ON, HS_CHILD /* after fork() */ };
extern uintptr_t loom__hook_text_lo, loom__hook_text_len; /* loom's code (loom_text_range) */
void loom__hook_resolve(void);

static inline int loom__hook_mode(const void *caller) {
    int st = __atomic_load_n(&loom__hook_state, __ATOMIC_ACQUIRE);
    if (unlikely(st != HS_ON)) {
        if (st <= HS_UNRESOLVED) loom__hook_resolve(); /* called before our constructor */
        st = __atomic_load_n(&loom__hook_state, __ATOMIC_ACQUIRE);
        if (st == HS_CHILD) return H_THREAD;
        if (st != HS_ON) return H_PLAIN;
    }
    if ((uintptr_t)caller - loom__hook_text_lo < loom__hook_text_len) return H_PLAIN;
    return loom_can_park() ? H_PARK : H_THREAD;
}

/* ---- the fd table: what the hook knows of each fd number */
struct loom__hfd {
    uint32_t flags;             /* HF_*; atomic */
    int64_t rcvtimeo, sndtimeo; /* SO_RCVTIMEO / SO_SNDTIMEO in ns, 0: none; atomic */
};
enum {
    HF_KNOWN = 1,  /* the bits below are valid */
    HF_BUSY = 2,   /* being classified (loom__hook_fd) */
    HF_PARK = 4,   /* pollable and the hook keeps it O_NONBLOCK in the kernel */
    HF_NBVIEW = 8, /* the program's view: O_NONBLOCK */
    HF_LOOM = 16,  /* loom has waited on it: close it with loom_fd_close */
    HF_SOCK = 32,
    HF_STREAM = 64, /* a SOCK_STREAM socket (MSG_WAITALL applies) */
};
/* The flags of fd, classifying it at its first use (sets O_NONBLOCK on a pollable fd the
 * program left blocking); 0 if the table has no room or fd is bad.  *ep: its entry. */
uint32_t loom__hook_fd(int fd, struct loom__hfd **ep);
struct loom__hfd *loom__hook_fd_peek(int fd); /* NULL if never seen */
void loom__hook_fd_reset(int fd);             /* a new file under this number */
void loom__hook_fd_copy(int from, int to);    /* dup: the same open file */

/* Does a blocking call on an fd with these flags park (or, on a thread, emulate the
 * blocking call)?  Only when the program sees the fd blocking and the hook made it not. */
static inline bool loom__hook_blocking(uint32_t f) { return (f & (HF_PARK | HF_NBVIEW)) == HF_PARK; }

/* ---- waiting (hook_io.c) */
int64_t loom__hook_deadline(int64_t timeout_ns); /* 0: none */
/* Waits until fd may be ready for events (LOOM_READABLE | LOOM_WRITABLE): parks the
 * goroutine (park) or polls on the thread.  0 to try again, -ETIMEDOUT past deadline
 * (0: none), -EINTR (a signal, thread only) or -errno. */
int loom__hook_wait(int fd, struct loom__hfd *e, int events, int64_t deadline, bool park);
/* Parks until any of the pollfds may be ready (a temporary epoll set) or the deadline. */
int loom__hook_wait_set(const struct pollfd *fds, nfds_t n, int64_t deadline);
/* A cooperative preemption point, for a goroutine whose hooked call did not park: one that
 * keeps calling without ever waiting (its replies are there already) yields here at its
 * slice's end, as at a loom call, and may resume on any thread.  Switched out by the
 * preemption signal instead, it would keep its thread waiting for it (a thread for each
 * goroutine switched out that way, src/preempt_policy.c).  Before errno is set. */
static inline void loom__hook_preempt_point(void) {
    loom_preempt_disable();
    loom_preempt_enable();
}
void loom__hook_set_errno(int e);

/* The value of `call` (of type `type`) made as a blocking call from a goroutine
 * (loom_block_begin/end: if it lasts, its P goes on to another thread), with the errno it
 * left: for calls the hook cannot park (a signal mask to apply, no room for a wait set). */
#define HOOK_BLOCKING(type, call) \
    ({ \
        loom_block_begin(); \
        type hook_r__ = (call); \
        int hook_e__ = loom__hook_errno(); \
        loom_block_end(); \
        loom__hook_set_errno(hook_e__); \
        hook_r__; \
    })
int loom__hook_errno(void);

#endif
