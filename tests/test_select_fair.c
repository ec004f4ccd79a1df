/*
 * test_select_fair — "among several ready cases one is chosen uniformly at random":
 *   A. 4 always-ready buffered RECV cases, 100k selects (scaled, at least 8000):
 *      each case chosen within +-10 % of n/4, chi-square (3 dof) below 40
 *      (p < 1e-7 for a fair choice); consecutive choices independent: the 16
 *      (previous, current) pairs pass a chi-square test (15 dof, bound 70), so a
 *      rotation is not mistaken for randomness;
 *   B. 2 ready cases at positions 0 and 7 among 8 (others NULL or not ready);
 *   C. mixed ready kinds: RECV with a value, SEND with room, RECV and SEND on a
 *      closed channel (ok = 0);
 *   D. the same as A with timeout 0 (Go's default).
 */
#include "t.h"

static long n_iter(void)
{
    long n = t_scale(100000);
    return n < 8000 ? 8000 : n;
}

static void check_uniform(const char *what, const long *count, int k, long n)
{
    double exp = (double)n / k, chi = 0;
    for (int i = 0; i < k; i++) {
        double d = (double)count[i] - exp;
        chi += d * d / exp;
    }
    for (int i = 0; i < k; i++) {
        if (count[i] < exp * 0.9 || count[i] > exp * 1.1) {
            fprintf(stderr, "%s: counts over %ld selects:", what, n);
            for (int j = 0; j < k; j++)
                fprintf(stderr, " %ld", count[j]);
            fprintf(stderr, " (chi-square %.1f)\n", chi);
            FAIL("%s: case %d chosen %ld times, expected %.0f +- 10%%", what, i, count[i], exp);
        }
    }
    double bound = k <= 4 ? 40.0 : 70.0;
    CHECK_MSG(chi < bound, "%s: chi-square %.1f over %d categories (bound %.0f)", what, chi, k, bound);
}

static void scenario_a(int64_t timeout)
{
    enum { K = 4 };
    loom_chan *c[K];
    long vals[K];
    loom_case cs[K];
    for (int i = 0; i < K; i++) {
        c[i] = loom_chan_new(sizeof(long), 1);
        CHECK(c[i] != NULL);
        long v = i;
        CHECK_OK(loom_send(c[i], &v));
        cs[i] = (loom_case){ .chan = c[i], .op = LOOM_RECV, .elem = &vals[i] };
    }
    long n = n_iter();
    long count[K] = { 0 }, pairs[K * K] = { 0 };
    int prev = -1;
    for (long it = 0; it < n; it++) {
        int r = loom_select(cs, K, timeout);
        CHECK(r >= 0 && r < K);
        CHECK_EQ(cs[r].ok, 1);
        CHECK_EQ(vals[r], r);
        count[r]++;
        if (prev >= 0)
            pairs[prev * K + r]++;
        prev = r;
        long v = r;
        CHECK_OK(loom_try_send(c[r], &v)); /* make it ready again */
    }
    check_uniform(timeout == 0 ? "4 ready RECV (timeout 0)" : "4 ready RECV", count, K, n);
    /* pair independence: chi-square only (cells are smaller) */
    double exp = (double)(n - 1) / (K * K), chi = 0;
    for (int i = 0; i < K * K; i++) {
        double d = (double)pairs[i] - exp;
        chi += d * d / exp;
    }
    if (chi >= 70.0) {
        fprintf(stderr, "pair counts:");
        for (int i = 0; i < K * K; i++)
            fprintf(stderr, " %ld", pairs[i]);
        fprintf(stderr, "\n");
        FAIL("consecutive select choices are not independent: chi-square %.1f (15 dof, bound 70)", chi);
    }
    for (int i = 0; i < K; i++)
        loom_chan_free(c[i]);
}

static void scenario_b(void)
{
    enum { K = 8 };
    loom_chan *c[K] = { 0 };
    long vals[K];
    loom_case cs[K];
    for (int i = 0; i < K; i++) {
        if (i == 2 || i == 5)
            c[i] = NULL; /* never ready */
        else {
            c[i] = loom_chan_new(sizeof(long), 1);
            CHECK(c[i] != NULL);
        }
        if (i == 0 || i == 7) {
            long v = i;
            CHECK_OK(loom_send(c[i], &v));
        }
        cs[i] = (loom_case){ .chan = c[i], .op = LOOM_RECV, .elem = &vals[i] };
    }
    long n = n_iter();
    long count[2] = { 0, 0 };
    for (long it = 0; it < n; it++) {
        int r = loom_select(cs, K, -1);
        if (r != 0 && r != 7)
            FAIL("select chose case %d, which is not ready", r);
        count[r == 7]++;
        long v = r;
        CHECK_OK(loom_try_send(c[r], &v));
    }
    check_uniform("2 ready of 8", count, 2, n);
    for (int i = 0; i < K; i++)
        if (c[i])
            loom_chan_free(c[i]);
}

static void scenario_c(void)
{
    loom_chan *full = loom_chan_new(sizeof(long), 1); /* RECV ready */
    loom_chan *room = loom_chan_new(sizeof(long), 1); /* SEND ready */
    loom_chan *closed = loom_chan_new(sizeof(long), 0);
    CHECK(full && room && closed);
    CHECK_OK(loom_close(closed));
    long one = 1, a = 0, b = 42, d = 0, e = 43;
    CHECK_OK(loom_send(full, &one));
    loom_case cs[4] = {
        { .chan = full, .op = LOOM_RECV, .elem = &a },
        { .chan = room, .op = LOOM_SEND, .elem = &b },
        { .chan = closed, .op = LOOM_RECV, .elem = &d },
        { .chan = closed, .op = LOOM_SEND, .elem = &e },
    };
    long n = n_iter();
    long count[4] = { 0 };
    for (long it = 0; it < n; it++) {
        for (int i = 0; i < 4; i++)
            cs[i].ok = -1;
        int r = loom_select(cs, 4, -1);
        CHECK(r >= 0 && r < 4);
        count[r]++;
        switch (r) {
        case 0:
            CHECK_EQ(cs[0].ok, 1);
            CHECK_OK(loom_try_send(full, &one));
            break;
        case 1: {
            CHECK_EQ(cs[1].ok, 1);
            long x = 0;
            CHECK_OK(loom_try_recv(room, &x));
            CHECK_EQ(x, 42);
            break;
        }
        default: CHECK_EQ(cs[r].ok, 0); break;
        }
    }
    check_uniform("mixed ready kinds", count, 4, n);
    loom_chan_free(full);
    loom_chan_free(room);
    loom_chan_free(closed);
}

static int main_fn(void *arg)
{
    (void)arg;
    scenario_a(-1);
    scenario_b();
    scenario_c();
    scenario_a(0);
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
