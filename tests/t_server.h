/*
 * t_server.h — start and stop one of the example servers (examples/echo.c, examples/httpd.c)
 * from a test program, outside loom_run.
 *
 * The server runs as a child process on port 0 (a free port); its "NAME: listening on
 * 127.0.0.1:PORT" line on stdout tells the test the port.  It dies with the test (a
 * parent-death signal), so a test killed by ctest's timeout leaves no server behind; a
 * watchdog (t_server_watchdog) asks the server for a goroutine dump (SIGQUIT) and fails
 * loudly before that timeout.  t_server_stop sends SIGTERM and requires a clean exit:
 * status 0, no crash, no sanitizer report.
 */
#ifndef LOOM_TEST_T_SERVER_H
#define LOOM_TEST_T_SERVER_H

#include "t.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct t_server {
    const char *name; /* "echo", "httpd": the prefix of its listening line */
    pid_t pid;
    int port;
    int out_fd; /* the read end of its stdout (kept open: it may print more) */
} t_server;

static pid_t t_server_watched; /* the server the watchdog kills */

/* The example's path: argv[1] if given, else the one CMake compiled in (LOOM_EXAMPLE_BIN). */
static inline const char *t_server_path(int argc, char **argv)
{
    if (argc > 1)
        return argv[1];
#ifdef LOOM_EXAMPLE_BIN
    return LOOM_EXAMPLE_BIN;
#else
    return NULL;
#endif
}

/* Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the new soft limit. */
static inline long t_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? 1L << 30 : (long)rl.rlim_cur;
}

static inline void t_server_start(t_server *s, const char *path, const char *name)
{
    int p[2];
    CHECK_MSG(pipe2(p, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    CHECK_MSG(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the test died: so do we */
        if (getppid() != parent)
            _exit(127);
        dup2(p[1], STDOUT_FILENO); /* dup2 clears close-on-exec on the copy */
        execl(path, path, "0", (char *)NULL);
        fprintf(stderr, "t_server: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(p[1]);
    s->name = name;
    s->pid = pid;
    s->out_fd = p[0];
    t_server_watched = pid;

    /* its first line says where it listens */
    char line[256];
    size_t len = 0;
    int64_t deadline = t_clock_ns() + 60LL * 1000000000;
    while (!memchr(line, '\n', len)) {
        int64_t left_ms = (deadline - t_clock_ns()) / 1000000;
        if (left_ms <= 0) {
            kill(pid, SIGKILL);
            FAIL("%s (%s) printed no listening line within 60 s", name, path);
        }
        struct pollfd pfd = { .fd = p[0], .events = POLLIN };
        if (poll(&pfd, 1, (int)left_ms) <= 0)
            continue;
        ssize_t k = read(p[0], line + len, sizeof line - 1 - len);
        if (k <= 0) {
            int st = 0;
            waitpid(pid, &st, 0);
            FAIL("%s (%s) exited before listening (wait status 0x%x)", name, path, st);
        }
        len += (size_t)k;
        CHECK_MSG(len < sizeof line - 1, "%s: first line too long", name);
    }
    line[len] = 0;
    char want[64];
    snprintf(want, sizeof want, "%s: listening on 127.0.0.1:", name);
    CHECK_MSG(strncmp(line, want, strlen(want)) == 0, "%s printed \"%s\", expected \"%sPORT\"", name, line,
              want);
    s->port = atoi(line + strlen(want));
    CHECK_MSG(s->port > 0 && s->port < 65536, "%s printed a bad port: %s", name, line);
}

/* SIGTERM; the server must exit with status 0 within 60 s (it closes its listener and
 * returns from loom_run), not crash or hang. */
static inline void t_server_stop(t_server *s)
{
    CHECK_OK(kill(s->pid, SIGTERM));
    int st = 0;
    pid_t r = 0;
    for (int i = 0; i < 6000 && (r = waitpid(s->pid, &st, WNOHANG)) == 0; i++)
        usleep(10 * 1000);
    if (r == 0) {
        kill(s->pid, SIGQUIT); /* a goroutine dump on its stderr */
        sleep(2);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &st, 0);
        FAIL("%s did not exit within 60 s of SIGTERM", s->name);
    }
    CHECK_MSG(r == s->pid, "waitpid: %s", strerror(errno));
    t_server_watched = 0;
    close(s->out_fd);
    if (WIFSIGNALED(st))
        FAIL("%s was killed by signal %d (%s), not a clean exit on SIGTERM", s->name, WTERMSIG(st),
             strsignal(WTERMSIG(st)));
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s exited with status %d after SIGTERM", s->name,
              WEXITSTATUS(st));
}

static void t_server_on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: watchdog: the test did not finish in time; "
                              "the server's goroutine dump (SIGQUIT) follows, if any\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) { /* nothing better to do */
    }
    if (t_server_watched > 0) {
        kill(t_server_watched, SIGQUIT);
        struct timespec ts = { 2, 0 };
        nanosleep(&ts, NULL);
        kill(t_server_watched, SIGKILL);
    }
    abort();
}

/* Fail (and take the server down) if the test runs longer than `seconds`. */
static inline void t_server_watchdog(unsigned seconds)
{
    signal(SIGALRM, t_server_on_alarm);
    alarm(seconds);
}

#endif /* LOOM_TEST_T_SERVER_H */
