/*
 * test_hook_redis.c — hiredis's blocking API on goroutines through libloom_hook, against a
 * redis-server this test starts on a free loopback port and stops:
 *  - 300 goroutines at LOOM_PROCS=2, each with its own connection (redisConnect: a
 *    blocking connect), 50 rounds of SET, GET and INCR, every reply checked, and the
 *    shared counter right at the end; the process stays within the thread bound and no
 *    spare P is lent: hiredis's blocking reads park;
 *  - a server-side wait (BLPOP with a timeout) parks its goroutine while others go on;
 *  - hiredis's own timeout (redisSetTimeout: SO_RCVTIMEO) ends a longer BLPOP with
 *    REDIS_ERR_TIMEOUT or an I/O error saying EAGAIN, as it would on a thread.
 * Exits 77 (skipped) without hiredis at build time or redis-server at run time.
 */
#include "t_hook.h"

#ifndef LOOM_HAVE_HIREDIS
int main(void)
{
    printf("test_hook_redis: skipped: built without hiredis (libhiredis-dev; .ci/run installs it)\n");
    return 77;
}
#else
#include <hiredis/hiredis.h>

static int port;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;
static int failures;

static void fail(const char *what, redisContext *c)
{
    fprintf(stderr, "test_hook_redis: %s: %s\n", what, c && c->err ? c->errstr : "bad reply");
    __atomic_fetch_add(&failures, 1, __ATOMIC_SEQ_CST);
}

enum { ROUNDS = 50 };

static void client(void *arg)
{
    int id = (int)(intptr_t)arg;
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        fail("connect", c);
        if (c)
            redisFree(c);
        loom_wg_done(&wg);
        return;
    }
    char key[32], val[64];
    snprintf(key, sizeof key, "k:%d", id);
    for (int r = 0; r < ROUNDS; r++) {
        snprintf(val, sizeof val, "v-%d-%d", id, r);
        redisReply *rep = redisCommand(c, "SET %s %s", key, val);
        if (!rep || rep->type != REDIS_REPLY_STATUS || strcmp(rep->str, "OK") != 0)
            fail("SET", c);
        if (rep)
            freeReplyObject(rep);
        rep = redisCommand(c, "GET %s", key);
        if (!rep || rep->type != REDIS_REPLY_STRING || strcmp(rep->str, val) != 0)
            fail("GET", c);
        if (rep)
            freeReplyObject(rep);
        rep = redisCommand(c, "INCR counter");
        if (!rep || rep->type != REDIS_REPLY_INTEGER)
            fail("INCR", c);
        if (rep)
            freeReplyObject(rep);
    }
    redisFree(c);
    loom_wg_done(&wg);
}

struct blpop {
    int64_t took;
    int ok;
};

static void blpop_waiter(void *arg)
{
    struct blpop *b = arg;
    redisContext *c = redisConnect("127.0.0.1", port);
    int64_t t0 = loom_now();
    redisReply *rep = c && !c->err ? redisCommand(c, "BLPOP nothing-here 0.3") : NULL;
    b->took = loom_now() - t0;
    b->ok = rep && rep->type == REDIS_REPLY_NIL;
    if (!b->ok)
        fail("BLPOP", c);
    if (rep)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
    loom_wg_done(&wg);
}

static void test_timeout(void)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    CHECK(c && !c->err);
    struct timeval tv = { 0, 100000 };
    CHECK_EQ(redisSetTimeout(c, tv), REDIS_OK);
    int64_t t0 = loom_now();
    redisReply *rep = redisCommand(c, "BLPOP nothing-here 2");
    int64_t took = loom_now() - t0;
    CHECK(rep == NULL);
#ifdef REDIS_ERR_TIMEOUT /* (hiredis 1.0 and later) */
    bool timed_out = c->err == REDIS_ERR_TIMEOUT;
#else
    bool timed_out = false;
#endif
    timed_out = timed_out || (c->err == REDIS_ERR_IO && strstr(c->errstr, "temporarily"));
    CHECK_MSG(timed_out, "err %d: %s", c->err, c->errstr);
    CHECK_GE(took, 100 * MS);
    CHECK_LT(took, 1500 * MS);
    redisFree(c);
}

static int main_fn(void *arg)
{
    (void)arg;
    int n = (int)t_scale(300);
    struct t_watch w;
    t_watch_start(&w);
    redisContext *c = redisConnect("127.0.0.1", port);
    CHECK(c && !c->err);
    freeReplyObject(redisCommand(c, "DEL counter"));
    struct blpop b = { 0, 0 };
    loom_wg_add(&wg, n + 1);
    loom_go(blpop_waiter, &b);
    int64_t t0 = loom_now();
    for (int i = 0; i < n; i++)
        loom_go(client, (void *)(intptr_t)i);
    loom_wg_wait(&wg);
    int64_t took = loom_now() - t0;
    t_watch_check(&w, "hiredis clients");
    CHECK_EQ(t_get(&failures), 0);
    redisReply *rep = redisCommand(c, "GET counter");
    CHECK(rep && rep->type == REDIS_REPLY_STRING);
    CHECK_EQ(atol(rep->str), (long)n * ROUNDS);
    freeReplyObject(rep);
    redisFree(c);
    CHECK(b.ok);
    CHECK_GE(b.took, 300 * MS);
    test_timeout();
    printf("test_hook_redis: %d clients x %d rounds of SET/GET/INCR in %.0f ms, at most %d threads\n", n,
           ROUNDS, took / 1e6, w.max_threads);
    return 0;
}

int main(void)
{
    t_hook_require("test_hook_redis");
    t_hook_watchdog(240);
    char dir[] = "/tmp/loom-redis-XXXXXX", log[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(log, sizeof log, "%s/redis.log", dir);
    port = t_free_port();
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    const char *argv[] = { "redis-server", "--port", ports,   "--bind", "127.0.0.1",    "--save", "",
                           "--appendonly", "no",     "--dir", dir,      "--maxclients", "1000",   NULL };
    pid_t pid = t_spawn(argv, log);
    if (!t_wait_port(port, pid, 30)) {
        int st = 0;
        bool gone = waitpid(pid, &st, WNOHANG) == pid;
        t_show_log(log);
        t_stop(pid, 5);
        if (gone && WIFEXITED(st) && WEXITSTATUS(st) == 127) {
            printf("test_hook_redis: skipped: no redis-server (redis-server; .ci/run installs it)\n");
            return 77;
        }
        FAIL("redis-server did not start on port %d", port);
    }
    t_prepare_fds(4096);
    t_hook_run(2, main_fn, NULL);
    t_stop(pid, 10);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
    printf("test_hook_redis: ok\n");
    return 0;
}
#endif
