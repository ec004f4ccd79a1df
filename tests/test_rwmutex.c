/*
 * test_rwmutex.c — loom_rwmutex: readers share, writers exclude readers and writers,
 * misuse returns -EPERM without corrupting the lock, and a waiting writer is not
 * starved by a continuous stream of readers (as sync.RWMutex: a pending writer
 * holds back new readers, so the reads begun while it waits are at most one per reader,
 * counted exactly at one P).
 *
 * Misuse is checked in every state of the lock: a runlock with no reader in (none at
 * all; a writer holding it while readers wait behind it; more runlocks than the readers
 * a pending writer waits for) and an unlock with no writer holding it (readers in; a
 * writer still waiting for them) return -EPERM and leave the waiting goroutines waiting
 * and then getting in; and in a stress at LOOM_PROCS=2 every stray call from a goroutine
 * holding nothing is refused while mutual exclusion holds.
 *
 * `test_rwmutex NAME...` runs only the named cases (see main_fn and main).
 */
#include "t.h"

static int64_t deadline_in(double s)
{
    return t_clock_ns() + (int64_t)(s * 1e9);
}

/* ---- 1. readers share the lock: N readers all inside at once */
#define NREADERS 8
static loom_rwmutex r_mu = LOOM_RWMUTEX_INIT;
static int r_inside; /* atomic */
static int r_done;   /* atomic */

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
static int c_inside, c_max, c_stop, c_done; /* atomics */
static void concurrent_reader(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&c_stop, __ATOMIC_SEQ_CST)) {
        loom_rwmutex_rlock(&r_mu);
        int in = __atomic_add_fetch(&c_inside, 1, __ATOMIC_SEQ_CST);
        int m = __atomic_load_n(&c_max, __ATOMIC_SEQ_CST);
        while (in > m && !__atomic_compare_exchange_n(&c_max, &m, in, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            ;
        for (volatile int k = 0; k < 200; k++)
            ;
        loom_yield(); /* still holding the read lock */
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
    T_WAIT_UNTIL(t_get(&r_done) >= NREADERS, 30, "sharing readers (%d of %d)", t_get(&r_done), NREADERS);

    int nprocs = loom_procs();
    int nr = nprocs < 2 ? 2 : nprocs * 2;
    for (int i = 0; i < nr; i++)
        CHECK(loom_go(concurrent_reader, NULL) != 0);
    int64_t dl = deadline_in(10);
    while (__atomic_load_n(&c_max, __ATOMIC_SEQ_CST) < 2 && t_clock_ns() < dl)
        loom_sleep(1000000);
    __atomic_store_n(&c_stop, 1, __ATOMIC_SEQ_CST);
    T_WAIT_UNTIL(t_get(&c_done) >= nr, 30, "concurrent readers (%d of %d)", t_get(&c_done), nr);
    CHECK_GE(__atomic_load_n(&c_max, __ATOMIC_SEQ_CST), 2);
    /* the lock is free now */
    loom_rwmutex_lock(&r_mu);
    CHECK_OK(loom_rwmutex_unlock(&r_mu));
}

/* ---- 2. writers exclude readers and other writers */
static loom_rwmutex x_mu = LOOM_RWMUTEX_INIT;
static int x_readers; /* atomic: readers inside */
static int x_writers; /* atomic: writers inside */
static long x_a, x_b; /* plain: written by writers only, both equal outside a write */
static long x_writes; /* plain: under the write lock */
static int x_done;    /* atomic */
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
            loom_yield(); /* readers must not see x_a != x_b */
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
    T_WAIT_UNTIL(t_get(&x_done) >= NW + NR, 120, "writers and readers (%d of %d)", t_get(&x_done), NW + NR);
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
static int mm_writer_in; /* atomic */
static int mm_reader_in; /* atomic */

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
    T_WAIT_UNTIL(t_get(&mm_writer_in) >= 1, 10, "writer after the reader left (%d of %d)",
                 t_get(&mm_writer_in), 1);

    loom_rwmutex_lock(&mm);
    CHECK_ERR(loom_rwmutex_runlock(&mm), EPERM);
    CHECK(loom_go(mm_reader, NULL) != 0);
    loom_sleep(30000000);
    CHECK_MSG(!__atomic_load_n(&mm_reader_in, __ATOMIC_SEQ_CST),
              "reader got the lock while a writer held it");
    CHECK_OK(loom_rwmutex_unlock(&mm));
    T_WAIT_UNTIL(t_get(&mm_reader_in) >= 1, 10, "reader after the writer left (%d of %d)",
                 t_get(&mm_reader_in), 1);
}

/* ---- 4. a writer is not starved by a continuous stream of overlapping readers: once it
 * asks, no new reader gets in before it, so the reads counted while it waits are only
 * those of readers already in (at most one each).  Exact at one P, where the count is
 * read and the lock asked for with nothing else running in between (preemption off for
 * those steps); at several Ps readers elsewhere may count reads in between, so there the
 * count is printed and the guard is a hang guard (the alarm). */
static loom_rwmutex s_mu = LOOM_RWMUTEX_INIT;
static int s_stop;  /* atomic */
static int s_done;  /* atomic */
static int s_reads; /* atomic */

static void stream_reader(void *arg)
{
    long id = (long)(intptr_t)arg;
    loom_sleep(id * 300000); /* stagger, so read holds overlap */
    while (!__atomic_load_n(&s_stop, __ATOMIC_SEQ_CST)) {
        loom_rwmutex_rlock(&s_mu);
        __atomic_add_fetch(&s_reads, 1, __ATOMIC_SEQ_CST);
        loom_sleep(1000000); /* 1 ms inside */
        CHECK_OK(loom_rwmutex_runlock(&s_mu));
        /* straight back to rlock() */
    }
    __atomic_add_fetch(&s_done, 1, __ATOMIC_SEQ_CST);
}

static void test_writer_not_starved(void)
{
    enum { NR = 6 };
    __atomic_store_n(&s_stop, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s_done, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s_reads, 0, __ATOMIC_SEQ_CST);
    for (long i = 0; i < NR; i++)
        CHECK(loom_go(stream_reader, (void *)(intptr_t)i) != 0);
    T_WAIT_UNTIL(t_get(&s_reads) >= 3 * NR, 20, "readers to get going (%d of %d)", t_get(&s_reads), 3 * NR);
    int most = 0;
    int64_t longest = 0;
    alarm(60); /* a writer starved for good hangs in lock() */
    for (int round = 0; round < 10; round++) {
        int64_t t0 = t_clock_ns();
        loom_preempt_disable();
        int asked = __atomic_load_n(&s_reads, __ATOMIC_SEQ_CST);
        loom_rwmutex_lock(&s_mu);
        int before = __atomic_load_n(&s_reads, __ATOMIC_SEQ_CST);
        loom_preempt_enable();
        int64_t w = t_clock_ns() - t0;
        if (before - asked > most)
            most = before - asked;
        if (w > longest)
            longest = w;
        loom_sleep(200000);
        /* no reader got in while the writer held the lock */
        CHECK_EQ(__atomic_load_n(&s_reads, __ATOMIC_SEQ_CST), before);
        CHECK_OK(loom_rwmutex_unlock(&s_mu));
        if (loom_procs() == 1)
            CHECK_MSG(before - asked <= NR,
                      "%d reads began while the writer waited (round %d, %.3f ms), more than the "
                      "%d readers that could have been in: starved",
                      before - asked, round, w / 1e6, NR);
        loom_sleep(3000000); /* readers back in */
    }
    alarm(0);
    printf("writer beside %d streaming readers at %d Ps: at most %d reads counted while it waited, the longest wait "
           "%.3f ms\n",
           NR, loom_procs(), most, longest / 1e6);
    __atomic_store_n(&s_stop, 1, __ATOMIC_SEQ_CST);
    T_WAIT_UNTIL(t_get(&s_done) >= NR, 20, "stream readers to stop (%d of %d)", t_get(&s_done), NR);
}

/* ---- 5. stray calls in the states where readers or a writer wait */
static loom_rwmutex b_mu = LOOM_RWMUTEX_INIT;
static int b_started;     /* atomic: goroutines about to call rlock / lock */
static int b_reader_in;   /* atomic: readers that got in */
static int b_reader_done; /* atomic: readers that left again */
static int b_writer_in;   /* atomic: 1 while the writer holds b_mu */
static int b_writer_go;   /* atomic: the writer may unlock */
static int b_writer_done; /* atomic */

enum { OP_RUNLOCK, OP_UNLOCK };

/* A call made by a goroutine of its own, which holds nothing. */
typedef struct {
    loom_rwmutex *mu;
    int op;
    int result;
    int done;
} stray_call;

static void stray_main(void *arg)
{
    stray_call *c = arg;
    int r = c->op == OP_RUNLOCK ? loom_rwmutex_runlock(c->mu) : loom_rwmutex_unlock(c->mu);
    c->result = r;
    __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
}

static int stray(loom_rwmutex *mu, int op)
{
    stray_call c = { mu, op, 1, 0 };
    CHECK(loom_go(stray_main, &c) != 0);
    T_WAIT_UNTIL(t_get(&c.done) >= 1, 10, "the stray goroutine (%d of %d)", t_get(&c.done), 1);
    return c.result;
}

static void b_reader(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&b_started, 1, __ATOMIC_SEQ_CST);
    loom_rwmutex_rlock(&b_mu);
    __atomic_add_fetch(&b_reader_in, 1, __ATOMIC_SEQ_CST);
    CHECK_OK(loom_rwmutex_runlock(&b_mu));
    __atomic_add_fetch(&b_reader_done, 1, __ATOMIC_SEQ_CST);
}

static void b_writer(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&b_started, 1, __ATOMIC_SEQ_CST);
    loom_rwmutex_lock(&b_mu);
    __atomic_store_n(&b_writer_in, 1, __ATOMIC_SEQ_CST);
    T_WAIT_UNTIL(t_get(&b_writer_go) >= 1, 30, "leave to unlock (%d of %d)", t_get(&b_writer_go), 1);
    __atomic_store_n(&b_writer_in, 0, __ATOMIC_SEQ_CST);
    CHECK_OK(loom_rwmutex_unlock(&b_mu));
    __atomic_store_n(&b_writer_done, 1, __ATOMIC_SEQ_CST);
}

static void b_reset(void)
{
    __atomic_store_n(&b_started, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&b_reader_in, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&b_reader_done, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&b_writer_in, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&b_writer_go, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&b_writer_done, 0, __ATOMIC_SEQ_CST);
}

/* start fn and give it the time to park in rlock / lock */
static void b_start(void (*fn)(void *), int started)
{
    CHECK(loom_go(fn, NULL) != 0);
    T_WAIT_UNTIL(t_get(&b_started) >= started, 10, "a goroutine to start (%d of %d)", t_get(&b_started),
                 started);
    loom_sleep(30000000);
}

/* once the readers started have left, b_mu is free again and works both ways */
static void b_check_free(int readers)
{
    T_WAIT_UNTIL(t_get(&b_reader_done) >= readers, 10, "the readers to leave (%d of %d)",
                 t_get(&b_reader_done), readers);
    CHECK_ERR(loom_rwmutex_runlock(&b_mu), EPERM);
    CHECK_ERR(loom_rwmutex_unlock(&b_mu), EPERM);
    loom_rwmutex_lock(&b_mu);
    CHECK_OK(loom_rwmutex_unlock(&b_mu));
    loom_rwmutex_rlock(&b_mu);
    loom_rwmutex_rlock(&b_mu);
    CHECK_OK(loom_rwmutex_runlock(&b_mu));
    CHECK_OK(loom_rwmutex_runlock(&b_mu));
    CHECK_ERR(loom_rwmutex_runlock(&b_mu), EPERM);
}

/* A writer holds the lock and a reader waits behind it: a runlock by a goroutine that
 * holds no read lock must be refused and must not eat the waiting reader's count, so that
 * the reader gets in when the writer unlocks. */
static void test_stray_runlock_reader_waits(void)
{
    b_reset();
    loom_rwmutex_lock(&b_mu);
    b_start(b_reader, 1);
    CHECK_EQ(__atomic_load_n(&b_reader_in, __ATOMIC_SEQ_CST), 0);
    int by_other = stray(&b_mu, OP_RUNLOCK);     /* a goroutine that holds nothing */
    int by_writer = loom_rwmutex_runlock(&b_mu); /* the writer holds no read lock either */
    CHECK_EQ(__atomic_load_n(&b_reader_in, __ATOMIC_SEQ_CST), 0);
    CHECK_OK(loom_rwmutex_unlock(&b_mu));
    int64_t dl = deadline_in(10);
    while (__atomic_load_n(&b_reader_in, __ATOMIC_SEQ_CST) == 0) {
        CHECK_MSG(t_clock_ns() < dl,
                  "the waiting reader did not get in within 10 s of the "
                  "writer's unlock (the stray runlocks returned %d and %d)",
                  by_other, by_writer);
        loom_sleep(200000);
    }
    CHECK_ERR(by_other, EPERM);
    CHECK_ERR(by_writer, EPERM);
    b_check_free(1);

    /* the same with three readers waiting and a stray runlock for each */
    b_reset();
    loom_rwmutex_lock(&b_mu);
    for (int i = 1; i <= 3; i++)
        b_start(b_reader, i);
    for (int i = 0; i < 3; i++)
        CHECK_ERR(stray(&b_mu, OP_RUNLOCK), EPERM);
    CHECK_EQ(__atomic_load_n(&b_reader_in, __ATOMIC_SEQ_CST), 0);
    CHECK_OK(loom_rwmutex_unlock(&b_mu));
    CHECK_ERR(loom_rwmutex_unlock(&b_mu), EPERM);
    T_WAIT_UNTIL(t_get(&b_reader_in) >= 3, 10,
                 "the three waiting readers after the writer's unlock (%d of %d)", t_get(&b_reader_in), 3);
    b_check_free(3);
}

/* Two readers in, a writer waiting for them, a reader waiting behind the writer. */
static void b_writer_pending(void)
{
    b_reset();
    loom_rwmutex_rlock(&b_mu);
    loom_rwmutex_rlock(&b_mu);
    b_start(b_writer, 1);
    b_start(b_reader, 2);
    CHECK_EQ(__atomic_load_n(&b_writer_in, __ATOMIC_SEQ_CST), 0);
    CHECK_EQ(__atomic_load_n(&b_reader_in, __ATOMIC_SEQ_CST), 0);
}

/* ... the writer only waits: an unlock is misuse, and lets nobody in */
static void test_stray_unlock_writer_pending(void)
{
    b_writer_pending();
    CHECK_ERR(stray(&b_mu, OP_UNLOCK), EPERM);
    CHECK_ERR(loom_rwmutex_unlock(&b_mu), EPERM);
    loom_sleep(10000000);
    CHECK_MSG(!__atomic_load_n(&b_writer_in, __ATOMIC_SEQ_CST),
              "a refused unlock let the writer in while readers were in");
    CHECK_MSG(!__atomic_load_n(&b_reader_in, __ATOMIC_SEQ_CST), "a refused unlock let the waiting reader in");
    CHECK_OK(loom_rwmutex_runlock(&b_mu));
    CHECK_OK(loom_rwmutex_runlock(&b_mu));
    T_WAIT_UNTIL(t_get(&b_writer_in) >= 1, 10, "the writer after the readers left (%d of %d)",
                 t_get(&b_writer_in), 1);
    CHECK_EQ(__atomic_load_n(&b_reader_in, __ATOMIC_SEQ_CST), 0);
    __atomic_store_n(&b_writer_go, 1, __ATOMIC_SEQ_CST);
    T_WAIT_UNTIL(t_get(&b_writer_done) >= 1, 10, "the writer to unlock (%d of %d)", t_get(&b_writer_done), 1);
    T_WAIT_UNTIL(t_get(&b_reader_in) >= 1, 10, "the waiting reader after the writer's unlock (%d of %d)",
                 t_get(&b_reader_in), 1);
    b_check_free(1);
}

/* ... two runlocks let the writer in; a third is misuse, by whoever: no reader is in any
 * more (the one still counted waits behind the writer) */
static void test_runlock_beyond_writer_pending(void)
{
    b_writer_pending();
    CHECK_OK(loom_rwmutex_runlock(&b_mu));
    loom_sleep(10000000);
    CHECK_MSG(!__atomic_load_n(&b_writer_in, __ATOMIC_SEQ_CST), "the writer got in with a reader still in");
    CHECK_OK(stray(&b_mu, OP_RUNLOCK)); /* one reader in: any goroutine may release it */
    T_WAIT_UNTIL(t_get(&b_writer_in) >= 1, 10, "the writer after the last reader left (%d of %d)",
                 t_get(&b_writer_in), 1);
    int by_writer_goroutine = loom_rwmutex_runlock(&b_mu);
    int by_other = stray(&b_mu, OP_RUNLOCK);
    loom_sleep(10000000);
    CHECK_MSG(!__atomic_load_n(&b_reader_in, __ATOMIC_SEQ_CST),
              "the reader got in while the writer held the lock");
    __atomic_store_n(&b_writer_go, 1, __ATOMIC_SEQ_CST);
    T_WAIT_UNTIL(t_get(&b_writer_done) >= 1, 10, "the writer to unlock (%d of %d)", t_get(&b_writer_done), 1);
    int64_t dl = deadline_in(10);
    while (__atomic_load_n(&b_reader_in, __ATOMIC_SEQ_CST) == 0) {
        CHECK_MSG(t_clock_ns() < dl,
                  "the waiting reader did not get in within 10 s of the "
                  "writer's unlock (the runlocks beyond the readers in returned %d and %d)",
                  by_writer_goroutine, by_other);
        loom_sleep(200000);
    }
    CHECK_ERR(by_writer_goroutine, EPERM);
    CHECK_ERR(by_other, EPERM);
    b_check_free(1);
}

/* Readers in, no writer: unlock is misuse and runlocks beyond the readers in are too;
 * then a writer still waits for the readers that are in. */
static void test_stray_readers_in(void)
{
    b_reset();
    loom_rwmutex_rlock(&b_mu);
    loom_rwmutex_rlock(&b_mu);
    CHECK_ERR(stray(&b_mu, OP_UNLOCK), EPERM);
    CHECK_OK(stray(&b_mu, OP_RUNLOCK));
    CHECK_OK(loom_rwmutex_runlock(&b_mu));
    CHECK_ERR(stray(&b_mu, OP_RUNLOCK), EPERM);
    CHECK_ERR(loom_rwmutex_runlock(&b_mu), EPERM);

    loom_rwmutex_rlock(&b_mu);
    b_start(b_writer, 1);
    CHECK_MSG(!__atomic_load_n(&b_writer_in, __ATOMIC_SEQ_CST), "the writer got in with a reader in");
    CHECK_OK(loom_rwmutex_runlock(&b_mu));
    T_WAIT_UNTIL(t_get(&b_writer_in) >= 1, 10, "the writer after the reader left (%d of %d)",
                 t_get(&b_writer_in), 1);
    __atomic_store_n(&b_writer_go, 1, __ATOMIC_SEQ_CST);
    T_WAIT_UNTIL(t_get(&b_writer_done) >= 1, 10, "the writer to unlock (%d of %d)", t_get(&b_writer_done), 1);
    b_check_free(0);
}

/* ---- 6. stress at LOOM_PROCS=2: readers and writers, and stray calls from goroutines
 * holding nothing, made only when no caller could legitimately succeed: a runlock while a
 * writer holds the lock (no reader is in), an unlock while a reader holds it (no writer
 * holds it).  Every one must return -EPERM, and mutual exclusion must hold throughout. */
static loom_rwmutex st_mu = LOOM_RWMUTEX_INIT;
static int st_readers, st_writers; /* atomic: inside */
static long st_a, st_b;            /* written under the write lock; equal outside it */
static long st_iters;
static int st_done;       /* atomic */
static long st_strays;    /* atomic: stray calls made */
static loom_chan *st_req; /* st_request *: to the stray goroutines */
static int st_flag;

typedef struct {
    int op;
    loom_chan *reply;
} st_request;

static void st_stray(void *arg)
{
    (void)arg;
    st_request *rq;
    while (loom_recv(st_req, &rq) == 0) {
        int r = rq->op == OP_RUNLOCK ? loom_rwmutex_runlock(&st_mu) : loom_rwmutex_unlock(&st_mu);
        CHECK_OK(loom_send(rq->reply, &r));
    }
    __atomic_add_fetch(&st_done, 1, __ATOMIC_SEQ_CST);
}

static int st_ask(loom_chan *reply, int op)
{
    st_request rq = { op, reply }, *p = &rq;
    CHECK_OK(loom_send(st_req, &p));
    int r = 1;
    CHECK_OK(loom_recv(reply, &r));
    __atomic_add_fetch(&st_strays, 1, __ATOMIC_SEQ_CST);
    return r;
}

static void st_writer(void *arg)
{
    long id = (long)(intptr_t)arg;
    loom_chan *reply = loom_chan_new(sizeof(int), 1);
    CHECK(reply != NULL);
    t_rng rng;
    t_rng_seed(&rng, (uint64_t)id + 100);
    for (long i = 0; i < st_iters; i++) {
        loom_rwmutex_lock(&st_mu);
        int w = __atomic_add_fetch(&st_writers, 1, __ATOMIC_SEQ_CST);
        int r = __atomic_load_n(&st_readers, __ATOMIC_SEQ_CST);
        CHECK_MSG(w == 1 && r == 0, "writer %ld inside with %d writers and %d readers", id, w, r);
        long v = st_a + 1;
        st_a = v;
        uint64_t dice = t_rng_below(&rng, 8);
        if (dice == 0) {
            CHECK_ERR(st_ask(reply, OP_RUNLOCK), EPERM); /* readers queue meanwhile */
        } else if (dice == 1) {
            CHECK_ERR(loom_rwmutex_runlock(&st_mu), EPERM);
            loom_yield();
        }
        st_b = v;
        __atomic_sub_fetch(&st_writers, 1, __ATOMIC_SEQ_CST);
        CHECK_OK(loom_rwmutex_unlock(&st_mu));
        if (t_rng_below(&rng, 2) == 0)
            loom_yield();
    }
    loom_chan_free(reply);
    __atomic_add_fetch(&st_done, 1, __ATOMIC_SEQ_CST);
}

static void st_reader(void *arg)
{
    long id = (long)(intptr_t)arg;
    loom_chan *reply = loom_chan_new(sizeof(int), 1);
    CHECK(reply != NULL);
    t_rng rng;
    t_rng_seed(&rng, (uint64_t)id + 200);
    for (long i = 0; i < st_iters * 4; i++) {
        loom_rwmutex_rlock(&st_mu);
        __atomic_add_fetch(&st_readers, 1, __ATOMIC_SEQ_CST);
        int w = __atomic_load_n(&st_writers, __ATOMIC_SEQ_CST);
        CHECK_MSG(w == 0, "reader %ld inside with %d writers", id, w);
        long a = st_a;
        uint64_t dice = t_rng_below(&rng, 32);
        if (dice == 0)
            CHECK_ERR(st_ask(reply, OP_UNLOCK), EPERM);
        else if (dice < 4)
            loom_yield();
        long b = st_b;
        CHECK_MSG(a == b, "reader %ld saw a torn write: a=%ld b=%ld", id, a, b);
        __atomic_sub_fetch(&st_readers, 1, __ATOMIC_SEQ_CST);
        CHECK_OK(loom_rwmutex_runlock(&st_mu));
        if (t_rng_below(&rng, 4) == 0)
            loom_yield();
    }
    loom_chan_free(reply);
    __atomic_add_fetch(&st_done, 1, __ATOMIC_SEQ_CST);
}

static int stress_main(void *arg)
{
    (void)arg;
    enum { NW = 3, NR = 5, NSTRAY = 2 };
    CHECK_EQ(loom_procs(), 2);
    st_iters = t_scale(100000);
    st_req = loom_chan_new(sizeof(st_request *), 0);
    CHECK(st_req != NULL);
    for (long i = 0; i < NSTRAY; i++)
        CHECK(loom_go(st_stray, NULL) != 0);
    for (long i = 0; i < NW; i++)
        CHECK(loom_go(st_writer, (void *)(intptr_t)i) != 0);
    for (long i = 0; i < NR; i++)
        CHECK(loom_go(st_reader, (void *)(intptr_t)i) != 0);
    T_WAIT_UNTIL(t_get(&st_done) >= NW + NR, 240, "the stress's readers and writers (%d of %d)",
                 t_get(&st_done), NW + NR);
    CHECK_OK(loom_close(st_req));
    T_WAIT_UNTIL(t_get(&st_done) >= NW + NR + NSTRAY, 10, "the stray goroutines (%d of %d)", t_get(&st_done),
                 NW + NR + NSTRAY);
    loom_chan_free(st_req);
    CHECK_EQ(st_a, NW * st_iters);
    CHECK_EQ(st_b, NW * st_iters);
    CHECK_GT(__atomic_load_n(&st_strays, __ATOMIC_SEQ_CST), 0);
    /* the lock is free and whole */
    CHECK_ERR(loom_rwmutex_runlock(&st_mu), EPERM);
    CHECK_ERR(loom_rwmutex_unlock(&st_mu), EPERM);
    loom_rwmutex_lock(&st_mu);
    CHECK_OK(loom_rwmutex_unlock(&st_mu));
    loom_rwmutex_rlock(&st_mu);
    CHECK_OK(loom_rwmutex_runlock(&st_mu));
    return 0;
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("misuse"))
        test_misuse();
    if (t_want("misuse_then_blocking"))
        test_misuse_then_blocking();
    if (t_want("stray_runlock_reader_waits"))
        test_stray_runlock_reader_waits();
    if (t_want("stray_unlock_writer_pending"))
        test_stray_unlock_writer_pending();
    if (t_want("runlock_beyond_writer_pending"))
        test_runlock_beyond_writer_pending();
    if (t_want("stray_readers_in"))
        test_stray_readers_in();
    if (t_want("readers_share"))
        test_readers_share();
    if (t_want("exclusion"))
        test_exclusion();
    if (t_want("writer_not_starved"))
        test_writer_not_starved();
    return 0;
}

static int one_p_main(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_procs(), 1);
    test_writer_not_starved();
    return 0;
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    T_RUN(main_fn, NULL);
    if (t_want("writer_not_starved"))
        T_RUN_AT(1, one_p_main, &s_stop); /* the exact count */
    if (t_want("stress"))
        T_RUN_AT(2, stress_main, &st_flag);
    return 0;
}
