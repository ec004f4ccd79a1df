/*
 * test_chan_sieve — the concurrent prime sieve (one goroutine per prime, each
 * filtering multiples out of an unbuffered channel pipeline) must produce
 * exactly the first N primes in order (N = 2000 / LOOM_TEST_SCALE), as a plain
 * sieve of Eratosthenes computes them.
 *
 * Shutdown exercises close-from-the-receiving-side: main closes the last channel;
 * each stage whose send returns -EPIPE closes its own input channel and exits,
 * which wakes the upstream stage blocked in send, back up to the generator.
 * Every goroutine reports on `done`, and only then are the channels freed.
 * The same pipeline is also run once with small buffered channels.
 */
#include "t.h"

struct stage {
    loom_chan *in, *out;
    long prime; /* 0 for the generator */
    loom_chan *done;
};

static void generator(void *arg)
{
    struct stage *s = arg;
    for (long i = 2;; i++) {
        int rc = loom_send(s->out, &i);
        if (rc == -EPIPE)
            break;
        CHECK_OK(rc);
    }
    char tok = 0;
    CHECK_OK(loom_send(s->done, &tok));
}

static void filter(void *arg)
{
    struct stage *s = arg;
    for (;;) {
        long v = 0;
        CHECK_OK(loom_recv(s->in, &v)); /* the input is only closed by us */
        CHECK_GT(v, s->prime);
        if (v % s->prime == 0)
            continue;
        int rc = loom_send(s->out, &v);
        if (rc == -EPIPE)
            break;
        CHECK_OK(rc);
    }
    /* downstream is gone: close our input so the upstream stage stops too */
    CHECK_OK(loom_close(s->in));
    char tok = 0;
    CHECK_OK(loom_send(s->done, &tok));
}

static long *plain_primes(long n)
{
    long *p = malloc((size_t)n * sizeof *p);
    CHECK(p != NULL);
    long limit = 64;
    for (;;) {
        char *composite = calloc((size_t)limit, 1);
        CHECK(composite != NULL);
        long k = 0;
        for (long i = 2; i < limit && k < n; i++) {
            if (composite[i])
                continue;
            p[k++] = i;
            for (long j = i * i; j < limit; j += i)
                composite[j] = 1;
        }
        free(composite);
        if (k == n)
            return p;
        limit *= 2;
    }
}

static void sieve(long n, size_t cap)
{
    long *want = plain_primes(n);
    loom_chan **ch = calloc((size_t)n + 1, sizeof *ch);
    struct stage *st = calloc((size_t)n + 1, sizeof *st);
    loom_chan *done = loom_chan_new(0, (size_t)n + 1);
    CHECK(ch && st && done);

    ch[0] = loom_chan_new(sizeof(long), cap);
    CHECK(ch[0] != NULL);
    st[0] = (struct stage){ .in = NULL, .out = ch[0], .prime = 0, .done = done };
    CHECK(loom_go(generator, &st[0]) != 0);

    for (long i = 0; i < n; i++) {
        long p = 0;
        CHECK_OK(loom_recv(ch[i], &p));
        if (p != want[i])
            FAIL("prime #%ld: sieve produced %ld, expected %ld", i, p, want[i]);
        ch[i + 1] = loom_chan_new(sizeof(long), cap);
        CHECK(ch[i + 1] != NULL);
        st[i + 1] = (struct stage){ .in = ch[i], .out = ch[i + 1], .prime = p, .done = done };
        CHECK(loom_go(filter, &st[i + 1]) != 0);
    }

    /* tear down from the end of the pipeline */
    CHECK_OK(loom_close(ch[n]));
    for (long i = 0; i <= n; i++) {
        char tok;
        CHECK_OK(loom_recv(done, &tok));
    }
    /* every channel was closed exactly once, by its receiving stage */
    for (long i = 0; i <= n; i++) {
        CHECK_ERR(loom_close(ch[i]), EPIPE);
        loom_chan_free(ch[i]);
    }
    loom_chan_free(done);
    free(ch);
    free(st);
    free(want);
}

static int main_fn(void *arg)
{
    (void)arg;
    sieve(t_scale(2000), 0);
    sieve(t_scale(500), 4);
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
