/*
 * test_sigquit.c — who owns SIGQUIT, and the main goroutine's dump.
 *
 * Children (this program re-exec'd with a mode argument):
 *  - ignored: started with SIGQUIT ignored, as a background job of a shell script is.
 *    SIGQUIT must still print "SIGQUIT: quit" and the dump and exit with status 2, as Go
 *    does (it respects an inherited SIG_IGN only for SIGHUP and SIGINT); a goroutine
 *    started by child_main says "created by child_main+0x".  Goroutine 1's block names
 *    child_main and has no "created by" line, as Go prints none for the main goroutine.
 *    main starts the runtime with `return loom_run(child_main, NULL)`: optimized without
 *    sanitizers that is a tail call, which leaves libc's start code as loom_run's return
 *    address, a creator that named no function of the program.
 *  - own, own_siginfo: the program installed its own handler (sa_handler, SA_SIGINFO)
 *    before loom_run: that handler runs, loom prints nothing.
 * In each child a goroutine sits in a plain blocking sleep(); once every goroutine is in
 * place (loom_stats counts the receiver and main parked, every other P is idle, and the
 * sleeper's thread is asleep in the kernel) the child prints "ready TID" (that thread's
 * id) and the parent sends SIGQUIT to the process.  Under ThreadSanitizer it is sent to that thread instead: TSan holds an
 * asynchronous signal until the thread it hit calls an intercepted function, and the
 * thread a process-directed signal usually hits, loom_run's, waits on a futex, which is not
 * one; a thread inside sleep(), which TSan treats as blocking, gets the signal at once.
 *
 * In this process: loom_run installs its handler over SIG_DFL and SIG_IGN and leaves a
 * program's own handler in place; after loom_run returns the disposition is the one before.
 */
#include "t.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ================================================================ children */

static loom_chan *never;
static int blocker_tid;       /* atomic: the thread blocked in sleep() */
static volatile int returned; /* work after each call: no tail call hides the frame */

static __attribute__((noinline)) void parked_in_recv(void *arg)
{
    (void)arg;
    int v;
    loom_recv(never, &v);
    returned++;
}

static __attribute__((noinline)) void blocked_in_sleep(void *arg)
{
    (void)arg;
    __atomic_store_n(&blocker_tid, (int)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
    for (;;)
        returned += (int)sleep(3600); /* plain, not loom_sleep: the thread blocks */
}

/* The receiver and main parked, none ready to run, every P idle but those running a
 * goroutine (a P goes idle only after its goroutine's switch out is done, so the parked
 * ones' frames are saved), and the sleeper's thread asleep in sleep(). */
static bool in_place(void)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st.waiting >= 2 && st.runnable == 0 && st.idle_procs + st.running >= st.procs &&
           t_thread_asleep(__atomic_load_n(&blocker_tid, __ATOMIC_SEQ_CST));
}

/* Says "ready TID" once everything is in place. */
static void announcer(void *arg)
{
    (void)arg;
    T_WAIT_UNTIL(in_place(), 30, "the receiver and main to park and the sleeper to sleep");
    printf("ready %d\n", __atomic_load_n(&blocker_tid, __ATOMIC_SEQ_CST));
    fflush(stdout);
}

static __attribute__((noinline)) int child_main(void *arg)
{
    (void)arg;
    never = loom_chan_new(sizeof(int), 0);
    CHECK(never != NULL);
    /* loom_go_attr, not loom_go: loom_go's call to it is a tail call only when optimized
     * without sanitizers; otherwise the creator shown would be loom_go itself */
    CHECK(loom_go_attr(parked_in_recv, NULL, &(loom_attr){ .name = "receiver" }) != 0);
    CHECK(loom_go(blocked_in_sleep, NULL) != 0);
    while (!__atomic_load_n(&blocker_tid, __ATOMIC_SEQ_CST))
        loom_sleep(1000000);
    CHECK(loom_go(announcer, NULL) != 0);
    int v;
    loom_recv(never, &v); /* until SIGQUIT */
    returned++;
    return 1;
}

static void own_quit(int sig)
{
    (void)sig;
    static const char msg[] = "own handler\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

static void own_quit_info(int sig, siginfo_t *si, void *uctx)
{
    (void)si;
    (void)uctx;
    own_quit(sig);
}

static void set_quit(void (*handler)(int), void (*action)(int, siginfo_t *, void *))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    if (action) {
        sa.sa_sigaction = action;
        sa.sa_flags = SA_SIGINFO;
    } else {
        sa.sa_handler = handler;
    }
    CHECK_OK(sigaction(SIGQUIT, &sa, NULL));
}

/* ================================================================ parent */

static char *out; /* the last child's stderr */

static void ignore_quit(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGQUIT, &sa, NULL); /* kept across exec, as a shell's background job */
}

/* Runs this program in `mode`, with SIGQUIT ignored if `ignore`; once it is ready sends
 * SIGQUIT and returns the wait status, stderr in out.  A child still alive 20 s after the
 * signal is killed and the test fails. */
static int run_child(const char *self, const char *mode, bool ignore)
{
    t_child c = t_child_start((const char *[]){ mode, NULL },
                              &(t_child_opts){ .path = self,
                                               .stdout_apart = true,
                                               .before_exec = ignore ? ignore_quit : NULL });

    char line[64] = { 0 };
    size_t got = 0;
    while (got < sizeof line - 1 && !strchr(line, '\n')) {
        struct pollfd pf = { c.out_fd, POLLIN, 0 };
        CHECK_MSG(poll(&pf, 1, 60000) > 0, "child %s: not ready after 60 s", mode);
        ssize_t n = read(c.out_fd, line + got, sizeof line - 1 - got);
        CHECK_MSG(n > 0, "child %s: ended before it was ready", mode);
        got += (size_t)n;
    }
    int tid = 0;
    CHECK_MSG(sscanf(line, "ready %d", &tid) == 1 && tid > 0, "child %s said \"%s\"", mode, line);
#if defined(LOOM_TSAN)
    CHECK_OK(syscall(SYS_tgkill, c.pid, tid, SIGQUIT));
#else
    CHECK_OK(kill(c.pid, SIGQUIT));
#endif

    t_child_wait(&c, 20);
    free(out);
    out = c.out;
    if (c.late)
        FAIL("child %s: still running 20 s after SIGQUIT; stderr:\n%s", mode, out);
    return c.status;
}

static void check_has(const char *what)
{
    CHECK_MSG(strstr(out, what) != NULL, "stderr lacks \"%s\":\n%s", what, out);
}

/* goroutine `id`'s block of the dump, copied into blk */
static void goroutine_block(int id, char *blk, size_t cap)
{
    char head[32];
    snprintf(head, sizeof head, "\ngoroutine %d [", id);
    const char *b = strstr(out, head);
    CHECK_MSG(b != NULL, "dump lacks goroutine %d:\n%s", id, out);
    const char *e = strstr(b + 1, "\ngoroutine ");
    size_t n = e ? (size_t)(e - b) : strlen(b);
    if (n >= cap)
        n = cap - 1;
    memcpy(blk, b, n);
    blk[n] = 0;
}

static void check_ignored(const char *self)
{
    int st = run_child(self, "ignored", true);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 2, "SIGQUIT: status %#x, stderr:\n%s", st, out);
    check_has("SIGQUIT: quit\n");
    check_has("] receiver:\n");
    check_has("\tparked_in_recv+0x");
    check_has("created by child_main+0x");
    char blk[4096];
    goroutine_block(1, blk, sizeof blk);
    CHECK_MSG(strstr(blk, "] main:\n") != NULL, "goroutine 1 is not main:\n%s", blk);
    CHECK_MSG(strstr(blk, "\tchild_main+0x") != NULL, "goroutine 1 has no child_main frame:\n%s", blk);
    CHECK_MSG(strstr(blk, "created by") == NULL, "goroutine 1 has a creator line:\n%s", blk);
}

static void check_own(const char *self, const char *mode)
{
    int st = run_child(self, mode, false);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 3, "%s: status %#x, stderr:\n%s", mode, st, out);
    check_has("own handler\n");
    CHECK_MSG(strstr(out, "SIGQUIT: quit") == NULL, "%s: loom's handler ran:\n%s", mode, out);
}

/* ---------------------------------------------------------------- in this process */

static struct sigaction during;

static int peek_quit(void *arg)
{
    (void)arg;
    CHECK_OK(sigaction(SIGQUIT, NULL, &during));
    return 0;
}

static bool is_loom_handler(const struct sigaction *sa)
{
    return !(sa->sa_flags & SA_SIGINFO) && sa->sa_handler != SIG_DFL && sa->sa_handler != SIG_IGN &&
           sa->sa_handler != own_quit;
}

/* loom_run with SIGQUIT set as given; checks what it was meanwhile and that it is back */
static void check_disposition(const char *what, void (*handler)(int),
                              void (*action)(int, siginfo_t *, void *))
{
    set_quit(handler, action);
    CHECK_OK(loom_run(peek_quit, NULL));
    struct sigaction after;
    CHECK_OK(sigaction(SIGQUIT, NULL, &after));
    if (action) {
        CHECK_MSG((during.sa_flags & SA_SIGINFO) && during.sa_sigaction == action,
                  "%s: loom_run replaced the program's handler", what);
        CHECK_MSG((after.sa_flags & SA_SIGINFO) && after.sa_sigaction == action,
                  "%s: not restored after loom_run", what);
    } else if (handler == own_quit) {
        CHECK_MSG(!(during.sa_flags & SA_SIGINFO) && during.sa_handler == own_quit,
                  "%s: loom_run replaced the program's handler", what);
        CHECK_MSG(!(after.sa_flags & SA_SIGINFO) && after.sa_handler == own_quit,
                  "%s: not restored after loom_run", what);
    } else {
        CHECK_MSG(is_loom_handler(&during), "%s: loom_run installed no SIGQUIT handler", what);
        CHECK_MSG(!(after.sa_flags & SA_SIGINFO) && after.sa_handler == handler,
                  "%s: not restored after loom_run", what);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (!strcmp(argv[1], "own"))
            set_quit(own_quit, NULL);
        else if (!strcmp(argv[1], "own_siginfo"))
            set_quit(NULL, own_quit_info);
        else if (strcmp(argv[1], "ignored"))
            return 2;
        return loom_run(child_main, NULL); /* a tail call where optimized: see the top */
    }
    check_ignored(argv[0]);
    check_own(argv[0], "own");
    check_own(argv[0], "own_siginfo");

    check_disposition("SIG_IGN", SIG_IGN, NULL);
    check_disposition("SIG_DFL", SIG_DFL, NULL);
    check_disposition("own handler", own_quit, NULL);
    check_disposition("own SA_SIGINFO handler", NULL, own_quit_info);
    printf("ok\n");
    return 0;
}
