/*
 * test_blocking.c — goroutines that block in the kernel leave the others running:
 *  - annotated: loom_block_begin/end around a 150 ms blocking read at LOOM_PROCS=1; the
 *    P is left in P_SYSCALL and sysmon hands it to another thread, so a second goroutine
 *    keeps counting; the blocked goroutine then continues (and errno survives);
 *  - unannotated: the same with a plain read() and a plain usleep(), which loom is never
 *    told about: sysmon sees the thread asleep in the kernel and lends a spare P;
 *  - after the blocking call returns the spare is given back: the runtime still runs
 *    only LOOM_PROCS goroutines at once (two spinners at one P never overlap).
 */
#include "t.h"
#include <pthread.h>
#include <unistd.h>

#define MS 1000000LL

static int pfd[2];
static volatile int done;
static volatile uint64_t count;

static void *late_writer(void *arg)
{
    (void)arg;
    usleep(150000);
    if (write(pfd[1], "x", 1) != 1) abort();
    return NULL;
}

static void counter(void *arg)
{
    (void)arg;
    while (!done) {
        count++;
        if ((count & 1023) == 0) loom_yield();
    }
}

enum { ANNOTATED, PLAIN_READ, PLAIN_SLEEP };

static void blocker(void *arg)
{
    int how = *(int *)arg;
    char c = 0;
    if (how == PLAIN_SLEEP) {
        usleep(150000);
    } else {
        if (how == ANNOTATED) loom_block_begin();
        errno = 0;
        ssize_t r = read(pfd[0], &c, 1);
        int e = errno;
        if (how == ANNOTATED) loom_block_end();
        CHECK_EQ(r, 1);
        CHECK_EQ(e, 0);
        CHECK_EQ(c, 'x');
    }
    done = 1;
}

static int one_case(void *arg)
{
    int how = *(int *)arg;
    CHECK_OK(pipe(pfd));
    done = 0;
    count = 0;
    pthread_t t;
    if (how != PLAIN_SLEEP) CHECK_OK(pthread_create(&t, NULL, late_writer, NULL));
    loom_go(blocker, &how);
    loom_go(counter, NULL);
    loom_sleep(30 * MS);                 /* the blocker is inside its call by now */
    uint64_t c0 = count;
    loom_sleep(50 * MS);
    uint64_t c1 = count;
    CHECK_MSG(c1 > c0, "case %d: nothing ran while a goroutine blocked in the kernel at one P", how);
    while (!done) loom_sleep(5 * MS);
    if (how != PLAIN_SLEEP) pthread_join(t, NULL);
    close(pfd[0]);
    close(pfd[1]);
    return 0;
}

/* After a spare was lent and given back, two spinners at one P must take turns, never
 * run at the same time. */
static volatile int inside, overlap, stop_spin;

static void exclusive_spinner(void *arg)
{
    (void)arg;
    while (!stop_spin) {
        if (__atomic_add_fetch(&inside, 1, __ATOMIC_SEQ_CST) > 1) overlap = 1;
        for (volatile int i = 0; i < 1000; i++) {}
        __atomic_sub_fetch(&inside, 1, __ATOMIC_SEQ_CST);
        loom_yield();
    }
}

static int spare_returned(void *arg)
{
    (void)arg;
    int how = PLAIN_SLEEP;
    one_case(&how);
    loom_sleep(20 * MS);                 /* sysmon retires the spare */
    overlap = 0;
    loom_go(exclusive_spinner, NULL);
    loom_go(exclusive_spinner, NULL);
    loom_sleep(100 * MS);
    stop_spin = 1;
    loom_sleep(10 * MS);
    CHECK_MSG(!overlap, "two goroutines ran at once at LOOM_PROCS=1 after a spare P was lent");
    return 0;
}

int main(void)
{
    setenv("LOOM_PROCS", "1", 1);
    for (int how = ANNOTATED; how <= PLAIN_SLEEP; how++) {
        int rc = loom_run(one_case, &how);
        CHECK_EQ(rc, 0);
    }
    T_RUN(spare_returned, NULL);
    printf("test_blocking: ok\n");
    return 0;
}
