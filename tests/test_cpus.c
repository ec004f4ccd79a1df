/*
 * test_cpus.c — the default number of Ps (src/cpus.c): affinity mask and cgroup CPU quota.
 *
 * Builds fake cgroup trees (v2 and v1) under a mkdtemp directory and checks
 * loom__cpu_count_at against them; then checks loom__cpu_count on this machine.
 * Exit 0: pass.  Every failure prints one line and the run goes on; exit 1 at the end.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Internal (src/cpus.c); the static libloom exports them to tests. */
int loom__cpu_count_at(const char *cgroup_root, const char *proc_self_cgroup, int affinity_cpus);
int loom__cpu_count(void);

static char base[1024]; /* the mkdtemp directory */
static int ncase, nfail;

static void die(const char *what)
{
    fprintf(stderr, "test_cpus: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* mkdir -p base/rel */
static void mkdirs(const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    for (char *s = p + strlen(base) + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            die(p);
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        die(p);
}

/* Writes base/rel (creating its directory) with printf-style contents. */
__attribute__((format(printf, 2, 3))) static void put(const char *rel, const char *fmt, ...)
{
    char dir[PATH_MAX], p[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", rel);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        mkdirs(dir);
    }
    snprintf(p, sizeof p, "%s/%s", base, rel);
    FILE *f = fopen(p, "w");
    if (!f)
        die(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0)
        die(p);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Empties base: each case starts from a clean tree. */
static void reset(void)
{
    nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (mkdir(base, 0700) != 0)
        die(base);
    mkdirs("cg");
    mkdirs("proc");
}

/* Runs loom__cpu_count_at on base/cg with base/proc/cgroup; compares with want. */
static void check(const char *name, int affinity, int want)
{
    char root[PATH_MAX], proc[PATH_MAX];
    snprintf(root, sizeof root, "%s/cg", base);
    snprintf(proc, sizeof proc, "%s/proc/cgroup", base);
    int got = loom__cpu_count_at(root, proc, affinity);
    ncase++;
    if (got != want) {
        nfail++;
        fprintf(stderr, "test_cpus: FAIL: %s: affinity %d: got %d Ps, want %d\n", name, affinity, got, want);
    } else {
        printf("ok   %-48s affinity %3d -> %d\n", name, affinity, got);
    }
}

static int real_affinity(void)
{
    for (int ncpu = 1024; ncpu <= (1 << 20); ncpu *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        size_t sz = CPU_ALLOC_SIZE(ncpu);
        CPU_ZERO_S(sz, set);
        if (sched_getaffinity(0, sz, set) == 0) {
            int n = CPU_COUNT_S(sz, set);
            CPU_FREE(set);
            return n;
        }
        CPU_FREE(set);
        if (errno != EINVAL)
            break;
    }
    return -1;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(base, sizeof base, "%s/loom_cpus_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base))
        die("mkdtemp");
    reset();

    /* ---- cgroup v2 */
    reset();
    put("proc/cgroup", "0::/a/b\n");
    put("cg/a/b/cpu.max", "300000 100000\n");
    check("v2 leaf limit 3", 8, 3);
    check("v2 leaf limit 3, affinity 3", 3, 3);

    reset();
    put("proc/cgroup", "0::/a/b\n");
    put("cg/a/cpu.max", "200000 100000\n");
    put("cg/a/b/cpu.max", "400000 100000\n");
    check("v2 parent tighter than leaf", 8, 2);

    reset();
    put("proc/cgroup", "0::/a/b/c\n");
    put("cg/a/cpu.max", "300000 100000\n");
    put("cg/a/b/cpu.max", "max 100000\n");
    put("cg/a/b/c/cpu.max", "500000 100000\n");
    check("v2 grandparent tighter, max between", 8, 3);

    reset();
    put("proc/cgroup", "0::/a/b\n");
    put("cg/a/cpu.max", "max 100000\n");
    put("cg/a/b/cpu.max", "max 100000\n");
    put("cg/cpu.max", "max 100000\n");
    check("v2 max everywhere", 6, 6);

    reset();
    put("proc/cgroup", "0::/a\n");
    put("cg/a/cpu.max", "250000 100000\n");
    check("v2 fractional 2.5 rounds up", 8, 3);

    reset();
    put("proc/cgroup", "0::/a\n");
    put("cg/a/cpu.max", "150000 100000\n");
    check("v2 fractional 1.5 rounds up", 8, 2);

    reset();
    put("proc/cgroup", "0::/a\n");
    put("cg/a/cpu.max", "50000 100000\n");
    check("v2 quota 0.5: at least 2 (as Go)", 8, 2);
    check("v2 quota 0.5, affinity 1", 1, 1);

    reset();
    put("proc/cgroup", "0::/a\n");
    put("cg/a/cpu.max", "100000 100000\n");
    check("v2 quota 1.0: at least 2 (as Go)", 4, 2);

    reset();
    put("proc/cgroup", "0::/a\n");
    put("cg/a/cpu.max", "50000 10000\n");
    check("v2 period 10ms, quota 5", 16, 5);

    reset();
    put("proc/cgroup", "0::/a\n");
    put("cg/a/cpu.max", "600000 100000\n");
    check("v2 affinity smaller than quota wins", 4, 4);

    reset();
    put("proc/cgroup", "0::/\n");
    check("v2 root cgroup, no cpu.max", 5, 5);

    reset();
    put("proc/cgroup", "0::/docker/abc\n");
    put("cg/cpu.max", "200000 100000\n");
    check("v2 container path resolved to mount", 8, 2);

    reset();
    put("proc/cgroup", "0::/a/b\n");
    put("cg/unified/a/cpu.max", "300000 100000\n");
    mkdirs("cg/unified/a/b");
    check("v2 hybrid: <root>/unified", 8, 3);

    reset();
    put("proc/cgroup", "0::/../../x/y\n");
    put("cg/x/y/cpu.max", "300000 100000\n");
    check("v2 path outside namespace (..)", 8, 3);

    reset();
    put("proc/cgroup", "0::/a\n");
    put("cg/a/cpu.max", "lots 100000\n");
    check("v2 garbage cpu.max: no limit", 4, 4);

    reset();
    put("proc/cgroup", "0::/a\n");
    put("cg/a/cpu.max", "300000 0\n");
    check("v2 period 0: no limit", 4, 4);

    reset();
    put("proc/cgroup", "0::/a\n");
    put("cg/a/cpu.max", "99999999999999999999999 100000\n");
    check("v2 overflowing quota: no limit", 4, 4);

    /* ---- cgroup v1 */
    reset();
    put("proc/cgroup", "3:memory:/m\n2:cpuacct,cpu:/x\n1:cpuset:/\n");
    put("cg/cpu,cpuacct/x/cpu.cfs_quota_us", "-1\n");
    put("cg/cpu,cpuacct/x/cpu.cfs_period_us", "100000\n");
    put("cg/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    put("cg/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    check("v1 cpu,cpuacct quota -1", 7, 7);

    reset();
    put("proc/cgroup", "1:cpu,cpuacct:/x\n");
    put("cg/cpu,cpuacct/x/cpu.cfs_quota_us", "300000\n");
    put("cg/cpu,cpuacct/x/cpu.cfs_period_us", "100000\n");
    check("v1 cpu,cpuacct leaf limit 3", 8, 3);

    reset();
    put("proc/cgroup", "4:cpu:/p/c\n");
    put("cg/cpu/p/cpu.cfs_quota_us", "300000\n");
    put("cg/cpu/p/cpu.cfs_period_us", "100000\n");
    put("cg/cpu/p/c/cpu.cfs_quota_us", "600000\n");
    put("cg/cpu/p/c/cpu.cfs_period_us", "100000\n");
    check("v1 parent tighter than leaf", 8, 3);

    reset();
    put("proc/cgroup", "4:cpu:/p/c\n");
    put("cg/cpu/p/cpu.cfs_quota_us", "-1\n");
    put("cg/cpu/p/cpu.cfs_period_us", "100000\n");
    put("cg/cpu/p/c/cpu.cfs_quota_us", "350000\n");
    put("cg/cpu/p/c/cpu.cfs_period_us", "100000\n");
    check("v1 fractional 3.5 rounds up, parent -1", 8, 4);

    reset();
    put("proc/cgroup", "5:cpu,cpuacct:/docker/0123abcd\n");
    put("cg/cpu,cpuacct/cpu.cfs_quota_us", "200000\n");
    put("cg/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    check("v1 container path resolved to mount", 8, 2);

    reset();
    put("proc/cgroup", "5:cpu,cpuacct:/kubepods/pod1/ctr\n");
    put("cg/cpu/pod1/cpu.cfs_quota_us", "200000\n");
    put("cg/cpu/pod1/cpu.cfs_period_us", "100000\n");
    mkdirs("cg/cpu/pod1/ctr");
    check("v1 mount named cpu, path suffix", 8, 2);

    reset();
    put("proc/cgroup", "2:cpuacct:/q\n1:cpuset:/q\n");
    put("cg/cpuacct/q/cpu.cfs_quota_us", "100000\n");
    put("cg/cpuacct/q/cpu.cfs_period_us", "100000\n");
    check("v1 cpuacct alone is not cpu", 8, 8);

    reset();
    put("proc/cgroup", "4:cpu:/p\n");
    put("cg/cpu/p/cpu.cfs_quota_us", "300000\n");
    check("v1 period missing: no limit", 8, 8);

    /* ---- both: hybrid, and v1 + v2 limits */
    reset();
    put("proc/cgroup", "1:cpu:/a\n0::/b\n");
    put("cg/cpu/a/cpu.cfs_quota_us", "500000\n");
    put("cg/cpu/a/cpu.cfs_period_us", "100000\n");
    put("cg/b/cpu.max", "300000 100000\n");
    check("v1 and v2: the smaller", 8, 3);

    /* ---- missing files */
    reset();
    put("proc/cgroup", "0::/a/b\n");
    check("no cpu.max anywhere", 3, 3);

    reset();
    check("no /proc/self/cgroup", 3, 3);

    reset();
    put("proc/cgroup", "4:cpu:/p\n");
    check("v1 line, no mount", 3, 3);

    reset();
    put("proc/cgroup", "0::/a\n");
    put("cg/a/cpu.max", "300000 100000\n");
    check("affinity 0 treated as 1", 0, 1);

    {
        int got = loom__cpu_count_at("/nonexistent/cgroup", "/nonexistent/cgroup_file", 9);
        ncase++;
        if (got != 9) {
            nfail++;
            fprintf(stderr, "test_cpus: FAIL: nonexistent paths: got %d, want 9\n", got);
        }
        got = loom__cpu_count_at(NULL, NULL, 2);
        ncase++;
        if (got != 2) {
            nfail++;
            fprintf(stderr, "test_cpus: FAIL: NULL paths: got %d, want 2\n", got);
        }
    }

    nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);

    /* ---- this machine */
    int aff = real_affinity();
    int real = loom__cpu_count();
    int at = loom__cpu_count_at("/sys/fs/cgroup", "/proc/self/cgroup", aff);
    ncase++;
    if (aff < 1 || real != at || real < 1 || real > aff) {
        nfail++;
        fprintf(stderr,
                "test_cpus: FAIL: loom__cpu_count() = %d, affinity %d, "
                "loom__cpu_count_at(real paths) = %d\n",
                real, aff, at);
    } else if (real != aff) {
        printf("note: this machine has a cgroup CPU quota: %d Ps for %d CPUs in the affinity mask\n", real,
               aff);
    } else {
        printf("ok   this machine: loom__cpu_count() = %d = affinity CPUs (no quota)\n", real);
    }

    if (nfail) {
        fprintf(stderr, "test_cpus: %d of %d checks FAILED\n", nfail, ncase);
        return 1;
    }
    printf("test_cpus: all %d checks passed\n", ncase);
    return 0;
}
