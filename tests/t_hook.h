/*
 * t_hook.h — helpers for the tests of libloom_hook (tests/test_hook_*.c), which link it.
 *
 * t_hook_require() exits 77 (skipped) where the hook is off (LOOM_HOOK=0 set by hand).
 * The watcher samples the process's thread count while a test runs: the hook's promise is
 * that goroutines blocked in hooked calls cost no thread, so a test asserts a bound
 * (t_hook_bound: LOOM_PROCS + 4 threads — loom_run's thread, sysmon, a thread per P and
 * a little room) and that no spare P was lent for a thread blocked in the kernel (but for
 * a rare false alarm: t_watch_check says why).
 */
#ifndef LOOM_TEST_T_HOOK_H
#define LOOM_TEST_T_HOOK_H

#include "t.h"
#include <loom_hook.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/un.h>

#define MS 1000000LL

static inline void t_hook_require(const char *name)
{
    if (!loom_hook_active()) {
        printf("%s: skipped: libloom_hook is off (LOOM_HOOK=0)\n", name);
        exit(77);
    }
}

/* The most threads the process may have while goroutines block in hooked calls. */
static inline int t_hook_bound(void)
{
    if (t_chaos())
        return loom_procs() + 8; /* chaos sleeps in loom's own windows look like blocked threads */
#if defined(LOOM_TSAN)
    /* ThreadSanitizer's background thread, and a thread for each false alarm (below) that
     * its slowness makes likelier */
    return loom_procs() + 4 + 1 + 2;
#elif defined(LOOM_ASAN)
    return loom_procs() + 4 + 2;
#else
    return loom_procs() + 4;
#endif
}

struct t_watch {
    int stop;
    int max_threads;
    loom_waitgroup done;
    char seen[2048]; /* each thread at the peak: tid, state and system call, for a failure */
};

static bool t__watch_note(long tid, char *stat, void *arg)
{
    char *out = arg, path[64], call[64] = "?";
    snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", tid);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fgets(call, sizeof call, f))
            call[strcspn(call, " \n")] = 0; /* the call's number (or "running", -1) */
        fclose(f);
    }
    const char *rp = strrchr(stat, ')');
    size_t len = strlen(out);
    snprintf(out + len, 2048 - len, " %ld:%c:%s", tid, rp && rp[1] ? rp[2] : '?', call);
    return true;
}

static void t_watch_fn(void *arg)
{
    struct t_watch *w = arg;
    while (!__atomic_load_n(&w->stop, __ATOMIC_SEQ_CST)) {
        int n = t_count_threads();
        if (n > w->max_threads) {
            __atomic_store_n(&w->max_threads, n, __ATOMIC_SEQ_CST);
            w->seen[0] = 0;
            t_each_thread_stat(t__watch_note, w->seen);
        }
        loom_sleep(MS);
    }
    loom_wg_done(&w->done);
}

/* Starts sampling the thread count every millisecond (from a goroutine). */
static inline void t_watch_start(struct t_watch *w)
{
    memset(w, 0, sizeof *w);
    w->done = (loom_waitgroup)LOOM_WAITGROUP_INIT;
    loom_wg_add(&w->done, 1);
    CHECK(loom_go(t_watch_fn, w) != 0);
}

/* Stops sampling and checks the bound and that no spare P was lent. */
static inline void t_watch_check(struct t_watch *w, const char *what)
{
    __atomic_store_n(&w->stop, 1, __ATOMIC_SEQ_CST);
    loom_wg_wait(&w->done);
    int n = t_count_threads();
    if (n > w->max_threads)
        w->max_threads = n;
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    CHECK_MSG(
            w->max_threads <= t_hook_bound(),
            "%s: %d threads at LOOM_PROCS=%d (bound %d; %llu switches by the preemption signal, %llu spare Ps lent, "
            "%llu Ps handed off; at the peak, tid:state:call:%s)",
            what, w->max_threads, loom_procs(), t_hook_bound(), (unsigned long long)st.async_preemptions,
            (unsigned long long)st.spare_lends, (unsigned long long)st.handoffs, w->seen);
    /* A spare is lent when sysmon finds a P's thread asleep in the kernel, using no CPU,
     * for a millisecond (src/spare.c): goroutines in hooked calls park instead, and a
     * blocking call the hook missed would cost a spare per call, hundreds here.  Threads
     * wait in the kernel on malloc's arena locks and the memory map too, behind a thread
     * that grows its heap; those get a spare only after 20 ms, which a loaded machine still
     * reaches now and then.  (Chaos mode sleeps inside the runtime's own windows, which may
     * look like a blocked call; so do ThreadSanitizer's runtime locks.) */
#ifdef LOOM_TSAN
    bool sleepy_runtime = true;
#else
    bool sleepy_runtime = t_chaos();
#endif
    CHECK_MSG(st.spare_lends <= 2 || sleepy_runtime,
              "%s: %llu spare Ps lent for threads blocked in the kernel", what,
              (unsigned long long)st.spare_lends);
}

/* Runs n goroutines client((void *)i), each calling loom_wg_done(wg) once done, under the
 * watcher (w), and checks the bounds as `what`; returns how long they took (ns). */
static inline int64_t t_hook_clients(int n, void (*client)(void *), loom_waitgroup *wg, struct t_watch *w,
                                     const char *what)
{
    t_watch_start(w);
    loom_wg_add(wg, n);
    int64_t t0 = loom_now();
    for (int i = 0; i < n; i++)
        loom_go(client, (void *)(intptr_t)i);
    loom_wg_wait(wg);
    int64_t took = loom_now() - t0;
    t_watch_check(w, what);
    return took;
}

/* A TCP listener on 127.0.0.1, port chosen by the kernel; *port gets it. */
static inline int t_listen_tcp(int *port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    CHECK_OK(bind(fd, (struct sockaddr *)&a, sizeof a));
    CHECK_OK(listen(fd, backlog));
    socklen_t len = sizeof a;
    CHECK_OK(getsockname(fd, (struct sockaddr *)&a, &len));
    *port = ntohs(a.sin_port);
    return fd;
}

static inline struct sockaddr_in t_loopback(int port)
{
    return (struct sockaddr_in){ .sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
}

/* The kernel's O_NONBLOCK flag of fd, asked without going through the hook's fcntl. */
static inline int t_kernel_nonblock(int fd)
{
    long fl = syscall(SYS_fcntl, fd, F_GETFL);
    CHECK(fl >= 0);
    return (fl & O_NONBLOCK) != 0;
}

/* errno: t.h's t_errno / t_set_errno read and set it through a call the compiler cannot
 * fold, since a goroutine may come back from a hooked call that parked on another thread. */

/* Before loom_run (one thread): raise the soft RLIMIT_NOFILE to the hard limit and grow the
 * fd table to n numbers.  Growing it later, with several threads, waits for an RCU grace
 * period inside the kernel (milliseconds asleep in whatever call made the fd), which loom
 * takes, rightly, for a thread blocked in the kernel and lends a spare P for. */
static inline void t_prepare_fds(int n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (rlim_t)n > rl.rlim_cur)
        n = (int)rl.rlim_cur;
    if (dup2(2, n - 1) == n - 1)
        close(n - 1);
}

/* Sets the env LOOM_PROCS and runs fn under loom_run, requiring 0. */
static inline void t_hook_run(int procs, int (*fn)(void *), void *arg)
{
    char v[16];
    snprintf(v, sizeof v, "%d", procs);
    setenv("LOOM_PROCS", v, 1);
    int rc = loom_run(fn, arg);
    CHECK_MSG(rc == 0, "loom_run returned %d", rc);
}

/* ---- servers the tests start and stop (redis-server, postgres): outside loom_run */

/* A TCP port on 127.0.0.1 that was free a moment ago. */
static inline int t_free_port(void)
{
    int port;
    int fd = t_listen_tcp(&port, 1);
    close(fd);
    return port;
}

/* Starts argv[0] (a path, or a name looked up in PATH) with its output appended to log;
 * it dies with the test (a parent-death signal).  Returns its pid. */
static inline pid_t t_spawn(const char *const argv[], const char *log)
{
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits up to secs for a TCP connect to 127.0.0.1:port to succeed; false if pid died or
 * time ran out. */
static inline bool t_wait_port(int port, pid_t pid, int secs)
{
    int64_t dl = t_clock_ns() + secs * 1000000000LL;
    while (t_clock_ns() < dl) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = t_loopback(port);
        int r = connect(fd, (struct sockaddr *)&a, sizeof a);
        close(fd);
        if (r == 0)
            return true;
        if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid)
            return false;
        usleep(20000);
    }
    return false;
}

/* SIGTERM, then SIGKILL after secs; reaps it. */
static inline void t_stop(pid_t pid, int secs)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < secs * 50; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* A test still running `seconds` from now prints every goroutine (loom's SIGQUIT dump, which
 * also ends it) instead of waiting for ctest's timeout; its servers die with it. */
static void t_hook_on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "FAIL: watchdog: the test did not finish in time; goroutines follow\n";
    if (write(2, m, sizeof m - 1) < 0) {}
    raise(SIGQUIT);
}

static inline void t_hook_watchdog(unsigned seconds)
{
    signal(SIGALRM, t_hook_on_alarm);
    alarm(seconds);
}

/* Prints the end of a log file to stderr (a server that would not start). */
static inline void t_show_log(const char *log)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "tail -n 20 '%s' >&2", log);
    if (system(cmd)) {}
}

#endif
