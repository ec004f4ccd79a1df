/*
 * topo.c — CPU topology for the scheduler: the NUMA-aware scheduling Go's runtime was
 * designed for (Dmitry Vyukov, "NUMA-aware scheduler for Go", 2014) but never got.
 *
 * The model.  Every P is given one CPU of the machine.  CPUs come in three nested levels:
 *
 *     node           a NUMA node: CPUs with the same local memory
 *       cache group  CPUs that share the last-level cache (L3 on most x86, the cluster's
 *                    L2 on many ARM parts); always inside one node (see Discovery)
 *         CPU
 *
 * and the distance between two Ps is their *tier*:
 *
 *     tier 0   same cache group (also two Ps on one CPU, and a P with itself)
 *     tier 1   same node, different cache group
 *     tier 2   different node
 *
 * Why steal nearest first.  A goroutine that an idle P steals was made runnable on the
 * victim P, usually by a goroutine that was just running there: its stack, the channel it
 * was woken through and the data it was handed are warm in the victim's caches, and its
 * stack and heap pages sit in the victim's node.  Stolen from a P in the same cache group,
 * it finds all of that in the shared cache; from the same node, it pays cache misses that
 * are served by local memory; from another node, every miss crosses the interconnect (and
 * the cache lines it dirties bounce back to the victim's node later).  So an idle P scans
 * every tier-0 P before any tier-1 P, and every tier-1 P before any tier-2 P: work moves
 * across a node boundary only when its own node has nothing to give.  On a machine with
 * one node and no cache information everything is tier 1 (or 0), which is Go's plain
 * random stealing.
 *
 * Why rotated.  Go picks victims in a random order (runtime.randomOrder) so that idle Ps do
 * not all hit the same victim first and contend for its run queue.  loom keeps that within
 * each tier: loom__topo_steal_order lists a tier's Ps in increasing order, rotated to start
 * at a place taken from the caller's random number r (mixed radix, tier 0's start from
 * r % k0, tier 1's from (r / k0) % k1, tier 2's from (r / (k0 * k1)) % k2 for tier sizes
 * kt), so every P of a tier is equally likely to be tried first, and the tiers' starts
 * are independent for a uniform r.  A rotation rather than a full shuffle keeps the call
 * O(n) without scratch memory or more random numbers.
 *
 * Which CPU a P gets.  P i gets the i-th allowed CPU in an order that keeps cache groups
 * together: nodes in increasing order, in each node its cache groups in order of their
 * lowest CPU, in each group its CPUs in increasing order.  With fewer Ps than CPUs the Ps
 * are thus packed into as few cache groups and nodes as possible (more tier-0 victims);
 * with more Ps than CPUs the assignment wraps around (P ncpu gets the first CPU again).
 * A spare P nprocs + i (lent while P i's thread is blocked) gets P i's CPU.
 *
 * Discovery (real machine), from sysfs, no library: a missing, unreadable or malformed file
 * never fails init, it only makes the picture coarser.
 *   - Allowed CPUs: sched_getaffinity of the calling thread at init (as src/cpus.c counts
 *     them); CPUs numbered 1024 and up are left out (tables are fixed at 1024 CPUs).  If
 *     the mask cannot be read: CPUs 0..online-1.
 *   - Nodes: /sys/devices/system/node/node<N>/cpulist.  No such directory: one node.  A CPU
 *     listed by no node joins the lowest node.  Nodes are renumbered densely in increasing
 *     <N> order, counting only nodes that hold an allowed CPU: loom__topo_node returns
 *     0..nnodes-1 (usable as an array index) and loom__topo_bind maps it back to <N>.
 *   - Cache groups: /sys/devices/system/cpu/cpu<C>/cache/index<I>/{level,type,
 *     shared_cpu_list}; the index of highest level whose type is Data or Unified gives
 *     the group: the allowed CPUs of its shared_cpu_list that are on the same node.  The
 *     split by node matters on parts whose L3 spans two nodes (Intel's sub-NUMA clustering)
 *     and keeps the tiers nested: same cache implies same node.  No cache information: each
 *     CPU is its own group.  The files of each group are read once (for its lowest CPU).
 *
 * LOOM_TOPOLOGY fakes a machine, for tests and experiments:
 *
 *     description := node (';' node)*
 *     node        := group ('/' group)*          cache groups of the node
 *     group       := item (',' item)*            the group's CPUs
 *     item        := N | N '-' M                 CPU numbers 0..1023, N <= M
 *
 * e.g. "0-1/2-3;4-5/6-7" is 2 nodes x 2 cache groups x 2 CPUs and "0,2/1,3" one node whose
 * two groups interleave.  No blanks.  Each CPU may appear once.  Nodes and cache groups are
 * numbered in the order written, and the CPUs are given to Ps in the order written (the
 * affinity mask is not looked at).  With a fake topology pinning and binding are no-ops:
 * the CPUs need not exist.  A malformed description prints one line on stderr,
 * "loom: LOOM_TOPOLOGY=<value>: <why>, ignored", and discovery is used instead.  An empty
 * value is the same as no value.
 *
 * LOOM_PIN=1 makes loom__topo_pin_self pin the calling thread to its P's CPU.
 *
 * Threads.  loom__topo_init and _term are not thread-safe, and nothing may read while they
 * run; in between, the tables are only read, by any thread.
 */
#include "topo.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAXCPU          1024 /* CPU numbers (and node numbers) 0..MAXCPU-1 */
#define SYSDIR          "/sys/devices/system"
#define MPOL_PREFERRED_ 1    /* <linux/mempolicy.h>, without numaif.h */
#define LISTBUF         8192 /* a cpulist file: "0-3,8-11\n" */

/* A set of CPU (or node) numbers below MAXCPU. */
typedef struct {
    uint64_t w[MAXCPU / 64];
} cset;
static inline void cs_add(cset *s, int c) { s->w[c >> 6] |= 1ULL << (c & 63); }
static inline bool cs_has(const cset *s, int c) { return (s->w[c >> 6] >> (c & 63)) & 1; }

/* Slots: slot i is the i-th CPU of the assignment order; P p uses slot (p % nprocs) % nslot. */
static struct {
    bool init, fake, pin;
    int nprocs;
    int nslot; /* CPUs in the assignment order */
    int nnodes;
    int16_t cpu[MAXCPU];     /* slot -> CPU number */
    int16_t cache[MAXCPU];   /* slot -> cache group, numbered in slot order */
    int16_t node[MAXCPU];    /* slot -> dense node */
    int16_t node_id[MAXCPU]; /* dense node -> the kernel's node number, -1 unknown */
    long pagesz;
    cpu_set_t *mask; /* the affinity mask at init (for unpin), or NULL */
    size_t masksz;
    int maskerr; /* why mask is NULL */
} T;

/* Scratch for discovery (init is not reentrant; kept off the caller's stack). */
static struct {
    cset allowed;
    int16_t nreal[MAXCPU]; /* CPU -> kernel node, -1 unknown */
    int16_t cnode[MAXCPU]; /* CPU -> dense node */
    int16_t dense[MAXCPU]; /* kernel node -> dense node */
    int16_t grp[MAXCPU];   /* CPU -> group in discovery order, -1 none yet */
    int16_t gnode[MAXCPU]; /* group -> dense node */
    int16_t grank[MAXCPU]; /* group -> cache id (rank in slot order) */
    int start[MAXCPU + 1];
} W;

/* ------------------------------------------------------------------ the readers */

static inline int slot(int p) {
    if (T.nslot <= 0 || p < 0) return 0;
    return (p % T.nprocs) % T.nslot;
}

static inline int slot_tier(int a, int b) {
    if (T.cache[a] == T.cache[b]) return 0;
    return T.node[a] == T.node[b] ? 1 : 2;
}

int loom__topo_cpu(int p) { return T.cpu[slot(p)]; }
int loom__topo_cache(int p) { return T.cache[slot(p)]; }
int loom__topo_node(int p) { return T.node[slot(p)]; }
int loom__topo_nnodes(void) { return T.nnodes > 0 ? T.nnodes : 1; }
int loom__topo_tier(int p, int q) { return slot_tier(slot(p), slot(q)); }
bool loom__topo_fake(void) { return T.fake; }

int loom__topo_steal_order(int p, int n, uint32_t r, int *out) {
    if (n <= 0) return 0;
    int sp = slot(p);
    int np = T.nslot > 0 ? T.nprocs : 1, ns = T.nslot > 0 ? T.nslot : 1;

    /* Pass 1: the size of each tier.  slot(q) is kept incrementally (no division per q). */
    int k[3] = { 0, 0, 0 };
    for (int q = 0, pi = 0, sq = 0; q < n; q++) {
        if (q != p) k[slot_tier(sp, sq)]++;
        if (++pi == np) {
            pi = 0;
            sq = 0;
        } else if (++sq == ns) sq = 0;
    }

    int rot[3], base[3], idx[3] = { 0, 0, 0 };
    for (int t = 0; t < 3; t++) {
        rot[t] = k[t] > 0 ? (int)(r % (uint32_t)k[t]) : 0;
        if (k[t] > 0) r /= (uint32_t)k[t];
    }
    base[0] = 0;
    base[1] = k[0];
    base[2] = k[0] + k[1];

    /* Pass 2: the i-th P of tier t goes to place (i - rot) mod k within the tier. */
    for (int q = 0, pi = 0, sq = 0; q < n; q++) {
        if (q != p) {
            int t = slot_tier(sp, sq);
            int j = idx[t]++ - rot[t];
            if (j < 0) j += k[t];
            out[base[t] + j] = q;
        }
        if (++pi == np) {
            pi = 0;
            sq = 0;
        } else if (++sq == ns) sq = 0;
    }
    return k[0] + k[1] + k[2];
}

/* ------------------------------------------------------------------ pinning and memory */

int loom__topo_pin_self(int p) {
    if (!T.pin || T.fake) return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(T.cpu[slot(p)], &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) return -errno; /* 0: this thread */
    return 0;
}

int loom__topo_unpin_self(void) {
    if (!T.pin || T.fake) return 0;
    if (!T.mask) return -(T.maskerr ? T.maskerr : ENOSYS);
    if (sched_setaffinity(0, T.masksz, T.mask) != 0) return -errno;
    return 0;
}

/* The caller's CPU, if a thread whose mask is *saved may run there; else -1. */
static int lend_target(cpu_set_t *saved) {
    int cpu = sched_getcpu();
    if (!T.mask || T.fake || cpu < 0 || !CPU_ISSET_S(cpu, T.masksz, saved)) return -1;
    return cpu;
}

/* *saved: a mask of T.masksz bytes, allocated at the first lend */
static cpu_set_t *saved_mask(void **saved) {
    if (!*saved && T.mask) *saved = malloc(T.masksz);
    return *saved;
}

int loom__topo_lend_cpu(int tid, void **saved) {
    cpu_set_t *old = saved_mask(saved);
    if (!old || sched_getaffinity(tid, T.masksz, old) != 0) return -ENOSYS;
    int cpu = lend_target(old);
    if (cpu < 0) return -ENOSYS;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(tid, sizeof set, &set) == 0 ? 0 : -errno;
}

int loom__topo_lend_cpu_attr(pthread_attr_t *attr, void **saved) {
    cpu_set_t *old = saved_mask(saved);
    if (!old || sched_getaffinity(0, T.masksz, old) != 0) return -ENOSYS;
    int cpu = lend_target(old);
    if (cpu < 0) return -ENOSYS;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return -pthread_attr_setaffinity_np(attr, sizeof set, &set);
}

void loom__topo_lent_back(void *saved) {
    if (saved) (void)sched_setaffinity(0, T.masksz, saved);
}

int loom__topo_bind(void *addr, size_t len, int node) {
    if (T.fake || loom__topo_nnodes() <= 1) return 0;
    if (node < 0 || node >= T.nnodes) return -EINVAL;
    int id = T.node_id[node];
    if (id < 0) return 0;

    /* The whole pages inside the range: a page shared with a neighbour keeps its policy. */
    uintptr_t pg = (uintptr_t)T.pagesz, a = (uintptr_t)addr;
    uintptr_t end = len > UINTPTR_MAX - a ? UINTPTR_MAX : a + len;
    uintptr_t lo = a > UINTPTR_MAX - (pg - 1) ? UINTPTR_MAX & ~(pg - 1) : (a + pg - 1) & ~(pg - 1);
    uintptr_t hi = end & ~(pg - 1);
    if (hi <= lo) return 0;

    enum { LBITS = 8 * sizeof(unsigned long) };
    unsigned long nodes[MAXCPU / LBITS];
    memset(nodes, 0, sizeof nodes);
    nodes[id / LBITS] = 1UL << (id % LBITS);
    /* maxnode is one more than the mask's bits: the kernel counts one off (as libnuma does). */
    if (syscall(SYS_mbind, (unsigned long)lo, (unsigned long)(hi - lo), (unsigned long)MPOL_PREFERRED_, nodes,
                (unsigned long)MAXCPU + 1, 0UL) != 0)
        return -errno;
    return 0;
}

/* ------------------------------------------------------------------ LOOM_TOPOLOGY */

/* A CPU number at *s; false with the reason in why. */
static bool fake_num(const char *d, const char **s, int *out, char *why, size_t wsz) {
    const char *p = *s;
    if (*p < '0' || *p > '9') {
        if (*p == '\0') snprintf(why, wsz, "a CPU number expected at the end");
        else if (*p >= ' ' && *p < 127)
            snprintf(why, wsz, "a CPU number expected at '%c' (offset %d)", *p, (int)(p - d));
        else
            snprintf(why, wsz, "a CPU number expected at byte 0x%02x (offset %d)", (unsigned char)*p,
                     (int)(p - d));
        return false;
    }
    long v = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        if (v < MAXCPU) v = v * 10 + (*p - '0');
    if (v >= MAXCPU) {
        snprintf(why, wsz, "CPU number at offset %d is above %d", (int)(*s - d), MAXCPU - 1);
        return false;
    }
    *out = (int)v;
    *s = p;
    return true;
}

/* Fills T's slots from the description d; false with the reason in why. */
static bool parse_fake(const char *d, char *why, size_t wsz) {
    cset seen;
    memset(&seen, 0, sizeof seen);
    int n = 0, node = 0, group = 0;
    bool first = true; /* the group is its node's first */
    const char *s = d;
    for (;;) { /* one cache group per turn */
        if (*s == '\0' || *s == ';' || *s == '/') {
            bool empty_node = first && *s != '/';
            snprintf(why, wsz, "empty %s at offset %d", empty_node ? "node" : "cache group", (int)(s - d));
            return false;
        }
        for (;;) { /* one item per turn */
            int a, b;
            if (!fake_num(d, &s, &a, why, wsz)) return false;
            b = a;
            if (*s == '-') {
                s++;
                if (!fake_num(d, &s, &b, why, wsz)) return false;
                if (b < a) {
                    snprintf(why, wsz, "range %d-%d runs backwards", a, b);
                    return false;
                }
            }
            for (int c = a; c <= b; c++) {
                if (cs_has(&seen, c)) {
                    snprintf(why, wsz, "CPU %d listed twice", c);
                    return false;
                }
                cs_add(&seen, c); /* distinct and < MAXCPU: n stays < MAXCPU */
                T.cpu[n] = (int16_t)c;
                T.cache[n] = (int16_t)group;
                T.node[n] = (int16_t)node;
                n++;
            }
            if (*s != ',') break;
            s++;
        }
        group++;
        if (*s == '\0') break;
        if (*s == '/') {
            first = false;
        } else if (*s == ';') {
            first = true;
            node++;
        } else {
            if (*s >= ' ' && *s < 127) snprintf(why, wsz, "unexpected '%c' at offset %d", *s, (int)(s - d));
            else snprintf(why, wsz, "unexpected byte 0x%02x at offset %d", (unsigned char)*s, (int)(s - d));
            return false;
        }
        s++;
    }
    T.nslot = n;
    T.nnodes = node + 1;
    for (int i = 0; i < T.nnodes; i++) T.node_id[i] = -1;
    return true;
}

/* ------------------------------------------------------------------ discovery */

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static long list_num(const char **s) {
    long v = 0;
    for (; **s >= '0' && **s <= '9'; (*s)++)
        if (v <= INT_MAX) v = v * 10 + (**s - '0');
    return v;
}

/* Adds the CPUs below MAXCPU of a kernel CPU list ("0-3,8,10-11") to out; stops quietly at
 * anything else.  True when the whole string was a list. */
static bool parse_list(const char *s, cset *out) {
    while (*s == ' ' || *s == '\n') s++;
    if (*s == '\0') return true; /* an empty list (a node without CPUs) */
    for (;;) {
        if (*s < '0' || *s > '9') return false;
        long a = list_num(&s), b = a;
        if (*s == '-') {
            s++;
            if (*s < '0' || *s > '9') return false;
            b = list_num(&s);
        }
        if (b < a) return false;
        for (long c = a; c <= b && c < MAXCPU; c++) cs_add(out, (int)c);
        if (*s != ',') break;
        s++;
    }
    while (*s == ' ' || *s == '\n') s++;
    return *s == '\0';
}

/* The CPU list in the file at path (added to out); false when unreadable. */
static bool read_list(const char *path, cset *out) {
    char buf[LISTBUF];
    ssize_t n = loom__read_small(path, buf, sizeof buf);
    if (n < 0) return false;
    if ((size_t)n == sizeof buf - 1) { /* cut short: drop the last, partial item */
        char *comma = strrchr(buf, ',');
        if (!comma) return false;
        *comma = '\0';
    }
    parse_list(buf, out);
    return true;
}

/* The CPUs sharing cpu's highest-level data or unified cache, into out; false if unknown. */
static bool llc_group(const char *sysdir, int cpu, cset *out) {
    char dir[PATH_MAX], path[PATH_MAX + 32], buf[64];
    if (snprintf(dir, sizeof dir, "%s/cpu/cpu%d/cache", sysdir, cpu) >= (int)sizeof dir) return false;
    if (!is_dir(dir)) return false;
    int best = -1, best_level = -1;
    for (int i = 0; i < 64; i++) {
        snprintf(path, sizeof path, "%s/index%d", dir, i);
        if (!is_dir(path)) break; /* the kernel numbers them from 0, no gaps */
        snprintf(path, sizeof path, "%s/index%d/type", dir, i);
        if (loom__read_small(path, buf, sizeof buf) < 0) continue;
        buf[strcspn(buf, "\n")] = '\0';
        if (strcmp(buf, "Data") != 0 && strcmp(buf, "Unified") != 0) continue;
        snprintf(path, sizeof path, "%s/index%d/level", dir, i);
        if (loom__read_small(path, buf, sizeof buf) < 0) continue;
        const char *s = buf;
        if (*s < '0' || *s > '9') continue;
        long level = list_num(&s);
        if (level > best_level) {
            best_level = (int)(level > INT_MAX ? INT_MAX : level);
            best = i;
        }
    }
    if (best < 0) return false;
    snprintf(path, sizeof path, "%s/index%d/shared_cpu_list", dir, best);
    return read_list(path, out);
}

/* The affinity mask at init, kept for loom__topo_unpin_self. */
static void read_mask(void) {
    int err = ENOSYS;
    for (int ncpu = MAXCPU; ncpu <= (1 << 20); ncpu *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        if (!set) {
            err = ENOMEM;
            break;
        }
        size_t sz = CPU_ALLOC_SIZE(ncpu);
        CPU_ZERO_S(sz, set);
        if (sched_getaffinity(0, sz, set) == 0) {
            T.mask = set;
            T.masksz = sz;
            return;
        }
        err = errno;
        CPU_FREE(set);
        if (err != EINVAL) break; /* EINVAL: the mask is too small, grow */
    }
    T.maskerr = err;
}

/* Node <N> from a directory entry "node<N>"; -1 for anything else. */
static int node_number(const char *name) {
    if (strncmp(name, "node", 4) != 0) return -1;
    const char *s = name + 4;
    if (*s < '0' || *s > '9') return -1;
    long v = list_num(&s);
    return *s == '\0' && v < MAXCPU ? (int)v : -1;
}

static void discover(const char *sysdir, const char *allowed) {
    char path[PATH_MAX + 64];

    /* Allowed CPUs. */
    memset(&W.allowed, 0, sizeof W.allowed);
    if (allowed) {
        parse_list(allowed, &W.allowed);
    } else if (T.mask) {
        for (int c = 0; c < MAXCPU; c++)
            if (CPU_ISSET_S(c, T.masksz, T.mask)) cs_add(&W.allowed, c);
    }
    int nallowed = 0;
    for (int c = 0; c < MAXCPU; c++) nallowed += cs_has(&W.allowed, c);
    if (nallowed == 0) {
        long on = sysconf(_SC_NPROCESSORS_ONLN);
        if (on < 1) on = 1;
        if (on > MAXCPU) on = MAXCPU;
        for (int c = 0; c < on; c++) cs_add(&W.allowed, c);
    }

    /* Nodes: the lowest node that lists a CPU has it. */
    for (int c = 0; c < MAXCPU; c++) W.nreal[c] = -1;
    snprintf(path, sizeof path, "%s/node", sysdir);
    DIR *dir = opendir(path);
    if (dir) {
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            int id = node_number(e->d_name);
            if (id < 0) continue;
            cset cpus;
            memset(&cpus, 0, sizeof cpus);
            if (snprintf(path, sizeof path, "%s/node/%s/cpulist", sysdir, e->d_name) >= (int)sizeof path)
                continue;
            if (!read_list(path, &cpus)) continue;
            for (int c = 0; c < MAXCPU; c++)
                if (cs_has(&cpus, c) && cs_has(&W.allowed, c) && (W.nreal[c] < 0 || id < W.nreal[c]))
                    W.nreal[c] = (int16_t)id;
        }
        closedir(dir);
    }
    cset present;
    memset(&present, 0, sizeof present);
    for (int c = 0; c < MAXCPU; c++)
        if (cs_has(&W.allowed, c) && W.nreal[c] >= 0) cs_add(&present, W.nreal[c]);
    int nn = 0;
    for (int id = 0; id < MAXCPU; id++)
        if (cs_has(&present, id)) {
            W.dense[id] = (int16_t)nn;
            T.node_id[nn++] = (int16_t)id;
        }
    if (nn == 0) T.node_id[nn++] = -1; /* no node information: one node */
    T.nnodes = nn;
    for (int c = 0; c < MAXCPU; c++) W.cnode[c] = (int16_t)(W.nreal[c] >= 0 ? W.dense[W.nreal[c]] : 0);

    /* Cache groups, each found from its lowest CPU, split by node. */
    int ngrp = 0;
    for (int c = 0; c < MAXCPU; c++) W.grp[c] = -1;
    for (int c = 0; c < MAXCPU; c++) {
        if (!cs_has(&W.allowed, c) || W.grp[c] >= 0) continue;
        int g = ngrp++;
        W.grp[c] = (int16_t)g;
        W.gnode[g] = W.cnode[c];
        cset sh;
        memset(&sh, 0, sizeof sh);
        if (!llc_group(sysdir, c, &sh)) continue;
        for (int d = c + 1; d < MAXCPU; d++)
            if (cs_has(&sh, d) && cs_has(&W.allowed, d) && W.grp[d] < 0 && W.cnode[d] == W.cnode[c])
                W.grp[d] = (int16_t)g;
    }

    /* Groups ranked by (node, lowest CPU): a counting sort by node; groups are already in
     * order of their lowest CPU. */
    memset(W.start, 0, sizeof W.start);
    for (int g = 0; g < ngrp; g++) W.start[W.gnode[g] + 1]++;
    for (int i = 0; i < nn; i++) W.start[i + 1] += W.start[i];
    for (int g = 0; g < ngrp; g++) W.grank[g] = (int16_t)W.start[W.gnode[g]]++;

    /* Slots: CPUs by (group rank, CPU number), a counting sort by rank. */
    memset(W.start, 0, sizeof W.start);
    for (int c = 0; c < MAXCPU; c++)
        if (cs_has(&W.allowed, c)) W.start[W.grank[W.grp[c]] + 1]++;
    for (int i = 0; i < ngrp; i++) W.start[i + 1] += W.start[i];
    int n = 0;
    for (int c = 0; c < MAXCPU; c++) {
        if (!cs_has(&W.allowed, c)) continue;
        int rk = W.grank[W.grp[c]], i = W.start[rk]++;
        T.cpu[i] = (int16_t)c;
        T.cache[i] = (int16_t)rk;
        T.node[i] = W.cnode[c];
        n++;
    }
    T.nslot = n;
}

/* ------------------------------------------------------------------ init and term */

static int setup(int nprocs, const char *sysdir, const char *allowed, bool env) {
    if (nprocs < 1) return -EINVAL;
    if (T.init) return -EBUSY;
    memset(&T, 0, sizeof T);
    T.nprocs = nprocs;
    T.pagesz = sysconf(_SC_PAGESIZE);
    if (T.pagesz <= 0) T.pagesz = 4096;
    read_mask();
    const char *pin = getenv("LOOM_PIN");
    T.pin = pin && strcmp(pin, "1") == 0;

    const char *d = env ? getenv("LOOM_TOPOLOGY") : NULL;
    if (d && *d) {
        char why[128];
        if (parse_fake(d, why, sizeof why)) T.fake = true;
        else fprintf(stderr, "loom: LOOM_TOPOLOGY=%s: %s, ignored\n", d, why);
    }
    if (!T.fake) {
        memset(T.cpu, 0, sizeof T.cpu);
        memset(T.cache, 0, sizeof T.cache);
        memset(T.node, 0, sizeof T.node);
        discover(sysdir, allowed);
    }
    T.init = true;
    return 0;
}

int loom__topo_init(int nprocs) { return setup(nprocs, SYSDIR, NULL, true); }

int loom__topo_init_at(int nprocs, const char *sysdir, const char *allowed) {
    return setup(nprocs, sysdir ? sysdir : SYSDIR, allowed, false);
}

void loom__topo_term(void) {
    if (T.mask) CPU_FREE(T.mask);
    memset(&T, 0, sizeof T);
}
