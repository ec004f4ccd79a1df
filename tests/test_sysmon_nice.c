/*
 * test_sysmon_nice.c — the monitor thread asks the kernel for nice LOOM_SYSMON_NICE (-10 by
 * default) where the process may lower a nice value, so that it runs on time beside
 * spinning threads; LOOM_SYSMON_NICE=0 leaves it alone.  Exactly one thread (sysmon) gets
 * it: the goroutine threads keep the process's nice, also those sysmon itself starts when
 * it lends a spare P for threads blocked in plain sleeps.  Where lowering a nice is not
 * allowed, no thread changes and the check says so.
 */
#include "t.h"
#include <pthread.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

struct nice_count {
    int want, n;
};

static bool count_nice(long tid, char *buf, void *arg)
{
    (void)tid;
    struct nice_count *c = arg;
    const char *p = strrchr(buf, ')');
    if (!p)
        return true;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt
     * cmajflt utime stime cutime cstime priority nice(19) */
    int field = 2;
    for (const char *q = p + 1; *q; q++) {
        if (*q == ' ' && ++field == 19) {
            if (atoi(q + 1) == c->want)
                c->n++;
            break;
        }
    }
    return true;
}

/* Threads of this process whose nice is `want` (/proc/self/task/TID/stat, field 19). */
static int threads_with_nice(int want)
{
    struct nice_count c = { want, 0 };
    CHECK(t_each_thread_stat(count_nice, &c));
    return c.n;
}

static void *try_lower(void *arg)
{
    (void)arg;
    int r = setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), -10);
    return (void *)(intptr_t)(r == 0);
}

/* May this process lower a thread's nice to -10?  (Tried on a thread that then exits.) */
static bool may_lower_nice(void)
{
    pthread_t t;
    void *ok;
    CHECK_OK(pthread_create(&t, NULL, try_lower, NULL));
    CHECK_OK(pthread_join(t, &ok));
    return ok != NULL;
}

static int got;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

/* blocks its thread in the kernel without telling loom: sysmon lends a spare P, and the
 * thread for it is started by sysmon — it must not keep sysmon's nice */
static void plain_sleeper(void *arg)
{
    (void)arg;
    usleep(30000);
    loom_wg_done(&wg);
}

static void busy(void *arg)
{
    (void)arg;
    for (int i = 0; i < 40; i++)
        loom_sleep(1000000);
    loom_wg_done(&wg);
}

static int look(void *arg)
{
    (void)arg;
    CHECK_OK(loom_wg_add(&wg, 1 + loom_procs()));
    for (int i = 0; i < loom_procs(); i++)
        CHECK(loom_go(plain_sleeper, NULL) != 0);
    CHECK(loom_go(busy, NULL) != 0);
    loom_wg_wait(&wg);
    got = threads_with_nice(-10);
    return 0;
}

int main(void)
{
    bool may = may_lower_nice();
    CHECK_EQ(threads_with_nice(-10), 0); /* the probe thread is gone */
    T_RUN(look, NULL);
    CHECK_EQ(got, may ? 1 : 0);
    setenv("LOOM_SYSMON_NICE", "0", 1);
    T_RUN(look, NULL);
    CHECK_EQ(got, 0);
    setenv("LOOM_SYSMON_NICE", "-5", 1);
    T_RUN(look, NULL);
    CHECK_EQ(got, 0); /* -5, not -10 */
    printf("test_sysmon_nice: ok%s\n", may ? "" : " (this process may not lower a nice: none changed)");
    return 0;
}
