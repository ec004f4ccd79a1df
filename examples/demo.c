/*
 * demo.c — a tour of loom: `make demo` runs it.
 *
 * 1. goroutines and an unbuffered channel (a prime sieve, as Go's tour);
 * 2. select with a timeout;
 * 3. 100,000 goroutines parked at once, then released (stacks are cheap);
 * 4. a WaitGroup and a Mutex across every P;
 * 5. sleeping goroutines park, not threads.
 */
#include <loom.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

/* ---- 1. prime sieve */
static void generate(void *arg) {
    loom_chan *out = arg;
    for (long i = 2;; i++)
        if (loom_send(out, &i) != 0) return;
}

struct filter {
    loom_chan *in, *out;
    long prime;
};

static void filter(void *arg) {
    struct filter *f = arg;
    long v;
    while (loom_recv(f->in, &v) == 0)
        if (v % f->prime != 0 && loom_send(f->out, &v) != 0) break;
    free(f);
}

static void sieve(int n) {
    loom_chan *ch = loom_chan_new(sizeof(long), 0);
    loom_go(generate, ch);
    printf("1. the first %d primes from a chain of goroutines:", n);
    for (int i = 0; i < n; i++) {
        long prime;
        loom_recv(ch, &prime);
        printf(" %ld", prime);
        struct filter *f = malloc(sizeof *f);
        f->in = ch;
        f->out = loom_chan_new(sizeof(long), 0);
        f->prime = prime;
        loom_go(filter, f);
        ch = f->out;
    }
    printf("\n");
    /* the chain stays parked on its channels; loom_run abandons it at exit, as Go does */
}

/* ---- 2. select with a timeout */
static void slow_reply(void *arg) {
    loom_sleep(30 * 1000000);
    int v = 42;
    loom_send(arg, &v);
}

static void select_demo(void) {
    loom_chan *reply = loom_chan_new(sizeof(int), 1);
    loom_go(slow_reply, reply);
    int v = 0;
    loom_case cs[1] = { { reply, LOOM_RECV, &v, 0 } };
    int64_t t0 = loom_now();
    int r = loom_select(cs, 1, 10 * 1000000);
    printf("2. select with a 10 ms timeout: %s after %.1f ms\n",
           r == -ETIMEDOUT ? "timed out" : "got a value", (loom_now() - t0) / 1e6);
    r = loom_select(cs, 1, -1);
    printf("   select without timeout: case %d, value %d after %.1f ms\n", r, v, (loom_now() - t0) / 1e6);
    loom_chan_free(reply);
}

/* ---- 3. many parked goroutines */
static loom_chan *gate;
static loom_waitgroup parked_wg = LOOM_WAITGROUP_INIT;

static void parked(void *arg) {
    (void)arg;
    char c;
    loom_recv(gate, &c);
    loom_wg_done(&parked_wg);
}

static long maxrss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void many(int n) {
    gate = loom_chan_new(1, 0);
    long before = maxrss_kib();
    int64_t t0 = loom_now();
    loom_wg_add(&parked_wg, n);
    for (int i = 0; i < n; i++) loom_go(parked, NULL);
    loom_yield();
    int64_t t1 = loom_now();
    loom_close(gate);
    loom_wg_wait(&parked_wg);
    printf("3. %d goroutines spawned in %.1f ms (%.2f us each), about %.1f KiB of memory each,\n"
           "   released by one loom_close and joined in %.1f ms\n",
           n, (t1 - t0) / 1e6, (t1 - t0) / 1e3 / n, (double)(maxrss_kib() - before) / n,
           (loom_now() - t1) / 1e6);
    loom_chan_free(gate);
}

/* ---- 4. WaitGroup and Mutex on every P */
static loom_mutex mu = LOOM_MUTEX_INIT;
static long counter;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

static void adder(void *arg) {
    long n = (long)arg;
    for (long i = 0; i < n; i++) {
        loom_mutex_lock(&mu);
        counter++;
        loom_mutex_unlock(&mu);
    }
    loom_wg_done(&wg);
}

static void mutex_demo(void) {
    loom_wg_add(&wg, 100);
    for (int i = 0; i < 100; i++) loom_go(adder, (void *)10000L);
    loom_wg_wait(&wg);
    printf("4. 100 goroutines x 10000 locked increments on %d Ps: counter = %ld\n", loom_procs(), counter);
}

/* ---- 5. sleeping parks the goroutine */
static void sleeper(void *arg) {
    loom_sleep(50 * 1000000);
    loom_wg_done(arg);
}

static void sleep_demo(void) {
    loom_waitgroup w = LOOM_WAITGROUP_INIT;
    loom_wg_add(&w, 10000);
    int64_t t0 = loom_now();
    for (int i = 0; i < 10000; i++) loom_go(sleeper, &w);
    loom_wg_wait(&w);
    printf("5. 10000 goroutines each slept 50 ms; all done after %.1f ms\n", (loom_now() - t0) / 1e6);
}

static int tour(void *arg) {
    (void)arg;
    printf("loom demo: Go's scheduler for C, %d Ps (LOOM_PROCS to change)\n\n", loom_procs());
    sieve(20);
    select_demo();
    many(100000);
    mutex_demo();
    sleep_demo();
    printf("\ndone.\n");
    return 0;
}

int main(void) { return loom_run(tour, NULL); }
