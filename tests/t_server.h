/*
 * t_server.h — start and stop one of the example servers (examples/echo.c, examples/httpd.c)
 * from a test program, outside loom_run.
 *
 * The server runs as a child process on port 0 (a free port); its "NAME: listening on
 * 127.0.0.1:PORT" line on stdout tells the test the port.  It dies with the test (a
 * parent-death signal), so a test killed by ctest's timeout leaves no server behind; a
 * watchdog (t_server_watchdog) asks the server for a goroutine dump (SIGQUIT) and fails
 * loudly before that timeout.  t_server_stop sends SIGTERM and requires a clean exit:
 * status 0, no crash, no sanitizer report; a test that sends the signal itself waits with
 * t_server_wait, and reads what the server printed then with t_server_output.
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
    int out_fd;  /* the read end of its stdout (kept open: it may print more) */
    bool exited; /* reaped (t_server_exited); status: its wait status */
    int status;
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
    s->exited = false;
    s->status = 0;
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

/* Has the server exited?  Reaps it if so (s->status); never waits. */
static inline bool t_server_exited(t_server *s)
{
    if (!s->exited) {
        pid_t r = waitpid(s->pid, &s->status, WNOHANG);
        CHECK_MSG(r == 0 || r == s->pid, "waitpid: %s", strerror(errno));
        s->exited = r == s->pid;
    }
    return s->exited;
}

/* After a SIGTERM (or SIGINT) the caller sent: the server must exit with status 0 within
 * `seconds` (a hang guard: it gets SIGQUIT, for a goroutine dump, then the test fails), not
 * crash.  From a goroutine it parks between looks (t_wait_pause). */
static inline void t_server_wait(t_server *s, int seconds)
{
    int64_t deadline = t_clock_ns() + (int64_t)seconds * 1000000000;
    while (!t_server_exited(s)) {
        if (t_clock_ns() > deadline) {
            kill(s->pid, SIGQUIT); /* a goroutine dump on its stderr */
            sleep(2);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &s->status, 0);
            FAIL("%s did not exit within %d s of SIGTERM", s->name, seconds);
        }
        t_wait_pause();
    }
    t_server_watched = 0;
    int st = s->status;
    if (WIFSIGNALED(st))
        FAIL("%s was killed by signal %d (%s), not a clean exit on SIGTERM", s->name, WTERMSIG(st),
             strsignal(WTERMSIG(st)));
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s exited with status %d after SIGTERM", s->name,
              WEXITSTATUS(st));
}

/* What the server printed on stdout after its listening line, once it has exited
 * (t_server_wait): up to cap - 1 bytes, NUL-terminated.  Closes its pipe. */
static inline void t_server_output(t_server *s, char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t k;
    while (len < cap - 1 && (k = read(s->out_fd, buf + len, cap - 1 - len)) != 0) {
        if (k < 0 && errno == EINTR)
            continue;
        CHECK_MSG(k > 0, "reading %s's stdout: %s", s->name, strerror(errno));
        len += (size_t)k;
    }
    buf[len] = 0;
    close(s->out_fd);
    s->out_fd = -1;
}

/* After the server's exit (t_server_wait): the connections it says it cut, from the line
 * "NAME: stopped: N connections, M cut" that the example servers print at a shutdown. */
static inline long t_server_cut_count(t_server *s, const char *name)
{
    char out[1024], head[64];
    long conns = -1, cut = -1;
    t_server_output(s, out, sizeof out);
    snprintf(head, sizeof head, "%s: stopped: ", name);
    const char *l = strstr(out, head);
    CHECK_MSG(l && sscanf(l + strlen(head), "%ld connections, %ld cut", &conns, &cut) == 2,
              "no \"%sN connections, M cut\" line in what the server printed: \"%s\"", head, out);
    return cut;
}

/* SIGTERM; the server must exit with status 0 within 60 s (t_server_wait). */
static inline void t_server_stop(t_server *s)
{
    CHECK_OK(kill(s->pid, SIGTERM));
    t_server_wait(s, 60);
    close(s->out_fd);
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
