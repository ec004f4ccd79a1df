/*
 * test_fd_park.c — the calls loom offers to interposers of libc (libloom_hook), tested on
 * their own, without the hook:
 *  - loom_can_park: 1 in a goroutine, 0 before loom_run, on a foreign thread and between
 *    loom_block_begin and loom_block_end;
 *  - loom_text_range: a non-empty range holding loom's functions, not the program's;
 *  - loom_fd_park: after EAGAIN it parks until data comes (> 0); a timeout gives
 *    -ETIMEDOUT, timeout 0 with nothing pending too; a second waiter -EBUSY; bad
 *    arguments -EINVAL; a regular file takes the blocking path and is ready at once;
 *  - loom_fd_forget: wakes a waiter with -ECANCELED and leaves the fd open; a pipe put
 *    under a registered number with dup2 after it is waited on afresh.
 */
#include "t.h"
#include <pthread.h>

#define MS 1000000LL

static void *foreign(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)loom_can_park();
}

static void test_can_park(void)
{
    CHECK_EQ(loom_can_park(), 1);
    loom_block_begin();
    int in_block = loom_can_park();
    loom_block_end();
    CHECK_EQ(in_block, 0);
    pthread_t t;
    void *r;
    CHECK_OK(pthread_create(&t, NULL, foreign, NULL));
    CHECK_OK(pthread_join(t, &r));
    CHECK_EQ((intptr_t)r, 0);
}

static void test_text_range(void)
{
    const void *lo, *hi;
    loom_text_range(&lo, &hi);
    CHECK((uintptr_t)lo < (uintptr_t)hi);
    uintptr_t run = (uintptr_t)(void *)loom_run, me = (uintptr_t)(void *)test_text_range;
    CHECK(run >= (uintptr_t)lo && run < (uintptr_t)hi);
    CHECK(me < (uintptr_t)lo || me >= (uintptr_t)hi);
    loom_text_range(NULL, NULL);
}

struct waiter {
    int fd;
    int r;
    int done;
};

static void park_waiter(void *arg)
{
    struct waiter *w = arg;
    w->r = loom_fd_park(w->fd, LOOM_READABLE, -1);
    __atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
}

/* goroutines parked now (the caller, running, is not one of them) */
static uint64_t waiting_now(void)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st.waiting;
}

static void test_park(void)
{
    int pp[2];
    CHECK_OK(pipe2(pp, O_NONBLOCK));
    char c;
    CHECK_EQ(read(pp[0], &c, 1), -1); /* EAGAIN: now park */
    int64_t t0 = loom_now();
    CHECK_ERR(loom_fd_park(pp[0], LOOM_READABLE, 20 * MS), ETIMEDOUT);
    CHECK_GE(loom_now() - t0, 20 * MS);
    CHECK_ERR(loom_fd_park(pp[0], LOOM_READABLE, 0), ETIMEDOUT);
    struct waiter w = { pp[0], 0, 0 };
    uint64_t waiting0 = waiting_now();
    loom_go(park_waiter, &w);
    /* parked (it claims the fd's word before it parks): the next waiter finds it there */
    T_WAIT_UNTIL(waiting_now() > waiting0, 10, "the waiter never parked");
    CHECK_EQ(t_get(&w.done), 0);
    CHECK_ERR(loom_fd_park(pp[0], LOOM_READABLE, 10 * MS), EBUSY); /* one waiter per direction */
    CHECK_EQ(write(pp[1], "x", 1), 1);
    T_WAIT_UNTIL(t_get(&w.done), 10, "the parked waiter to wake");
    CHECK_GT(w.r, 0);
    CHECK_EQ(read(pp[0], &c, 1), 1);
    CHECK_GT(loom_fd_park(pp[1], LOOM_WRITABLE, 1000 * MS), 0);
    CHECK_ERR(loom_fd_park(pp[0], 0, 0), EINVAL);
    CHECK_ERR(loom_fd_park(-1, LOOM_READABLE, 0), EINVAL);
    CHECK_ERR(loom_fd_park(pp[0], 8, 0), EINVAL);
    /* a regular file: the blocking path, ready at once */
    char path[] = "/tmp/loom-fd-park-XXXXXX";
    int fd = mkstemp(path);
    CHECK_GE(fd, 0);
    unlink(path);
    CHECK_EQ(loom_fd_park(fd, LOOM_READABLE, 1000 * MS), LOOM_READABLE);
    CHECK_OK(loom_fd_close(fd));
    CHECK_OK(loom_fd_close(pp[0]));
    CHECK_OK(loom_fd_close(pp[1]));
}

static void test_forget(void)
{
    int pp[2];
    CHECK_OK(pipe2(pp, O_NONBLOCK));
    struct waiter w = { pp[0], 0, 0 };
    uint64_t waiting0 = waiting_now();
    loom_go(park_waiter, &w);
    T_WAIT_UNTIL(waiting_now() > waiting0, 10, "the waiter never parked");
    CHECK_OK(loom_fd_forget(pp[0]));
    T_WAIT_UNTIL(t_get(&w.done), 10, "the waiter to be woken by loom_fd_forget");
    CHECK_ERR(w.r, ECANCELED);
    CHECK_EQ(write(pp[1], "y", 1), 1); /* still open */
    char c;
    CHECK_EQ(read(pp[0], &c, 1), 1);
    /* another pipe under the registered number: a new wait registers it afresh (the
     * fastest of five rounds, on a noisy machine; a stale registration costs each round
     * sysmon's look, 5-10 ms) */
    int64_t best = INT64_MAX;
    for (int round = 0; round < 5; round++) {
        int r, tries = 0;
        while ((r = loom_fd_park(pp[0], LOOM_READABLE, 2 * MS)) > 0 && ++tries < 10) {} /* (> 0: spurious) */
        CHECK_ERR(r, ETIMEDOUT);                                                        /* registered */
        int q[2];
        CHECK_OK(pipe2(q, O_NONBLOCK));
        CHECK_OK(loom_fd_forget(pp[0]));
        CHECK_EQ(dup2(q[0], pp[0]), pp[0]);
        close(q[0]);
        w = (struct waiter){ pp[0], 0, 0 };
        loom_go(park_waiter, &w);
        loom_sleep(2 * MS);
        int64_t t0 = loom_now();
        CHECK_EQ(write(q[1], "z", 1), 1);
        T_WAIT_UNTIL(t_get(&w.done), 10, "the waiter on the new pipe");
        CHECK_GT(w.r, 0);
        if (loom_now() - t0 < best)
            best = loom_now() - t0;
        CHECK_EQ(read(pp[0], &c, 1), 1);
        CHECK_OK(close(q[1]));
    }
    CHECK_MSG(best < 4 * MS, "the fastest wake on a number put under a registration took %.2f ms",
              best / 1e6);
    CHECK_ERR(loom_fd_forget(-1), EINVAL);
    CHECK_OK(loom_fd_close(pp[0]));
    CHECK_OK(loom_fd_close(pp[1]));
}

static int main_fn(void *arg)
{
    (void)arg;
    test_can_park();
    test_text_range();
    test_park();
    test_forget();
    return 0;
}

int main(void)
{
    CHECK_EQ(loom_can_park(), 0);
    CHECK_OK(loom_fd_forget(5)); /* outside loom_run: nothing to do */
    T_RUN(main_fn, NULL);
    printf("test_fd_park: ok\n");
    return 0;
}
