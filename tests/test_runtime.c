/*
 * test_runtime.c — loom_run / loom_go / loom_id / loom_procs / loom_exit / loom_yield:
 *  - loom_run returns main_fn's value and can run again (three runs in a row);
 *  - loom_id(): 1 for main_fn, > 0 and unique in goroutines, 0 outside loom_run,
 *    equal to what loom_go returned for that goroutine;
 *  - loom_go: distinct ids > 1 for a burst of spawns (each P hands out ids from a batch of its
 *    own, as Go's goidcache, so a spawner that moves to another P may get a lower one),
 *    NULL fn -> 0 + errno EINVAL;
 *  - loom_go_attr: name (copied) and a 1 MiB stack that holds a 900 KiB array; a 128 MiB
 *    stack runs; a stack whose slot (the size plus a guard page and a header, rounded up)
 *    would pass the largest class, 256 MiB, is refused with EINVAL;
 *  - loom_procs(): LOOM_PROCS when set, else the CPUs in the affinity mask;
 *  - loom_exit ends only the calling goroutine, from any call depth;
 *  - loom_yield lets the other goroutine run at LOOM_PROCS=1 (ping-pong, no channels).
 */
#include "t.h"

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

static void set_procs_env(const char *v)
{
    if (v)
        setenv("LOOM_PROCS", v, 1);
    else
        unsetenv("LOOM_PROCS");
}

/* ---- return value, arg, three runs */
static int ret_arg(void *arg)
{
    CHECK_EQU(loom_id(), 1);
    return *(int *)arg;
}

/* ---- ids */
#define NIDS 200
static uint64_t id_seen[NIDS];  /* written by goroutine i, read after id_done */
static uint64_t id_given[NIDS]; /* loom_go's return */
static int id_done;             /* atomic */

static void record_id(void *arg)
{
    long i = (long)(intptr_t)arg;
    if (i % 3 == 0)
        loom_yield();
    __atomic_store_n(&id_seen[i], loom_id(), __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&id_done, 1, __ATOMIC_SEQ_CST);
}

static void test_ids(void)
{
    CHECK_EQU(loom_id(), 1);
    for (long i = 0; i < NIDS; i++) {
        id_given[i] = loom_go(record_id, (void *)(intptr_t)i);
        CHECK(id_given[i] > 1);
        for (long j = 0; j < i; j++)
            CHECK_MSG(id_given[i] != id_given[j], "loom_go gave id %" PRIu64 " twice (spawns %ld and %ld)",
                      id_given[i], j, i);
    }
    T_WAIT_UNTIL(t_get(&id_done) >= NIDS, 20, "id goroutines (%d of %d)", t_get(&id_done), NIDS);
    for (long i = 0; i < NIDS; i++) {
        uint64_t s = __atomic_load_n(&id_seen[i], __ATOMIC_SEQ_CST);
        CHECK_MSG(s == id_given[i], "goroutine %ld: loom_id() %" PRIu64 " but loom_go returned %" PRIu64, i,
                  s, id_given[i]);
        for (long j = 0; j < i; j++)
            CHECK_MSG(s != id_seen[j], "goroutines %ld and %ld share id %" PRIu64, i, j, s);
    }
    CHECK_EQU(loom_id(), 1); /* still main */

    /* NULL fn */
    t_set_errno(0);
    uint64_t bad = loom_go(NULL, NULL);
    int e = t_errno();
    CHECK_EQU(bad, 0);
    CHECK_EQ(e, EINVAL);
    t_set_errno(0);
    loom_attr a = { 0, 0, "null" };
    bad = loom_go_attr(NULL, NULL, &a);
    e = t_errno();
    CHECK_EQU(bad, 0);
    CHECK_EQ(e, EINVAL);
}

/* ---- attr: name, big stack, priorities */
static int big_ok; /* atomic */

__attribute__((noinline)) static unsigned use_big_array(void)
{
    volatile unsigned char buf[900 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 512)
        buf[i] = (unsigned char)(i >> 9);
    buf[sizeof buf - 1] = 0x5a;
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof buf; i += 512)
        sum += buf[i];
    return sum + buf[sizeof buf - 1];
}

static void big_stack(void *arg)
{
    (void)arg;
    unsigned want = 0;
    for (size_t i = 0; i < 900 * 1024; i += 512)
        want += (unsigned char)(i >> 9);
    want += 0x5a;
    unsigned got = use_big_array();
    loom_yield(); /* a switch with a deep stack behind us is fine too */
    CHECK_EQ(got, want);
    CHECK_EQ(use_big_array(), want);
    __atomic_store_n(&big_ok, 1, __ATOMIC_SEQ_CST);
}

static int prio_ran; /* atomic */
static void prio_fn(void *arg)
{
    (void)arg;
    loom_yield();
    __atomic_add_fetch(&prio_ran, 1, __ATOMIC_SEQ_CST);
}

static void test_attr(void)
{
    char name[64];
    snprintf(name, sizeof name, "big-stack-goroutine-with-a-rather-long-name-%d", 42);
    loom_attr a = { 1024 * 1024, LOOM_PRIO_NORMAL, name };
    uint64_t id = loom_go_attr(big_stack, NULL, &a);
    CHECK(id > 0);
    memset(name, 'X', sizeof name - 1); /* the name was copied; clobbering ours is fine */
    T_WAIT_UNTIL(t_get(&big_ok) >= 1, 20, "the 1 MiB-stack goroutine (%d of %d)", t_get(&big_ok), 1);

    /* the largest class: 128 MiB usable fits in a 256 MiB slot; 256 MiB does not */
    loom_attr a128 = { (size_t)128 << 20, LOOM_PRIO_NORMAL, "128m" };
    CHECK(loom_go_attr(prio_fn, NULL, &a128) > 0);
    size_t too_big[] = { ((size_t)256 << 20) - 4096, (size_t)256 << 20, ((size_t)256 << 20) + 1 };
    for (size_t i = 0; i < sizeof too_big / sizeof *too_big; i++) {
        loom_attr big = { too_big[i], LOOM_PRIO_NORMAL, "too big" };
        t_set_errno(0);
        CHECK_EQU(loom_go_attr(prio_fn, NULL, &big), 0);
        CHECK_EQ(t_errno(), EINVAL);
    }

    loom_attr lo = { 0, LOOM_PRIO_LOW, "low" };
    loom_attr hi = { 0, LOOM_PRIO_HIGH, NULL };
    loom_attr def = { 0, 0, NULL };
    CHECK(loom_go_attr(prio_fn, NULL, &lo) > 0);
    CHECK(loom_go_attr(prio_fn, NULL, &hi) > 0);
    CHECK(loom_go_attr(prio_fn, NULL, &def) > 0);
    T_WAIT_UNTIL(t_get(&prio_ran) >= 4, 20, "goroutines with priorities and the 128 MiB stack (%d of %d)",
                 t_get(&prio_ran), 4);
}

/* ---- loom_exit */
static int ex_before, ex_after, ex_observed, ex_many; /* atomics */

__attribute__((noinline)) static void exit_deep(int depth)
{
    if (depth > 0) {
        exit_deep(depth - 1);
        __atomic_store_n(&ex_after, 1, __ATOMIC_SEQ_CST); /* never reached */
        return;
    }
    __atomic_store_n(&ex_before, 1, __ATOMIC_SEQ_CST);
    loom_exit();
    __atomic_store_n(&ex_after, 1, __ATOMIC_SEQ_CST); /* never reached */
}

static void exiter(void *arg)
{
    (void)arg;
    loom_yield();
    exit_deep(10);
    __atomic_store_n(&ex_after, 1, __ATOMIC_SEQ_CST); /* never reached */
}

static void observer(void *arg)
{
    (void)arg;
    /* watches the exiter from the outside: it got to loom_exit and no further */
    int64_t dl = t_clock_ns() + 20LL * 1000000000;
    while (!__atomic_load_n(&ex_before, __ATOMIC_SEQ_CST)) {
        CHECK_MSG(t_clock_ns() < dl, "exiter never ran");
        loom_sleep(100000);
    }
    loom_sleep(50000000);
    CHECK_MSG(!__atomic_load_n(&ex_after, __ATOMIC_SEQ_CST), "code after loom_exit ran");
    __atomic_store_n(&ex_observed, 1, __ATOMIC_SEQ_CST);
}

static void many_exit(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&ex_many, 1, __ATOMIC_SEQ_CST);
    if (loom_id() % 2)
        loom_yield();
    loom_exit();
    FAIL("loom_exit returned");
}

static void test_exit(void)
{
    CHECK(loom_go(observer, NULL) != 0);
    CHECK(loom_go(exiter, NULL) != 0);
    T_WAIT_UNTIL(t_get(&ex_observed) >= 1, 30, "the loom_exit observer (%d of %d)", t_get(&ex_observed), 1);
    CHECK(!__atomic_load_n(&ex_after, __ATOMIC_SEQ_CST));
    /* many goroutines ending through loom_exit: their stacks are recycled properly */
    int n = (int)t_scale(2000);
    for (int i = 0; i < n; i++)
        CHECK(loom_go(many_exit, NULL) != 0);
    T_WAIT_UNTIL(t_get(&ex_many) >= n, 30, "loom_exit goroutines (%d of %d)", t_get(&ex_many), n);
    loom_sleep(10000000);
}

/* ---- procs */
static int procs_main(void *arg)
{
    (void)arg;
    return loom_procs();
}

static int expected_cpus(void)
{
    cpu_set_t set;
    CHECK_OK(sched_getaffinity(0, sizeof set, &set));
    return CPU_COUNT(&set);
}

/* does a cgroup CPU quota file at dir or any ancestor set a limit? */
static int quota_in_path(const char *root, const char *path, const char *file, int v2)
{
    char p[1024];
    snprintf(p, sizeof p, "%s", path);
    for (;;) {
        char fn[1200];
        snprintf(fn, sizeof fn, "%s%s/%s", root, p, file);
        FILE *f = fopen(fn, "r");
        if (f) {
            char q[64] = "";
            int r = fscanf(f, "%63s", q);
            fclose(f);
            if (r == 1 && (v2 ? strcmp(q, "max") != 0 : atol(q) > 0))
                return 1;
        }
        char *slash = strrchr(p, '/');
        if (!slash || p[0] == 0)
            return 0;
        *slash = 0;
    }
}

/* 1 if a cgroup (v1 or v2) CPU quota may lower the default P count below the CPUs */
static int cgroup_limited(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return 0;
    char line[1024];
    int limited = 0;
    while (!limited && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (strcmp(path, "/") == 0)
            path = "";
        if (*ctrls == 0) {
            limited = quota_in_path("/sys/fs/cgroup", path, "cpu.max", 1) ||
                      quota_in_path("/sys/fs/cgroup/unified", path, "cpu.max", 1);
        } else {
            char buf[256];
            snprintf(buf, sizeof buf, ",%s,", ctrls);
            if (strstr(buf, ",cpu,"))
                limited = quota_in_path("/sys/fs/cgroup/cpu", path, "cpu.cfs_quota_us", 0) ||
                          quota_in_path("/sys/fs/cgroup/cpu,cpuacct", path, "cpu.cfs_quota_us", 0);
        }
    }
    fclose(f);
    return limited;
}

static void test_affinity(void);
static void test_procs(void)
{
    test_affinity(); /* forks first, before any runtime thread ever existed */
    set_procs_env("3");
    CHECK_EQ(loom_run(procs_main, NULL), 3);
    set_procs_env("1");
    CHECK_EQ(loom_run(procs_main, NULL), 1);
    set_procs_env(NULL);
    int p = loom_run(procs_main, NULL);
    CHECK_GE(p, 1);
    int cpus = expected_cpus();
    if (cgroup_limited())
        CHECK_LE(p, cpus);
    else
        CHECK_EQ(p, cpus);
}

/* affinity mask: a child process limited to one CPU gets one P */
static void test_affinity(void)
{
    set_procs_env(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        cpu_set_t cur;
        sched_getaffinity(0, sizeof cur, &cur);
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &cur)) {
                CPU_SET(c, &one);
                break;
            }
        if (sched_setaffinity(0, sizeof one, &one) != 0)
            _exit(3);
        int n = loom_run(procs_main, NULL);
        _exit(n == 1 ? 0 : 10 + (n > 100 ? 100 : n));
    }
    int st = 0;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "child with a 1-CPU affinity mask: status %#x (exit %d: 10+loom_procs())", st,
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* ---- yield ping-pong at LOOM_PROCS=1 */
static int pp_turn; /* atomic: 0 = A's turn, 1 = B's */
static long pp_rounds;
static int pp_done; /* atomic */

static void ping(void *arg)
{
    int me = (int)(intptr_t)arg;
    int64_t dl = t_clock_ns() + 30LL * 1000000000;
    for (long i = 0; i < pp_rounds; i++) {
        while (__atomic_load_n(&pp_turn, __ATOMIC_ACQUIRE) != me) {
            CHECK_MSG(t_clock_ns() < dl,
                      "goroutine %d: the other one never ran (round %ld):"
                      " loom_yield does not let it run",
                      me, i);
            loom_yield();
        }
        __atomic_store_n(&pp_turn, !me, __ATOMIC_RELEASE);
    }
    __atomic_add_fetch(&pp_done, 1, __ATOMIC_SEQ_CST);
}

static int yield_main(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_procs(), 1);
    pp_rounds = t_scale(20000);
    CHECK(loom_go(ping, (void *)(intptr_t)0) != 0);
    CHECK(loom_go(ping, (void *)(intptr_t)1) != 0);
    /* main itself spins with yields too: it must not starve them either */
    int64_t dl = t_clock_ns() + 60LL * 1000000000;
    while (__atomic_load_n(&pp_done, __ATOMIC_SEQ_CST) < 2) {
        CHECK_MSG(t_clock_ns() < dl, "ping-pong did not finish");
        loom_yield();
    }
    return 0;
}

static int all_main(void *arg)
{
    (void)arg;
    test_ids();
    test_attr();
    test_exit();
    return 0;
}

/* file scope: a child forked by test_affinity exits with _exit, and valgrind must still
 * see this allocation as reachable there */
static char *saved;

int main(void)
{
    char *old = getenv("LOOM_PROCS");
    saved = old ? strdup(old) : NULL;

    CHECK_EQU(loom_id(), 0);
    test_procs();

    set_procs_env(saved);
    int v = 42, w = 0, x = -7;
    CHECK_EQ(loom_run(ret_arg, &v), 42);
    CHECK_EQU(loom_id(), 0);
    CHECK_EQ(loom_run(ret_arg, &w), 0);
    CHECK_EQ(loom_run(ret_arg, &x), -7);
    CHECK_EQU(loom_id(), 0);

    T_RUN(all_main, NULL);
    CHECK_EQU(loom_id(), 0);

    set_procs_env("1");
    T_RUN(yield_main, NULL);
    set_procs_env(saved);
    free(saved);
    CHECK_EQU(loom_id(), 0);
    return 0;
}
