/*
 * test_idle.c — an idle runtime burns no CPU.  Inside loom_run at every P, with 50
 * goroutines on 60 s timers and one parked forever on a channel nobody sends to (all
 * abandoned when main returns; the pending timers keep the deadlock detector quiet) and
 * main parked on a channel receive, every thread of the runtime comes to sleep in the
 * kernel for good: a thread outside the runtime watches their CPU time
 * (/proc/self/task/TID/schedstat) until a stretch of 200 ms passes in which none of them ran
 * at all, then wakes main with loom_try_send.  A thread that spins or polls at any rate
 * above one look per 200 ms never lets such a stretch come (a 30 s guard fails the test,
 * printing what each thread ran in the last stretch); how soon it comes, and the CPU time
 * used meanwhile, are printed.
 */
#include "t.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MS 1000000LL

static loom_chan *g_forever; /* nobody ever sends */
static loom_chan *g_done;
static int g_armed; /* atomic: main is about to park in its receive */

static void blocked_forever(void *arg)
{
    (void)arg;
    int v;
    loom_recv(g_forever, &v);
    FAIL("received from a channel nobody sends to");
}

static void sleeper(void *arg)
{
    loom_sleep((int64_t)(intptr_t)arg * MS);
}

static int64_t cpu_ns(void)
{
    struct rusage ru;
    CHECK_OK(getrusage(RUSAGE_SELF, &ru));
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

/* ---- the runtime's threads and their CPU time */

#define MAXT 64
typedef struct {
    int n;
    long tid[MAXT];
    uint64_t run_ns[MAXT], slices[MAXT];
} tsnap;

static long other_tids[MAXT]; /* threads that are not the runtime's: a sanitizer's, the watcher */
static int n_other;

static bool is_other(long tid)
{
    for (int i = 0; i < n_other; i++)
        if (other_tids[i] == tid)
            return true;
    return false;
}

/* Threads that exist now, except this process's main thread (loom_run's), become "other". */
static bool note_other(long tid, char *stat, void *arg)
{
    (void)stat;
    (void)arg;
    if (tid != (long)getpid() && n_other < MAXT)
        other_tids[n_other++] = tid;
    return true;
}

/* The runtime's threads with their time on a CPU and the number of times they got one
 * (schedstat: run ns, wait ns, slices). */
static bool snap_one(long tid, char *stat, void *arg)
{
    (void)stat;
    tsnap *s = arg;
    if (is_other(tid) || s->n == MAXT)
        return true;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/schedstat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true; /* gone meanwhile */
    unsigned long long run = 0, wait = 0, slices = 0;
    int got = fscanf(f, "%llu %llu %llu", &run, &wait, &slices);
    fclose(f);
    CHECK_MSG(got == 3, "%s: no schedstat line", path);
    s->tid[s->n] = tid;
    s->run_ns[s->n] = run;
    s->slices[s->n] = slices;
    s->n++;
    return true;
}

static void snap_threads(tsnap *s)
{
    s->n = 0;
    CHECK(t_each_thread_stat(snap_one, s));
}

/* Did any of the runtime's threads run between a and b (or start or end)? */
static bool any_ran(const tsnap *a, const tsnap *b)
{
    if (a->n != b->n)
        return true;
    for (int i = 0; i < b->n; i++)
        if (a->tid[i] != b->tid[i] || a->run_ns[i] != b->run_ns[i] || a->slices[i] != b->slices[i])
            return true;
    return false;
}

static void print_threads(const tsnap *a, const tsnap *b)
{
    for (int i = 0; i < b->n; i++) {
        uint64_t run = 0, slices = 0;
        for (int j = 0; j < a->n; j++)
            if (a->tid[j] == b->tid[i]) {
                run = a->run_ns[j];
                slices = a->slices[j];
            }
        fprintf(stderr, "  thread %ld: ran %.3f ms in %llu slices in the last stretch\n", b->tid[i],
                (double)(b->run_ns[i] - run) / 1e6, (unsigned long long)(b->slices[i] - slices));
    }
}

/* ---- the watcher: a thread outside the runtime */

static int64_t quiet_after; /* how long after main parked the quiet stretch ended */

static void *watcher(void *arg)
{
    (void)arg;
    other_tids[n_other++] = (long)syscall(SYS_gettid); /* this thread is not the runtime's */
    T_WAIT_UNTIL(t_get(&g_armed), 30, "main to get to its receive");
    int64_t t0 = t_clock_ns();
    tsnap a, b;
    snap_threads(&a);
    for (;;) {
        struct timespec ts = { 0, 200 * MS };
        nanosleep(&ts, NULL);
        snap_threads(&b);
        if (!any_ran(&a, &b))
            break;
        if (t_clock_ns() - t0 > 30000 * MS) {
            print_threads(&a, &b);
            FAIL("30 s on, the idle runtime's threads still ran in every 200 ms (%d threads)", b.n);
        }
        a = b;
    }
    quiet_after = t_clock_ns() - t0;
    int one = 1;
    while (loom_try_send(g_done, &one) == -EAGAIN) { /* main is parked: at once */
        struct timespec w = { 0, 100000 };
        nanosleep(&w, NULL);
    }
    return NULL;
}

static void *nothing(void *arg)
{
    return arg;
}

static int main_fn(void *arg)
{
    (void)arg;
    g_forever = loom_chan_new(sizeof(int), 0);
    g_done = loom_chan_new(sizeof(int), 0);
    CHECK(g_forever && g_done);
    CHECK(loom_go(blocked_forever, NULL) != 0);
    /* more sleepers on long timers, abandoned when main returns */
    for (int i = 0; i < 50; i++)
        CHECK(loom_go(sleeper, (void *)(intptr_t)(60000 + i)) != 0);
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, watcher, NULL));
    int64_t c0 = cpu_ns(), w0 = t_clock_ns();
    __atomic_store_n(&g_armed, 1, __ATOMIC_SEQ_CST);
    int v = 0;
    CHECK_OK(loom_recv(g_done, &v));
    int64_t c1 = cpu_ns(), w1 = t_clock_ns();
    CHECK_EQ(v, 1);
    loom_block_begin();
    CHECK_OK(pthread_join(th, NULL));
    loom_block_end();
    printf("idle runtime (%d Ps): every thread asleep for 200 ms on end %.0f ms after main parked; the process "
           "used %.1f ms of CPU in those %.0f ms\n",
           loom_procs(), quiet_after / 1e6, (c1 - c0) / 1e6, (w1 - w0) / 1e6);
    /* neither channel is freed: the goroutines in g_forever and on timers are abandoned
     * when we return */
    return 0;
}

int main(void)
{
    /* A thread started and joined first: a sanitizer's helper thread (ThreadSanitizer
     * starts one at the first pthread_create) exists by now, and is not the runtime's. */
    pthread_t t;
    CHECK_OK(pthread_create(&t, NULL, nothing, NULL));
    CHECK_OK(pthread_join(t, NULL));
    CHECK(t_each_thread_stat(note_other, NULL));
    T_RUN(main_fn, NULL);
    return 0;
}
