/*
 * cpus.c — the default number of Ps (Go's default GOMAXPROCS).
 *
 *   int loom__cpu_count_at(const char *cgroup_root, const char *proc_self_cgroup,
 *                          int affinity_cpus);
 *   int loom__cpu_count(void);
 *
 * loom__cpu_count() = loom__cpu_count_at("/sys/fs/cgroup", "/proc/self/cgroup", n) where n is
 * the number of CPUs in this thread's sched_getaffinity mask.  loom__cpu_count_at is a pure
 * function of the files it reads, so tests can point it at a fake cgroup tree.
 *
 * The rule (Go 1.25's defaultGOMAXPROCS, with one difference noted below):
 *
 *     procs = affinity_cpus                                   (at least 1)
 *     for every CPU bandwidth limit L = quota/period found (see "Where" below):
 *         procs = min(procs, max(2, ceil(L)))
 *
 * Rounding.  A fractional limit is rounded UP: a quota of 1.5 CPUs gives 2 Ps, 2.5 gives 3.
 * Rounding down would leave part of the quota unused by the scheduler; rounding up at worst
 * lets the process be throttled for the fraction, exactly as Go accepts.  A quota-derived
 * limit below 2 is raised to 2, as in Go: with one P a goroutine that never blocks stalls
 * every other goroutine (and timers, and the netpoller) until sysmon preempts it, and small
 * quotas are typically bursty, so 2 Ps gives better latency for the same CPU time.  The
 * result is therefore 1 only when the affinity mask itself allows a single CPU (the mask is a
 * hard limit: a second P could never run in parallel there); a cgroup quota alone never
 * gives fewer than 2 Ps.  The result is never below 1.
 *
 * Where.  Go 1.25 reads only the limit of the leaf cgroup that contains the process.  A
 * parent cgroup may have a tighter limit, which is then the effective one, so loom reads
 * every cgroup from the process's own up to the root of the mounted hierarchy and takes the
 * smallest limit (the difference from Go).
 *   - cgroup v2: /proc/self/cgroup has the line "0::/path"; the limit is "<root>/path/cpu.max",
 *     "quota period" or "max period" (no limit).  <root> and <root>/unified (hybrid systems)
 *     are both searched.
 *   - cgroup v1: the line whose controller list contains "cpu", e.g. "4:cpu:/path" or
 *     "1:cpu,cpuacct:/path"; the hierarchy is mounted at <root>/<that controller list>,
 *     <root>/cpu,cpuacct, <root>/cpuacct,cpu or <root>/cpu (the first that exists); the limit is
 *     cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us.
 *   Both versions are read and the smaller limit wins (on a hybrid system only one of them
 *   carries the cpu controller; the other has no limit files).
 *
 * Resolving the path.  Inside a container without a cgroup namespace, /proc/self/cgroup shows
 * the host's path (e.g. "/docker/<id>") while the mount's root *is* that cgroup.  Without
 * reading /proc/self/mountinfo, loom resolves the path as the longest suffix of it (dropping
 * leading components) that exists as a directory under the mount: "/docker/<id>" is tried as
 * <mount>/docker/<id>, then <mount>/<id>, then <mount> itself.  Components up to the last
 * ".." (a cgroup outside our namespace) are dropped first.  Ancestors above the mount are not
 * visible, as in Go.
 *
 * Never fails: a missing, unreadable or malformed file means "no limit" at that level.
 * Read at startup (loom_run) and, while the number of Ps follows it, by sysmon about once
 * a second (sysmon.c).
 */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#define NO_LIMIT INT_MAX
#define PATHBUF  (PATH_MAX + 64)

/* Parses a decimal integer (optional '-') after optional blanks; advances *s.  false if none. */
static bool parse_ll(const char **s, long long *out) {
    const char *p = *s;
    while (*p == ' ' || *p == '\t') p++;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    if (*p < '0' || *p > '9') return false;
    long long v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        int d = *p - '0';
        if (v > (LLONG_MAX - d) / 10) return false; /* overflow: malformed */
        v = v * 10 + d;
    }
    *out = neg ? -v : v;
    *s = p;
    return true;
}

/* True when nothing but blanks and a newline follows. */
static bool at_end(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n') p++;
    return *p == '\0';
}

/* ceil(quota/period) as a P count, or NO_LIMIT when there is no usable limit. */
static int quota_limit(long long quota, long long period) {
    if (quota <= 0 || period <= 0) return NO_LIMIT;
    long long n = quota / period + (quota % period != 0);
    if (n >= NO_LIMIT) return NO_LIMIT;
    return (int)n;
}

static int limit_v2(const char *dir) {
    char path[PATHBUF], buf[128];
    if (snprintf(path, sizeof path, "%s/cpu.max", dir) >= (int)sizeof path) return NO_LIMIT;
    if (loom__read_small(path, buf, sizeof buf) < 0) return NO_LIMIT;
    const char *p = buf;
    long long quota, period;
    if (!parse_ll(&p, &quota)) return NO_LIMIT; /* "max period", or garbage */
    if (!parse_ll(&p, &period) || !at_end(p)) return NO_LIMIT;
    return quota_limit(quota, period);
}

static bool read_ll_file(const char *dir, const char *name, long long *out) {
    char path[PATHBUF], buf[64];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return false;
    if (loom__read_small(path, buf, sizeof buf) < 0) return false;
    const char *p = buf;
    return parse_ll(&p, out) && at_end(p);
}

static int limit_v1(const char *dir) {
    long long quota, period;
    if (!read_ll_file(dir, "cpu.cfs_quota_us", &quota) || quota <= 0) return NO_LIMIT;
    if (!read_ll_file(dir, "cpu.cfs_period_us", &period)) return NO_LIMIT;
    return quota_limit(quota, period);
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Smallest limit along the cgroup path cgpath (as in /proc/self/cgroup) of the hierarchy
 * mounted at mount, from the resolved leaf up to the mount itself. */
static int walk(const char *mount, const char *cgpath, int (*limit)(const char *dir)) {
    char dir[PATHBUF];
    size_t mlen = strlen(mount);
    if (mlen == 0 || mlen >= sizeof dir || !is_dir(mount)) return NO_LIMIT;

    /* Drop everything up to the last ".." component. */
    const char *rel = cgpath;
    for (const char *q = cgpath; (q = strstr(q, "..")) != NULL; q += 2) {
        bool starts = q == cgpath || q[-1] == '/';
        bool ends = q[2] == '\0' || q[2] == '/';
        if (starts && ends) rel = q + 2;
    }

    /* Longest existing suffix: <mount><rel>, then drop leading components. */
    for (;;) {
        while (*rel == '/') rel++;
        if (*rel == '\0') {
            memcpy(dir, mount, mlen + 1);
            break;
        }
        if (snprintf(dir, sizeof dir, "%s/%s", mount, rel) < (int)sizeof dir && is_dir(dir)) break;
        const char *slash = strchr(rel, '/');
        rel = slash ? slash : "";
    }

    /* Normalise: no trailing slashes beyond the mount. */
    size_t len = strlen(dir);
    while (len > mlen && dir[len - 1] == '/') dir[--len] = '\0';

    int best = NO_LIMIT;
    for (;;) {
        int l = limit(dir);
        if (l < best) best = l;
        if (len <= mlen) break;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < mlen) break;
        while (slash > dir + mlen && slash[-1] == '/') slash--; /* "a//b" */
        *slash = '\0';
        len = (size_t)(slash - dir);
    }
    return best;
}

/* True when the comma-separated list names the "cpu" controller itself. */
static bool has_cpu_controller(const char *list, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && list[j] != ',') j++;
        if (j - i == 3 && memcmp(list + i, "cpu", 3) == 0) return true;
        i = j + 1;
    }
    return false;
}

static int min_int(int a, int b) { return a < b ? a : b; }

/* The tightest limit for one /proc/self/cgroup line "id:controllers:path" (no newline). */
static int line_limit(const char *root, const char *line) {
    const char *c1 = strchr(line, ':');
    if (!c1) return NO_LIMIT;
    const char *ctl = c1 + 1;
    const char *c2 = strchr(ctl, ':');
    if (!c2) return NO_LIMIT;
    const char *path = c2 + 1;
    size_t ctl_len = (size_t)(c2 - ctl);
    char mount[PATHBUF];

    if (c1 - line == 1 && line[0] == '0' && ctl_len == 0) { /* cgroup v2 */
        int best = NO_LIMIT;
        if (snprintf(mount, sizeof mount, "%s", root) < (int)sizeof mount)
            best = min_int(best, walk(mount, path, limit_v2));
        if (snprintf(mount, sizeof mount, "%s/unified", root) < (int)sizeof mount)
            best = min_int(best, walk(mount, path, limit_v2));
        return best;
    }
    if (!has_cpu_controller(ctl, ctl_len)) return NO_LIMIT;

    /* cgroup v1 with the cpu controller: the first mount directory that exists. */
    char names[4][128];
    int nnames = 0;
    if (ctl_len < sizeof names[0] && memchr(ctl, '/', ctl_len) == NULL) {
        memcpy(names[nnames], ctl, ctl_len);
        names[nnames++][ctl_len] = '\0';
    }
    strcpy(names[nnames++], "cpu,cpuacct");
    strcpy(names[nnames++], "cpuacct,cpu");
    strcpy(names[nnames++], "cpu");
    for (int i = 0; i < nnames; i++) {
        if (snprintf(mount, sizeof mount, "%s/%s", root, names[i]) >= (int)sizeof mount) continue;
        if (is_dir(mount)) return walk(mount, path, limit_v1);
    }
    return NO_LIMIT;
}

int loom__cpu_count_at(const char *cgroup_root, const char *proc_self_cgroup, int affinity_cpus) {
    int procs = affinity_cpus > 0 ? affinity_cpus : 1;
    if (!cgroup_root || !proc_self_cgroup) return procs;

    /* Root without trailing slashes (but "/" stays "/"-less: "" + "/x" is still "/x"). */
    char root[PATHBUF];
    if (snprintf(root, sizeof root, "%s", cgroup_root) >= (int)sizeof root) return procs;
    size_t rlen = strlen(root);
    while (rlen > 0 && root[rlen - 1] == '/') root[--rlen] = '\0';
    if (rlen == 0) return procs; /* the root directory: not a cgroup mount */

    FILE *f = fopen(proc_self_cgroup, "re");
    if (!f) return procs;
    int limit = NO_LIMIT;
    char line[PATHBUF + 256];
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\n') {
            line[--n] = '\0';
        } else if (!feof(f)) { /* over-long line: skip it */
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n') {}
            continue;
        }
        limit = min_int(limit, line_limit(root, line));
    }
    fclose(f);

    if (limit != NO_LIMIT) {
        if (limit < 2) limit = 2; /* as Go: see the top of the file */
        if (limit < procs) procs = limit;
    }
    return procs;
}

/* CPUs in this thread's affinity mask; the online CPU count if that cannot be read. */
static int affinity_count(void) {
    for (int ncpu = 1024; ncpu <= (1 << 20); ncpu *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        if (!set) break;
        size_t sz = CPU_ALLOC_SIZE(ncpu);
        CPU_ZERO_S(sz, set);
        if (sched_getaffinity(0, sz, set) == 0) {
            int n = CPU_COUNT_S(sz, set);
            CPU_FREE(set);
            if (n > 0) return n;
            break;
        }
        int err = errno;
        CPU_FREE(set);
        if (err != EINVAL) break; /* EINVAL: mask too small, grow */
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* LOOM_CGROUP_ROOT, LOOM_CGROUP_SELF and LOOM_CGROUP_CPUS stand in for /sys/fs/cgroup,
 * /proc/self/cgroup and the affinity mask's count: a test points loom at a fake cgroup tree
 * and changes its limits while the program runs (tests/test_procs.c). */
int loom__cpu_count(void) {
    const char *root = getenv("LOOM_CGROUP_ROOT"), *self = getenv("LOOM_CGROUP_SELF");
    long cpus = loom__env_long("LOOM_CGROUP_CPUS", 0, 1, 1 << 20);
    return loom__cpu_count_at(root ? root : "/sys/fs/cgroup", self ? self : "/proc/self/cgroup",
                              cpus > 0 ? (int)cpus : affinity_count());
}
