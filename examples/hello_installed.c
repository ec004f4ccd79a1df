/*
 * hello_installed.c — the smallest program against an installed loom.
 *
 * Uses only <loom.h>: ten goroutines each send one square over a channel, goroutine 1
 * sums them, waits for the senders with a WaitGroup and prints one line.  tests/install.sh
 * builds it out of tree (pkg-config, shared and static, and CMake's find_package) and checks
 * that line.
 *
 *     cc hello_installed.c $(pkg-config --cflags --libs loom) -o hello && ./hello
 *     hello from loom: 10 goroutines sent sum=285
 */
#include <loom.h>
#include <stdio.h>

#define N 10

static loom_chan *results;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;

static void square(void *arg) {
    long i = (long)arg;
    long v = i * i;
    if (loom_send(results, &v) != 0) fprintf(stderr, "hello_installed: send failed\n");
    loom_wg_done(&wg);
}

static int hello_main(void *arg) {
    (void)arg;
    results = loom_chan_new(sizeof(long), 0); /* unbuffered: a rendezvous each time */
    if (!results) {
        perror("loom_chan_new");
        return 1;
    }
    loom_wg_add(&wg, N);
    for (long i = 0; i < N; i++) {
        if (loom_go(square, (void *)i) == 0) {
            perror("loom_go");
            return 1;
        }
    }
    long sum = 0;
    for (int i = 0; i < N; i++) {
        long v;
        if (loom_recv(results, &v) != 0) {
            fprintf(stderr, "hello_installed: recv failed\n");
            return 1;
        }
        sum += v;
    }
    loom_wg_wait(&wg);
    loom_chan_free(results);
    printf("hello from loom: %d goroutines sent sum=%ld\n", N, sum);
    return sum == 285 ? 0 : 1;
}

int main(void) { return loom_run(hello_main, NULL); }
