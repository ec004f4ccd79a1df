/*
 * test_fd_reuse.c — loom_fd_close under a reader that is just parking, and the number
 * reused at once for a new file with a new reader: the new reader parks (never -EBUSY),
 * the old one gets -ECANCELED, and data written to the new file reaches the new reader.
 * The old reader may be anywhere in its park when the close comes (its word claimed but
 * not yet published, published, or being cleaned up after the wake): each of those
 * states must leave the word to the new file's waiter.  Many rounds at 2 Ps under chaos
 * seeds (LOOM_CHAOS) to stretch those windows.
 */
#include "t.h"
#include <unistd.h>

struct rd {
    int fd;
    long result;
    int started;
};

static void reader(void *arg)
{
    struct rd *r = arg;
    char buf[16];
    __atomic_store_n(&r->started, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&r->result, (long)loom_read(r->fd, buf, sizeof buf), __ATOMIC_SEQ_CST);
}

static void wait_done(struct rd *r)
{
    int64_t dl = t_clock_ns() + 20000000000LL;
    while (__atomic_load_n(&r->result, __ATOMIC_SEQ_CST) == 1) {
        CHECK_MSG(t_clock_ns() < dl, "reader of fd %d never finished", r->fd);
        loom_sleep(100000);
    }
}

static int rounds;

static int main_reuse(void *arg)
{
    (void)arg;
    for (int i = 0; i < rounds; i++) {
        int a[2], b[2];
        CHECK_OK(pipe(a));
        struct rd old = { a[0], 1, 0 };
        CHECK_NE(loom_go(reader, &old), 0);
        /* close once it has begun to park (a close before its read would hand it the new
         * file under the reused number, a bug of the program's), at varying points after */
        int64_t dl = t_clock_ns() + 20000000000LL;
        for (;;) {
            struct loom_stats st;
            CHECK_OK(loom_stats(&st));
            if (st.waiting >= 1)
                break;
            CHECK_MSG(t_clock_ns() < dl, "round %d: the old reader never parked", i);
            loom_yield();
        }
        for (int k = i % 4; k > 0; k--)
            loom_yield();
        CHECK_OK(loom_fd_close(a[0]));
        CHECK_OK(pipe(b));
        b[0] = t_fd_onto(b[0], a[0]); /* (another thread took the number) */
        CHECK_EQ(b[0], a[0]);
        struct rd nw = { b[0], 1, 0 };
        CHECK_NE(loom_go(reader, &nw), 0);
        wait_done(&old);
        CHECK_MSG(old.result == -ECANCELED, "round %d: the old reader got %s, not -ECANCELED", i,
                  t_errname(old.result));
        CHECK_EQ(loom_write(b[1], "hi", 2), 2);
        wait_done(&nw);
        CHECK_MSG(nw.result == 2, "round %d: the new reader got %s, not the 2 bytes written", i,
                  t_errname(nw.result));
        CHECK_OK(loom_fd_close(b[0]));
        CHECK_OK(loom_fd_close(b[1]));
        CHECK_OK(loom_fd_close(a[1]));
    }
    return 0;
}

int main(void)
{
    alarm(250);
    setenv("LOOM_PROCS", "2", 1);
    rounds = (int)t_scale(200);
    if (rounds < 20)
        rounds = 20;
    T_RUN_CHAOS(300, 12, main_reuse, NULL, 0);
    printf("test_fd_reuse: ok\n");
    return 0;
}
