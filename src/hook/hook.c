/*
 * hook.c — libloom_hook: blocking libc calls that park goroutines instead of threads.
 *
 * C programs live on libraries that block (hiredis's redisCommand, libcurl's easy API,
 * libpq's PQexec).  In a goroutine such a call would hold its OS thread; linked with
 * libloom_hook it parks the goroutine in loom's netpoller instead, as Go's runtime does for
 * its own I/O, while the library keeps the blocking semantics it asked for.  Tencent's
 * libco did this for WeChat's blocking backends (1:N per thread); here the goroutines are
 * M:N, so a call may resume on another thread.
 *
 * Interposition.  The hook defines read, write, poll... with default visibility; the
 * dynamic linker binds every library's calls to the first definition in its search order:
 * the executable (a static libloom_hook.a) or libloom_hook.so ahead of libc.  A constructor
 * finds the real functions once with dlsym(RTLD_NEXT) (a sanitizer's interceptor first,
 * where a sanitizer runtime provides one, so it still sees the call), before any
 * goroutine runs; a call that comes earlier resolves them then.  LOOM_HOOK=0 turns the hook
 * off: every call is the plain one.
 *
 * Who is calling (loom__hook_mode, one look per call).
 *  - loom itself: its own io.c, netpoller, sysmon and dumps call read, poll, fcntl,
 *    close... and expect the plain calls (with a static libloom the executable's read *is*
 *    the hook's).  loom's code lies in one range (loom_text_range); a call whose return
 *    address is inside it is the plain call.  So loom's use of libc never recurses into
 *    the hook, whichever way the two are linked.
 *  - a thread that cannot park (loom_can_park: a thread that runs no goroutine, or a
 *    goroutine between loom_block_begin and loom_block_end): the plain call, except on an
 *    fd that the program sees blocking and the hook made non-blocking (below): there the
 *    hook blocks the thread in poll() itself, with the same semantics as the kernel's.
 *  - a goroutine: the call parks it (hook_io.c, hook_poll.c, hook_sleep.c).
 *  - a forked child: never calls into loom (the runtime does not exist there), and a
 *    vfork child is caught where it would (close, dup2, dup3) by its process id.
 *
 * The program's view of an fd (this file's table, one entry per fd number).  Parking
 * needs an fd that says EAGAIN, so at a goroutine's first hooked call on a socket, pipe,
 * FIFO, tty, eventfd, timerfd or epoll fd, the hook records whether the program had set
 * O_NONBLOCK and sets it in the kernel if not (HF_PARK).  From then on fcntl(F_GETFL)
 * and ioctl(FIONBIO) show and change the program's view, never the kernel's flag; a call
 * on an fd the program sees non-blocking is the plain call and says EAGAIN as the kernel
 * would.  Regular files, directories and block devices are left alone (plain calls), and
 * so are fds 0-2: their open file description is usually shared with the parent shell,
 * which must not find its terminal non-blocking.  SO_RCVTIMEO and SO_SNDTIMEO are recorded
 * when set (and read at the first use), since the kernel ignores them on a non-blocking
 * socket; the hook applies them.  An entry is forgotten when its number is closed or
 * reused through a hooked call (close, dup2, dup3, accept, socket, socketpair, pipe...).
 *
 * close, dup2 and dup3 also keep loom's poller right: closing an fd a goroutine waited on
 * goes through loom_fd_close (which wakes other waiters on it and drops its epoll
 * registration), and dup2/dup3 onto a number call loom_fd_forget first, so the next wait
 * on the new file registers it afresh instead of trusting a registration of the old one.
 */
#include "hook.h"
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct loom__hook_real loom__real;
int loom__hook_state;
uintptr_t loom__hook_text_lo, loom__hook_text_len;
static pid_t hook_pid; /* the process the runtime belongs to */

void loom__hook_set_errno(int e) { errno = e; }
int loom__hook_errno(void) { return errno; }

/* ------------------------------------------------------------------ resolution */

static void *find(const char *name) {
    /* a sanitizer's interceptor (the executable's own definition, which ours replaced) */
    char icpt[64] = "__interceptor_";
    strncat(icpt, name, sizeof icpt - strlen(icpt) - 1);
    void *p = dlsym(RTLD_DEFAULT, icpt);
    return p ? p : dlsym(RTLD_NEXT, name);
}

/* A child of fork() has no runtime: the hook acts there as on a thread that cannot park. */
static void after_fork_child(void) {
    if (__atomic_load_n(&loom__hook_state, __ATOMIC_RELAXED) == HS_ON)
        __atomic_store_n(&loom__hook_state, HS_CHILD, __ATOMIC_RELEASE);
}

#define R(name) (*(void **)&loom__real.name = find(#name))

void loom__hook_resolve(void) {
    int st = HS_UNRESOLVED;
    if (!__atomic_compare_exchange_n(&loom__hook_state, &st, HS_RESOLVING, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&loom__hook_state, __ATOMIC_ACQUIRE) == HS_RESOLVING) sched_yield();
        return;
    }
    R(read);
    R(write);
    R(readv);
    R(writev);
    R(recv);
    R(recvfrom);
    R(recvmsg);
    R(send);
    R(sendto);
    R(sendmsg);
    R(accept);
    R(accept4);
    R(connect);
    R(poll);
    R(ppoll);
    R(select);
    R(pselect);
    R(epoll_wait);
    R(epoll_pwait);
    R(epoll_pwait2);
    R(nanosleep);
    R(clock_nanosleep);
    R(usleep);
    R(sleep);
    R(fcntl);
    R(fcntl64);
    R(ioctl);
    R(setsockopt);
    R(close);
    R(dup);
    R(dup2);
    R(dup3);
    R(socket);
    R(socketpair);
    R(pipe);
    R(pipe2);
    R(getaddrinfo);
    R(getnameinfo);
    R(gethostbyname);
    R(gethostbyname2);
    R(gethostbyaddr);
    R(gethostbyname_r);
    R(gethostbyname2_r);
    R(gethostbyaddr_r);
    if (!loom__real.fcntl64) loom__real.fcntl64 = loom__real.fcntl;
    /* every function but the optional ones must be there, or the hook stays off */
    bool all = true;
    void **p = (void **)&loom__real;
    for (size_t i = 0; i < sizeof loom__real / sizeof(void *); i++)
        if (!p[i] && &p[i] != (void **)&loom__real.epoll_pwait2) all = false;
    const void *lo, *hi;
    loom_text_range(&lo, &hi);
    loom__hook_text_lo = (uintptr_t)lo;
    loom__hook_text_len = (uintptr_t)hi - (uintptr_t)lo;
    hook_pid = getpid();
    pthread_atfork(NULL, NULL, after_fork_child);
    const char *env = getenv("LOOM_HOOK");
    bool on = all && !(env && strcmp(env, "0") == 0);
    __atomic_store_n(&loom__hook_state, on ? HS_ON : HS_OFF, __ATOMIC_RELEASE);
}

/* The kernel grows a process's fd table by doubling, and once the process has threads each
 * growth waits for an RCU grace period (milliseconds asleep inside whichever call made the
 * fd: socket, accept, pipe).  A goroutine caught there looks to loom like a thread blocked
 * in the kernel.  So the table is grown here, before any thread exists, to the soft
 * RLIMIT_NOFILE (at most 4096): a dup to the top number and back. */
static void grow_fd_table(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    int top = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 4096 ? 4096 : (int)rl.rlim_cur;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    int hi = top > fd + 1 ? (int)loom__real.fcntl(fd, F_DUPFD_CLOEXEC, top - 1) : -1;
    if (hi >= 0) loom__real.close(hi);
    loom__real.close(fd);
}

__attribute__((constructor)) static void hook_init(void) {
    loom__hook_resolve();
    if (__atomic_load_n(&loom__hook_state, __ATOMIC_ACQUIRE) == HS_ON) grow_fd_table();
}

HOOK_API int loom_hook_active(void) {
    loom__hook_resolve();
    return __atomic_load_n(&loom__hook_state, __ATOMIC_ACQUIRE) == HS_ON;
}

/* May this call reach into loom's runtime state?  Not in a forked child (no runtime
 * there), nor in a vfork child, which runs on its parent's thread and memory. */
static bool may_call_loom(void) {
    return __atomic_load_n(&loom__hook_state, __ATOMIC_RELAXED) == HS_ON && getpid() == hook_pid;
}

/* ------------------------------------------------------------------ the fd table */

#define HFD_CHUNK_BITS 12
#define HFD_CHUNK      (1 << HFD_CHUNK_BITS)
#define HFD_CHUNKS     1024 /* fds below 4M, as loom's own table */

static struct loom__hfd *hfd_tab[HFD_CHUNKS]; /* chunks, installed with CAS, never freed */

static struct loom__hfd *entry(int fd, bool make) {
    if (fd < 0 || fd >= HFD_CHUNK * HFD_CHUNKS) return NULL;
    struct loom__hfd **slot = &hfd_tab[fd >> HFD_CHUNK_BITS];
    struct loom__hfd *chunk = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!chunk) {
        if (!make) return NULL;
        struct loom__hfd *fresh = calloc(HFD_CHUNK, sizeof *fresh);
        if (!fresh) return NULL;
        if (__atomic_compare_exchange_n(slot, &chunk, fresh, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            chunk = fresh;
        else free(fresh);
    }
    return &chunk[fd & (HFD_CHUNK - 1)];
}

struct loom__hfd *loom__hook_fd_peek(int fd) {
    return entry(fd, false);
}

void loom__hook_fd_reset(int fd) {
    struct loom__hfd *e = entry(fd, false);
    if (!e) return;
    __atomic_store_n(&e->flags, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&e->rcvtimeo, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&e->sndtimeo, 0, __ATOMIC_RELAXED);
}

void loom__hook_fd_copy(int from, int to) {
    struct loom__hfd *s = entry(from, false), *d = entry(to, s != NULL);
    if (!d) return;
    uint32_t f = s ? __atomic_load_n(&s->flags, __ATOMIC_ACQUIRE) : 0;
    if (!(f & HF_KNOWN)) f = 0;
    __atomic_store_n(&d->rcvtimeo, s ? __atomic_load_n(&s->rcvtimeo, __ATOMIC_RELAXED) : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&d->sndtimeo, s ? __atomic_load_n(&s->sndtimeo, __ATOMIC_RELAXED) : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&d->flags, f & ~(uint32_t)HF_LOOM, __ATOMIC_RELEASE); /* not waited on yet */
}

static int64_t tv_ns(const struct timeval *tv) {
    if (tv->tv_sec < 0) return 1; /* the kernel: time out at once */
    if (tv->tv_sec == 0 && tv->tv_usec == 0) return 0;
    if (tv->tv_sec > INT64_MAX / 1000000000 - 1) return 0;
    return (int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000;
}

static int64_t sock_timeout(int fd, int opt) {
    struct timeval tv;
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, opt, &tv, &len) < 0 || len < sizeof tv) return 0;
    return tv_ns(&tv);
}

/* What fd is: classified once per file (see the top). */
static uint32_t classify(int fd, struct loom__hfd *e) {
    struct stat st;
    if (fstat(fd, &st) < 0) return 0;
    uint32_t f = HF_KNOWN;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode) || fd <= 2) return f;
    int fl = loom__real.fcntl(fd, F_GETFL);
    if (fl < 0) return f;
    if (fl & O_NONBLOCK) f |= HF_PARK | HF_NBVIEW;
    else if (loom__real.fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0) f |= HF_PARK;
    else return f;
    if (S_ISSOCK(st.st_mode)) {
        f |= HF_SOCK;
        int type = 0;
        socklen_t len = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM) f |= HF_STREAM;
        __atomic_store_n(&e->rcvtimeo, sock_timeout(fd, SO_RCVTIMEO), __ATOMIC_RELAXED);
        __atomic_store_n(&e->sndtimeo, sock_timeout(fd, SO_SNDTIMEO), __ATOMIC_RELAXED);
    }
    return f;
}

uint32_t loom__hook_fd(int fd, struct loom__hfd **ep) {
    struct loom__hfd *e = entry(fd, true);
    *ep = e;
    if (!e) return 0;
    for (;;) {
        uint32_t f = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
        if (f & HF_KNOWN) return f;
        if (f & HF_BUSY) { /* another goroutine or thread classifies it */
            if (loom_can_park()) loom_yield();
            else sched_yield();
            continue;
        }
        if (__atomic_compare_exchange_n(&e->flags, &f, HF_BUSY, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            break;
    }
    int saved = errno;
    uint32_t f = classify(fd, e);
    errno = saved;
    __atomic_store_n(&e->flags, f, __ATOMIC_RELEASE);
    return f;
}

/* Sets or clears the program's O_NONBLOCK view of a classified fd. */
static void set_view(struct loom__hfd *e, bool nonblock) {
    if (nonblock) __atomic_fetch_or(&e->flags, HF_NBVIEW, __ATOMIC_RELEASE);
    else __atomic_fetch_and(&e->flags, ~(uint32_t)HF_NBVIEW, __ATOMIC_RELEASE);
}

/* The entry of fd if the hook manages its O_NONBLOCK flag, else NULL. */
static struct loom__hfd *managed(int fd) {
    struct loom__hfd *e = entry(fd, false);
    if (!e) return NULL;
    uint32_t f = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
    return (f & HF_KNOWN) && (f & HF_PARK) ? e : NULL;
}

/* ------------------------------------------------------------------ the program's view */

static int fcntl_common(bool is64, int fd, int cmd, void *arg, const void *caller) {
    int mode = loom__hook_mode(caller); /* (resolves the real functions if need be) */
    int (*real)(int, int, ...) = is64 ? loom__real.fcntl64 : loom__real.fcntl;
    if (mode == H_PLAIN) return real(fd, cmd, arg);
    struct loom__hfd *e;
    int r;
    switch (cmd) {
    case F_GETFL:
        r = real(fd, cmd);
        if (r >= 0 && (e = managed(fd)))
            r = (r & ~O_NONBLOCK) |
                ((__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & HF_NBVIEW) ? O_NONBLOCK : 0);
        return r;
    case F_SETFL:
        if (!(e = managed(fd))) return real(fd, cmd, arg);
        r = real(fd, cmd, (void *)((long)(int)(long)arg | O_NONBLOCK));
        if (r == 0) set_view(e, ((int)(long)arg & O_NONBLOCK) != 0);
        return r;
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
        r = real(fd, cmd, arg);
        if (r >= 0) loom__hook_fd_copy(fd, r);
        return r;
    default: return real(fd, cmd, arg);
    }
}

HOOK_API int fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *); /* every argument fcntl takes fits a pointer */
    va_end(ap);
    return fcntl_common(false, fd, cmd, arg, HOOK_CALLER());
}

HOOK_API int fcntl64(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(true, fd, cmd, arg, HOOK_CALLER());
}

HOOK_API int ioctl(int fd, unsigned long req, ...) {
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    struct loom__hfd *e;
    int mode = loom__hook_mode(HOOK_CALLER());
    if (req == FIONBIO && mode != H_PLAIN && arg && (e = managed(fd))) {
        set_view(e, *(int *)arg != 0); /* the kernel's flag stays set */
        return 0;
    }
    return loom__real.ioctl(fd, req, arg);
}

HOOK_API int setsockopt(int fd, int level, int opt, const void *val, socklen_t len) {
    int mode = loom__hook_mode(HOOK_CALLER());
    int r = loom__real.setsockopt(fd, level, opt, val, len);
    if (r == 0 && mode != H_PLAIN && level == SOL_SOCKET && val && len >= sizeof(struct timeval)) {
        /* the old names and the 64-bit-time ones (the same layout on 64-bit Linux) */
        bool rcv = opt == SO_RCVTIMEO || opt == 66, snd = opt == SO_SNDTIMEO || opt == 67;
        struct loom__hfd *e;
        if ((rcv || snd) && (e = entry(fd, true)))
            __atomic_store_n(rcv ? &e->rcvtimeo : &e->sndtimeo, tv_ns(val), __ATOMIC_RELAXED);
    }
    return r;
}

/* ------------------------------------------------------------------ closing and reusing numbers */

HOOK_API int close(int fd) {
    int mode = loom__hook_mode(HOOK_CALLER());
    /* the entry goes whoever closes: loom_fd_close, called by the program itself, closes
     * from inside loom */
    struct loom__hfd *e = entry(fd, false);
    uint32_t f = 0;
    if (e) {
        f = __atomic_exchange_n(&e->flags, 0, __ATOMIC_ACQ_REL);
        __atomic_store_n(&e->rcvtimeo, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&e->sndtimeo, 0, __ATOMIC_RELAXED);
    }
    if (mode != H_PLAIN && (f & HF_LOOM) && may_call_loom()) {
        int r = loom_fd_close(fd);
        if (r < 0) {
            errno = -r;
            return -1;
        }
        return 0;
    }
    return loom__real.close(fd);
}

static int dup_onto(int old, int new, int flags, bool three) {
    if (old != new &&may_call_loom()) loom_fd_forget(new);
    int r = three ? loom__real.dup3(old, new, flags) : loom__real.dup2(old, new);
    if (r >= 0 && old != new) loom__hook_fd_copy(old, new);
    return r;
}

HOOK_API int dup2(int old, int new) {
    if (loom__hook_mode(HOOK_CALLER()) == H_PLAIN) return loom__real.dup2(old, new);
    return dup_onto(old, new, 0, false);
}

HOOK_API int dup3(int old, int new, int flags) {
    if (loom__hook_mode(HOOK_CALLER()) == H_PLAIN) return loom__real.dup3(old, new, flags);
    return dup_onto(old, new, flags, true);
}

HOOK_API int dup(int fd) {
    int mode = loom__hook_mode(HOOK_CALLER());
    int r = loom__real.dup(fd);
    if (r >= 0 && mode != H_PLAIN) loom__hook_fd_copy(fd, r);
    return r;
}

/* New files: whatever the table said about their numbers belonged to a file closed where
 * the hook did not see it (inside libc, say). */
HOOK_API int socket(int domain, int type, int proto) {
    int mode = loom__hook_mode(HOOK_CALLER());
    int r = loom__real.socket(domain, type, proto);
    if (r >= 0 && mode != H_PLAIN) loom__hook_fd_reset(r);
    return r;
}

HOOK_API int socketpair(int domain, int type, int proto, int sv[2]) {
    int mode = loom__hook_mode(HOOK_CALLER());
    int r = loom__real.socketpair(domain, type, proto, sv);
    if (r == 0 && mode != H_PLAIN) {
        loom__hook_fd_reset(sv[0]);
        loom__hook_fd_reset(sv[1]);
    }
    return r;
}

HOOK_API int pipe(int fds[2]) {
    int mode = loom__hook_mode(HOOK_CALLER());
    int r = loom__real.pipe(fds);
    if (r == 0 && mode != H_PLAIN) {
        loom__hook_fd_reset(fds[0]);
        loom__hook_fd_reset(fds[1]);
    }
    return r;
}

HOOK_API int pipe2(int fds[2], int flags) {
    int mode = loom__hook_mode(HOOK_CALLER());
    int r = loom__real.pipe2(fds, flags);
    if (r == 0 && mode != H_PLAIN) {
        loom__hook_fd_reset(fds[0]);
        loom__hook_fd_reset(fds[1]);
    }
    return r;
}
