/*
 * test_spare_mm.c — a goroutine whose thread sleeps in the kernel on the process's memory
 * map (malloc's mprotect behind another thread's munmap) is not taken for one blocked in a
 * call: no spare P is lent for it (src/spare.c, ASLEEP_THREAD_NS), while a plain blocking
 * read still gets one.
 *
 * A thread outside the runtime maps, fills and unmaps 8 MiB every millisecond: each mmap
 * and munmap holds the mm lock for milliseconds here.  A goroutine meanwhile flips the protection of
 * a page of its own (each mprotect takes that lock too) for 300 ms, at one P.  Its thread
 * is often found asleep in mprotect for more than a millisecond, which a spare P would
 * answer (a spare lent for a thread that waits on threads that are running).  Then, as a
 * check that lending still works, a goroutine blocks in a plain read on a pipe for 50 ms.
 */
#include "t.h"
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#define MS 1000000LL

static int stop;   /* atomic */
static int unmaps; /* atomic: munmaps done by the churner */

static void *churn(void *arg)
{
    (void)arg;
    size_t len = 8u << 20;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        CHECK(m != MAP_FAILED);
        CHECK_EQ(munmap(m, len), 0);
        __atomic_add_fetch(&unmaps, 1, __ATOMIC_RELAXED);
        struct timespec ts = { 0, 1000000 }; /* the lock is free between two */
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int flips; /* atomic */

static void flipper(void *arg)
{
    char *page = arg;
    int64_t end = loom_now() + 300 * MS;
    while (loom_now() < end) {
        CHECK_EQ(mprotect(page, 4096, PROT_READ), 0);
        CHECK_EQ(mprotect(page, 4096, PROT_READ | PROT_WRITE), 0);
        page[0]++;
        __atomic_add_fetch(&flips, 1, __ATOMIC_RELAXED);
    }
}

static void reader(void *arg)
{
    int *fds = arg;
    char c;
    CHECK_EQ(read(fds[0], &c, 1), 1); /* plain: its thread sleeps in the kernel */
}

static int main_fn(void *arg)
{
    (void)arg;
    char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(page != MAP_FAILED);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, churn, NULL), 0);
    CHECK(loom_go(flipper, page) != 0);
    /* main waits by sleeping: the flipper has the P to itself otherwise */
    int64_t end = loom_now() + 300 * MS;
    while (loom_now() < end + 20 * MS)
        loom_sleep(10 * MS);
    struct loom_stats st;
    CHECK_OK(loom_stats(&st)); /* (before the join below, itself a plain blocking call) */
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    CHECK_EQ(pthread_join(th, NULL), 0);
    printf("test_spare_mm: %d mprotect pairs beside %d munmaps of 8 MiB: %llu spare Ps lent\n",
           __atomic_load_n(&flips, __ATOMIC_RELAXED), __atomic_load_n(&unmaps, __ATOMIC_RELAXED),
           (unsigned long long)st.spare_lends);
    CHECK_GT(__atomic_load_n(&unmaps, __ATOMIC_RELAXED), 0);
    /* (none on a quiet machine; under load the munmaps may keep the lock past ASLEEP_THREAD_NS
     * now and then, where a spare is right.  Taken for blocked calls, these waits got 14-45.
     * Chaos mode sleeps inside the runtime, which may look blocked.) */
    if (!t_chaos())
        CHECK_MSG(st.spare_lends <= 3, "%llu spare Ps lent for a thread waiting on the mm lock",
                  (unsigned long long)st.spare_lends);
    /* a plain blocking read still gets a spare */
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    CHECK(loom_go(reader, fds) != 0);
    loom_sleep(50 * MS);
    CHECK_OK(loom_stats(&st));
    uint64_t lent = st.spare_lends;
    CHECK_EQ(write(fds[1], "x", 1), 1);
    loom_sleep(5 * MS);
    printf("test_spare_mm: a 50 ms plain read: %llu spare Ps lent\n", (unsigned long long)lent);
    CHECK_MSG(lent > 0, "no spare P lent for a goroutine blocked in a plain read");
    close(fds[0]);
    close(fds[1]);
    munmap(page, 4096);
    return 0;
}

int main(void)
{
    setenv("LOOM_PROCS", "1", 1);
    T_RUN(main_fn, NULL);
    printf("test_spare_mm: ok\n");
    return 0;
}
