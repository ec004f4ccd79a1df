/*
 * hook_redis.c — hiredis's blocking API on goroutines (through libloom_hook) beside the same
 * work on pthreads and on hiredis's async API with libevent, against one redis-server that
 * this program starts on a free loopback port (BENCH_REDIS_PORT: use one already running).
 *
 *   bench_hook_redis [--clients=500] [--rounds=200] [--smoke]
 *
 * Each of `clients` connections does `rounds` rounds of SET k v then GET k (the reply
 * checked):
 *   goroutines  one goroutine per connection at LOOM_PROCS=2 (or the env's), redisCommand
 *   threads     one pthread per connection, redisCommand
 *   async       one thread, redisAsyncCommand chained from the replies, libevent's loop
 * and prints RESULT lines with each one's commands per second, the ratios of the first
 * to the other two (the bars: >= 1.0 against threads, >= 0.8 against async), and the most
 * threads the process had during the goroutines' run (Threads: in /proc/self/status, read
 * every millisecond by a goroutine beside the clients; the bar: <= LOOM_PROCS + 4).
 */
#define _GNU_SOURCE
#include "bench.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdbool.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <loom.h>
#include <loom_hook.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

static int port, nclients, nrounds;

/* One client's rounds on a blocking context; 0 or -1. */
static int blocking_rounds(int id)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err)
        return -1;
    char key[32], val[32];
    snprintf(key, sizeof key, "b:%d", id);
    int bad = 0;
    for (int r = 0; r < nrounds && !bad; r++) {
        snprintf(val, sizeof val, "%d", r);
        redisReply *rep = redisCommand(c, "SET %s %s", key, val);
        bad |= !rep || rep->type != REDIS_REPLY_STATUS;
        if (rep)
            freeReplyObject(rep);
        rep = redisCommand(c, "GET %s", key);
        bad |= !rep || rep->type != REDIS_REPLY_STRING || strcmp(rep->str, val) != 0;
        if (rep)
            freeReplyObject(rep);
    }
    redisFree(c);
    return bad ? -1 : 0;
}

/* ---- goroutines */
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;
static int failures;

/* The process's threads now (Threads: in /proc/self/status), or -1. */
static int thread_count(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    const char *t = strstr(buf, "\nThreads:");
    return t ? atoi(t + strlen("\nThreads:")) : -1;
}

static loom_waitgroup sampler_wg = LOOM_WAITGROUP_INIT;
static bool sampling;
static int max_threads; /* written by the sampler only; read after sampler_wg */

/* samples at least once, so a run shorter than a millisecond has its figure too */
static void g_sampler(void *arg)
{
    (void)arg;
    do {
        int n = thread_count();
        if (n > max_threads)
            max_threads = n;
        loom_sleep(1000000);
    } while (__atomic_load_n(&sampling, __ATOMIC_ACQUIRE));
    loom_wg_done(&sampler_wg);
}

static void g_client(void *arg)
{
    if (blocking_rounds((int)(intptr_t)arg) != 0)
        __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
    loom_wg_done(&wg);
}

static int g_main(void *arg)
{
    int64_t *took = arg;
    __atomic_store_n(&sampling, true, __ATOMIC_RELEASE);
    loom_wg_add(&sampler_wg, 1);
    loom_go(g_sampler, NULL);
    loom_wg_add(&wg, nclients);
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < nclients; i++)
        loom_go(g_client, (void *)(intptr_t)i);
    loom_wg_wait(&wg);
    *took = bench_now_ns() - t0;
    __atomic_store_n(&sampling, false, __ATOMIC_RELEASE);
    loom_wg_wait(&sampler_wg);
    return 0;
}

/* ---- threads */
static void *t_client(void *arg)
{
    if (blocking_rounds((int)(intptr_t)arg) != 0)
        __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* ---- async */
struct actx {
    redisAsyncContext *ac;
    int id, round;
    char key[32], val[32];
};
static int async_left;
static struct event_base *base;

static void on_reply(redisAsyncContext *ac, void *r, void *priv);
static void on_set(redisAsyncContext *ac, void *r, void *priv);

static void async_next(struct actx *a)
{
    if (a->round == nrounds) {
        redisAsyncDisconnect(a->ac);
        if (--async_left == 0)
            event_base_loopbreak(base);
        return;
    }
    snprintf(a->val, sizeof a->val, "%d", a->round);
    redisAsyncCommand(a->ac, on_set, a, "SET %s %s", a->key, a->val);
}

/* the GET goes after the SET's reply, as on a blocking connection: two round trips */
static void on_set(redisAsyncContext *ac, void *r, void *priv)
{
    struct actx *a = priv;
    redisReply *rep = r;
    if (!rep || rep->type != REDIS_REPLY_STATUS)
        failures++;
    redisAsyncCommand(ac, on_reply, a, "GET %s", a->key);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct actx *a = priv;
    redisReply *rep = r;
    if (!rep || rep->type != REDIS_REPLY_STRING || strcmp(rep->str, a->val) != 0)
        failures++;
    a->round++;
    async_next(a);
}

static int64_t run_async(void)
{
    base = event_base_new();
    struct actx *as = calloc((size_t)nclients, sizeof *as);
    async_left = nclients;
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < nclients; i++) {
        as[i].ac = redisAsyncConnect("127.0.0.1", port);
        if (!as[i].ac || as[i].ac->err)
            bench_fail("async connect");
        as[i].id = i;
        snprintf(as[i].key, sizeof as[i].key, "a:%d", i);
        redisLibeventAttach(as[i].ac, base);
        async_next(&as[i]);
    }
    event_base_dispatch(base);
    int64_t took = bench_now_ns() - t0;
    event_base_free(base);
    free(as);
    return took;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        bench_fail("no free port");
    close(fd);
    return ntohs(a.sin_port);
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "hook_redis");
    nclients = (int)bench_param("clients", 500, 10);
    nrounds = (int)bench_param("rounds", 200, 10);
    if (!getenv("LOOM_PROCS"))
        setenv("LOOM_PROCS", "2", 1);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    pid_t server = 0;
    const char *given = getenv("BENCH_REDIS_PORT");
    if (given) {
        port = atoi(given);
    } else {
        port = free_port();
        char ps[16], maxc[16];
        snprintf(ps, sizeof ps, "%d", port);
        snprintf(maxc, sizeof maxc, "%d", nclients + 100);
        server = fork();
        if (server == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            execlp("redis-server", "redis-server", "--port", ps, "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--maxclients", maxc, (char *)NULL);
            _exit(127);
        }
        for (int i = 0;; i++) { /* until it answers */
            redisContext *c = redisConnect("127.0.0.1", port);
            bool up = c && !c->err;
            if (c)
                redisFree(c);
            if (up)
                break;
            if (i == 300 || waitpid(server, NULL, WNOHANG) == server)
                bench_fail("redis-server did not start");
            usleep(20000);
        }
    }
    double cmds = 2.0 * nclients * nrounds;
    int64_t g_ns = 0;
    if (loom_run(g_main, &g_ns) != 0 || failures)
        bench_fail("goroutines: %d clients failed", failures);
    if (!loom_hook_active())
        bench_fail("libloom_hook is off (LOOM_HOOK=0)");
    if (max_threads <= 0)
        bench_fail("no thread count in /proc/self/status");
    pthread_t *ts = calloc((size_t)nclients, sizeof *ts);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < nclients; i++)
        if (pthread_create(&ts[i], &attr, t_client, (void *)(intptr_t)i) != 0)
            bench_fail("pthread_create");
    for (int i = 0; i < nclients; i++)
        pthread_join(ts[i], NULL);
    int64_t t_ns = bench_now_ns() - t0;
    free(ts);
    if (failures)
        bench_fail("threads: %d clients failed", failures);
    int64_t a_ns = run_async();
    if (failures)
        bench_fail("async: %d replies wrong", failures);
    double g = cmds / (g_ns / 1e9), t = cmds / (t_ns / 1e9), a = cmds / (a_ns / 1e9);
    int procs = atoi(getenv("LOOM_PROCS"));
    printf("RESULT name=hook_redis metric=goroutines value=%.0f unit=cmd/s procs=%d\n", g, procs);
    printf("RESULT name=hook_redis metric=threads value=%.0f unit=cmd/s procs=%d\n", t, procs);
    printf("RESULT name=hook_redis metric=async_libevent value=%.0f unit=cmd/s procs=%d\n", a, procs);
    printf("RESULT name=hook_redis metric=goroutines_vs_threads value=%.2f unit=x procs=%d\n", g / t, procs);
    printf("RESULT name=hook_redis metric=goroutines_vs_async value=%.2f unit=x procs=%d\n", g / a, procs);
    printf("RESULT name=hook_redis metric=goroutines_max_threads value=%d unit=threads procs=%d\n",
           max_threads, procs);
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
    }
    return 0;
}
