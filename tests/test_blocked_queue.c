/*
 * test_blocked_queue.c — a goroutine queued behind one that blocks in a plain read() still
 * runs, though the spare P lent meanwhile always has work of its own.  At LOOM_PROCS=1:
 * main queues a spinner that yields but never stops, then a reader that blocks in read()
 * on a pipe only main writes to, and yields itself, so main waits in the P's queue behind
 * the reader.  The reader's thread sleeps with the P; sysmon lends a spare, whose thread
 * runs the spinner.  An idle P would steal main, but the spare is never idle: the lender's
 * queue must reach the spare another way (sysmon moves it to the global queue), or main
 * never runs, the reader never returns, and the program hangs.
 */
#include "t.h"
#include <signal.h>
#include <unistd.h>

static int pfd[2];
static int stop, got; /* atomic */

static void spinner(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        for (volatile int i = 0; i < 1000; i++) {}
        loom_yield();
    }
}

static void reader(void *arg)
{
    (void)arg;
    char c = 0;
    CHECK_EQ(read(pfd[0], &c, 1), 1); /* plain: loom does not know */
    __atomic_store_n(&got, c, __ATOMIC_SEQ_CST);
}

static int main_q(void *arg)
{
    (void)arg;
    for (int round = 0; round < 10; round++) {
        CHECK_OK(pipe(pfd));
        __atomic_store_n(&stop, 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&got, 0, __ATOMIC_SEQ_CST);
        CHECK_NE(loom_go(spinner, NULL), 0);
        CHECK_NE(loom_go(reader, NULL), 0); /* runnext: it runs next, the spinner is queued */
        loom_yield();                       /* main behind the spinner in the queue */
        CHECK_EQ(write(pfd[1], "q", 1), 1); /* reached only if main ran again */
        T_WAIT_UNTIL(t_get(&got) == 'q', 30, "round %d: the reader did not get its byte", round);
        __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
        loom_sleep(2000000);
        close(pfd[0]);
        close(pfd[1]);
    }
    return 0;
}

int main(void)
{
    alarm(120); /* the hang this is about: die, do not wait */
    setenv("LOOM_PROCS", "1", 1);
    CHECK_EQ(loom_run(main_q, NULL), 0);
    printf("test_blocked_queue: ok\n");
    return 0;
}
