/*
 * test_chan_basic — basic channel semantics:
 *   - unbuffered rendezvous: a send completes only once a receiver took the value;
 *   - buffered channels behave as FIFO rings (checked against a model over many
 *     wrap-arounds), len/cap, blocked sender on a full buffer;
 *   - elem_size 0 (signal) channels, buffered and unbuffered;
 *   - large and odd element sizes are copied intact;
 *   - NULL channel: send/recv/close/try_send/try_recv return -EINVAL;
 *   - try_send / try_recv return -EAGAIN when they would block;
 *   - loom_chan_new failure: sizes whose buffer cannot exist (elem_size*capacity
 *     overflowing size_t, or beyond any address space) return NULL with errno set
 *     to ENOMEM or EINVAL, and the runtime keeps working afterwards.
 */
#include "t.h"

#include <stdatomic.h>

/* Huge allocations must come back NULL under the sanitizers too, instead of a
 * sanitizer report: the library may legitimately try malloc() and see it fail. */
#if defined(__SANITIZE_ADDRESS__)
#define T_HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_HAVE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define T_HAVE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define T_HAVE_TSAN 1
#endif
#endif
#ifdef T_HAVE_ASAN
const char *__asan_default_options(void);
__attribute__((used)) const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif
#ifdef T_HAVE_TSAN
const char *__tsan_default_options(void);
__attribute__((used)) const char *__tsan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif

#define DEADLINE_NS (10LL * 1000000000LL)

/* ------------------------------------------------------------ rendezvous */

struct rv {
    loom_chan *c;
    atomic_int stage; /* 1: about to send, 2: send returned */
    long value;
    int send_rc;
};

static void rv_sender(void *arg)
{
    struct rv *r = arg;
    long v = r->value;
    atomic_store(&r->stage, 1);
    r->send_rc = loom_send(r->c, &v);
    atomic_store(&r->stage, 2);
}

static void wait_stage(atomic_int *s, int want)
{
    int64_t end = loom_now() + DEADLINE_NS;
    while (atomic_load(s) < want) {
        if (loom_now() > end)
            FAIL("timed out waiting for stage %d (at %d)", want, atomic_load(s));
        loom_sleep(100 * 1000);
    }
}

static void test_unbuffered_rendezvous(void)
{
    loom_chan *c = loom_chan_new(sizeof(long), 0);
    CHECK(c != NULL);
    CHECK_EQ(loom_chan_cap(c), 0);
    CHECK_EQ(loom_chan_len(c), 0);

    for (int iter = 0; iter < 5; iter++) {
        struct rv r = { .c = c, .value = 1000 + iter, .send_rc = 12345 };
        atomic_init(&r.stage, 0);
        CHECK(loom_go(rv_sender, &r) != 0);
        wait_stage(&r.stage, 1);
        /* Nobody receives: the send must stay blocked. */
        loom_sleep(20 * 1000 * 1000);
        CHECK_MSG(atomic_load(&r.stage) == 1, "unbuffered send completed without a receiver (iter %d)", iter);
        CHECK_EQ(loom_chan_len(c), 0);
        long got = -1;
        CHECK_OK(loom_recv(c, &got));
        CHECK_EQ(got, 1000 + iter);
        wait_stage(&r.stage, 2);
        CHECK_OK(r.send_rc);
    }

    /* Receiver first: recv blocks until a sender comes. */
    for (int iter = 0; iter < 3; iter++) {
        struct rv r = { .c = c, .value = 77 + iter, .send_rc = 12345 };
        atomic_init(&r.stage, 0);
        long got = -1;
        CHECK_ERR(loom_try_recv(c, &got), EAGAIN);
        CHECK(loom_go(rv_sender, &r) != 0);
        CHECK_OK(loom_recv(c, &got));
        CHECK_EQ(got, 77 + iter);
        wait_stage(&r.stage, 2);
        CHECK_OK(r.send_rc);
    }
    loom_chan_free(c);
}

/* ----------------------------------------------------------- buffered ring */

static void test_buffered_ring(void)
{
    enum { CAP = 5 };
    loom_chan *c = loom_chan_new(sizeof(int), CAP);
    CHECK(c != NULL);
    CHECK_EQ(loom_chan_cap(c), CAP);
    CHECK_EQ(loom_chan_len(c), 0);

    /* Fill completely, check full, drain in order. */
    for (int i = 0; i < CAP; i++) {
        CHECK_OK(loom_try_send(c, &i));
        CHECK_EQ(loom_chan_len(c), i + 1);
    }
    int x = 99;
    CHECK_ERR(loom_try_send(c, &x), EAGAIN);
    CHECK_EQ(loom_chan_len(c), CAP);
    for (int i = 0; i < CAP; i++) {
        int v = -1;
        CHECK_OK(loom_recv(c, &v));
        CHECK_EQ(v, i);
        CHECK_EQ(loom_chan_len(c), CAP - 1 - i);
    }
    CHECK_ERR(loom_try_recv(c, &x), EAGAIN);

    /* Model check across many wrap-arounds with random fill levels. */
    int model[CAP];
    int head = 0, count = 0, next = 0, expect_next = 0;
    t_rng rng;
    t_rng_seed(&rng, 42);
    for (int step = 0; step < 20000; step++) {
        int op = (int)t_rng_below(&rng, 3);
        if (op < 2) { /* send (biased so the ring fills up often) */
            int v = next;
            int rc = (t_rng_below(&rng, 2) && count < CAP) ? loom_send(c, &v) : loom_try_send(c, &v);
            if (count == CAP) {
                CHECK_ERR(rc, EAGAIN);
            } else {
                CHECK_OK(rc);
                model[(head + count) % CAP] = v;
                count++;
                next++;
            }
        } else {
            int v = -1;
            int rc = (t_rng_below(&rng, 2) && count > 0) ? loom_recv(c, &v) : loom_try_recv(c, &v);
            if (count == 0) {
                CHECK_ERR(rc, EAGAIN);
            } else {
                CHECK_OK(rc);
                CHECK_EQ(v, model[head]);
                CHECK_EQ(v, expect_next);
                expect_next++;
                head = (head + 1) % CAP;
                count--;
            }
        }
        CHECK_EQ(loom_chan_len(c), count);
        CHECK_EQ(loom_chan_cap(c), CAP);
    }
    while (count > 0) {
        int v = -1;
        CHECK_OK(loom_recv(c, &v));
        CHECK_EQ(v, model[head]);
        head = (head + 1) % CAP;
        count--;
    }
    CHECK_EQ(loom_chan_len(c), 0);
    loom_chan_free(c);
}

/* A sender blocked on a full buffered channel completes once room is made,
 * and its value goes behind the buffered ones. */
struct fullsend {
    loom_chan *c;
    atomic_int stage;
    int rc;
};

static void full_sender(void *arg)
{
    struct fullsend *f = arg;
    int v = 1000;
    atomic_store(&f->stage, 1);
    f->rc = loom_send(f->c, &v);
    atomic_store(&f->stage, 2);
}

static void test_buffered_block_when_full(void)
{
    loom_chan *c = loom_chan_new(sizeof(int), 2);
    CHECK(c != NULL);
    int a = 1, b = 2;
    CHECK_OK(loom_send(c, &a));
    CHECK_OK(loom_send(c, &b));
    struct fullsend f = { .c = c, .rc = 12345 };
    atomic_init(&f.stage, 0);
    CHECK(loom_go(full_sender, &f) != 0);
    wait_stage(&f.stage, 1);
    loom_sleep(20 * 1000 * 1000);
    CHECK_MSG(atomic_load(&f.stage) == 1, "send on a full buffered channel did not block");
    CHECK_EQ(loom_chan_len(c), 2);
    int v = -1;
    CHECK_OK(loom_recv(c, &v));
    CHECK_EQ(v, 1);
    wait_stage(&f.stage, 2);
    CHECK_OK(f.rc);
    CHECK_EQ(loom_chan_len(c), 2);
    CHECK_OK(loom_recv(c, &v));
    CHECK_EQ(v, 2);
    CHECK_OK(loom_recv(c, &v));
    CHECK_EQ(v, 1000);
    CHECK_EQ(loom_chan_len(c), 0);
    loom_chan_free(c);
}

/* ------------------------------------------------------ signal channels */

struct sig {
    loom_chan *c;
    int n;
    atomic_int sent;
};

static void sig_sender(void *arg)
{
    struct sig *s = arg;
    char dummy = 0;
    for (int i = 0; i < s->n; i++) {
        CHECK_OK(loom_send(s->c, &dummy));
        atomic_fetch_add(&s->sent, 1);
    }
}

static void test_signal_channels(void)
{
    char dummy = 'x';
    /* buffered, elem_size 0 */
    loom_chan *c = loom_chan_new(0, 3);
    CHECK(c != NULL);
    CHECK_EQ(loom_chan_cap(c), 3);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(loom_try_send(c, &dummy));
        CHECK_EQ(loom_chan_len(c), i + 1);
    }
    CHECK_ERR(loom_try_send(c, &dummy), EAGAIN);
    for (int i = 0; i < 3; i++) {
        char out = 'y';
        CHECK_OK(loom_recv(c, &out));
        CHECK_EQ(loom_chan_len(c), 2 - i);
    }
    CHECK_ERR(loom_try_recv(c, &dummy), EAGAIN);
    loom_chan_free(c);

    /* unbuffered, elem_size 0: counts must match exactly */
    c = loom_chan_new(0, 0);
    CHECK(c != NULL);
    CHECK_EQ(loom_chan_cap(c), 0);
    CHECK_ERR(loom_try_send(c, &dummy), EAGAIN);
    CHECK_ERR(loom_try_recv(c, &dummy), EAGAIN);
    struct sig s = { .c = c, .n = 1000 };
    atomic_init(&s.sent, 0);
    CHECK(loom_go(sig_sender, &s) != 0);
    for (int i = 0; i < s.n; i++) {
        char out;
        CHECK_OK(loom_recv(c, &out));
        /* the sender cannot be more than one completed send ahead of us */
        CHECK_LE(atomic_load(&s.sent), i + 1);
    }
    int64_t end = loom_now() + DEADLINE_NS;
    while (atomic_load(&s.sent) != s.n) {
        CHECK(loom_now() < end);
        loom_sleep(100 * 1000);
    }
    CHECK_ERR(loom_try_recv(c, &dummy), EAGAIN);
    CHECK_OK(loom_close(c));
    char out = 1;
    CHECK_ERR(loom_recv(c, &out), EPIPE);
    loom_chan_free(c);
}

/* ------------------------------------------------------ big elements */

typedef struct big {
    unsigned char bytes[200];
} big;

static void fill_big(big *b, unsigned seed)
{
    for (size_t i = 0; i < sizeof b->bytes; i++)
        b->bytes[i] = (unsigned char)(seed * 31u + i * 7u + (seed >> 3));
}

struct bigsend {
    loom_chan *c;
    int n;
};

static void big_sender(void *arg)
{
    /* copy the parameters: once the last value is received, *arg's frame may be gone */
    struct bigsend s = *(struct bigsend *)arg;
    for (int i = 0; i < s.n; i++) {
        big b;
        fill_big(&b, (unsigned)i);
        CHECK_OK(loom_send(s.c, &b));
        memset(&b, 0xEE, sizeof b); /* the channel must have copied it */
    }
}

static void test_big_elements(void)
{
    size_t caps[] = { 0, 1, 7 };
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        loom_chan *c = loom_chan_new(sizeof(big), caps[k]);
        CHECK(c != NULL);
        CHECK_EQ(loom_chan_cap(c), caps[k]);
        struct bigsend s = { .c = c, .n = 500 };
        CHECK(loom_go(big_sender, &s) != 0);
        for (int i = 0; i < s.n; i++) {
            big got, want;
            memset(&got, 0, sizeof got);
            fill_big(&want, (unsigned)i);
            CHECK_OK(loom_recv(c, &got));
            CHECK_MSG(memcmp(&got, &want, sizeof got) == 0, "200-byte element %d corrupted (cap %zu)", i,
                      caps[k]);
        }
        loom_chan_free(c);
    }

    /* odd size (3 bytes) and a page-sized element, through a wrapping ring */
    size_t sizes[] = { 3, 4096 + 5 };
    for (size_t k = 0; k < 2; k++) {
        size_t es = sizes[k];
        loom_chan *c = loom_chan_new(es, 3);
        CHECK(c != NULL);
        unsigned char *in = malloc(es), *out = malloc(es);
        CHECK(in && out);
        unsigned sent = 0, recvd = 0;
        for (int round = 0; round < 50; round++) {
            while (loom_chan_len(c) < 3) {
                for (size_t i = 0; i < es; i++)
                    in[i] = (unsigned char)(sent + i * 13);
                CHECK_OK(loom_try_send(c, in));
                sent++;
            }
            int take = 1 + round % 3;
            for (int t = 0; t < take; t++) {
                memset(out, 0, es);
                CHECK_OK(loom_recv(c, out));
                for (size_t i = 0; i < es; i++)
                    if (out[i] != (unsigned char)(recvd + i * 13))
                        FAIL("element %u of size %zu: byte %zu is %u, want %u", recvd, es, i, out[i],
                             (unsigned char)(recvd + i * 13));
                recvd++;
            }
        }
        free(in);
        free(out);
        loom_chan_free(c);
    }
}

/* ------------------------------------------------------ NULL & EAGAIN */

static void test_null_channel(void)
{
    long v = 5;
    CHECK_ERR(loom_send(NULL, &v), EINVAL);
    CHECK_ERR(loom_recv(NULL, &v), EINVAL);
    CHECK_ERR(loom_close(NULL), EINVAL);
    CHECK_ERR(loom_try_send(NULL, &v), EINVAL);
    CHECK_ERR(loom_try_recv(NULL, &v), EINVAL);
}

static void test_try_eagain(void)
{
    long v = 1;
    loom_chan *u = loom_chan_new(sizeof v, 0);
    loom_chan *b = loom_chan_new(sizeof v, 1);
    CHECK(u && b);
    CHECK_ERR(loom_try_send(u, &v), EAGAIN);
    CHECK_ERR(loom_try_recv(u, &v), EAGAIN);
    CHECK_ERR(loom_try_recv(b, &v), EAGAIN);
    CHECK_OK(loom_try_send(b, &v));
    v = 2;
    CHECK_ERR(loom_try_send(b, &v), EAGAIN);
    CHECK_EQ(loom_chan_len(b), 1);
    CHECK_OK(loom_try_recv(b, &v));
    CHECK_EQ(v, 1); /* the refused value 2 was not stored */
    CHECK_ERR(loom_try_recv(b, &v), EAGAIN);
    loom_chan_free(u);
    loom_chan_free(b);
}

/* ------------------------------------------------------ chan_new failures */

static void expect_new_fails(size_t es, size_t cap, int line)
{
    errno = 0;
    loom_chan *c = loom_chan_new(es, cap);
    int e = errno;
    if (c != NULL)
        t_fail(__FILE__, line, "loom_chan_new(%zu, %zu) succeeded; expected NULL", es, cap);
    if (e != ENOMEM && e != EINVAL)
        t_fail(__FILE__, line,
               "loom_chan_new(%zu, %zu) returned NULL with errno %d (%s); expected ENOMEM or EINVAL", es, cap,
               e, t_errname(e));
}

static void test_new_failures(void)
{
    /* elem_size * capacity overflows size_t */
    expect_new_fails(SIZE_MAX, 2, __LINE__);
    expect_new_fails(2, SIZE_MAX / 2 + 1, __LINE__);
    expect_new_fails((size_t)1 << 33, (size_t)1 << 33, __LINE__);
    /* no overflow of the product, but beyond any address space (2^60 bytes) */
    expect_new_fails((size_t)1 << 20, (size_t)1 << 40, __LINE__);
    expect_new_fails(1, SIZE_MAX, __LINE__);
    expect_new_fails(1, SIZE_MAX - 64, __LINE__);

    /* the runtime is unharmed */
    loom_chan *c = loom_chan_new(sizeof(int), 4);
    CHECK(c != NULL);
    int v = 3;
    CHECK_OK(loom_send(c, &v));
    v = 0;
    CHECK_OK(loom_recv(c, &v));
    CHECK_EQ(v, 3);
    loom_chan_free(c);
}

static int main_fn(void *arg)
{
    (void)arg;
    test_null_channel();
    test_try_eagain();
    test_unbuffered_rendezvous();
    test_buffered_ring();
    test_buffered_block_when_full();
    test_signal_channels();
    test_big_elements();
    test_new_failures();
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
