/*
 * test_dump.c — goroutine dumps, each in a child process (this program re-exec'd with a
 * mode argument); the parent reads the child's stderr and checks how it ended:
 *  - quit: goroutines parked in known static functions (a channel receive, a sleep, a
 *    mutex) and a named one; the parent sends SIGQUIT once they are parked (the child says
 *    so once loom_stats counts them and main waiting, and every other P idle).  The child
 *    exits with status 2 after "SIGQUIT: quit" and a dump in which each goroutine shows its
 *    state and wait reason with how long it waited, its name, symbolized frames naming the
 *    static function it parked in and the loom call, and "created by" its creator.
 *  - deadlock: the fatal deadlock report carries the same symbolized dump.
 */
#include "t.h"

#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* ================================================================ children */

static loom_chan *never;
static loom_mutex held = LOOM_MUTEX_INIT;
static volatile int returned; /* work after each call: no tail call hides the frame */

static __attribute__((noinline)) void parked_in_recv(void *arg)
{
    (void)arg;
    int v;
    loom_recv(never, &v);
    returned++;
}

static __attribute__((noinline)) void parked_in_sleep(void *arg)
{
    (void)arg;
    loom_sleep(3600LL * 1000000000LL);
    returned++;
}

static __attribute__((noinline)) void parked_in_lock(void *arg)
{
    (void)arg;
    loom_mutex_lock(&held);
    returned++;
}

static __attribute__((noinline)) void spawn_all(void)
{
    never = loom_chan_new(sizeof(int), 0);
    loom_mutex_lock(&held);
    loom_go(parked_in_recv, NULL);
    loom_go(parked_in_sleep, NULL);
    loom_go(parked_in_lock, NULL);
    loom_go_attr(parked_in_recv, NULL, &(loom_attr){ .name = "named-waiter" });
}

/* Are `parked` goroutines parked, none ready to run, and every P idle but those running
 * one (the caller's)?  A P goes idle only after its goroutine's switch out is done, so the
 * parked ones' frames are saved by then. */
static bool settled(uint64_t parked)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st.waiting >= parked && st.runnable == 0 && st.idle_procs + st.running >= st.procs;
}

/* Says "ready" once the four and main are parked. */
static void announcer(void *arg)
{
    (void)arg;
    T_WAIT_UNTIL(settled(5), 30, "the four goroutines and main to park");
    printf("ready\n");
    fflush(stdout);
}

static int child_quit(void *arg)
{
    (void)arg;
    spawn_all();
    loom_go(announcer, NULL);
    int v;
    loom_recv(never, &v); /* until SIGQUIT */
    return 1;
}

static int child_deadlock_now(void *arg)
{
    (void)arg;
    never = loom_chan_new(sizeof(int), 0);
    loom_go(parked_in_recv, NULL);
    loom_go_attr(parked_in_recv, NULL, &(loom_attr){ .name = "named-waiter" });
    int v;
    loom_recv(never, &v); /* nothing can ever run again */
    return 1;
}

/* ================================================================ parent */

static char out[1 << 16];

/* Runs this program in `mode`; returns the wait status, stderr in out.  With `quit`, waits
 * for "ready" on the child's stdout, then sends SIGQUIT.  The guard is 60 s without output
 * on stderr (not t_child_wait's deadline for the whole run). */
static int run_child(const char *self, const char *mode, bool quit)
{
    t_child c = t_child_start((const char *[]){ mode, NULL },
                              &(t_child_opts){ .path = self, .stdout_apart = true });
    if (quit) {
        char buf[16] = { 0 };
        ssize_t n = read(c.out_fd, buf, sizeof buf - 1);
        CHECK_MSG(n > 0 && strncmp(buf, "ready", 5) == 0, "child did not get ready");
        CHECK_OK(kill(c.pid, SIGQUIT));
    }
    size_t len = 0;
    for (;;) {
        struct pollfd pf = { c.fd, POLLIN, 0 };
        int r = poll(&pf, 1, 60000);
        CHECK_MSG(r > 0, "child %s: no output for 60 s", mode);
        ssize_t n = read(c.fd, out + len, sizeof out - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = 0;
    close(c.fd);
    close(c.out_fd);
    int st;
    CHECK_EQ(waitpid(c.pid, &st, 0), c.pid);
    return st;
}

static void check_has(const char *what)
{
    CHECK_MSG(strstr(out, what) != NULL, "dump lacks \"%s\":\n%s", what, out);
}

/* the goroutine block that contains `frame`, from its "goroutine" header line */
static const char *block_with(const char *frame)
{
    const char *f = strstr(out, frame);
    CHECK_MSG(f != NULL, "dump lacks \"%s\":\n%s", frame, out);
    const char *b = f;
    while (b > out && strncmp(b, "\ngoroutine ", 11) != 0)
        b--;
    return b;
}

static __attribute__((unused)) void check_dump(void)
{
    /* frames of static functions resolve (symbol table, not only exported names) */
    const char *recv = block_with("\tparked_in_recv+0x");
    CHECK_MSG(strncmp(strstr(recv, "["), "[waiting, chan receive, ", 24) == 0, "recv block:\n%s", recv);
    const char *sleep = block_with("\tparked_in_sleep+0x");
    CHECK_MSG(strstr(sleep, "[waiting, sleep, ") != NULL, "sleep block:\n%s", sleep);
    block_with("\tloom_sleep+0x");
    block_with("\tloom__park+0x");
    check_has("] named-waiter:\n");
    /* how long the waiters waited, in ms */
    check_has(" ms]");
    check_has("created by spawn_all+0x");
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (!strcmp(argv[1], "quit"))
            return loom_run(child_quit, NULL);
        if (!strcmp(argv[1], "deadlock_now"))
            return loom_run(child_deadlock_now, NULL);
        return 2;
    }
#if defined(LOOM_TSAN)
    /* ThreadSanitizer holds an asynchronous signal until the thread it hit calls an
     * intercepted function, which loom's futex waits are not */
    printf("quit: skipped under ThreadSanitizer\n");
#else
    int st = run_child(argv[0], "quit", true);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 2, "SIGQUIT: status %#x, stderr:\n%s", st, out);
    check_has("SIGQUIT: quit\n");
    check_dump();
    const char *lock = block_with("\tparked_in_lock+0x");
    CHECK_MSG(strstr(lock, "\tloom_mutex_lock+0x") != NULL, "lock block:\n%s", lock);
    check_has("goroutine 1 [waiting, chan receive, ");
    check_has("] main:\n");
#endif

    int st2 = run_child(argv[0], "deadlock_now", false);
    CHECK_MSG(WIFSIGNALED(st2) && WTERMSIG(st2) == SIGABRT, "deadlock: status %#x, stderr:\n%s", st2, out);
    check_has("loom: fatal: all goroutines are asleep - deadlock!\n");
    block_with("\tparked_in_recv+0x");
    check_has("] named-waiter:\n");
    check_has("created by child_deadlock_now+0x");
    printf("ok\n");
    return 0;
}
