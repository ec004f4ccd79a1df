/*
 * test_hook_pq.c — libpq's blocking API on goroutines through libloom_hook, against a
 * PostgreSQL server this test makes (initdb in a temporary directory) and starts on a free
 * loopback port, as an unprivileged user when it runs as root (the user "postgres" if
 * there is one, else "nobody"), then stops:
 *  - 200 goroutines at LOOM_PROCS=2, each with its own connection (PQconnectdb), 20 rounds
 *    of PQexecParams ("SELECT $1::int + 1") with every result checked, and a pg_sleep
 *    each; libpq waits in poll(), which parks: the process stays within the thread bound
 *    and no spare P is lent.
 * Exits 77 (skipped), saying why, without libpq at build time or where the server cannot
 * be made or started (no initdb, no user to run it as).
 */
#include "t_hook.h"

#ifndef LOOM_HAVE_PQ
int main(void)
{
    printf("test_hook_pq: skipped: built without libpq (libpq-dev; .ci/run installs it)\n");
    return 77;
}
#else
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>

static int port;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;
static int failures;
static char conninfo[256];

static void bad(const char *what, PGconn *c)
{
    fprintf(stderr, "test_hook_pq: %s: %s\n", what, c ? PQerrorMessage(c) : "no connection");
    __atomic_fetch_add(&failures, 1, __ATOMIC_SEQ_CST);
}

enum { ROUNDS = 20 };

static void client(void *arg)
{
    int id = (int)(intptr_t)arg;
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        bad("connect", c);
        PQfinish(c);
        loom_wg_done(&wg);
        return;
    }
    for (int r = 0; r < ROUNDS; r++) {
        char v[32];
        snprintf(v, sizeof v, "%d", id * 1000 + r);
        const char *params[1] = { v };
        PGresult *res = PQexecParams(c, "SELECT $1::int + 1", 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || atoi(PQgetvalue(res, 0, 0)) != id * 1000 + r + 1)
            bad("select", c);
        PQclear(res);
    }
    PGresult *res = PQexec(c, "SELECT pg_sleep(0.05)");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        bad("pg_sleep", c);
    PQclear(res);
    PQfinish(c);
    loom_wg_done(&wg);
}

static int main_fn(void *arg)
{
    (void)arg;
    int n = (int)t_scale(200);
    struct t_watch w;
    int64_t took = t_hook_clients(n, client, &wg, &w, "libpq clients");
    CHECK_EQ(t_get(&failures), 0);
    printf("test_hook_pq: %d clients x %d queries in %.0f ms, at most %d threads\n", n, ROUNDS + 1,
           took / 1e6, w.max_threads);
    return 0;
}

/* ---- the server */

static uid_t run_uid = (uid_t)-1;
static gid_t run_gid;

/* Forks argv as the unprivileged user, output appended to log. */
static pid_t spawn_as(const char *const argv[], const char *log)
{
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (run_uid != (uid_t)-1 && (setgroups(0, NULL) != 0 || setgid(run_gid) != 0 || setuid(run_uid) != 0))
            _exit(126);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* (after setuid, which clears it) */
        if (getppid() != parent)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static bool find_bin(const char *name, char *out, size_t len)
{
    const char *env = getenv("LOOM_PG_BINDIR");
    if (env) {
        snprintf(out, len, "%s/%s", env, name);
        return access(out, X_OK) == 0;
    }
    char pat[128];
    snprintf(pat, sizeof pat, "/usr/lib/postgresql/*/bin/%s", name);
    glob_t g;
    bool ok = glob(pat, 0, NULL, &g) == 0 && g.gl_pathc > 0;
    if (ok)
        snprintf(out, len, "%s", g.gl_pathv[g.gl_pathc - 1]); /* the newest */
    globfree(&g);
    return ok;
}

static int skip(const char *why)
{
    printf("test_hook_pq: skipped: %s\n", why);
    return 77;
}

int main(void)
{
    t_hook_require("test_hook_pq");
    t_hook_watchdog(240);
    char initdb[256], postgres[256];
    if (!find_bin("initdb", initdb, sizeof initdb) || !find_bin("postgres", postgres, sizeof postgres))
        return skip("no initdb/postgres under /usr/lib/postgresql/*/bin (postgresql; .ci/run installs it) "
                    "nor in LOOM_PG_BINDIR");
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw)
            pw = getpwnam("nobody");
        if (!pw)
            return skip("running as root and no user 'postgres' or 'nobody' to run the server as");
        run_uid = pw->pw_uid;
        run_gid = pw->pw_gid;
    }
    char dir[] = "/tmp/loom-pq-XXXXXX", data[96], log[96];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/server.log", dir);
    if (run_uid != (uid_t)-1 && chown(dir, run_uid, run_gid) != 0)
        return skip("cannot chown the temporary directory");
    const char *init[] = { initdb, "-D", data, "-A", "trust", "-U", "loom", "-E", "UTF8", "--no-sync", NULL };
    pid_t pid = spawn_as(init, log);
    int st = 0;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        t_show_log(log);
        return skip("initdb failed (see above)");
    }
    port = t_free_port();
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    const char *start[] = { postgres,
                            "-D",
                            data,
                            "-p",
                            ports,
                            "-k",
                            dir,
                            "-c",
                            "listen_addresses=127.0.0.1",
                            "-c",
                            "max_connections=260",
                            "-c",
                            "fsync=off",
                            "-c",
                            "shared_buffers=32MB",
                            NULL };
    pid = spawn_as(start, log);
    if (!t_wait_port(port, pid, 60)) {
        t_show_log(log);
        t_stop(pid, 10);
        return skip("the PostgreSQL server did not start (see above)");
    }
    /* gssencmode=disable: libpq's default (prefer) sets up a Kerberos context on every
     * connect, milliseconds of CPU inside libkrb5 (parsing krb5.conf under its process-wide
     * mutex), where the preemption signal switches goroutines out as in the program's own
     * code.  That is safe (a preempted goroutine's thread runs nothing else until it
     * resumes), but each goroutine switched out waits on its own thread: the thread bound
     * checked here is for blocking calls, and nothing here uses Kerberos. */
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d user=loom dbname=postgres connect_timeout=60 gssencmode=disable", port);
    for (int i = 0; PQping(conninfo) != PQPING_OK; i++) { /* listening is not yet accepting */
        if (i == 600 || waitpid(pid, NULL, WNOHANG) == pid) {
            t_show_log(log);
            t_stop(pid, 10);
            return skip("the PostgreSQL server did not start (see above)");
        }
        usleep(100000);
    }
    t_prepare_fds(4096);
    t_hook_run(2, main_fn, NULL);
    t_stop(pid, 30);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
    printf("test_hook_pq: ok\n");
    return 0;
}
#endif
