/*
 * test_affinity.c — threads loom starts or wakes keep the CPU affinity the program gave
 * them.  loom hands a P to a thread it wakes or creates on the CPU of the thread that is
 * about to sleep (src/topo.c, loom__topo_lend_cpu), then gives that thread back its own
 * mask: the mask it had, not the process's at start.  A program that restricts a thread
 * to one CPU (or a test that runs the process on one) finds every thread made from it
 * there, as pthread_create promises.
 *
 * The test restricts every thread of the process to one CPU (as `taskset` would the whole
 * process, after loom started); then spinners at two Ps are
 * switched out by the preemption signal over and over (each switch hands a P to another
 * thread, woken or new, on the CPU of the one that stops), while goroutines block in plain
 * calls (a spare P each, on threads made meanwhile).  Every thread, old or new, must be
 * allowed that one CPU only at the end.
 */
#define _GNU_SOURCE
#include "t.h"
#include <dirent.h>
#include <sched.h>
#include <unistd.h>

#define MS 1000000LL

enum { MAXT = 4096 };
static int before[MAXT], nbefore;

static int list_threads(int *out, int max)
{
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max)
        if (e->d_name[0] != '.')
            out[n++] = atoi(e->d_name);
    closedir(d);
    return n;
}

static bool was_there(int tid)
{
    for (int i = 0; i < nbefore; i++)
        if (before[i] == tid)
            return true;
    return false;
}

static int stop; /* atomic */
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

static void spinner(void *arg)
{
    (void)arg;
    volatile long n = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
        n++;
    loom_wg_done(&wg);
}

static void sleeper(void *arg)
{
    (void)arg;
    usleep(20000); /* plain: a spare P stands in */
    loom_wg_done(&wg);
}

static int main_fn(void *arg)
{
    (void)arg;
    cpu_set_t all;
    CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    if (CPU_COUNT(&all) < 2 || !t_async_preempt()) {
        printf("test_affinity: skipped: needs two CPUs and the preemption signal\n");
        exit(77);
    }
    int cpu = -1;
    for (int c = CPU_SETSIZE - 1; c >= 0 && cpu < 0; c--)
        if (CPU_ISSET(c, &all))
            cpu = c; /* the last one: not where the process started, most likely */
    nbefore = list_threads(before, MAXT);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    for (int i = 0; i < nbefore; i++)
        CHECK_EQ(sched_setaffinity(before[i], sizeof one, &one), 0);

    enum { SPIN = 6, SLEEP = 8 };
    CHECK_OK(loom_wg_add(&wg, SPIN + SLEEP));
    for (int i = 0; i < SPIN; i++)
        CHECK(loom_go(spinner, NULL) != 0);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < SLEEP / 4; i++)
            CHECK(loom_go(sleeper, NULL) != 0);
        loom_sleep(60 * MS);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    loom_wg_wait(&wg);

    static int now[MAXT];
    int n = list_threads(now, MAXT), made = 0, wide = 0;
    for (int i = 0; i < n; i++) {
        cpu_set_t m;
        if (sched_getaffinity(now[i], sizeof m, &m) != 0)
            continue; /* exited meanwhile */
        made += !was_there(now[i]);
        if (CPU_COUNT(&m) != 1 || !CPU_ISSET(cpu, &m))
            wide++;
    }
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    printf("test_affinity: %d threads made after the restriction to CPU %d; %d threads allowed others "
           "(%llu switches by the signal, %llu spare Ps lent)\n",
           made, cpu, wide, (unsigned long long)st.async_preemptions, (unsigned long long)st.spare_lends);
    CHECK_GT(made, 0);
    CHECK_MSG(wide == 0, "%d threads of a process restricted to CPU %d may run elsewhere", wide, cpu);
    return 0;
}

int main(void)
{
    setenv("LOOM_PROCS", "2", 1);
    T_RUN(main_fn, NULL);
    printf("test_affinity: ok\n");
    return 0;
}
