/*
 * bench.h — helpers shared by loom's benchmark programs (header only).
 *
 * Every program prints one machine-readable line per metric on stdout:
 *     RESULT name=<workload> metric=<metric> value=<number> unit=<unit> procs=<P>
 * exactly as its Go twin in bench/go/<name>/main.go does, and exits non-zero
 * (after a line starting "FAIL <name>:" on stderr) when its result is wrong.
 *
 * Parameters: `--key=value` on the command line, else env BENCH_<KEY> (upper
 * case), else the smoke size when `--smoke` is given, else the full size.
 */
#ifndef LOOM_BENCH_H
#define LOOM_BENCH_H

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char *bench_name_ = "bench";
static int bench_argc_;
static char **bench_argv_;
static int bench_smoke_;

static inline void bench_init(int argc, char **argv, const char *name)
{
    bench_name_ = name;
    bench_argc_ = argc;
    bench_argv_ = argv;
    bench_smoke_ = 0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--smoke") == 0)
            bench_smoke_ = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
}

static inline int bench_is_smoke(void)
{
    return bench_smoke_;
}

__attribute__((format(printf, 1, 2), noreturn)) static inline void bench_fail(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "FAIL %s: ", bench_name_);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

/* The raw text of parameter `key`, or NULL when neither argv nor env names it. */
static inline const char *bench_param_str(const char *key)
{
    size_t kl = strlen(key);
    for (int i = 1; i < bench_argc_; i++) {
        const char *a = bench_argv_[i];
        if (a[0] == '-' && a[1] == '-' && strncmp(a + 2, key, kl) == 0 && a[2 + kl] == '=')
            return a + 3 + kl;
    }
    char env[128];
    int n = snprintf(env, sizeof env, "BENCH_");
    for (size_t i = 0; i < kl && n < (int)sizeof env - 1; i++, n++) {
        char ch = key[i];
        env[n] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
    }
    env[n] = 0;
    return getenv(env);
}

/* Integer parameter: argv/env, else smoke_default under --smoke, else full_default. */
static inline int64_t bench_param(const char *key, int64_t full_default, int64_t smoke_default)
{
    const char *s = bench_param_str(key);
    if (s) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end)
            bench_fail("parameter %s=%s is not an integer", key, s);
        return v;
    }
    return bench_smoke_ ? smoke_default : full_default;
}

static inline int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Peak resident set size of this process so far, KiB (getrusage ru_maxrss). */
static inline long bench_maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static inline void bench_result(const char *metric, double value, const char *unit, int procs)
{
    printf("RESULT name=%s metric=%s value=%.3f unit=%s procs=%d\n", bench_name_, metric, value, unit, procs);
    fflush(stdout);
}

/* Informational line on stderr (ignored by run.py). */
__attribute__((format(printf, 1, 2))) static inline void bench_note(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", bench_name_);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Watchdog: a hung benchmark fails loudly instead of hanging its caller. */
static const char *bench_watchdog_msg_ = "no progress";
static void bench_watchdog_fire_(int sig)
{
    (void)sig;
    static const char head[] = "FAIL watchdog: ";
    ssize_t r = write(2, head, sizeof head - 1);
    r = write(2, bench_name_, strlen(bench_name_));
    r = write(2, ": ", 2);
    r = write(2, bench_watchdog_msg_, strlen(bench_watchdog_msg_));
    r = write(2, "\n", 1);
    (void)r;
    _exit(3);
}

static inline void bench_watchdog(unsigned seconds, const char *msg)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = bench_watchdog_fire_;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    bench_watchdog_msg_ = msg;
    alarm(seconds);
}

/* splitmix64: the same deterministic stream in C and in the Go twins. */
static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int bench_cmp_i64_(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place; returns the p-quantile (0..1), nearest-rank. */
static inline int64_t bench_quantile(int64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, bench_cmp_i64_);
    size_t k = (size_t)(p * (double)n);
    if (k >= n)
        k = n - 1;
    return v[k];
}

#endif /* LOOM_BENCH_H */
