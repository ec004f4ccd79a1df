/* syscall: progress of a goroutine while another blocks 200 ms in a plain
 * blocking read() on a pipe, at one P, as a ratio to a run without the blocker.
 * The read is not wrapped in loom_block_begin/end: the runtime must notice the
 * stuck thread and hand its P on by itself (as Go's sysmon retakes a P from a
 * syscall).  The pipe is written by a plain pthread at mark + 200 ms.
 * Twin of go/syscall/main.go. */
#include <loom.h>
#include <pthread.h>
#include <semaphore.h>
#include "bench.h"

#define CHUNK 1000

static int64_t block_ns, mark_ns;
static int pfd[2];
static sem_t writer_go;
static int with_blocker;
static int64_t chunks, worst_gap;
static volatile uint64_t sink;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

static uint64_t work_chunk(uint64_t x)
{
    for (int i = 0; i < CHUNK; i++)
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x;
}

/* The alarm clock that ends the blocking read, outside the runtime. */
static void *writer_thread(void *arg)
{
    (void)arg;
    for (;;) {
        while (sem_wait(&writer_go) != 0)
            ;
        int64_t deadline = __atomic_load_n(&mark_ns, __ATOMIC_ACQUIRE) + block_ns;
        struct timespec ts = { (time_t)(deadline / 1000000000), (long)(deadline % 1000000000) };
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        if (write(pfd[1], "x", 1) != 1)
            bench_fail("write to pipe failed");
    }
    return NULL;
}

static void blocker(void *arg)
{
    (void)arg;
    __atomic_store_n(&mark_ns, bench_now_ns(), __ATOMIC_RELEASE);
    if (with_blocker) {
        sem_post(&writer_go);
        char c = 0;
        ssize_t r = read(pfd[0], &c, 1); /* plain, blocking: the point of the benchmark */
        if (r != 1 || c != 'x')
            bench_fail("read returned %zd '%c'", r, c);
    }
    loom_wg_done(&wg);
}

static void worker(void *arg)
{
    (void)arg;
    uint64_t x = 1;
    int64_t t0;
    while ((t0 = __atomic_load_n(&mark_ns, __ATOMIC_ACQUIRE)) == 0)
        loom_yield();
    int64_t last = t0, n = 0, gap = 0;
    for (;;) {
        x = work_chunk(x);
        int64_t t = bench_now_ns();
        if (t - last > gap) /* a stall across the window's end counts too */
            gap = t - last;
        if (t - t0 > block_ns)
            break;
        n++;
        last = t;
        loom_yield();
    }
    sink += x;
    chunks = n;
    worst_gap = gap;
    loom_wg_done(&wg);
}

static void phase(int blocking)
{
    with_blocker = blocking;
    __atomic_store_n(&mark_ns, 0, __ATOMIC_RELEASE);
    if (loom_wg_add(&wg, 2) != 0)
        bench_fail("loom_wg_add");
    if (!loom_go(blocker, NULL) || !loom_go(worker, NULL))
        bench_fail("loom_go: %s", strerror(errno));
    loom_wg_wait(&wg);
}

static int bench_main(void *arg)
{
    (void)arg;
    int procs = loom_procs();
    if (procs != 1)
        bench_fail("runs at one P, but loom_procs() = %d with LOOM_PROCS=1", procs);
    phase(0);
    int64_t base = chunks;
    phase(1);
    if (base <= 0)
        bench_fail("the worker made no progress in the baseline run");
    bench_result("progress_ratio", (double)chunks / (double)base, "x", procs);
    bench_result("worst_gap_ms", (double)worst_gap / 1e6, "ms", procs);
    return 0;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "syscall");
    block_ns = bench_param("block_ms", 200, 20) * 1000000;
    if (block_ns <= 0)
        bench_fail("block_ms must be >= 1");
    if (pipe(pfd) != 0 || sem_init(&writer_go, 0, 0) != 0)
        bench_fail("pipe/sem_init: %s", strerror(errno));
    pthread_t th;
    if (pthread_create(&th, NULL, writer_thread, NULL) != 0)
        bench_fail("pthread_create");
    pthread_detach(th);
    setenv("LOOM_PROCS", "1", 1);
    bench_watchdog(bench_is_smoke() ? 20 : 60, "no progress");
    int rc = loom_run(bench_main, NULL);
    if (rc != 0)
        bench_fail("loom_run returned %d", rc);
    return 0;
}
