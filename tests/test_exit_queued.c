/*
 * test_exit_queued.c — the runtime's end while other Ps are stealing: nothing runs a
 * goroutine that already exited.  The end used to empty each P's ring by setting head and
 * tail back to 0; a thief that read the new head and the old tail took the stale slots
 * below as goroutines ("casgstatus: goroutine N is dead, not runnable").  Short runs of
 * ten goroutines trading a mutex (small ring indices, goroutines stolen back and forth)
 * end while idle Ps look for work: three processes at once, so that the two CPUs are
 * loaded, each under chaos seeds of its own (LOOM_CHAOS) to stretch the windows.  Before
 * the fix about 1 run in 60 crashed this way.
 */
#include "t.h"
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

static loom_mutex mu = LOOM_MUTEX_INIT;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;
static long counter;

static void worker(void *arg)
{
    (void)arg;
    for (int j = 0; j < 1000; j++) {
        loom_mutex_lock(&mu);
        counter++;
        CHECK_OK(loom_mutex_unlock(&mu));
    }
    loom_wg_done(&wg);
}

static int main_run(void *arg)
{
    (void)arg;
    counter = 0;
    CHECK_OK(loom_wg_add(&wg, 10));
    for (int i = 0; i < 10; i++)
        CHECK_NE(loom_go(worker, NULL), 0);
    loom_wg_wait(&wg);
    CHECK_EQ(counter, 10000);
    return 7;
}

int main(int argc, char **argv)
{
    if (argc > 1) { /* a child: runs under the seeds it is given */
        alarm(120);
        T_RUN_CHAOS(atoi(argv[1]), atoi(argv[2]), main_run, NULL, 7);
        return 0;
    }
    int per = (int)t_scale(60);
    if (per < 10)
        per = 10;
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        char first[16], n[16];
        snprintf(first, sizeof first, "%d", 1 + k * per);
        snprintf(n, sizeof n, "%d", per);
        kids[k] = fork();
        CHECK(kids[k] >= 0);
        if (kids[k] == 0) {
            int devnull = open("/dev/null", O_WRONLY); /* the seed lines */
            if (devnull >= 0)
                dup2(devnull, 1);
            execl("/proc/self/exe", argv[0], first, n, (char *)NULL);
            _exit(127);
        }
    }
    int bad = 0;
    for (int k = 0; k < 3; k++) {
        int st;
        CHECK_EQ(waitpid(kids[k], &st, 0), kids[k]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "child %d (seeds %d..%d) failed: status %#x\n", k, 1 + k * per, (k + 1) * per,
                    st);
            bad++;
        }
    }
    CHECK_EQ(bad, 0);
    printf("test_exit_queued: 3 x %d runs ended while Ps were stealing: ok\n", per);
    return 0;
}
