/*
 * test_chan_free — API.md: "Once a send, receive or select has returned to its
 * goroutine, the runtime touches that channel no more on its behalf: a channel
 * may be freed as soon as every goroutine using it has returned from its last
 * call on it (as skynet-style code does the moment its last value arrives)."
 *
 * Skynet-style: a parent creates a channel per child, the child sends one value
 * and exits, and the parent frees the channel the moment its receive returns —
 * while the child may still be on its way out of loom_send. Run many times, in
 * several orders (parent parked first, child parked first, buffered, through
 * select on either side, fan-in of several children, a send followed by a
 * close as the child's last call). Under ASan any touch of the freed channel by
 * the runtime is a heap-use-after-free; without it, a reused allocation gets
 * corrupted and the value checks or later channels fail.
 */
#include "t.h"

#include <stdatomic.h>

enum { MODE_PLAIN, MODE_CHILD_FIRST, MODE_SELECT_SEND, MODE_SELECT_BOTH, MODE_SEND_CLOSE, NMODES };

struct child {
    loom_chan *c;
    long value;
    int mode;
};

static void child_fn(void *arg)
{
    struct child *ch = arg; /* lives in the parent's frame; read it before sending */
    loom_chan *c = ch->c;
    long v = ch->value;
    int mode = ch->mode;
    if (mode == MODE_PLAIN && (v & 1))
        loom_yield(); /* vary who arrives first */
    switch (mode) {
    case MODE_SELECT_SEND:
    case MODE_SELECT_BOTH: {
        loom_case cs[2] = {
            { .chan = NULL, .op = LOOM_RECV, .elem = NULL },
            { .chan = c, .op = LOOM_SEND, .elem = &v },
        };
        int r = loom_select(cs, 2, -1);
        CHECK_EQ(r, 1);
        CHECK_EQ(cs[1].ok, 1);
        break;
    }
    case MODE_SEND_CLOSE:
        CHECK_OK(loom_send(c, &v));
        CHECK_OK(loom_close(c)); /* last call; the parent frees on -EPIPE */
        break;
    default: CHECK_OK(loom_send(c, &v)); break;
    }
    /* no further use of c or ch */
}

static void one_round(int mode, size_t cap, long value)
{
    loom_chan *c = loom_chan_new(sizeof(long), cap);
    CHECK(c != NULL);
    struct child ch = { .c = c, .value = value, .mode = mode };
    CHECK(loom_go(child_fn, &ch) != 0);
    if (mode == MODE_CHILD_FIRST)
        loom_yield(); /* often lets the child park in send before we receive */
    long got = -1;
    if (mode == MODE_SELECT_BOTH) {
        loom_case cs[2] = {
            { .chan = c, .op = LOOM_RECV, .elem = &got, .ok = -1 },
            { .chan = NULL, .op = LOOM_SEND, .elem = &got },
        };
        CHECK_EQ(loom_select(cs, 2, -1), 0);
        CHECK_EQ(cs[0].ok, 1);
    } else {
        CHECK_OK(loom_recv(c, &got));
    }
    if (got != value)
        FAIL("mode %d cap %zu: received %ld, expected %ld", mode, cap, got, value);
    if (mode == MODE_SEND_CLOSE) {
        long z = 5;
        CHECK_ERR(loom_recv(c, &z), EPIPE);
        CHECK_EQ(z, 0);
    }
    loom_chan_free(c); /* right away */
}

/* fan-in: n children, each with its own channel; the parent waits on all of
 * them with one select and frees each channel as soon as its value arrives */
static void fan_in(int n, long base)
{
    loom_chan **c = calloc((size_t)n, sizeof *c);
    struct child *ch = calloc((size_t)n, sizeof *ch);
    loom_case *cs = calloc((size_t)n, sizeof *cs);
    long *got = calloc((size_t)n, sizeof *got);
    CHECK(c && ch && cs && got);
    for (int i = 0; i < n; i++) {
        c[i] = loom_chan_new(sizeof(long), (size_t)(i % 2));
        CHECK(c[i] != NULL);
        ch[i] = (struct child){ .c = c[i],
                                .value = base + i,
                                .mode = i % 3 == 0 ? MODE_SELECT_SEND : MODE_PLAIN };
        cs[i] = (loom_case){ .chan = c[i], .op = LOOM_RECV, .elem = &got[i] };
    }
    for (int i = 0; i < n; i++)
        CHECK(loom_go(child_fn, &ch[i]) != 0);
    for (int left = n; left > 0; left--) {
        int r = loom_select(cs, n, -1);
        CHECK(r >= 0 && r < n);
        CHECK_EQ(cs[r].ok, 1);
        CHECK_EQ(got[r], base + r);
        loom_chan_free(c[r]);
        cs[r].chan = NULL; /* never touched again */
    }
    free(c);
    free(ch);
    free(cs);
    free(got);
}

/* skynet proper: a tree where each node sums its children's results */
struct node {
    loom_chan *out;
    long num, size;
};

static void skynet(void *arg)
{
    struct node *nd = arg;
    loom_chan *out = nd->out;
    long num = nd->num, size = nd->size;
    long sum = 0;
    if (size == 1) {
        sum = num;
    } else {
        enum { DIV = 4 };
        long sub = size / DIV;
        loom_chan *c = loom_chan_new(sizeof(long), 0);
        CHECK(c != NULL);
        struct node kids[DIV];
        for (int i = 0; i < DIV; i++) {
            kids[i] = (struct node){ .out = c, .num = num + i * sub, .size = sub };
            CHECK(loom_go(skynet, &kids[i]) != 0);
        }
        for (int i = 0; i < DIV; i++) {
            long v = 0;
            CHECK_OK(loom_recv(c, &v));
            sum += v;
        }
        loom_chan_free(c); /* the moment its last value arrives */
    }
    CHECK_OK(loom_send(out, &sum));
}

static int main_fn(void *arg)
{
    (void)arg;
    long rounds = t_scale(20000);
    for (long i = 0; i < rounds; i++) {
        int mode = (int)(i % NMODES);
        size_t cap = (size_t)((i / NMODES) % 2);
        one_round(mode, cap, i * 3 + 1);
    }
    long fans = t_scale(200);
    for (long i = 0; i < fans; i++)
        fan_in(16, i * 100);

    /* 4^k leaves: the largest power of 4 <= 4096 / scale */
    long leaves = 4;
    while (leaves * 4 <= t_scale(4096))
        leaves *= 4;
    for (int rep = 0; rep < 2; rep++) {
        loom_chan *root = loom_chan_new(sizeof(long), 0);
        CHECK(root != NULL);
        struct node top = { .out = root, .num = 0, .size = leaves };
        CHECK(loom_go(skynet, &top) != 0);
        long sum = -1;
        CHECK_OK(loom_recv(root, &sum));
        CHECK_EQ(sum, leaves * (leaves - 1) / 2);
        loom_chan_free(root);
    }
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
