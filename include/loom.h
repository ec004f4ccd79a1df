/*
 * loom.h — Go's runtime scheduler for C programs.
 *
 * Goroutines multiplexed M:N over OS threads, channels, select, timers and sync
 * primitives that park goroutines, never threads.  Each name here means what its comment
 * says, and what the project's API contract fixes; loom-specific additions carry the
 * `loom_` prefix and are documented beside their declaration.
 *
 * Errors: calls that can fail return a negative errno value (-EINVAL, -EPIPE,
 * -ETIMEDOUT, -EAGAIN, -ENOMEM, -EPERM, -EBUSY, -ECANCELED).  loom never reports
 * through errno, because a goroutine may resume on another OS thread.  The two
 * constructors loom_chan_new and loom_go return NULL / 0 and set errno.
 */
#ifndef LOOM_H
#define LOOM_H

#include <errno.h> /* the -E... values loom returns */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* the library is built with hidden visibility: everything declared here is its API */
#pragma GCC visibility push(default)

#define LOOM_VERSION_MAJOR 0
#define LOOM_VERSION_MINOR 1

/* ---------------------------------------------------------------- runtime */

int loom_run(int (*main_fn)(void *arg), void *arg);

typedef struct loom_attr {
    size_t      stack_size; /* 0: default (LOOM_STACK_SIZE env, else 64 KiB) */
    int         priority;   /* LOOM_PRIO_LOW, LOOM_PRIO_NORMAL (0, default), LOOM_PRIO_HIGH */
    const char *name;       /* shown in dumps and traces; copied */
} loom_attr;
enum { LOOM_PRIO_LOW = -1, LOOM_PRIO_NORMAL = 0, LOOM_PRIO_HIGH = 1 };

/* loom addition: priority levels.  Each P keeps a ready queue per level and the scheduler
 * runs the highest non-empty one (locally, from the global queue and when stealing); a
 * goroutine readied at a higher level than the one running on a P switches that one out
 * at its next safe point (by the preemption signal if it is spinning); a yield with only
 * lower levels ready keeps running.  Aging: when a level has not been served for
 * LOOM_PRIO_AGE_MS (default 20 ms), its oldest ready goroutine runs next whatever the
 * levels (low means later, never never).  Channels, select and the mutex/rwmutex
 * semaphores wake the first waiter of the highest level (FIFO within a level; a waitgroup
 * wakes all of its waiters at once); there is no priority inheritance (aging bounds an
 * inversion).  loom_set_priority changes the calling goroutine's level and returns the
 * previous one, or -EINVAL for another value, -EPERM outside a goroutine; loom_priority
 * returns the current level. */
int loom_set_priority(int priority);
int loom_priority(void);

uint64_t loom_go(void (*fn)(void *arg), void *arg);
uint64_t loom_go_attr(void (*fn)(void *arg), void *arg, const loom_attr *attr);
void     loom_yield(void);
void     loom_exit(void);
uint64_t loom_id(void);
int      loom_procs(void);
/* runtime.GOMAXPROCS: n > 0 sets the number of Ps while goroutines run (a shrink takes
 * Ps out of service as their threads reach a switch); returns the previous number (n <= 0
 * only asks), or -EPERM outside loom_run.  Without LOOM_PROCS or a call to it, the number
 * follows the CPU limit of the process's cgroups (read about once a second). */
int     loom_set_procs(int n);
int64_t loom_now(void);
void    loom_sleep(int64_t ns);
void    loom_lock_thread(void);
void    loom_unlock_thread(void);

/* loom additions: preemption.  A goroutine that runs past its time slice (LOOM_SLICE_US,
 * default 2000) is switched out at its next loom call, or by the signal SIGURG wherever
 * its PC is in the program's own code (never inside libc, the dynamic loader, the vDSO or
 * loom); it then resumes on the same thread, so thread-local addresses it holds stay
 * valid.  (At loom calls a goroutine may move to another thread: keep no pointer to a
 * thread-local variable across one.)  Code that holds a thread-owned lock (a pthread
 * mutex, flockfile) while computing at length should bracket that section with
 * loom_preempt_disable/enable, so that another goroutine on the same thread cannot
 * block on the lock; they nest, and the outermost enable is a preemption point (a slice
 * that ended inside the section ends there).  LOOM_ASYNCPREEMPT=0 turns the signal off. */
void loom_preempt_disable(void);
void loom_preempt_enable(void);

/* loom addition: counters.  A snapshot of the running runtime (each field read on its
 * own, so they need not add up exactly while goroutines run); the event counters count
 * from loom_run's start.  Returns 0, -EINVAL for NULL, -EPERM outside loom_run. */
struct loom_stats {
    uint64_t goroutines;        /* alive: not yet returned */
    uint64_t runnable;          /* of which in a run queue */
    uint64_t running;           /* of which running on a thread */
    uint64_t waiting;           /* of which parked (channel, lock, sleep, I/O...) */
    uint64_t syscall;           /* of which inside loom_block_begin/end */
    uint64_t switches;          /* switches to a goroutine */
    uint64_t steals;            /* goroutines stolen from another P's queue (batches count once) */
    uint64_t preemptions;       /* goroutines switched out for using up their time slice */
    uint64_t async_preemptions; /* of which by the signal, outside any loom call */
    uint64_t handoffs;          /* Ps handed on from threads blocked in the kernel */
    uint64_t spare_lends;       /* of which spare Ps lent for unannotated blocking calls */
    uint64_t procs;             /* Ps in use (LOOM_PROCS, plus spares lent) */
    uint64_t idle_procs;
    uint64_t threads; /* threads created for goroutines (not counting sysmon) */
    uint64_t idle_threads;
    uint64_t spinning_threads;  /* looking for work */
    uint64_t timers;            /* pending timers (sleeps, timeouts) */
    uint64_t global_runq;       /* goroutines on the global run queue */
    uint64_t steals_by_tier[3]; /* steals by the victim's distance: [0] it shares a cache with
                                   the thief, [1] the same NUMA node, [2] another node */
};
int loom_stats(struct loom_stats *out);

/* Deterministic mode (LOOM_SEED=N, see the README): a hash of the sequence of scheduling
 * decisions so far (the goroutines picked to run, in order): the same program, input and
 * seed give the same value.  0 when not in deterministic mode. */
uint64_t loom_sched_hash(void);

/* loom addition: the default stack size in bytes that loom_go uses. */
size_t loom_default_stack_size(void);

/* --------------------------------------------------------------- channels */

typedef struct loom_chan loom_chan;
loom_chan               *loom_chan_new(size_t elem_size, size_t capacity);
int                      loom_send(loom_chan *c, const void *elem);
int                      loom_recv(loom_chan *c, void *elem);
int                      loom_try_send(loom_chan *c, const void *elem);
int                      loom_try_recv(loom_chan *c, void *elem);
int                      loom_close(loom_chan *c);
size_t                   loom_chan_len(loom_chan *c);
size_t                   loom_chan_cap(loom_chan *c);
void                     loom_chan_free(loom_chan *c);

/* ----------------------------------------------------------------- select */

enum { LOOM_SEND = 1, LOOM_RECV = 2 };
typedef struct loom_case {
    loom_chan *chan; /* NULL: this case is never ready (Go's nil channel) */
    int        op;   /* LOOM_SEND or LOOM_RECV */
    void      *elem; /* value to send, or where to store the received one (may be NULL for RECV) */
    int        ok;   /* set on the completed case: 1 done, 0 channel closed (RECV elem zeroed) */
} loom_case;

int loom_select(loom_case *cases, int ncases, int64_t timeout_ns);

/* ------------------------------------------------------------------- sync */
/* clang-format off: the initializer macros stay on one line each */
/* Complete types so they can be declared statically; every field is private. */

struct loom__sema { /* a counting semaphore with a FIFO of parked goroutines */
    unsigned int _count;
    unsigned int _lock;
    void        *_head, *_tail;
};
#define LOOM__SEMA_INIT \
    { 0, 0, 0, 0 }

typedef struct loom_mutex {
    int               _state; /* locked | woken | starving | waiters << 3, as sync.Mutex */
    struct loom__sema _sema;
} loom_mutex;
#define LOOM_MUTEX_INIT \
    { 0, LOOM__SEMA_INIT }

typedef struct loom_rwmutex {
    loom_mutex         _w;          /* held by writers */
    struct loom__sema  _writer_sem; /* writer waits for departing readers */
    struct loom__sema  _reader_sem; /* readers wait for a writer */
    unsigned long long _state;      /* writer bit | readers it waits for << 32 | readers */
} loom_rwmutex;
#define LOOM_RWMUTEX_INIT \
    { LOOM_MUTEX_INIT, LOOM__SEMA_INIT, LOOM__SEMA_INIT, 0 }

typedef struct loom_cond {
    unsigned int _lock;
    void        *_head, *_tail; /* FIFO of waiters */
} loom_cond;
#define LOOM_COND_INIT \
    { 0, 0, 0 }

typedef struct loom_waitgroup {
    unsigned long long _state; /* counter << 32 | waiters, as sync.WaitGroup */
    unsigned int       _lock;
    void              *_head, *_tail; /* FIFO of waiters */
} loom_waitgroup;
#define LOOM_WAITGROUP_INIT \
    { 0, 0, 0, 0 }

typedef struct loom_once {
    unsigned int _done;
    loom_mutex   _m;
} loom_once;
#define LOOM_ONCE_INIT \
    { 0, LOOM_MUTEX_INIT }

/* clang-format on */

void loom_mutex_lock(loom_mutex *m);
int  loom_mutex_trylock(loom_mutex *m);
int  loom_mutex_unlock(loom_mutex *m);
void loom_rwmutex_rlock(loom_rwmutex *m);
int  loom_rwmutex_runlock(loom_rwmutex *m);
void loom_rwmutex_lock(loom_rwmutex *m);
int  loom_rwmutex_unlock(loom_rwmutex *m);
void loom_cond_wait(loom_cond *c, loom_mutex *m);
void loom_cond_signal(loom_cond *c);
void loom_cond_broadcast(loom_cond *c);
int  loom_wg_add(loom_waitgroup *wg, long delta);
void loom_wg_done(loom_waitgroup *wg);
void loom_wg_wait(loom_waitgroup *wg);
void loom_once_do(loom_once *o, void (*fn)(void *arg), void *arg);

/* ----------------------------------------------------------------- timers
 * Go's time.Timer, Ticker and AfterFunc.  loom_timer_new fires after ns (<= 0: at once),
 * then every period_ns (0: once); each fire offers loom_now() at the fire, as int64_t, to
 * the timer's channel (capacity 1: a receiver that falls behind misses fires).  As in
 * Go 1.23, once loom_timer_reset or loom_timer_stop returns, no value sent before can be
 * received; both return 1 if a fire was pending (in the future, or sent and not received),
 * else 0, or -EINVAL.  loom_after_func runs fn(arg) in a goroutine of its own at the fire.
 * A pending timer costs a heap entry: no goroutine, no thread.  The constructors work
 * from any thread while loom runs (NULL + errno EPERM otherwise, EINVAL, ENOMEM).
 * loom_timer_free stops the timer and frees it; no one may wait on its channel then. */
typedef struct loom_timer loom_timer;
loom_timer               *loom_timer_new(int64_t ns, int64_t period_ns);
loom_chan                *loom_timer_chan(loom_timer *t);
int                       loom_timer_reset(loom_timer *t, int64_t ns, int64_t period_ns);
int                       loom_timer_stop(loom_timer *t);
void                      loom_timer_free(loom_timer *t);
loom_timer               *loom_after_func(int64_t ns, void (*fn)(void *arg), void *arg);

/* ----------------------------------------------------------- cancellation
 * Go's context: a tree of contexts, each ended by loom_ctx_cancel (cause: a negative errno,
 * 0 meaning -ECANCELED), its deadline (-ETIMEDOUT) or its parent's end (the parent's
 * cause).  loom_ctx_done's channel is closed when it ends (for loom_select).  Each
 * goroutine has a current context (loom_ctx_set; a new goroutine starts with its
 * spawner's).  Once it ends, the goroutine's blocking loom calls return within a
 * millisecond with its cause and no effect (a send that returns it sent nothing, a receive
 * received nothing): loom_send, loom_recv, loom_select, the fd calls, loom_group_go;
 * loom_sleep, loom_cond_wait and loom_wg_wait return early.  Mutexes are not interrupted.
 * A context may be freed only once no goroutine has it current; loom_ctx_free ends it
 * and what is under it first.  Constructors: NULL + errno on failure. */
typedef struct loom_ctx loom_ctx;
loom_ctx               *loom_ctx_background(void);
loom_ctx               *loom_ctx_with_cancel(loom_ctx *parent);
loom_ctx  *loom_ctx_with_deadline(loom_ctx *parent, int64_t deadline); /* on the loom_now() clock */
loom_ctx  *loom_ctx_with_timeout(loom_ctx *parent, int64_t ns);
void       loom_ctx_cancel(loom_ctx *c, int cause);
int        loom_ctx_err(loom_ctx *c); /* 0 while live, then the cause */
loom_chan *loom_ctx_done(loom_ctx *c);
void       loom_ctx_free(loom_ctx *c);
loom_ctx  *loom_ctx_set(loom_ctx *c); /* returns the old one */
loom_ctx  *loom_ctx_current(void);

/* ----------------------------------------------------------------- groups
 * Go's errgroup, structured: loom_group_go runs fn(arg) in a goroutine of the group (at
 * most `limit` at once, 0: no limit; it waits for a slot, a wait the caller's context may
 * end), whose current context is the group's.  The first fn to return
 * non-zero ends the group's context with -ECANCELED; loom_group_wait joins every goroutine
 * and returns that first non-zero result (or 0), and ends the context.  Free after wait. */
typedef struct loom_group loom_group;
loom_group               *loom_group_new(loom_ctx *parent, int limit);
int                       loom_group_go(loom_group *g, int (*fn)(void *arg), void *arg);
int                       loom_group_wait(loom_group *g);
loom_ctx                 *loom_group_ctx(loom_group *g);
void                      loom_group_free(loom_group *g);

/* ------------------------------------------------------ I/O and blocking
 * From a goroutine, sockets, pipes and terminals wait in the netpoller (the goroutine
 * parks, its thread runs others); loom sets O_NONBLOCK on them.  Regular files block in a
 * blocking section.  From a thread that runs no goroutine the calls simply block.
 * loom_fd_wait returns the ready events (> 0), -EAGAIN (timeout 0, not ready), -ETIMEDOUT,
 * -ECANCELED (loom_fd_close meanwhile), -EBADF, -EINVAL; -EBUSY if another goroutine
 * already waits on the same fd for the same event (one waiter per fd and direction, as
 * Go's pollDesc; serialise readers yourself).  loom_read/loom_write/loom_accept return the
 * same errors when they would have to wait.  loom_run raises the soft RLIMIT_NOFILE to
 * the hard limit.  loom_block_begin/end: the P stays with the thread and sysmon hands it
 * to another thread if the call lasts (Go's entersyscall); calls loom is not told about
 * are noticed too (README, "Blocking calls"). */

enum { LOOM_READABLE = 1, LOOM_WRITABLE = 2 };
int     loom_fd_wait(int fd, int events, int64_t timeout_ns);
int     loom_fd_close(int fd);
ssize_t loom_read(int fd, void *buf, size_t n);
ssize_t loom_write(int fd, const void *buf, size_t n);
int     loom_accept(int fd, struct sockaddr *addr, socklen_t *len);
int     loom_connect(int fd, const struct sockaddr *addr, socklen_t len);
void    loom_block_begin(void);
void    loom_block_end(void);

/* loom additions, for libraries that interpose blocking libc calls (libloom_hook):
 * loom_can_park: 1 if the caller is a goroutine that may park here, 0 on a thread that
 * runs no goroutine (a foreign thread, the scheduler itself) and between
 * loom_block_begin and loom_block_end, where the goroutine has no P to give back.
 * loom_text_range: the bounds [*begin, *end) of loom's own code.  loom calls libc from
 * there (read, poll, fcntl, close...) expecting the plain calls: an interposer that finds
 * its return address in that range must act as the plain call.
 * loom_fd_forget: loom drops what it knows of fd number fd (its kind, its epoll
 * registration) and wakes the goroutines waiting on it with -ECANCELED, without closing
 * it: for a caller about to put another file under that number (dup2, dup3).  0, -EINVAL
 * for a negative fd; a no-op outside loom_run.
 * loom_fd_park: loom_fd_wait for a caller that has just seen EAGAIN from a non-blocking call
 * on fd (or a zero-timeout poll say "not ready") and will make it again: it parks until an
 * event may have come since, without looking at the fd's state first or after, so it may
 * return > 0 with nothing ready (the caller's next try says EAGAIN and it parks again).
 * Returns and errors as loom_fd_wait; timeout 0 returns -ETIMEDOUT unless an event is
 * already pending. */
int  loom_can_park(void);
void loom_text_range(const void **begin, const void **end);
int  loom_fd_forget(int fd);
int  loom_fd_park(int fd, int events, int64_t timeout_ns);

/* -------------------------------------------------------------- More I/O
 * The kernel's calls of the same names, with loom_read/loom_write's paths, waits and
 * errors (-errno, -EBUSY for a second waiter in one direction...); flags as recv(2) and
 * send(2).  MSG_DONTWAIT in flags: one try that never waits (-EAGAIN).  Sends add
 * MSG_NOSIGNAL (a closed peer gives -EPIPE, never SIGPIPE) and send everything, as
 * loom_write; a datagram goes whole or not at all, so on a datagram socket one call is one
 * datagram, received as the kernel gives it (cut short: MSG_TRUNC as recv(2) says). */

/* one datagram, or what a stream has; MSG_WAITALL on a stream: n bytes unless EOF/error */
ssize_t loom_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *len);
/* all n bytes (n == 0 included: an empty datagram) to addr, or to the connected peer */
ssize_t loom_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t len);
/* one read; name, control data (SCM_RIGHTS...) and msg_flags as the kernel fills them */
ssize_t loom_recvmsg(int fd, struct msghdr *msg, int flags);
/* every byte of msg's iovecs; its control data goes with the first part */
ssize_t loom_sendmsg(int fd, const struct msghdr *msg, int flags);
/* what is there, as loom_read; -EINVAL for iovcnt < 0 or > IOV_MAX */
ssize_t loom_readv(int fd, const struct iovec *iov, int iovcnt);
/* writes all, as loom_write; the caller's array is left as it was */
ssize_t loom_writev(int fd, const struct iovec *iov, int iovcnt);
/* n bytes of the regular file in_fd to out_fd (fewer only at its end), from *offset on,
 * which it moves on, or (offset NULL) from and moving in_fd's own offset */
ssize_t loom_sendfile(int out_fd, int in_fd, off_t *offset, size_t n);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* LOOM_H */
