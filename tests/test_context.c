/*
 * test_context.c — loom_ctx (Go's context): the tree, causes and deadlines; the end of a
 * goroutine's current context cuts every kind of loom wait short with its cause and no
 * effect (a value is never lost nor moved twice, also when data and the cancel race);
 * thousands of waiters released by one cancel; inheritance at spawn; and groups (limits,
 * the first error, wait joins all).
 */
#include "t.h"
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#define MS 1000000LL

static void case_tree(void)
{
    loom_ctx *bg = loom_ctx_background();
    CHECK(bg != NULL);
    CHECK_EQ(loom_ctx_err(bg), 0);
    CHECK(loom_ctx_current() == bg);
    loom_ctx *a = loom_ctx_with_cancel(bg), *b = loom_ctx_with_cancel(a), *c = loom_ctx_with_cancel(b);
    loom_ctx *side = loom_ctx_with_cancel(a);
    CHECK(a && b && c && side);
    loom_ctx_cancel(b, -EIO);
    CHECK_EQ(loom_ctx_err(b), -EIO);
    CHECK_EQ(loom_ctx_err(c), -EIO);                     /* descendants report the cause */
    CHECK_EQ(loom_ctx_err(a), 0);                        /* not the parent */
    CHECK_EQ(loom_ctx_err(side), 0);                     /* nor a sibling */
    CHECK_ERR(loom_recv(loom_ctx_done(c), NULL), EPIPE); /* done: closed */
    CHECK_ERR(loom_try_recv(loom_ctx_done(a), NULL), EAGAIN);
    loom_ctx_cancel(b, -EPERM); /* the first cause stays */
    CHECK_EQ(loom_ctx_err(b), -EIO);
    loom_ctx_cancel(a, 0);
    CHECK_EQ(loom_ctx_err(a), -ECANCELED);
    CHECK_EQ(loom_ctx_err(side), -ECANCELED);
    loom_ctx *late = loom_ctx_with_cancel(a); /* under an ended parent: ended */
    CHECK_EQ(loom_ctx_err(late), -ECANCELED);
    loom_ctx_free(late);
    loom_ctx_free(c);
    loom_ctx_free(a); /* before b and side: they stay usable, ended */
    CHECK_EQ(loom_ctx_err(b), -EIO);
    loom_ctx_free(b);
    loom_ctx_free(side);
    CHECK_EQ(loom_ctx_err(NULL), -EINVAL);
}

static void case_deadline(void)
{
    int64_t t0 = loom_now();
    loom_ctx *c = loom_ctx_with_timeout(NULL, 10 * MS);
    CHECK(c != NULL);
    CHECK_EQ(loom_ctx_err(c), 0);
    loom_case k = { .chan = loom_ctx_done(c), .op = LOOM_RECV };
    CHECK_EQ(loom_select(&k, 1, -1), 0);
    CHECK_GE(loom_now(), t0 + 10 * MS);
    CHECK_EQ(loom_ctx_err(c), -ETIMEDOUT);
    loom_ctx *child = loom_ctx_with_cancel(c);
    CHECK_EQ(loom_ctx_err(child), -ETIMEDOUT);
    loom_ctx_free(child);
    loom_ctx_free(c);
    c = loom_ctx_with_deadline(NULL, loom_now() - 1); /* past: ended at once */
    CHECK_EQ(loom_ctx_err(c), -ETIMEDOUT);
    loom_ctx_free(c);
    /* cancelled before its deadline: the cause is the cancel's, the timer is gone */
    c = loom_ctx_with_timeout(NULL, 5 * MS);
    loom_ctx_cancel(c, 0);
    loom_sleep(10 * MS);
    CHECK_EQ(loom_ctx_err(c), -ECANCELED);
    loom_ctx_free(c);
}

/* ---- every kind of wait */

enum {
    W_RECV,
    W_SEND,
    W_SELECT,
    W_SELECT0,
    W_FDWAIT,
    W_READ,
    W_ACCEPT,
    W_SLEEP,
    W_COND,
    W_WG,
    W_GROUP,
    W_WRITE,
    NW
};
static const char *wname[NW] = { "recv",   "send",  "select", "select0", "fd_wait",  "read",
                                 "accept", "sleep", "cond",   "wg",      "group_go", "write" };
static loom_chan *unbuf, *unbuf_s; /* receivers wait on one, senders on the other */
enum { PER = 4 };
static int pipefd[PER][2], sockfd[PER][2], lfd[PER],
        wpipe[PER][2]; /* one each: a second waiter on an fd gets -EBUSY */
static loom_mutex mu = LOOM_MUTEX_INIT;
static loom_cond cv = LOOM_COND_INIT;
static loom_waitgroup never = LOOM_WAITGROUP_INIT;
static loom_group *full;
static loom_waitgroup waiters_done = LOOM_WAITGROUP_INIT;
static int results[NW][64];
static int started; /* atomic */

static int hold(void *arg)
{
    loom_chan *c = arg;
    return loom_recv(c, NULL) == -EPIPE ? 0 : 1; /* until the test closes it */
}

struct wjob {
    int kind, idx;
};

static void waiter(void *arg)
{
    struct wjob *j = arg;
    int r = 0;
    char buf[64];
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    switch (j->kind) {
    case W_RECV: r = loom_recv(unbuf, buf); break;
    case W_SEND: r = loom_send(unbuf_s, "x"); break;
    case W_SELECT: {
        loom_case k[2] = { { .chan = unbuf, .op = LOOM_RECV, .elem = buf },
                           { .chan = unbuf, .op = LOOM_SEND, .elem = "y" } };
        k[1].chan = NULL; /* a nil case beside a real one */
        r = loom_select(k, 2, -1);
        break;
    }
    case W_SELECT0: r = loom_select(NULL, 0, -1); break;
    case W_FDWAIT: r = loom_fd_wait(pipefd[j->idx][0], LOOM_READABLE, -1); break;
    case W_READ: r = (int)loom_read(sockfd[j->idx][0], buf, sizeof buf); break;
    case W_ACCEPT: r = loom_accept(lfd[j->idx], NULL, NULL); break;
    case W_SLEEP: {
        int64_t t0 = loom_now();
        loom_sleep(3600 * 1000 * MS);
        r = loom_now() - t0 < 3600 * 1000 * MS ? loom_ctx_err(loom_ctx_current()) : 1;
        break;
    }
    case W_COND:
        loom_mutex_lock(&mu);
        loom_cond_wait(&cv, &mu);
        loom_mutex_unlock(&mu);
        r = loom_ctx_err(loom_ctx_current());
        break;
    case W_WG:
        loom_wg_wait(&never);
        r = loom_ctx_err(loom_ctx_current());
        break;
    case W_GROUP: r = loom_group_go(full, hold, NULL); break;
    case W_WRITE: {
        static char big[1 << 20];
        r = (int)loom_write(wpipe[j->idx][1], big, sizeof big); /* a pipe holds 64 KiB: partial */
        break;
    }
    }
    results[j->kind][j->idx] = r;
    loom_wg_done(&waiters_done);
}

static void case_every_wait(void)
{
    CHECK((unbuf = loom_chan_new(1, 0)) != NULL);
    CHECK((unbuf_s = loom_chan_new(1, 0)) != NULL);
    for (int i = 0; i < PER; i++) {
        CHECK_OK(pipe(pipefd[i]));
        CHECK_OK(pipe(wpipe[i]));
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sockfd[i]));
        lfd[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        CHECK_OK(bind(lfd[i], (struct sockaddr *)&a, sizeof a));
        CHECK_OK(listen(lfd[i], 16));
    }
    CHECK_OK(loom_wg_add(&never, 1));
    loom_chan *holdc = loom_chan_new(0, 0);
    CHECK((full = loom_group_new(NULL, 1)) != NULL);
    CHECK_OK(loom_group_go(full, hold, holdc)); /* takes the only slot */

    static struct wjob jobs[NW][PER];
    loom_ctx *c = loom_ctx_with_cancel(NULL);
    loom_ctx *old = loom_ctx_set(c);
    CHECK(old == loom_ctx_background());
    CHECK_OK(loom_wg_add(&waiters_done, NW * PER));
    for (int k = 0; k < NW; k++)
        for (int i = 0; i < PER; i++) {
            jobs[k][i] = (struct wjob){ k, i };
            CHECK(loom_go(waiter, &jobs[k][i]) != 0);
        }
    loom_ctx_set(old);
    T_WAIT_UNTIL(t_get(&started) == NW * PER, 30, "the waiters never started");
    loom_sleep(20 * MS); /* parked, all of them (or about to be: the cancel reaches both) */
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    loom_ctx_cancel(c, -EINTR);
    loom_wg_wait(&waiters_done);
    for (int k = 0; k < NW; k++)
        for (int i = 0; i < PER; i++) {
            int want = k == W_WRITE ? -1 : -EINTR;
            if (k == W_WRITE) { /* a partial write reports the bytes written */
                CHECK_MSG(results[k][i] > 0 || results[k][i] == -EINTR, "write: %d", results[k][i]);
                continue;
            }
            CHECK_MSG(results[k][i] == want, "%s: %d, not %d", wname[k], results[k][i], want);
        }
    /* no effect: no value went anywhere, the waits left nothing behind */
    CHECK_ERR(loom_try_send(unbuf, "z"), EAGAIN);    /* no receiver left on it */
    CHECK_ERR(loom_try_recv(unbuf_s, NULL), EAGAIN); /* no sender on the other */
    loom_close(holdc);
    CHECK_EQ(loom_group_wait(full), 0);
    loom_group_free(full);
    loom_chan_free(holdc);
    loom_wg_done(&never);
    loom_ctx_free(c);
    loom_chan_free(unbuf);
    loom_chan_free(unbuf_s);
    for (int i = 0; i < PER; i++) {
        close(pipefd[i][0]), close(pipefd[i][1]), close(sockfd[i][0]), close(sockfd[i][1]), close(lfd[i]);
        close(wpipe[i][0]), close(wpipe[i][1]);
    }
    (void)st;
}

/* ---- data and cancel racing: each value moves exactly once */

static long sent_ok, recv_ok, recv_cut, send_cut; /* atomic */
static loom_waitgroup racers = LOOM_WAITGROUP_INIT;

struct pair {
    loom_chan *c;
    loom_ctx *ctx;
    long n;
};

static void racer_recv(void *arg)
{
    struct pair *p = arg;
    long v;
    for (;;) {
        int r = loom_recv(p->c, &v);
        if (r == 0)
            __atomic_add_fetch(&recv_ok, 1, __ATOMIC_SEQ_CST);
        else {
            CHECK(r == -ECANCELED || r == -EPIPE);
            if (r == -ECANCELED)
                __atomic_add_fetch(&recv_cut, 1, __ATOMIC_SEQ_CST);
            break;
        }
    }
    loom_wg_done(&racers);
}

static void racer_send(void *arg)
{
    struct pair *p = arg;
    for (long i = 0; i < p->n; i++) {
        int r = loom_send(p->c, &i);
        if (r == 0)
            __atomic_add_fetch(&sent_ok, 1, __ATOMIC_SEQ_CST);
        else {
            CHECK(r == -ECANCELED);
            __atomic_add_fetch(&send_cut, 1, __ATOMIC_SEQ_CST);
            break;
        }
        if (i % 7 == 0)
            loom_yield();
    }
    loom_wg_done(&racers);
}

static void case_race(void)
{
    long rounds = t_scale(200);
    for (long round = 0; round < rounds; round++) {
        struct pair p = { loom_chan_new(sizeof(long), round % 3 == 0 ? 0 : 2), loom_ctx_with_cancel(NULL),
                          1000000 };
        sent_ok = recv_ok = 0;
        CHECK_OK(loom_wg_add(&racers, 2));
        loom_ctx *old = loom_ctx_set(p.ctx);
        CHECK(loom_go(racer_recv, &p) != 0);
        CHECK(loom_go(racer_send, &p) != 0);
        loom_ctx_set(old);
        for (int k = (int)(round % 20); k > 0; k--)
            loom_yield();
        loom_ctx_cancel(p.ctx, 0);
        loom_wg_wait(&racers);
        /* whatever the buffer held when both stopped was sent and not received */
        long left = 0, v;
        while (loom_try_recv(p.c, &v) == 0)
            left++;
        CHECK_MSG(sent_ok == recv_ok + left, "round %ld: %ld sent, %ld received, %ld left in the buffer",
                  round, sent_ok, recv_ok, left);
        loom_ctx_free(p.ctx);
        loom_chan_free(p.c);
    }
    CHECK_GT(recv_cut + send_cut, 0);
}

/* ---- thousands at once */

static loom_waitgroup many_done = LOOM_WAITGROUP_INIT;
static int many_bad; /* atomic */

static void many_waiter(void *arg)
{
    loom_chan *c = arg;
    if (loom_recv(c, NULL) != -ETIMEDOUT)
        __atomic_add_fetch(&many_bad, 1, __ATOMIC_SEQ_CST);
    loom_wg_done(&many_done);
}

static void case_many(void)
{
    long n = t_scale(10000);
    loom_chan *c = loom_chan_new(0, 0);
    loom_ctx *ctx = loom_ctx_with_cancel(NULL);
    loom_ctx *old = loom_ctx_set(ctx);
    CHECK_OK(loom_wg_add(&many_done, n));
    for (long i = 0; i < n; i++)
        CHECK(loom_go(many_waiter, c) != 0);
    loom_ctx_set(old);
    loom_sleep(20 * MS);
    loom_ctx_cancel(ctx, -ETIMEDOUT);
    loom_wg_wait(&many_done);
    CHECK_EQ(t_get(&many_bad), 0);
    loom_ctx_free(ctx);
    loom_chan_free(c);
}

/* ---- inheritance, and calls that can complete at once */

static loom_ctx *seen;
static void child(void *arg)
{
    seen = loom_ctx_current();
    loom_wg_done(arg);
}

static void case_inherit(void)
{
    loom_waitgroup wg = LOOM_WAITGROUP_INIT;
    loom_ctx *c = loom_ctx_with_cancel(NULL);
    loom_ctx *old = loom_ctx_set(c);
    CHECK_OK(loom_wg_add(&wg, 1));
    CHECK(loom_go(child, &wg) != 0);
    loom_wg_wait(&wg);
    CHECK(seen == c);
    loom_ctx_cancel(c, 0);
    /* ended: a call that can complete at once may; one that would wait does not */
    loom_chan *b = loom_chan_new(sizeof(int), 1);
    int v = 5;
    CHECK_OK(loom_send(b, &v));
    CHECK_ERR(loom_send(b, &v), ECANCELED);
    CHECK_OK(loom_recv(b, &v));
    CHECK_ERR(loom_recv(b, &v), ECANCELED);
    int64_t t0 = loom_now();
    loom_sleep(3600 * 1000 * MS);
    CHECK_LT(loom_now() - t0, 3600 * 1000 * MS);
    loom_ctx_set(old);
    CHECK_OK(loom_send(b, &v)); /* background again */
    loom_chan_free(b);
    loom_ctx_free(c);
}

/* ---- groups */

static int running, peak; /* atomic */

static int limited(void *arg)
{
    int now = __atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
    int p = t_get(&peak);
    while (now > p &&
           !__atomic_compare_exchange_n(&peak, &p, now, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
    loom_sleep(1 * MS);
    __atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
    return (int)(intptr_t)arg;
}

static int cut_short; /* atomic */
static int waits_for_cancel(void *arg)
{
    (void)arg;
    loom_chan *c = loom_chan_new(0, 0);
    int r = loom_recv(c, NULL); /* until the group's context ends */
    loom_chan_free(c);
    if (r == -ECANCELED)
        __atomic_add_fetch(&cut_short, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void case_group(void)
{
    loom_group *g = loom_group_new(NULL, 3);
    CHECK(g != NULL);
    for (int i = 0; i < 30; i++)
        CHECK_OK(loom_group_go(g, limited, NULL));
    CHECK_EQ(loom_group_wait(g), 0);
    CHECK_EQ(t_get(&running), 0); /* joined: none outlives the wait */
    CHECK_LE(t_get(&peak), 3);
    CHECK_EQ(loom_ctx_err(loom_group_ctx(g)), -ECANCELED); /* wait ends it */
    loom_group_free(g);

    /* the first error ends the group's context and is what wait returns */
    g = loom_group_new(NULL, 0);
    for (int i = 0; i < 10; i++)
        CHECK_OK(loom_group_go(g, waits_for_cancel, NULL));
    loom_sleep(5 * MS);
    CHECK_OK(loom_group_go(g, limited, (void *)(intptr_t)-EIO));
    /* wait joins all even when the caller's own context ends meanwhile */
    loom_ctx *mine = loom_ctx_with_timeout(NULL, 1 * MS);
    loom_ctx *old = loom_ctx_set(mine);
    CHECK_EQ(loom_group_wait(g), -EIO);
    loom_ctx_set(old);
    CHECK_EQ(t_get(&cut_short), 10);
    loom_group_free(g);
    loom_ctx_free(mine);
    CHECK(loom_group_new(NULL, -1) == NULL);
    CHECK_EQ(loom_group_go(NULL, limited, NULL), -EINVAL);
}

/* ---- children freed while their parent's end reaches them */

static loom_ctx *shared_parent;
static loom_waitgroup churners = LOOM_WAITGROUP_INIT;
static int churn_stop; /* atomic */

static void churner(void *arg)
{
    (void)arg;
    while (!t_get(&churn_stop)) {
        loom_ctx *c = loom_ctx_with_cancel(shared_parent);
        loom_ctx *gc = loom_ctx_with_timeout(c, 1000 * MS);
        CHECK(c && gc);
        loom_ctx_free(gc);
        loom_ctx_free(c);
        loom_yield();
    }
    loom_wg_done(&churners);
}

static void case_free_race(void)
{
    long rounds = t_scale(300);
    for (long r = 0; r < rounds; r++) {
        shared_parent = loom_ctx_with_cancel(NULL);
        __atomic_store_n(&churn_stop, 0, __ATOMIC_SEQ_CST);
        CHECK_OK(loom_wg_add(&churners, 4));
        for (int i = 0; i < 4; i++)
            CHECK(loom_go(churner, NULL) != 0);
        for (int k = (int)(r % 7); k > 0; k--)
            loom_yield();
        loom_ctx_cancel(shared_parent, 0); /* ends whatever children exist, as they are freed */
        __atomic_store_n(&churn_stop, 1, __ATOMIC_SEQ_CST);
        loom_wg_wait(&churners);
        loom_ctx_free(shared_parent);
    }
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("tree"))
        case_tree();
    if (t_want("deadline"))
        case_deadline();
    if (t_want("every_wait"))
        case_every_wait();
    if (t_want("race"))
        case_race();
    if (t_want("many"))
        case_many();
    if (t_want("inherit"))
        case_inherit();
    if (t_want("group"))
        case_group();
    if (t_want("free_race"))
        case_free_race();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    setenv("LOOM_PROCS", "2", 0);
    T_RUN(main_fn, NULL);
    printf("test_context: ok\n");
    return 0;
}
