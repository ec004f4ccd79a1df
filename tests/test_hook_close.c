/*
 * test_hook_close.c — close, dup2 and dup3 through libloom_hook keep loom's poller right:
 *  - close() of an fd a goroutine is parked on wakes it: its read says EBADF;
 *  - dup2/dup3 onto a number loom has registered: a goroutine waiting on the new file
 *    under that number is woken by its data at once (not after sysmon's check of stale
 *    registrations, ~10 ms later);
 *  - 300 rounds of make, wait, close, with the numbers reused every round.
 */
#include "t_hook.h"

struct rd {
    int fd;
    ssize_t got;
    int err;
    int done;
};

static void reader(void *arg)
{
    struct rd *r = arg;
    char c;
    r->got = read(r->fd, &c, 1);
    r->err = r->got < 0 ? t_errno() : 0;
    __atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
}

static void wait_parked(int64_t n)
{
    T_WAIT_UNTIL(({
                     struct loom_stats s;
                     loom_stats(&s);
                     (int64_t) s.waiting >= n;
                 }),
                 10, "a goroutine to park");
}

static void test_close_wakes(void)
{
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    struct rd r = { sv[0], 0, 0, 0 };
    loom_go(reader, &r);
    wait_parked(1);
    CHECK_OK(close(sv[0]));
    T_WAIT_UNTIL(t_get(&r.done), 10, "the reader to wake");
    CHECK_EQ(r.got, -1);
    CHECK_EQ(r.err, EBADF);
    CHECK_OK(close(sv[1]));
}

/* How long a reader parked on `fd` takes to see a byte written to `wfd`. */
static int64_t wake_time(int fd, int wfd)
{
    struct rd r = { fd, 0, 0, 0 };
    loom_go(reader, &r);
    loom_sleep(2 * MS); /* parked by now */
    int64_t t0 = loom_now();
    CHECK_EQ(write(wfd, "x", 1), 1);
    T_WAIT_UNTIL(t_get(&r.done), 10, "the reader on fd %d", fd);
    CHECK_EQ(r.got, 1);
    return loom_now() - t0;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_dup_onto(void)
{
    int rounds = 30;
    int64_t *t = calloc((size_t)rounds, sizeof *t);
    for (int i = 0; i < rounds; i++) {
        int a[2], b[2];
        CHECK_OK(pipe(a));
        wake_time(a[0], a[1]); /* a[0] is registered with loom now */
        CHECK_OK(pipe(b));
        if (i % 2)
            CHECK_EQ(dup2(b[0], a[0]), a[0]);
        else
            CHECK_EQ(dup3(b[0], a[0], O_CLOEXEC), a[0]);
        CHECK_OK(close(b[0]));
        t[i] = wake_time(a[0], b[1]); /* the new file under the old number */
        CHECK_OK(close(a[0]));
        CHECK_OK(close(a[1]));
        CHECK_OK(close(b[1]));
    }
    qsort(t, (size_t)rounds, sizeof *t, cmp64);
    /* a stale registration would cost each wake sysmon's look, ~10 ms */
    CHECK_MSG(t[rounds / 2] < 4 * MS, "median wake after dup2 %.2f ms", t[rounds / 2] / 1e6);
    free(t);
}

static void test_reuse(void)
{
    int rounds = (int)t_scale(300);
    int64_t *t = calloc((size_t)rounds, sizeof *t);
    for (int i = 0; i < rounds; i++) {
        int sv[2];
        if (i % 2)
            CHECK_OK(pipe(sv));
        else
            CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
        t[i] = wake_time(sv[0], sv[1]);
        CHECK_OK(close(sv[0]));
        CHECK_OK(close(sv[1]));
    }
    qsort(t, (size_t)rounds, sizeof *t, cmp64);
    CHECK_MSG(t[rounds / 2] < 4 * MS, "median wake %.2f ms", t[rounds / 2] / 1e6);
    free(t);
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("close"))
        test_close_wakes();
    if (t_want("dup"))
        test_dup_onto();
    if (t_want("reuse"))
        test_reuse();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    t_hook_require("test_hook_close");
    t_hook_run(2, main_fn, NULL);
    printf("test_hook_close: ok\n");
    return 0;
}
