/*
 * group.c — loom_group: Go's errgroup (golang.org/x/sync/errgroup), structured: a group
 * cannot leak its goroutines, since loom_group_wait joins every one and ignores the
 * caller's context while it does.
 *
 * The group's context is a child of the parent given; each goroutine runs with it current.
 * The first fn to return non-zero records its result and ends the context (-ECANCELED),
 * which cuts the others' waits short (context.c).  A limit is a channel of that many slots:
 * loom_group_go takes one with a send (a wait the caller's own context may end) and the
 * goroutine gives it back with a receive when fn returns.
 */
#include "internal.h"

struct loom_group {
    loom_ctx *ctx;
    loom_chan *slots; /* NULL: no limit */
    loom_waitgroup wg;
    int err; /* the first non-zero result; atomic */
};

struct job {
    loom_group *g;
    int (*fn)(void *);
    void *arg;
};

loom_group *loom_group_new(loom_ctx *parent, int limit) {
    if (limit < 0) {
        errno = EINVAL;
        return NULL;
    }
    loom_group *g = calloc(1, sizeof *g);
    if (!g) {
        errno = ENOMEM;
        return NULL;
    }
    g->wg = (loom_waitgroup)LOOM_WAITGROUP_INIT;
    if (!(g->ctx = loom_ctx_with_cancel(parent)) ||
        (limit > 0 && !(g->slots = loom_chan_new(0, (size_t)limit)))) {
        loom_ctx_free(g->ctx);
        free(g);
        errno = ENOMEM;
        return NULL;
    }
    return g;
}

static void run(void *arg) {
    struct job j = *(struct job *)arg;
    free(arg);
    int r = j.fn(j.arg);
    int zero = 0;
    if (r != 0 && __atomic_compare_exchange_n(&j.g->err, &zero, r, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        loom_ctx_cancel(j.g->ctx, -ECANCELED);
    if (j.g->slots) (void)loom_try_recv(j.g->slots, NULL);
    loom_wg_done(&j.g->wg);
}

int loom_group_go(loom_group *g, int (*fn)(void *), void *arg) {
    if (!g || !fn) return -EINVAL;
    if (!loom__in_goroutine()) return -EPERM;
    if (g->slots) {
        int r = loom_send(g->slots, NULL); /* a slot; the caller's context may end the wait */
        if (r < 0) return r;
    }
    struct job *j = malloc(sizeof *j);
    if (!j) goto nomem;
    *j = (struct job){ g, fn, arg };
    loom_wg_add(&g->wg, 1);
    loom_ctx *old = loom_ctx_set(g->ctx); /* the goroutine starts with the group's */
    uint64_t id = loom_go(run, j);
    loom_ctx_set(old);
    if (id) return 0;
    loom_wg_done(&g->wg);
    free(j);
nomem:
    if (g->slots) (void)loom_try_recv(g->slots, NULL);
    return -ENOMEM;
}

int loom_group_wait(loom_group *g) {
    if (!g) return -EINVAL;
    if (!loom__in_goroutine()) return -EPERM;
    loom_ctx *old = loom_ctx_set(loom_ctx_background()); /* joins all, whatever ends */
    loom_wg_wait(&g->wg);
    loom_ctx_set(old);
    loom_ctx_cancel(g->ctx, -ECANCELED);
    return LOAD(&g->err);
}

loom_ctx *loom_group_ctx(loom_group *g) { return g ? g->ctx : NULL; }

void loom_group_free(loom_group *g) {
    if (!g) return;
    loom_ctx_free(g->ctx);
    loom_chan_free(g->slots);
    free(g);
}
