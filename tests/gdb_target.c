/*
 * gdb_target.c — the program tests/test_gdb.sh stops under gdb to try tools/gdb/loom-gdb.py.
 *
 * Not a test by itself (its name does not match tests/test_*.c).  main_fn (goroutine 1)
 * starts named goroutines that park in distinct ways, each inside a function of its own
 * (parked_in_recv, parked_in_send, …) so that a backtrace can be checked for it; then a
 * goroutine "spinner" that loops in spin_forever without calling loom.  Once all are in
 * place (the parkers count themselves just before blocking; main_fn waits for the count,
 * then until loom_stats counts them parked and every other P idle: a P goes idle only
 * after its goroutine's switch out, so their frames are saved) it calls
 * gdb_target_ready(), where the test's breakpoint stops it.
 *
 * With LOOM_PROCS=2 and LOOM_ASYNCPREEMPT=0 the spinner is running on the other thread
 * when gdb stops; with LOOM_PROCS=1 (and asynchronous preemption on) main_fn can only run
 * again once the preemption signal has switched the spinner out, so the spinner is then
 * runnable with a signal frame on its stack.  The goroutine ids are in the globals id_*,
 * for `goroutine id_recv bt`.
 *
 * Run alone, it stops the spinner and returns (the parked goroutines are abandoned).
 */
#include <loom.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noipa))
#endif
/* keeps a call from being a tail call, so the caller's frame stays on the stack */
#define KEEP_FRAME() __asm__ __volatile__("" ::: "memory")

static loom_chan *ch_recv, *ch_send, *ch_sel_a, *ch_sel_b;
static loom_mutex mu = LOOM_MUTEX_INIT;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;
static int parking, spinner_started, spinner_stop; /* atomic */
#define PARKERS 6
volatile int sink;

uint64_t id_main, id_recv, id_send, id_sleep, id_mutex, id_select, id_wg, id_spinner;

/* Each parker counts itself just before it blocks. */
static void about_to_park(void)
{
    __atomic_add_fetch(&parking, 1, __ATOMIC_SEQ_CST);
}

NOINLINE static void parked_in_recv(void)
{
    int v = 0;
    about_to_park();
    sink = loom_recv(ch_recv, &v);
    KEEP_FRAME();
}

NOINLINE static void parked_in_send(void)
{
    int v = 42;
    about_to_park();
    sink = loom_send(ch_send, &v);
    KEEP_FRAME();
}

NOINLINE static void parked_in_sleep(void)
{
    about_to_park();
    loom_sleep(3600LL * 1000000000LL);
    KEEP_FRAME();
}

NOINLINE static void parked_in_mutex(void)
{
    about_to_park();
    loom_mutex_lock(&mu);
    KEEP_FRAME();
    loom_mutex_unlock(&mu);
}

NOINLINE static void parked_in_select(void)
{
    int a = 0, b = 0;
    loom_case cases[2] = { { ch_sel_a, LOOM_RECV, &a, 0 }, { ch_sel_b, LOOM_RECV, &b, 0 } };
    about_to_park();
    sink = loom_select(cases, 2, -1);
    KEEP_FRAME();
}

NOINLINE static void parked_in_wg(void)
{
    about_to_park();
    loom_wg_wait(&wg);
    KEEP_FRAME();
}

NOINLINE static void spin_forever(void)
{
    __atomic_store_n(&spinner_started, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&spinner_stop, __ATOMIC_RELAXED))
        sink++;
    KEEP_FRAME();
}

static void run_recv(void *arg)
{
    (void)arg;
    parked_in_recv();
}
static void run_send(void *arg)
{
    (void)arg;
    parked_in_send();
}
static void run_sleep(void *arg)
{
    (void)arg;
    parked_in_sleep();
}
static void run_mutex(void *arg)
{
    (void)arg;
    parked_in_mutex();
}
static void run_select(void *arg)
{
    (void)arg;
    parked_in_select();
}
static void run_wg(void *arg)
{
    (void)arg;
    parked_in_wg();
}
static void run_spinner(void *arg)
{
    (void)arg;
    spin_forever();
}

/* The test's breakpoint. */
NOINLINE static void gdb_target_ready(void)
{
    KEEP_FRAME();
}

static uint64_t go_named(void (*fn)(void *), const char *name)
{
    loom_attr attr = { 0, LOOM_PRIO_NORMAL, name };
    uint64_t id = loom_go_attr(fn, NULL, &attr);
    if (!id)
        perror("gdb_target: loom_go_attr");
    return id;
}

static int main_fn(void *arg)
{
    (void)arg;
    id_main = loom_id();
    ch_recv = loom_chan_new(sizeof(int), 0);
    ch_send = loom_chan_new(sizeof(int), 0);
    ch_sel_a = loom_chan_new(sizeof(int), 0);
    ch_sel_b = loom_chan_new(sizeof(int), 1);
    if (!ch_recv || !ch_send || !ch_sel_a || !ch_sel_b) {
        perror("gdb_target: loom_chan_new");
        return 1;
    }
    loom_mutex_lock(&mu); /* held by main: mutex-waiter parks */
    loom_wg_add(&wg, 1);  /* never done: wg-waiter parks */
    id_recv = go_named(run_recv, "recv-waiter");
    id_send = go_named(run_send, "send-waiter");
    id_sleep = go_named(run_sleep, "sleeper");
    id_mutex = go_named(run_mutex, "mutex-waiter");
    id_select = go_named(run_select, "select-waiter");
    id_wg = go_named(run_wg, "wg-waiter");
    if (!id_recv || !id_send || !id_sleep || !id_mutex || !id_select || !id_wg)
        return 1;
    while (__atomic_load_n(&parking, __ATOMIC_SEQ_CST) < PARKERS)
        loom_sleep(1000000);
    for (;;) { /* the last one's few steps to its park */
        struct loom_stats st;
        if (loom_stats(&st) != 0)
            return 1;
        if (st.waiting >= PARKERS && st.runnable == 0 && st.idle_procs + st.running >= st.procs)
            break;
        loom_sleep(1000000);
    }
    id_spinner = go_named(run_spinner, "spinner");
    if (!id_spinner)
        return 1;
    while (!__atomic_load_n(&spinner_started, __ATOMIC_SEQ_CST))
        loom_yield();
    if (loom_procs() == 1) {
        /* stop only once the spinner is switched out: a spare P lent for a moment (sysmon
         * taking a thread held up by the loaded machine for a blocked one) could run main
         * beside it */
        struct loom_stats st;
        while (loom_stats(&st) == 0 && st.running > 1)
            loom_yield();
    }
    gdb_target_ready();
    __atomic_store_n(&spinner_stop, 1, __ATOMIC_RELAXED);
    loom_mutex_unlock(&mu);
    return 0;
}

int main(void)
{
    int rc = loom_run(main_fn, NULL);
    if (rc != 0)
        fprintf(stderr, "gdb_target: loom_run returned %d\n", rc);
    printf("gdb_target: done\n");
    return rc != 0;
}
