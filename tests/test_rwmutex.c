/*
 * test_rwmutex.c — loom_rwmutex: readers share, writers exclude readers and writers,
 * misuse returns -EPERM without corrupting the lock, and a waiting writer is not
 * starved by a continuous stream of readers (as sync.RWMutex: a pending writer
 * holds back new readers).
 */
#include "t.h"

static int64_t deadline_in(double s) { return t_clock_ns() + (int64_t)(s * 1e9); }

static void wait_count(int *p, int want, double secs, const char *what)
{
    int64_t dl = deadline_in(secs);
    while (__atomic_load_n(p, __ATOMIC_SEQ_CST) < want) {
        CHECK_MSG(t_clock_ns() < dl, "timed out waiting for %s (%d of %d)", what,
                  __atomic_load_n(p, __ATOMIC_SEQ_CST), want);
        loom_sleep(200000);
    }
}

/* ---- 1. readers share the lock: N readers all inside at once */
#define NREADERS 8
static loom_rwmutex r_mu = LOOM_RWMUTEX_INIT;
static int r_inside;     /* atomic */
static int r_done;       /* atomic */

static void sharing_reader(void *arg)
{
    (void)arg;
    loom_rwmutex_rlock(&r_mu);
    __atomic_add_fetch(&r_inside, 1, __ATOMIC_SEQ_CST);
    /* hold the read lock until every reader holds it too: only possible if
     * read locks are shared */
    int64_t dl = deadline_in(20);
    while (__atomic_load_n(&r_inside, __ATOMIC_SEQ_CST) < NREADERS) {
        CHECK_MSG(t_clock_ns() < dl, "only %d of %d readers got the read lock together",
                  __atomic_load_n(&r_inside, __ATOMIC_SEQ_CST), NREADERS);
        loom_sleep(100000);
    }
    CHECK_OK(loom_rwmutex_runlock(&r_mu));
    __atomic_add_fetch(&r_done, 1, __ATOMIC_SEQ_CST);
}

/* readers spinning across Ps without sleeping: at least two inside at once */
static int c_inside, c_max, c_stop, c_done;   /* atomics */
static void concurrent_reader(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&c_stop, __ATOMIC_SEQ_CST)) {
        loom_rwmutex_rlock(&r_mu);
        int in = __atomic_add_fetch(&c_inside, 1, __ATOMIC_SEQ_CST);
        int m = __atomic_load_n(&c_max, __ATOMIC_SEQ_CST);
        while (in > m && !__atomic_compare_exchange_n(&c_max, &m, in, 0,
                                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            ;
        for (volatile int k = 0; k < 200; k++)
            ;
        loom_yield();     /* still holding the read lock */
        __atomic_sub_fetch(&c_inside, 1, __ATOMIC_SEQ_CST);
        CHECK_OK(loom_rwmutex_runlock(&r_mu));
        loom_yield();
    }
    __atomic_add_fetch(&c_done, 1, __ATOMIC_SEQ_CST);
}

static void test_readers_share(void)
{
    for (int i = 0; i < NREADERS; i++)
        CHECK(loom_go(sharing_reader, NULL) != 0);
    wait_count(&r_done, NREADERS, 30, "sharing readers");

    int nprocs = loom_procs();
    int nr = nprocs < 2 ? 2 : nprocs * 2;
    for (int i = 0; i < nr; i++)
        CHECK(loom_go(concurrent_reader, NULL) != 0);
    int64_t dl = deadline_in(10);
    while (__atomic_load_n(&c_max, __ATOMIC_SEQ_CST) < 2 && t_clock_ns() < dl)
        loom_sleep(1000000);
    __atomic_store_n(&c_stop, 1, __ATOMIC_SEQ_CST);
    wait_count(&c_done, nr, 30, "concurrent readers");
    CHECK_GE(__atomic_load_n(&c_max, __ATOMIC_SEQ_CST), 2);
    /* the lock is free now */
    loom_rwmutex_lock(&r_mu);
    CHECK_OK(loom_rwmutex_unlock(&r_mu));
}

/* ---- 2. writers exclude readers and other writers */
static loom_rwmutex x_mu = LOOM_RWMUTEX_INIT;
static int x_readers;        /* atomic: readers inside */
static int x_writers;        /* atomic: writers inside */
static long x_a, x_b;        /* plain: written by writers only, both equal outside a write */
static long x_writes;        /* plain: under the write lock */
static int x_done;           /* atomic */
static long x_iters;

static void x_writer(void *arg)
{
    long id = (long)(intptr_t)arg;
    for (long i = 0; i < x_iters; i++) {
        loom_rwmutex_lock(&x_mu);
        int w = __atomic_add_fetch(&x_writers, 1, __ATOMIC_SEQ_CST);
        int r = __atomic_load_n(&x_readers, __ATOMIC_SEQ_CST);
        CHECK_MSG(w == 1 && r == 0, "writer %ld inside with %d writers and %d readers", id, w, r);
        long v = x_a + 1;
        x_a = v;
        if (i % 3 == 0)
            loom_yield();       /* readers must not see x_a != x_b */
        x_b = v;
        x_writes++;
        __atomic_sub_fetch(&x_writers, 1, __ATOMIC_SEQ_CST);
        CHECK_OK(loom_rwmutex_unlock(&x_mu));
        loom_yield();
    }
    __atomic_add_fetch(&x_done, 1, __ATOMIC_SEQ_CST);
}

static void x_reader(void *arg)
{
    long id = (long)(intptr_t)arg;
    for (long i = 0; i < x_iters * 3; i++) {
        loom_rwmutex_rlock(&x_mu);
        __atomic_add_fetch(&x_readers, 1, __ATOMIC_SEQ_CST);
        int w = __atomic_load_n(&x_writers, __ATOMIC_SEQ_CST);
        CHECK_MSG(w == 0, "reader %ld inside with %d writers", id, w);
        long a = x_a;
        if (i % 4 == 0)
            loom_yield();
        long b = x_b;
        CHECK_MSG(a == b, "reader %ld saw a torn write: a=%ld b=%ld", id, a, b);
        __atomic_sub_fetch(&x_readers, 1, __ATOMIC_SEQ_CST);
        CHECK_OK(loom_rwmutex_runlock(&x_mu));
        if (i % 2 == 0)
            loom_yield();
    }
    __atomic_add_fetch(&x_done, 1, __ATOMIC_SEQ_CST);
}

static void test_exclusion(void)
{
    enum { NW = 4, NR = 6 };
    x_iters = t_scale(5000);
    for (long i = 0; i < NW; i++)
        CHECK(loom_go(x_writer, (void *)(intptr_t)i) != 0);
    for (long i = 0; i < NR; i++)
        CHECK(loom_go(x_reader, (void *)(intptr_t)i) != 0);
    wait_count(&x_done, NW + NR, 120, "writers and readers");
    loom_rwmutex_rlock(&x_mu);
    CHECK_EQ(x_writes, NW * x_iters);
    CHECK_EQ(x_a, NW * x_iters);
    CHECK_EQ(x_b, NW * x_iters);
    CHECK_OK(loom_rwmutex_runlock(&x_mu));
}

/* ---- 3. misuse: -EPERM, state intact */
static void test_misuse(void)
{
    loom_rwmutex m = LOOM_RWMUTEX_INIT;
    CHECK_ERR(loom_rwmutex_runlock(&m), EPERM);
    CHECK_ERR(loom_rwmutex_unlock(&m), EPERM);
    CHECK_ERR(loom_rwmutex_runlock(&m), EPERM);
    CHECK_ERR(loom_rwmutex_unlock(&m), EPERM);

    /* still works: read side, nested readers */
    loom_rwmutex_rlock(&m);
    loom_rwmutex_rlock(&m);
    CHECK_OK(loom_rwmutex_runlock(&m));
    CHECK_OK(loom_rwmutex_runlock(&m));
    CHECK_ERR(loom_rwmutex_runlock(&m), EPERM);

    /* write side */
    loom_rwmutex_lock(&m);
    CHECK_OK(loom_rwmutex_unlock(&m));
    CHECK_ERR(loom_rwmutex_unlock(&m), EPERM);

    /* read-held: unlock (of the write lock) is misuse and must leave the read lock held */
    loom_rwmutex_rlock(&m);
    CHECK_ERR(loom_rwmutex_unlock(&m), EPERM);
    CHECK_OK(loom_rwmutex_runlock(&m));
    CHECK_ERR(loom_rwmutex_runlock(&m), EPERM);

    /* write-held: runlock is misuse and must leave the write lock held */
    loom_rwmutex_lock(&m);
    CHECK_ERR(loom_rwmutex_runlock(&m), EPERM);
    CHECK_OK(loom_rwmutex_unlock(&m));
    CHECK_ERR(loom_rwmutex_unlock(&m), EPERM);

    /* and a final round trip of both sides */
    loom_rwmutex_lock(&m);
    CHECK_OK(loom_rwmutex_unlock(&m));
    loom_rwmutex_rlock(&m);
    CHECK_OK(loom_rwmutex_runlock(&m));
}

/* after misuse, a writer still waits for a reader and vice versa */
static loom_rwmutex mm = LOOM_RWMUTEX_INIT;
static int mm_writer_in;   /* atomic */
static int mm_reader_in;   /* atomic */

static void mm_writer(void *arg)
{
    (void)arg;
    loom_rwmutex_lock(&mm);
    __atomic_store_n(&mm_writer_in, 1, __ATOMIC_SEQ_CST);
    CHECK_OK(loom_rwmutex_unlock(&mm));
}

static void mm_reader(void *arg)
{
    (void)arg;
    loom_rwmutex_rlock(&mm);
    __atomic_store_n(&mm_reader_in, 1, __ATOMIC_SEQ_CST);
    CHECK_OK(loom_rwmutex_runlock(&mm));
}

static void test_misuse_then_blocking(void)
{
    CHECK_ERR(loom_rwmutex_runlock(&mm), EPERM);
    CHECK_ERR(loom_rwmutex_unlock(&mm), EPERM);
    loom_rwmutex_rlock(&mm);
    CHECK_ERR(loom_rwmutex_unlock(&mm), EPERM);
    CHECK(loom_go(mm_writer, NULL) != 0);
    loom_sleep(30000000);
    CHECK_MSG(!__atomic_load_n(&mm_writer_in, __ATOMIC_SEQ_CST),
              "writer got the lock while a reader held it");
    CHECK_OK(loom_rwmutex_runlock(&mm));
    wait_count(&mm_writer_in, 1, 10, "writer after the reader left");

    loom_rwmutex_lock(&mm);
    CHECK_ERR(loom_rwmutex_runlock(&mm), EPERM);
    CHECK(loom_go(mm_reader, NULL) != 0);
    loom_sleep(30000000);
    CHECK_MSG(!__atomic_load_n(&mm_reader_in, __ATOMIC_SEQ_CST),
              "reader got the lock while a writer held it");
    CHECK_OK(loom_rwmutex_unlock(&mm));
    wait_count(&mm_reader_in, 1, 10, "reader after the writer left");
}

/* ---- 4. a writer is not starved by a continuous stream of overlapping readers */
static loom_rwmutex s_mu = LOOM_RWMUTEX_INIT;
static int s_stop;        /* atomic */
static int s_done;        /* atomic */
static int s_reads;       /* atomic */

static void stream_reader(void *arg)
{
    long id = (long)(intptr_t)arg;
    loom_sleep(id * 300000);          /* stagger, so read holds overlap */
    while (!__atomic_load_n(&s_stop, __ATOMIC_SEQ_CST)) {
        loom_rwmutex_rlock(&s_mu);
        __atomic_add_fetch(&s_reads, 1, __ATOMIC_SEQ_CST);
        loom_sleep(1000000);          /* 1 ms inside */
        CHECK_OK(loom_rwmutex_runlock(&s_mu));
        /* straight back to rlock() */
    }
    __atomic_add_fetch(&s_done, 1, __ATOMIC_SEQ_CST);
}

static void test_writer_not_starved(void)
{
    enum { NR = 6 };
    for (long i = 0; i < NR; i++)
        CHECK(loom_go(stream_reader, (void *)(intptr_t)i) != 0);
    wait_count(&s_reads, 3 * NR, 20, "readers to get going");
    for (int round = 0; round < 10; round++) {
        int64_t t0 = t_clock_ns();
        loom_rwmutex_lock(&s_mu);
        int64_t w = t_clock_ns() - t0;
        int before = __atomic_load_n(&s_reads, __ATOMIC_SEQ_CST);
        loom_sleep(200000);
        /* no reader got in while the writer held the lock */
        CHECK_EQ(__atomic_load_n(&s_reads, __ATOMIC_SEQ_CST), before);
        CHECK_OK(loom_rwmutex_unlock(&s_mu));
        CHECK_MSG(w < 1000000000LL, "writer waited %.3f s behind readers (round %d): starved",
                  w / 1e9, round);
        loom_sleep(3000000);          /* readers back in */
    }
    __atomic_store_n(&s_stop, 1, __ATOMIC_SEQ_CST);
    wait_count(&s_done, NR, 20, "stream readers to stop");
}

static int main_fn(void *arg)
{
    (void)arg;
    test_misuse();
    test_misuse_then_blocking();
    test_readers_share();
    test_exclusion();
    test_writer_not_starved();
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    return 0;
}
