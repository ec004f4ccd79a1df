/*
 * test_errno.c — errno belongs to the goroutine: the value libc (or the goroutine)
 * left in errno is still there after the goroutine was switched out and resumed,
 * possibly on another OS thread, while other goroutines set errno to their own values
 * meanwhile.  Switches tried: loom_yield, loom_sleep, blocking channel send/recv,
 * contended loom_mutex.
 * And loom_go that fails sets errno and returns at once on the caller's thread: it is no
 * preemption point (API.md: the caller reads errno before any other loom call), so the
 * cooperative preemptions do not grow over a loop of failing calls ten slices long.
 *
 * errno is read and written through functions called via volatile pointers: glibc
 * declares __errno_location() const, so inside one function the compiler may reuse
 * the errno address of the thread the goroutine ran on before a switch.  The test
 * wants the errno of the thread it runs on now, as any fresh libc call would see it.
 */
#include "t.h"

#include <sys/syscall.h>
#include <unistd.h>

static int get_errno_impl(void)
{
    return errno;
}
static void set_errno_impl(int v)
{
    errno = v;
}
static int (*volatile get_errno)(void) = get_errno_impl;
static void (*volatile set_errno)(int) = set_errno_impl;
static long (*volatile get_tid)(void);
static long get_tid_impl(void)
{
    return syscall(SYS_gettid);
}

#define NPAIRS 16 /* goroutines come in pairs sharing a channel */
#define NG     (2 * NPAIRS)

static loom_chan *g_chan[NPAIRS];
static loom_mutex g_mu = LOOM_MUTEX_INIT;
static long g_shared; /* under g_mu */
static long g_rounds;
static int g_done;        /* atomic */
static long g_migrations; /* atomic: informational */

#define CHECK_ERRNO(want, after) \
    do { \
        int e__ = get_errno(); \
        CHECK_MSG(e__ == (want), "goroutine %ld: errno %d after %s, expected %d", me, e__, (after), (want)); \
    } while (0)

static void worker(void *arg)
{
    long me = (long)(intptr_t)arg;
    loom_chan *c = g_chan[me / 2];
    int is_sender = me % 2 == 0;
    t_rng r;
    t_rng_seed(&r, (uint64_t)me + 1);
    long tid = get_tid();
    long migrations = 0;
    int mine = 1000 + (int)me; /* not a real errno value: only we could have put it there */

    set_errno(mine);
    for (long i = 0; i < g_rounds; i++) {
        /* the channel op must happen in every round on both sides, in step */
        long v = i;
        if (is_sender)
            CHECK_OK(loom_send(c, &v));
        else {
            CHECK_OK(loom_recv(c, &v));
            CHECK_EQ(v, i);
        }
        CHECK_ERRNO(mine, is_sender ? "loom_send" : "loom_recv");

        switch (t_rng_below(&r, 4)) {
        case 0:
            loom_yield();
            CHECK_ERRNO(mine, "loom_yield");
            break;
        case 1:
            loom_sleep((int64_t)t_rng_below(&r, 200000));
            CHECK_ERRNO(mine, "loom_sleep");
            break;
        case 2:
            loom_mutex_lock(&g_mu);
            CHECK_ERRNO(mine, "loom_mutex_lock");
            g_shared++;
            loom_yield(); /* others pile up on the mutex */
            CHECK_ERRNO(mine, "loom_yield holding the mutex");
            CHECK_OK(loom_mutex_unlock(&g_mu));
            CHECK_ERRNO(mine, "loom_mutex_unlock");
            break;
        case 3: {
            /* errno as libc sets it: a failing system call */
            CHECK_EQ(close(-1), -1);
            CHECK_ERRNO(EBADF, "close(-1)");
            loom_yield();
            CHECK_ERRNO(EBADF, "close(-1) and loom_yield");
            loom_sleep(1000);
            CHECK_ERRNO(EBADF, "close(-1) and loom_sleep");
            break;
        }
        }
        long t = get_tid();
        if (t != tid) {
            migrations++;
            tid = t;
        }
        /* a new value now and then, so a stale copy of an old one is noticed too */
        mine = 1000 + (int)me + NG * (int)((i + 1) % 7);
        set_errno(mine);
    }
    __atomic_add_fetch(&g_migrations, migrations, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&g_done, 1, __ATOMIC_SEQ_CST);
}

static int main_fn(void *arg)
{
    (void)arg;
    long me = 0;
    g_rounds = t_scale(3000);
    for (int i = 0; i < NPAIRS; i++) {
        g_chan[i] = loom_chan_new(sizeof(long), (size_t)(i % 3 == 0 ? 0 : i % 3));
        CHECK(g_chan[i] != NULL);
    }
    for (long i = 0; i < NG; i++)
        CHECK(loom_go(worker, (void *)(intptr_t)i) != 0);
    /* main too keeps its own errno while it waits */
    set_errno(777);
    int64_t dl = t_clock_ns() + 120LL * 1000000000;
    while (__atomic_load_n(&g_done, __ATOMIC_SEQ_CST) < NG) {
        CHECK_MSG(t_clock_ns() < dl, "workers did not finish");
        loom_sleep(1000000);
        CHECK_ERRNO(777, "main's loom_sleep");
    }
    loom_mutex_lock(&g_mu);
    long shared = g_shared;
    CHECK_OK(loom_mutex_unlock(&g_mu));
    CHECK(shared >= 0);
    for (int i = 0; i < NPAIRS; i++)
        loom_chan_free(g_chan[i]);
    return 0;
}

static void never_runs(void *arg)
{
    (void)arg;
    t_fail(__FILE__, __LINE__, "a goroutine with a bad priority ran");
}

static int spawn_fail_fn(void *arg)
{
    (void)arg;
    long me = 0;
    loom_attr bad = { 0, 7, "bad priority" };
    struct loom_stats a, b;
    CHECK_OK(loom_stats(&a));
    int64_t end = loom_now() + 20 * 1000000LL; /* ten time slices */
    long calls = 0;
    while (loom_now() < end) {
        long tid = get_tid();
        set_errno(0);
        CHECK_EQU(loom_go_attr(never_runs, NULL, &bad), 0);
        CHECK_ERRNO(EINVAL, "a failing loom_go");
        CHECK_EQ(get_tid(), tid);
        calls++;
    }
    CHECK_OK(loom_stats(&b));
    CHECK_MSG(b.preemptions - b.async_preemptions == a.preemptions - a.async_preemptions,
              "%llu cooperative preemptions in %ld failing loom_go calls",
              (unsigned long long)((b.preemptions - b.async_preemptions) -
                                   (a.preemptions - a.async_preemptions)),
              calls);
    return 0;
}

int main(void)
{
    get_tid = get_tid_impl;
    T_RUN(main_fn, NULL);
    setenv("LOOM_PROCS", "1", 1);
    T_RUN(spawn_fail_fn, NULL);
    if (getenv("LOOM_TEST_VERBOSE"))
        fprintf(stderr, "test_errno: %ld thread changes seen\n", g_migrations);
    return 0;
}
