/*
 * test_exit_blocked.c — loom_run returns when main_fn returns, even while another goroutine
 * is blocked in the kernel (a read() inside loom_block_begin/end that never completes):
 * that goroutine is abandoned, as in Go.  Its thread cannot be stopped, so loom_run warns
 * and a later loom_run refuses with -EBUSY instead of corrupting the abandoned thread's state.
 */
#include "t.h"
#include <stdatomic.h>
#include <unistd.h>

static int fds[2];
static atomic_int reading;

static void blocked_reader(void *arg)
{
    (void)arg;
    char c;
    atomic_store(&reading, 1);
    loom_block_begin();
    ssize_t r = read(fds[0], &c, 1); /* nobody ever writes */
    loom_block_end();
    (void)r;
    FAIL("the read returned");
}

static int main_fn(void *arg)
{
    (void)arg;
    CHECK(loom_go(blocked_reader, NULL) != 0);
    while (!atomic_load(&reading))
        loom_sleep(1000 * 1000);
    /* until it is inside loom_block_begin/end (its read() follows) */
    struct loom_stats st;
    T_WAIT_UNTIL(loom_stats(&st) == 0 && st.syscall >= 1, 30, "the reader to enter its blocking call");
    return 7;
}

static int never(void *arg)
{
    (void)arg;
    FAIL("a second loom_run ran its main");
    return 0;
}

int main(void)
{
    CHECK_EQ(pipe(fds), 0);
    int64_t t0 = t_clock_ns();
    CHECK_EQ(loom_run(main_fn, NULL), 7);
    CHECK_MSG(t_clock_ns() - t0 < 10LL * 1000000000, "loom_run took %lld ms to return",
              (long long)((t_clock_ns() - t0) / 1000000));
    CHECK_ERR(loom_run(never, NULL), EBUSY);
    _exit(0); /* the abandoned thread is still in read(): leave without running atexit work */
}
