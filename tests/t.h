/*
 * t.h — tiny header-only helpers shared by loom's test programs.
 *
 * Every test is one program with its own main(); a failed check prints
 * "file:line: message" to stderr and aborts.  Keep the existing macros stable:
 * other tests rely on them; only add to this file.
 */
#ifndef LOOM_TEST_T_H
#define LOOM_TEST_T_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <loom.h>

/* Name of a (possibly negated) errno value, for messages: "-EPIPE", "0", "5". */
static inline const char *t_errname(long long v)
{
    static __thread char buf[32];
    long long e = v < 0 ? -v : v;
    const char *n = NULL;
    switch (e) {
    case EINVAL: n = "EINVAL"; break;
    case EPIPE: n = "EPIPE"; break;
    case ETIMEDOUT: n = "ETIMEDOUT"; break;
    case EAGAIN: n = "EAGAIN"; break;
    case ENOMEM: n = "ENOMEM"; break;
    case EPERM: n = "EPERM"; break;
    case EBUSY: n = "EBUSY"; break;
    case ECANCELED: n = "ECANCELED"; break;
    case EBADF: n = "EBADF"; break;
    case ECONNRESET: n = "ECONNRESET"; break;
    default: break;
    }
    if (n && v != 0)
        snprintf(buf, sizeof buf, "%s%s", v < 0 ? "-" : "", n);
    else
        snprintf(buf, sizeof buf, "%lld", v);
    return buf;
}

/* "file:line: FAIL: " lead, then the message; aborts (t_fail and t_wait_fail). */
__attribute__((noreturn)) static inline void t_vfail(const char *file, int line, const char *lead,
                                                     const char *fmt, va_list ap)
{
    fprintf(stderr, "%s:%d: FAIL: %s", file, line, lead);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

__attribute__((noreturn, format(printf, 3, 4))) static inline void t_fail(const char *file, int line,
                                                                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    t_vfail(file, line, "", fmt, ap);
}

#define FAIL(...) t_fail(__FILE__, __LINE__, __VA_ARGS__)

/* CHECK(cond): abort with the condition's text when it is false. */
#define CHECK(cond) \
    do { \
        if (!(cond)) \
            t_fail(__FILE__, __LINE__, "check failed: %s", #cond); \
    } while (0)

/* CHECK_MSG(cond, fmt, ...): same, with a printf-style explanation. */
#define CHECK_MSG(cond, ...) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: FAIL: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__); \
            fputc('\n', stderr); \
            fflush(stderr); \
            abort(); \
        } \
    } while (0)

/* Comparisons of integer values (signed: compared and printed as long long;
 * negative errno values are printed by name as well). */
#define T__CMP(a, op, b) \
    do { \
        long long t__a = (long long)(a), t__b = (long long)(b); \
        if (!(t__a op t__b)) { \
            char t__sa[32]; \
            snprintf(t__sa, sizeof t__sa, "%s", t_errname(t__a)); \
            t_fail(__FILE__, __LINE__, "expected %s %s %s, got %s (%s) vs %lld (%s)", #a, #op, #b, t__sa, \
                   #a, t__b, #b); \
        } \
    } while (0)

#define CHECK_EQ(a, b) T__CMP(a, ==, b)
#define CHECK_NE(a, b) T__CMP(a, !=, b)
#define CHECK_LT(a, b) T__CMP(a, <, b)
#define CHECK_LE(a, b) T__CMP(a, <=, b)
#define CHECK_GT(a, b) T__CMP(a, >, b)
#define CHECK_GE(a, b) T__CMP(a, >=, b)

/* Unsigned comparison (uint64_t, size_t values that may exceed LLONG_MAX). */
#define CHECK_EQU(a, b) \
    do { \
        unsigned long long t__a = (unsigned long long)(a), t__b = (unsigned long long)(b); \
        if (t__a != t__b) \
            t_fail(__FILE__, __LINE__, "expected %s == %s, got %llu vs %llu", #a, #b, t__a, t__b); \
    } while (0)

/* CHECK_ERR(expr, ERRNO): expr must return -ERRNO (e.g. CHECK_ERR(loom_close(c), EPIPE)). */
#define CHECK_ERR(expr, err) \
    do { \
        long long t__v = (long long)(expr); \
        if (t__v != -(long long)(err)) { \
            char t__sv[32]; \
            snprintf(t__sv, sizeof t__sv, "%s", t_errname(t__v)); \
            t_fail(__FILE__, __LINE__, "expected %s == -%s, got %s", #expr, #err, t__sv); \
        } \
    } while (0)

/* CHECK_OK(expr): expr must return 0. */
#define CHECK_OK(expr) \
    do { \
        long long t__v = (long long)(expr); \
        if (t__v != 0) \
            t_fail(__FILE__, __LINE__, "expected %s == 0, got %s", #expr, t_errname(t__v)); \
    } while (0)

/* Memory equality. */
#define CHECK_MEMEQ(a, b, n) \
    do { \
        if (memcmp((a), (b), (n)) != 0) \
            t_fail(__FILE__, __LINE__, "memory differs: %s vs %s (%zu bytes)", #a, #b, (size_t)(n)); \
    } while (0)

/* Workload scaling: n divided by env LOOM_TEST_SCALE (default 1), at least 1.
 * Sanitizer runs set LOOM_TEST_SCALE=10..20. */
/* errno of the thread the goroutine runs on now.  glibc declares __errno_location() const,
 * so within one function the compiler may keep the address it computed before a loom call
 * that moved the goroutine to another thread; these go through a pointer it cannot see
 * into, so each access asks afresh. */
static inline int t__errno_get(void)
{
    return errno;
}
static inline void t__errno_set(int v)
{
    errno = v;
}
static int (*volatile t_errno)(void) __attribute__((unused)) = t__errno_get;
static void (*volatile t_set_errno)(int) __attribute__((unused)) = t__errno_set;

static inline long t_scale(long n)
{
    static long scale = 0;
    long s = __atomic_load_n(&scale, __ATOMIC_RELAXED);
    if (s == 0) {
        const char *e = getenv("LOOM_TEST_SCALE");
        s = e ? atol(e) : 1;
        if (s < 1)
            s = 1;
        __atomic_store_n(&scale, s, __ATOMIC_RELAXED);
    }
    long r = n / s;
    return r < 1 ? 1 : r;
}

/* Monotonic clock in ns, independent of the runtime (usable before/after loom_run). */
static inline int64_t t_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Calls fn(tid, stat, arg) for each thread of this process, with the text of its
 * /proc/self/task/TID/stat (NUL-terminated, writable); a thread that exits meanwhile is
 * skipped.  fn returns false to stop early.  Returns false if /proc cannot be read. */
static inline bool t_each_thread_stat(bool (*fn)(long tid, char *stat, void *arg), void *arg)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return false;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = 0;
        if (!fn(atol(e->d_name), buf, arg))
            break;
    }
    closedir(d);
    return true;
}

/* How many threads this process has now. */
static inline int t_count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Is thread tid of this process asleep in the kernel ('S' in /proc/self/task/TID/stat: a
 * read, a sleep)? */
struct t__tstate {
    long tid;
    bool asleep;
};

static inline bool t__see_state(long tid, char *stat, void *arg)
{
    struct t__tstate *t = arg;
    if (tid != t->tid)
        return true;
    char *e = strrchr(stat, ')');
    t->asleep = e && e[1] == ' ' && e[2] == 'S';
    return false;
}

static inline bool t_thread_asleep(long tid)
{
    struct t__tstate t = { tid, false };
    return t_each_thread_stat(t__see_state, &t) && t.asleep;
}

/* Small deterministic PRNG (xorshift64*); keep one state per goroutine. */
typedef struct t_rng {
    uint64_t s;
} t_rng;
static inline void t_rng_seed(t_rng *r, uint64_t seed)
{
    r->s = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    if (r->s == 0)
        r->s = 1;
}
static inline uint64_t t_rng_next(t_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}
/* uniform-ish in [0, n) */
static inline uint64_t t_rng_below(t_rng *r, uint64_t n)
{
    return n ? t_rng_next(r) % n : 0;
}

/* Whether loom's asynchronous preemption signal is on: sanitizer builds leave it off
 * (src/preempt_signal.c says why), and LOOM_ASYNCPREEMPT=0 turns it off; tests that need plain C
 * loops switched out skip those checks then. */
static inline bool t_async_preempt(void)
{
#if defined(LOOM_TSAN) || defined(LOOM_ASAN)
    return false;
#else
    const char *e = getenv("LOOM_ASYNCPREEMPT");
    return !e || strcmp(e, "0") != 0;
#endif
}

/* T_RUN(fn, arg): run fn as goroutine 1 under loom_run and require it to return 0. */
#define T_RUN(fn, arg) \
    do { \
        int t__rc = loom_run((fn), (arg)); \
        if (t__rc != 0) \
            t_fail(__FILE__, __LINE__, "loom_run(%s) returned %d", #fn, t__rc); \
    } while (0)

/* T_RUN_AT(procs, fn, flag): T_RUN(fn, NULL) with LOOM_PROCS=procs, after zeroing the int
 * *flag (a test's "stop" flag, set by the previous run). */
#define T_RUN_AT(procs, fn, flag) \
    do { \
        char t__v[16]; \
        snprintf(t__v, sizeof t__v, "%d", (procs)); \
        setenv("LOOM_PROCS", t__v, 1); \
        __atomic_store_n((flag), 0, __ATOMIC_SEQ_CST); \
        T_RUN(fn, NULL); \
    } while (0)

/* Under chaos mode (LOOM_CHAOS: the suite run by `make test-chaos`) the runtime sleeps in its
 * own race windows and draws random time slices: latency and share bounds do not apply
 * there, only correctness does. */
static inline bool t_chaos(void)
{
    return getenv("LOOM_CHAOS") != NULL;
}

/* T_RUN_CHAOS(first, n, fn, arg, want): run fn(arg) under loom_run once for each chaos seed
 * first .. first+n-1 (LOOM_CHAOS, left set to the last one), requiring each run to return
 * want. */
static inline void t_run_chaos(const char *file, int line, const char *name, int first, int n,
                               int (*fn)(void *), void *arg, int want)
{
    char seed[16];
    for (int r = 0; r < n; r++) {
        snprintf(seed, sizeof seed, "%d", first + r);
        setenv("LOOM_CHAOS", seed, 1);
        int rc = loom_run(fn, arg);
        if (rc != want)
            t_fail(file, line, "loom_run(%s) under LOOM_CHAOS=%s returned %d, not %d", name, seed, rc, want);
    }
}

#define T_RUN_CHAOS(first, n, fn, arg, want) \
    t_run_chaos(__FILE__, __LINE__, #fn, (first), (n), (fn), (arg), (want))

/* Case selection: `test_x NAME...` runs only the cases named on the command line, no names
 * every case.  main calls t_cases(argc, argv); t_want(name) says whether case name runs. */
static struct {
    int argc;
    char **argv;
} t__cases __attribute__((unused));

static inline void t_cases(int argc, char **argv)
{
    t__cases.argc = argc;
    t__cases.argv = argv;
}

static inline bool t_want(const char *name)
{
    if (t__cases.argc < 2)
        return true;
    for (int i = 1; i < t__cases.argc; i++)
        if (strcmp(t__cases.argv[i], name) == 0)
            return true;
    return false;
}

/* ---- waiting for a condition */

/* One pause between two looks at a condition: inside a goroutine it parks (loom_sleep), so
 * the runtime keeps running; outside one (loom_id() == 0) it is a plain nanosleep. */
static inline void t_wait_pause(void)
{
    if (loom_id() != 0) {
        loom_sleep(200 * 1000);
    } else {
        struct timespec ts = { 0, 200 * 1000 };
        nanosleep(&ts, NULL);
    }
}

__attribute__((noreturn, format(printf, 5, 6))) static inline void
t_wait_fail(const char *file, int line, const char *cond, double timeout_s, const char *fmt, ...)
{
    char lead[1024];
    snprintf(lead, sizeof lead, "timed out after %g s waiting for %s: ", timeout_s, cond);
    va_list ap;
    va_start(ap, fmt);
    t_vfail(file, line, lead, fmt, ap);
}

/* T_WAIT_UNTIL(cond, timeout_s, fmt, ...): look at cond until it is true, pausing between
 * looks (t_wait_pause); when it is still false timeout_s seconds on, fail with cond's text,
 * the caller's file:line and the printf-style message (its arguments evaluated then).  The
 * timeout is a guard against a hang, never a bound on how soon cond comes true: make it
 * generous.  T_WAIT_UNTIL_THEN runs the statement on_timeout first (to print more state). */
#define T_WAIT_UNTIL_THEN(cond, timeout_s, on_timeout, ...) \
    do { \
        double t__to = (double)(timeout_s); \
        int64_t t__dl = t_clock_ns() + (int64_t)(t__to * 1e9); \
        while (!(cond)) { \
            if (t_clock_ns() > t__dl) { \
                on_timeout; \
                t_wait_fail(__FILE__, __LINE__, #cond, t__to, __VA_ARGS__); \
            } \
            t_wait_pause(); \
        } \
    } while (0)

#define T_WAIT_UNTIL(cond, timeout_s, ...) T_WAIT_UNTIL_THEN(cond, timeout_s, (void)0, __VA_ARGS__)

/* The value of the int *p, loaded with SEQ_CST ordering: for T_WAIT_UNTIL on a counter or
 * flag that goroutines set. */
static inline int t_get(const int *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/* ---- child processes: a test that runs a program (itself, as a rule, with a mode argument)
 * and checks what it printed and how it ended. */

/* How t_child_start runs the child; all zero (or a NULL pointer) for the defaults. */
typedef struct t_child_opts {
    const char *path;          /* the program; NULL: this one (/proc/self/exe, resolved) */
    const char *const *env;    /* NULL-terminated: "NAME=value" sets NAME, "NAME" unsets it */
    bool stdout_apart;         /* the child's stdout on a pipe of its own (out_fd) */
    void (*before_exec)(void); /* called in the child just before exec */
} t_child_opts;

typedef struct t_child {
    pid_t pid;
    int fd;     /* read end of the child's stderr, and of its stdout unless apart */
    int out_fd; /* read end of the child's stdout with stdout_apart; else -1 */
    char *out;  /* after t_child_wait: all read from fd, NUL-terminated; free() it */
    size_t len;
    int status; /* after t_child_wait: the wait status; 0 when late */
    bool late;  /* after t_child_wait: still running at the deadline, so killed */
} t_child;

/* Starts path with argv[0] = path and the NULL-terminated args after it. */
static inline t_child t_child_start(const char *const args[], const t_child_opts *o)
{
    static const t_child_opts defaults;
    if (!o)
        o = &defaults;
    char self[4096];
    const char *path = o->path;
    if (!path) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        CHECK(n > 0);
        self[n] = 0;
        path = self;
    }
    const char *argv[16];
    int argc = 0;
    argv[argc++] = path;
    for (int i = 0; args && args[i]; i++) {
        CHECK(argc < 15);
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;

    int p[2], q[2] = { -1, -1 };
    CHECK_OK(pipe2(p, O_CLOEXEC));
    if (o->stdout_apart)
        CHECK_OK(pipe2(q, O_CLOEXEC));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (const char *const *e = o->env; e && *e; e++) {
            const char *eq = strchr(*e, '=');
            if (eq) {
                char name[128];
                snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
                setenv(name, eq + 1, 1);
            } else {
                unsetenv(*e);
            }
        }
        if (o->before_exec)
            o->before_exec();
        dup2(p[1], 2);
        dup2(o->stdout_apart ? q[1] : p[1], 1);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    if (q[1] >= 0)
        close(q[1]);
    return (t_child){ .pid = pid, .fd = p[0], .out_fd = q[0] };
}

/* Reads the child's fd to its end and reaps the child.  A child still running limit_s
 * seconds from now is killed (SIGKILL) and reaped, with late set and out what it printed
 * so far; the caller says what that means. */
static inline void t_child_wait(t_child *c, int limit_s)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    int64_t dl = t_clock_ns() + limit_s * 1000000000LL;
    c->late = false;
    c->status = 0;
    for (;;) {
        int64_t left = (dl - t_clock_ns()) / 1000000;
        if (left <= 0) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, NULL, 0);
            c->late = true;
            break;
        }
        struct pollfd pfd = { c->fd, POLLIN, 0 };
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        if (len + 4096 + 1 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            CHECK(buf != NULL);
        }
        ssize_t n = read(c->fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = 0;
    c->out = buf;
    c->len = len;
    close(c->fd);
    c->fd = -1;
    if (c->out_fd >= 0) {
        close(c->out_fd);
        c->out_fd = -1;
    }
    if (!c->late)
        CHECK_EQ(waitpid(c->pid, &c->status, 0), c->pid);
}

/* t_child_start, then t_child_wait. */
static inline t_child t_child_run(const char *const args[], const t_child_opts *o, int limit_s)
{
    t_child c = t_child_start(args, o);
    t_child_wait(&c, limit_s);
    return c;
}

/* Gives fd `fresh` the number `want`, just closed (another thread may have taken it for
 * a moment: dup2 then fails with EBUSY, and is tried again), and closes fresh's own
 * number if it differs.  Returns want, or -1 (errno set). */
static inline int t_fd_onto(int fresh, int want)
{
    if (fresh == want)
        return want;
    int r;
    while ((r = dup2(fresh, want)) < 0 && errno == EBUSY) {}
    if (r < 0)
        return -1;
    close(fresh);
    return want;
}

#endif /* LOOM_TEST_T_H */
