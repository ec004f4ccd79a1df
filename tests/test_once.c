/*
 * test_once.c — loom_once_do: fn runs exactly once however many goroutines call it
 * at the same time, every caller returns only after fn has completed (fn parks in
 * the middle), fn gets its arg, and separate once objects are independent.
 */
#include "t.h"

#define NCALLERS 100

static loom_once g_once = LOOM_ONCE_INIT;
static int g_calls;      /* atomic */
static int g_completed;  /* atomic: set by fn as its last action */
static void *g_arg_seen; /* written by fn */
static int g_returned;   /* atomic */
static int g_ready;      /* atomic: callers that arrived at the gate */
static int g_go;         /* atomic: gate */

static void init_fn(void *arg)
{
    CHECK_EQ(__atomic_add_fetch(&g_calls, 1, __ATOMIC_SEQ_CST), 1);
    g_arg_seen = arg;
    loom_sleep(30000000); /* 30 ms: the other callers pile up meanwhile */
    loom_yield();
    __atomic_store_n(&g_completed, 1, __ATOMIC_SEQ_CST);
}

static int g_token;

static void caller(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&g_ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&g_go, __ATOMIC_SEQ_CST))
        loom_yield();
    loom_once_do(&g_once, init_fn, &g_token);
    CHECK_MSG(__atomic_load_n(&g_completed, __ATOMIC_SEQ_CST) == 1,
              "loom_once_do returned before fn completed");
    CHECK(g_arg_seen == &g_token);
    __atomic_add_fetch(&g_returned, 1, __ATOMIC_SEQ_CST);
}

/* independent once objects, each with its own counter */
typedef struct {
    loom_once once;
    int calls;
} slot;
static slot g_slots[16];

static void slot_fn(void *arg)
{
    slot *s = arg;
    __atomic_add_fetch(&s->calls, 1, __ATOMIC_SEQ_CST);
    loom_yield();
}

static int g_slot_done; /* atomic */
static void slot_caller(void *arg)
{
    long id = (long)(intptr_t)arg;
    for (int k = 0; k < 16; k++) {
        slot *s = &g_slots[(k + id) % 16];
        loom_once_do(&s->once, slot_fn, s);
        CHECK_EQ(__atomic_load_n(&s->calls, __ATOMIC_SEQ_CST), 1);
    }
    __atomic_add_fetch(&g_slot_done, 1, __ATOMIC_SEQ_CST);
}

static void never(void *arg)
{
    (void)arg;
    FAIL("fn of a completed once ran again");
}

static int main_fn(void *arg)
{
    (void)arg;
    for (int i = 0; i < NCALLERS; i++)
        CHECK(loom_go(caller, NULL) != 0);
    T_WAIT_UNTIL(t_get(&g_ready) >= NCALLERS, 30, "callers at the gate (%d of %d)", t_get(&g_ready),
                 NCALLERS);
    __atomic_store_n(&g_go, 1, __ATOMIC_SEQ_CST);
    T_WAIT_UNTIL(t_get(&g_returned) >= NCALLERS, 30, "callers to return from loom_once_do (%d of %d)",
                 t_get(&g_returned), NCALLERS);
    CHECK_EQ(__atomic_load_n(&g_calls, __ATOMIC_SEQ_CST), 1);

    /* done: later calls return at once without calling fn */
    loom_once_do(&g_once, never, NULL);
    loom_once_do(&g_once, init_fn, &g_token);
    CHECK_EQ(__atomic_load_n(&g_calls, __ATOMIC_SEQ_CST), 1);

    for (int i = 0; i < 16; i++) {
        loom_once o = LOOM_ONCE_INIT;
        g_slots[i].once = o;
        g_slots[i].calls = 0;
    }
    for (long i = 0; i < 32; i++)
        CHECK(loom_go(slot_caller, (void *)(intptr_t)i) != 0);
    T_WAIT_UNTIL(t_get(&g_slot_done) >= 32, 30, "slot callers (%d of %d)", t_get(&g_slot_done), 32);
    for (int i = 0; i < 16; i++)
        CHECK_EQ(g_slots[i].calls, 1);

    /* an automatic once object, used from one goroutine */
    loom_once local = LOOM_ONCE_INIT;
    slot s = { LOOM_ONCE_INIT, 0 };
    loom_once_do(&local, slot_fn, &s);
    loom_once_do(&local, slot_fn, &s);
    CHECK_EQ(s.calls, 1);
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
