/*
 * test_procs.c — loom_set_procs (runtime.GOMAXPROCS) while goroutines run, and the number
 * of Ps following the CPU limit of a (fake) cgroup tree as it changes.
 *
 * Up: with more Ps, more goroutines run at once (loom_stats: running).  Down: Ps leave
 * service (loom_stats: procs) while spinners that never call loom keep running, all of them
 * in turn, and no more than the Ps at once.  Flipping the count under channel traffic loses
 * no goroutine and no message.  Then a second loom_run without LOOM_PROCS on a fake cgroup
 * tree (LOOM_CGROUP_ROOT, LOOM_CGROUP_SELF, LOOM_CGROUP_CPUS): its cpu.max is rewritten and
 * the P count follows within seconds, until loom_set_procs takes over.
 */
#include "t.h"
#include <sys/stat.h>

#define MS 1000000LL

static struct loom_stats stats(void)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st;
}

enum { SPIN = 5 };
static int stop; /* atomic */
static long spins[SPIN];
static loom_waitgroup spun = LOOM_WAITGROUP_INIT;

static void spinner(void *arg)
{
    long *n = arg;
    /* without the preemption signal (sanitizer builds) a spinner yields now and then */
    bool yields = !t_async_preempt();
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
        if (__atomic_add_fetch(n, 1, __ATOMIC_RELAXED) % 4096 == 0 && yields)
            loom_yield();
    loom_wg_done(&spun);
}

/* every spinner moves on within a while */
static void all_progress(const char *when)
{
    long before[SPIN];
    for (int i = 0; i < SPIN; i++)
        before[i] = __atomic_load_n(&spins[i], __ATOMIC_RELAXED);
    for (int i = 0; i < SPIN; i++)
        T_WAIT_UNTIL(__atomic_load_n(&spins[i], __ATOMIC_RELAXED) != before[i], 20, "%s: spinner %d stopped",
                     when, i);
}

static loom_waitgroup churned = LOOM_WAITGROUP_INIT;
static long delivered; /* atomic */

static void pinger(void *arg)
{
    loom_chan *c = arg;
    for (long i = 0; i < 2000; i++)
        CHECK_OK(loom_send(c, &i));
    loom_wg_done(&churned);
}

static void ponger(void *arg)
{
    loom_chan *c = arg;
    long v;
    for (long i = 0; i < 2000; i++) {
        CHECK_OK(loom_recv(c, &v));
        CHECK_EQ(v, i);
        __atomic_add_fetch(&delivered, 1, __ATOMIC_RELAXED);
    }
    loom_wg_done(&churned);
}

static int set_fn(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_set_procs(0), 2); /* a query */
    CHECK_EQ(loom_procs(), 2);
    CHECK_OK(loom_wg_add(&spun, SPIN));
    for (int i = 0; i < SPIN; i++)
        CHECK(loom_go(spinner, &spins[i]) != 0);
    all_progress("at 2 Ps");
    CHECK_LE(stats().running, 2u);

    CHECK_EQ(loom_set_procs(4), 2);
    CHECK_EQ(loom_procs(), 4);
    T_WAIT_UNTIL(stats().running >= 4, 20, "4 Ps, never 4 goroutines running at once");
    all_progress("at 4 Ps");

    CHECK_EQ(loom_set_procs(1), 4);
    CHECK_EQ(loom_procs(), 1);
    T_WAIT_UNTIL(stats().procs == 1, 20, "Ps still in service: %llu", (unsigned long long)stats().procs);
    all_progress("at 1 P");
    for (int k = 0; k < 20; k++) {
        CHECK_LE(stats().running, 1u);
        loom_sleep(MS);
    }

    CHECK_EQ(loom_set_procs(3), 1);
    T_WAIT_UNTIL(stats().running >= 3, 20, "3 Ps, never 3 goroutines running at once");
    all_progress("at 3 Ps");
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    loom_wg_wait(&spun);

    /* channel traffic while the count flips */
    enum { PAIRS = 100 };
    loom_chan *cs[PAIRS];
    CHECK_OK(loom_wg_add(&churned, 2 * PAIRS));
    for (int i = 0; i < PAIRS; i++) {
        CHECK((cs[i] = loom_chan_new(sizeof(long), (size_t)(i % 3))) != NULL);
        CHECK(loom_go(pinger, cs[i]) != 0);
        CHECK(loom_go(ponger, cs[i]) != 0);
    }
    for (int k = 0; k < 40; k++) {
        CHECK_GT(loom_set_procs(1 + k % 4), 0);
        loom_sleep(MS / 2);
    }
    loom_wg_wait(&churned);
    CHECK_EQ(__atomic_load_n(&delivered, __ATOMIC_RELAXED), (long)PAIRS * 2000);
    for (int i = 0; i < PAIRS; i++)
        loom_chan_free(cs[i]);
    return 0;
}

/* ---- following a fake cgroup tree */

static char cpu_max[512];

static void write_limit(const char *text)
{
    FILE *f = fopen(cpu_max, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

static int follow_fn(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_procs(), 4); /* 400000/100000 */
    write_limit("300000 100000\n");
    T_WAIT_UNTIL(loom_procs() == 3, 20, "the P count did not follow the limit down: %d", loom_procs());
    write_limit("max 100000\n"); /* no limit: the CPUs (LOOM_CGROUP_CPUS) */
    T_WAIT_UNTIL(loom_procs() == 6, 20, "the P count did not follow the limit up: %d", loom_procs());
    T_WAIT_UNTIL(stats().procs == 6, 20, "Ps in service: %llu", (unsigned long long)stats().procs);
    /* set by the program: the limit no longer moves it */
    CHECK_EQ(loom_set_procs(2), 6);
    write_limit("500000 100000\n");
    loom_sleep(2500 * MS);
    CHECK_EQ(loom_procs(), 2);
    return 0;
}

int main(void)
{
    CHECK_EQ(loom_set_procs(2), -EPERM); /* loom is not running */
    setenv("LOOM_PROCS", "2", 1);
    T_RUN(set_fn, NULL);

    char dir[] = "/tmp/loom-cgroup-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/root", dir);
    CHECK_OK(mkdir(path, 0700));
    snprintf(path, sizeof path, "%s/root/app", dir);
    CHECK_OK(mkdir(path, 0700));
    snprintf(cpu_max, sizeof cpu_max, "%s/root/app/cpu.max", dir);
    write_limit("400000 100000\n");
    char self[512];
    snprintf(self, sizeof self, "%s/cgroup", dir);
    FILE *f = fopen(self, "w");
    CHECK(f != NULL);
    fputs("0::/app\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/root", dir);
    unsetenv("LOOM_PROCS");
    setenv("LOOM_CGROUP_ROOT", path, 1);
    setenv("LOOM_CGROUP_SELF", self, 1);
    setenv("LOOM_CGROUP_CPUS", "6", 1);
    T_RUN(follow_fn, NULL);
    unlink(cpu_max);
    snprintf(path, sizeof path, "%s/root/app", dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/root", dir);
    rmdir(path);
    unlink(self);
    rmdir(dir);
    printf("test_procs: ok\n");
    return 0;
}
