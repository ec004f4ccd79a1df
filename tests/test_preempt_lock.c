/*
 * test_preempt_lock.c — a goroutine preempted while it holds something a thread owns or
 * waits on: no other goroutine may run on its thread until it resumes.
 *
 * Plain C code holds pthread mutexes and writes pipes that other goroutines read with plain
 * calls.  The preemption signal may switch such a goroutine out in the middle; it can then
 * resume only on its thread (src/preempt_signal.c, thread affinity).  If that thread ran
 * another goroutine meanwhile, a goroutine that waits in the kernel for the first one would
 * block the thread the first one needs (a silent hang), and one that takes a recursive
 * mutex the thread already owns would get in beside it (lost data).  Each case runs at one
 * P with spinners, so that the runtime is crowded when the holder is preempted:
 *  - pipe: a writer spins until four readers wait in plain read() on its pipe, then writes
 *    a byte for each: every reader gets its byte;
 *  - mutex: a goroutine holds a pthread mutex until four others wait to lock it: each gets
 *    in, once it is given back;
 *  - recursive: the same with a recursive mutex, and each goroutine that gets in checks
 *    that nobody else is inside;
 *  - errorcheck: the same with an error-checking mutex: no lock says EDEADLK (a thread
 *    that already owns it), and the holder's unlock succeeds.
 * Where the signal is off (sanitizer builds, LOOM_ASYNCPREEMPT=0) the spin loops make a
 * cooperative preemption point now and then with LOOM_DEBUG=coopasync=1, which switches a
 * goroutine out as the signal would.
 */
#include "t.h"
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

enum { NWAIT = 4, NSPIN = 3 };

static int stop;    /* atomic: the spinners end */
static int waiting; /* atomic: goroutines about to wait for the holder */
static bool coop;
static const char *running_case; /* for the hang guard's message */

/* The hang guard: the failure these cases look for is a silent hang. */
static void hang(int sig)
{
    (void)sig;
    static const char msg[] = "test_preempt_lock: FAIL: hang in case ";
    ssize_t r = write(2, msg, sizeof msg - 1);
    r = write(2, running_case, strlen(running_case));
    r = write(2, "\n", 1);
    (void)r;
    _exit(1);
}

static void guard(const char *name)
{
    running_case = name;
    signal(SIGALRM, hang);
    alarm(60);
}

static void spin_round(uint64_t i)
{
    if (coop && (i & 0x3ff) == 0) {
        loom_preempt_disable();
        loom_preempt_enable();
    }
}

/* A plain loop until stop, or until *until reaches want. */
static void spin_until(const int *until, int want)
{
    uint64_t i = 0;
    while (__atomic_load_n(until, __ATOMIC_ACQUIRE) < want)
        spin_round(++i);
}

static void spinner(void *arg)
{
    (void)arg;
    spin_until(&stop, 1);
}

static void start_spinners(void)
{
    for (int i = 0; i < NSPIN; i++)
        CHECK(loom_go(spinner, NULL) != 0);
}

/* ---- pipe: readers in plain read() wait for a writer that was preempted */

static int pfd[2];
static loom_waitgroup pwg;

static void pipe_writer(void *arg)
{
    (void)arg;
    spin_until(&waiting, NWAIT);
    char b[NWAIT];
    memset(b, 'x', sizeof b);
    CHECK_EQ(write(pfd[1], b, sizeof b), (ssize_t)NWAIT);
}

static void pipe_reader(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&waiting, 1, __ATOMIC_RELEASE);
    char c = 0;
    CHECK_EQ(read(pfd[0], &c, 1), 1);
    CHECK_EQ(c, 'x');
    loom_wg_done(&pwg);
}

static int pipe_test(void *arg)
{
    (void)arg;
    guard("pipe");
    CHECK_EQ(pipe(pfd), 0);
    __atomic_store_n(&waiting, 0, __ATOMIC_RELAXED);
    pwg = (loom_waitgroup)LOOM_WAITGROUP_INIT;
    CHECK_OK(loom_wg_add(&pwg, NWAIT));
    CHECK(loom_go(pipe_writer, NULL) != 0);
    start_spinners();
    for (int i = 0; i < NWAIT; i++)
        CHECK(loom_go(pipe_reader, NULL) != 0);
    loom_wg_wait(&pwg);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    close(pfd[0]);
    close(pfd[1]);
    alarm(0);
    return 0;
}

/* ---- mutexes: goroutines wait to lock a pthread mutex held by one that was preempted */

static pthread_mutex_t mu;
static int inside;   /* atomic: goroutines inside mu now */
static int overlaps; /* atomic: entries that found another goroutine inside */
static int deadlk;   /* atomic: locks that said EDEADLK */
static loom_waitgroup mwg;

static void enter(void)
{
    if (__atomic_add_fetch(&inside, 1, __ATOMIC_ACQ_REL) != 1)
        __atomic_add_fetch(&overlaps, 1, __ATOMIC_RELAXED);
}

static void leave(void)
{
    __atomic_sub_fetch(&inside, 1, __ATOMIC_ACQ_REL);
}

static void holder(void *arg)
{
    (void)arg;
    CHECK_EQ(pthread_mutex_lock(&mu), 0);
    enter();
    spin_until(&waiting, NWAIT);
    leave();
    CHECK_EQ(pthread_mutex_unlock(&mu), 0);
    loom_wg_done(&mwg);
}

static void locker(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&waiting, 1, __ATOMIC_RELEASE);
    int r = pthread_mutex_lock(&mu);
    if (r == EDEADLK) {
        __atomic_add_fetch(&deadlk, 1, __ATOMIC_RELAXED);
    } else {
        CHECK_EQ(r, 0);
        enter();
        leave();
        CHECK_EQ(pthread_mutex_unlock(&mu), 0);
    }
    loom_wg_done(&mwg);
}

static int mutex_kind = PTHREAD_MUTEX_NORMAL;

static int mutex_test(void *arg)
{
    (void)arg;
    guard(mutex_kind == PTHREAD_MUTEX_NORMAL      ? "mutex"
          : mutex_kind == PTHREAD_MUTEX_RECURSIVE ? "recursive"
                                                  : "errorcheck");
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, mutex_kind);
    CHECK_EQ(pthread_mutex_init(&mu, &a), 0);
    pthread_mutexattr_destroy(&a);
    __atomic_store_n(&waiting, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&overlaps, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&deadlk, 0, __ATOMIC_RELAXED);
    mwg = (loom_waitgroup)LOOM_WAITGROUP_INIT;
    CHECK_OK(loom_wg_add(&mwg, NWAIT + 1));
    CHECK(loom_go(holder, NULL) != 0);
    start_spinners();
    for (int i = 0; i < NWAIT; i++)
        CHECK(loom_go(locker, NULL) != 0);
    loom_wg_wait(&mwg);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    CHECK_MSG(overlaps == 0, "%d goroutines got into a mutex beside its holder", overlaps);
    CHECK_MSG(deadlk == 0, "%d locks said EDEADLK: their thread owned the mutex", deadlk);
    pthread_mutex_destroy(&mu);
    alarm(0);
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    coop = !t_async_preempt();
    if (coop) {
        setenv("LOOM_DEBUG", "coopasync=1", 1);
        printf("test_preempt_lock: the preemption signal is off: switches at cooperative points\n");
    }
    for (int round = 0; round < 5; round++) {
        if (t_want("pipe"))
            T_RUN_AT(1, pipe_test, &stop);
        if (t_want("mutex")) {
            mutex_kind = PTHREAD_MUTEX_NORMAL;
            T_RUN_AT(1, mutex_test, &stop);
        }
        if (t_want("recursive")) {
            mutex_kind = PTHREAD_MUTEX_RECURSIVE;
            T_RUN_AT(1, mutex_test, &stop);
        }
        if (t_want("errorcheck")) {
            mutex_kind = PTHREAD_MUTEX_ERRORCHECK;
            T_RUN_AT(1, mutex_test, &stop);
        }
    }
    printf("test_preempt_lock: ok\n");
    return 0;
}
