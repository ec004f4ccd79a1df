/*
 * test_topo.c — the topology module (src/topo.c): discovery on this machine, discovery from
 * fake sysfs trees (loom__topo_init_at), LOOM_TOPOLOGY descriptions (checked exhaustively,
 * steal orders included), malformed descriptions, LOOM_PIN and loom__topo_bind.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "t.h"
#include "../src/topo.h"

#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAXP 64

/* ------------------------------------------------------------------ helpers */

static cpu_set_t orig_mask; /* this thread's mask when the test started */

static void env(const char *name, const char *value)
{
    if (value)
        CHECK_OK(setenv(name, value, 1));
    else
        CHECK_OK(unsetenv(name));
}

/* loom__topo_init(nprocs) with LOOM_TOPOLOGY=topo (NULL: unset); what it wrote on stderr
 * goes to err. */
static int init_capture(const char *topo, int nprocs, char *err, size_t errsz)
{
    env("LOOM_TOPOLOGY", topo);
    fflush(stderr);
    FILE *tmp = tmpfile();
    CHECK(tmp != NULL);
    int saved = dup(2);
    CHECK(saved >= 0);
    CHECK(dup2(fileno(tmp), 2) == 2);
    int rc = loom__topo_init(nprocs);
    fflush(stderr);
    CHECK(dup2(saved, 2) == 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(err, 1, errsz - 1, tmp);
    err[n] = '\0';
    fclose(tmp);
    return rc;
}

/* init with LOOM_TOPOLOGY=topo, which must be accepted silently. */
static void init_quiet(const char *topo, int nprocs)
{
    char err[1024];
    CHECK_OK(init_capture(topo, nprocs, err, sizeof err));
    CHECK_MSG(err[0] == '\0', "LOOM_TOPOLOGY=%s: unexpected message: %s", topo ? topo : "(unset)", err);
}

/* The structural properties every topology has, for Ps 0..2*nprocs-1. */
static void check_invariants(int nprocs)
{
    int nn = loom__topo_nnodes();
    CHECK_GE(nn, 1);
    CHECK_EQ(loom__topo_node(0), 0); /* node 0 exists: P0 is there */
    for (int p = 0; p < 2 * nprocs; p++) {
        CHECK_GE(loom__topo_cpu(p), 0);
        CHECK_LT(loom__topo_cpu(p), 1024);
        CHECK_GE(loom__topo_node(p), 0);
        CHECK_LT(loom__topo_node(p), nn);
        CHECK_GE(loom__topo_cache(p), 0);
        CHECK_EQ(loom__topo_tier(p, p), 0);
        if (p >= nprocs) { /* spare P: its base's CPU */
            CHECK_EQ(loom__topo_cpu(p), loom__topo_cpu(p - nprocs));
            CHECK_EQ(loom__topo_cache(p), loom__topo_cache(p - nprocs));
            CHECK_EQ(loom__topo_node(p), loom__topo_node(p - nprocs));
            CHECK_EQ(loom__topo_tier(p, p - nprocs), 0);
        }
        for (int q = 0; q < 2 * nprocs; q++) {
            int t = loom__topo_tier(p, q);
            CHECK_EQ(t, loom__topo_tier(q, p));
            bool same_cache = loom__topo_cache(p) == loom__topo_cache(q);
            bool same_node = loom__topo_node(p) == loom__topo_node(q);
            if (same_cache)
                CHECK(same_node); /* groups are inside nodes */
            CHECK_EQ(t, same_cache ? 0 : same_node ? 1 : 2);
            if (loom__topo_cpu(p) == loom__topo_cpu(q))
                CHECK_EQ(t, 0);
        }
    }
    /* Every node number 0..nn-1 is used by some P when there are enough Ps to go round
     * (not necessarily otherwise), and cache ids never decrease along the Ps 0..ncpu-1. */
}

/* Checks one steal order against the definition; returns the rotation of each tier in
 * rot[] (the index, in increasing order, of the tier's first P) and its size in k[]. */
static void check_order(int p, int n, uint32_t r, int rot[3], int k[3])
{
    int out[2 * MAXP + 1];
    for (int i = 0; i <= n; i++)
        out[i] = -1;
    int cnt = loom__topo_steal_order(p, n, r, out);
    CHECK_EQ(cnt, p < n ? n - 1 : n);
    CHECK_EQ(out[cnt], -1); /* nothing written past cnt */

    bool seen[2 * MAXP] = { false };
    for (int i = 0; i < cnt; i++) {
        CHECK_GE(out[i], 0);
        CHECK_LT(out[i], n);
        CHECK_NE(out[i], p);
        CHECK(!seen[out[i]]);
        seen[out[i]] = true;
        if (i > 0)
            CHECK_LE(loom__topo_tier(p, out[i - 1]), loom__topo_tier(p, out[i]));
    }
    /* Each tier: the increasing list of its members, rotated. */
    int i = 0;
    for (int t = 0; t < 3; t++) {
        int members[2 * MAXP], m = 0;
        for (int q = 0; q < n; q++)
            if (q != p && loom__topo_tier(p, q) == t)
                members[m++] = q;
        k[t] = m;
        rot[t] = 0;
        if (m == 0)
            continue;
        int start = -1;
        for (int j = 0; j < m; j++)
            if (members[j] == out[i])
                start = j;
        CHECK_GE(start, 0);
        for (int j = 0; j < m; j++)
            CHECK_EQ(out[i + j], members[(start + j) % m]);
        rot[t] = start;
        i += m;
    }
    CHECK_EQ(i, cnt);
    /* The documented choice of rotation: mixed radix in r. */
    uint32_t rr = r;
    for (int t = 0; t < 3; t++) {
        if (k[t] == 0)
            continue;
        CHECK_EQ(rot[t], (int)(rr % (uint32_t)k[t]));
        rr /= (uint32_t)k[t];
    }
}

/* Steal orders from every P with n Ps, over many r: every combination of rotations is
 * reached (r = 0..k0*k1*k2-1 covers them exactly once each). */
static void check_orders(int nprocs, int n)
{
    for (int p = 0; p < n; p++) {
        int rot[3], k[3];
        check_order(p, n, 0, rot, k);
        int combos = (k[0] ? k[0] : 1) * (k[1] ? k[1] : 1) * (k[2] ? k[2] : 1);
        CHECK_LE(combos, 100000);
        static bool reached[100000];
        memset(reached, 0, sizeof reached);
        for (int r = 0; r < combos; r++) {
            check_order(p, n, (uint32_t)r, rot, k);
            int code = rot[0] + (k[0] ? k[0] : 1) * (rot[1] + (k[1] ? k[1] : 1) * rot[2]);
            CHECK(!reached[code]);
            reached[code] = true;
        }
        t_rng rng;
        t_rng_seed(&rng, (uint64_t)p * 31 + (uint64_t)n);
        for (int i = 0; i < 200; i++)
            check_order(p, n, (uint32_t)t_rng_next(&rng), rot, k);
    }
    (void)nprocs;
    /* p outside 0..n-1 (a spare asking about the Ps proper): all n are listed */
    int rot[3], k[3];
    check_order(n, n, 12345, rot, k);
}

/* ------------------------------------------------------------------ this machine */

static void test_real(void)
{
    cpu_set_t mask;
    CHECK_OK(sched_getaffinity(0, sizeof mask, &mask));
    int ncpu = CPU_COUNT(&mask);
    CHECK_GE(ncpu, 1);

    env("LOOM_PIN", NULL);
    int sizes[] = { 1, ncpu, ncpu + 1, 2 * ncpu + 3 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int nprocs = sizes[s];
        if (nprocs > MAXP)
            continue;
        init_quiet(NULL, nprocs);
        CHECK(!loom__topo_fake());
        check_invariants(nprocs);
        for (int p = 0; p < 2 * nprocs; p++) {
            int c = loom__topo_cpu(p);
            CHECK_MSG(CPU_ISSET(c, &mask), "P%d has CPU %d, not in our affinity mask", p, c);
        }
        /* The first min(nprocs, ncpu) Ps have distinct CPUs; then they wrap around. */
        for (int p = 0; p < nprocs && p < ncpu; p++)
            for (int q = 0; q < p; q++)
                CHECK_NE(loom__topo_cpu(p), loom__topo_cpu(q));
        for (int p = ncpu; p < nprocs; p++)
            CHECK_EQ(loom__topo_cpu(p), loom__topo_cpu(p - ncpu));
        check_orders(nprocs, nprocs);
        check_orders(nprocs, 2 * nprocs);
        /* Pinning is off without LOOM_PIN. */
        CHECK_OK(loom__topo_pin_self(0));
        cpu_set_t now;
        CHECK_OK(sched_getaffinity(0, sizeof now, &now));
        CHECK(CPU_EQUAL(&now, &orig_mask));
        loom__topo_term();
    }
    init_quiet(NULL, ncpu);
    printf("test_topo: this machine: %d CPUs, %d node(s); P->cpu/cache/node:", ncpu, loom__topo_nnodes());
    for (int p = 0; p < ncpu && p < 16; p++)
        printf(" %d/%d/%d", loom__topo_cpu(p), loom__topo_cache(p), loom__topo_node(p));
    printf("\n");
    loom__topo_term();
}

/* ------------------------------------------------------------------ LOOM_PIN */

static void check_pinned_to(int cpu)
{
    cpu_set_t now;
    CHECK_OK(sched_getaffinity(0, sizeof now, &now));
    CHECK_EQ(CPU_COUNT(&now), 1);
    CHECK_MSG(CPU_ISSET(cpu, &now), "not pinned to CPU %d", cpu);
}

static void *pin_thread(void *arg)
{
    int p = (int)(intptr_t)arg;
    CHECK_OK(loom__topo_pin_self(p));
    check_pinned_to(loom__topo_cpu(p));
    CHECK_OK(loom__topo_unpin_self());
    return NULL;
}

static void test_pin(void)
{
    cpu_set_t now;
    int ncpu = CPU_COUNT(&orig_mask);

    /* Real topology: every P, spares too, pins this thread to its CPU; unpin restores. */
    env("LOOM_PIN", "1");
    init_quiet(NULL, ncpu);
    for (int p = 0; p < 2 * ncpu; p++) {
        CHECK_OK(loom__topo_pin_self(p));
        check_pinned_to(loom__topo_cpu(p));
    }
    CHECK_OK(loom__topo_unpin_self());
    CHECK_OK(sched_getaffinity(0, sizeof now, &now));
    CHECK(CPU_EQUAL(&now, &orig_mask));
    /* and on other threads */
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK_OK(pthread_create(&th[i], NULL, pin_thread, (void *)(intptr_t)(i % (2 * ncpu))));
    for (int i = 0; i < 4; i++)
        CHECK_OK(pthread_join(th[i], NULL));
    CHECK_OK(sched_getaffinity(0, sizeof now, &now));
    CHECK(CPU_EQUAL(&now, &orig_mask));
    loom__topo_term();

    /* Fake topology: no-op, even for CPUs that do not exist here. */
    init_quiet("0-1/2-3;4-5/6-7", 8);
    CHECK(loom__topo_fake());
    for (int p = 0; p < 16; p++)
        CHECK_OK(loom__topo_pin_self(p));
    CHECK_OK(loom__topo_unpin_self());
    CHECK_OK(sched_getaffinity(0, sizeof now, &now));
    CHECK(CPU_EQUAL(&now, &orig_mask));
    loom__topo_term();

    /* LOOM_PIN other than 1: off. */
    env("LOOM_PIN", "0");
    init_quiet(NULL, ncpu);
    CHECK_OK(loom__topo_pin_self(0));
    CHECK_OK(sched_getaffinity(0, sizeof now, &now));
    CHECK(CPU_EQUAL(&now, &orig_mask));
    loom__topo_term();
    env("LOOM_PIN", NULL);
}

/* ------------------------------------------------------------------ mbind */

static void test_bind(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t len = 8 * (size_t)pg;
    char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(mem != MAP_FAILED);

    init_quiet(NULL, 4);
    int nn = loom__topo_nnodes();
    for (int node = 0; node < nn; node++) {
        int rc = loom__topo_bind(mem, len, node);
        if (nn == 1)
            CHECK_EQ(rc, 0);
        else
            CHECK_MSG(rc == 0 || rc == -EPERM || rc == -ENOSYS, "bind: %s", t_errname(rc));
        CHECK_OK(loom__topo_bind(mem + 1, 10, node)); /* no whole page: nothing to do */
    }
    if (nn > 1)
        CHECK_ERR(loom__topo_bind(mem, len, nn), EINVAL);
    else
        CHECK_OK(loom__topo_bind(mem, len, 5)); /* one node: no-op */
    memset(mem, 1, len);
    loom__topo_term();

    init_quiet("0-1/2-3;4-5/6-7", 8); /* fake: no-op */
    CHECK_EQ(loom__topo_nnodes(), 2);
    CHECK_OK(loom__topo_bind(mem, len, 1));
    loom__topo_term();
    CHECK_OK(munmap(mem, len));
}

/* ------------------------------------------------------------------ LOOM_TOPOLOGY */

static void test_fake_2x2x2(void)
{
    init_quiet("0-1/2-3;4-5/6-7", 8);
    CHECK(loom__topo_fake());
    CHECK_EQ(loom__topo_nnodes(), 2);
    for (int p = 0; p < 16; p++) {
        int b = p % 8;
        CHECK_EQ(loom__topo_cpu(p), b);
        CHECK_EQ(loom__topo_cache(p), b / 2);
        CHECK_EQ(loom__topo_node(p), b / 4);
    }
    for (int p = 0; p < 16; p++)
        for (int q = 0; q < 16; q++) {
            int a = p % 8, b = q % 8;
            int want = a / 2 == b / 2 ? 0 : a / 4 == b / 4 ? 1 : 2;
            CHECK_EQ(loom__topo_tier(p, q), want);
            CHECK_EQ(loom__topo_tier(q, p), want);
        }
    check_invariants(8);

    /* From P0 with 8 Ps: {1}, then {2,3}, then {4..7}, each some rotation; all reached. */
    bool reached[2][4] = { { false } };
    for (uint32_t r = 0; r < 64; r++) {
        int out[8];
        CHECK_EQ(loom__topo_steal_order(0, 8, r, out), 7);
        CHECK_EQ(out[0], 1);
        CHECK((out[1] == 2 && out[2] == 3) || (out[1] == 3 && out[2] == 2));
        for (int i = 0; i < 4; i++)
            CHECK_EQ(out[3 + i], 4 + (out[3] - 4 + i) % 4);
        reached[out[1] - 2][out[3] - 4] = true;
    }
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 4; b++)
            CHECK_MSG(reached[a][b], "rotation (%d,%d) never used", a, b);

    /* From P5 with spares (16): tier 0 {4, 12, 13}, tier 1 {6, 7, 14, 15}, tier 2 the rest. */
    {
        int out[16];
        CHECK_EQ(loom__topo_steal_order(5, 16, 0, out), 15);
        int want[15] = { 4, 12, 13, 6, 7, 14, 15, 0, 1, 2, 3, 8, 9, 10, 11 };
        for (int i = 0; i < 15; i++)
            CHECK_EQ(out[i], want[i]);
        CHECK_EQ(loom__topo_steal_order(5, 16, 1, out), 15); /* tier 0 rotated by 1 */
        CHECK_EQ(out[0], 12);
        CHECK_EQ(out[3], 6);
        CHECK_EQ(loom__topo_steal_order(5, 16, 3, out), 15); /* 3 = 0 + 3*1: tier 1 by 1 */
        CHECK_EQ(out[0], 4);
        CHECK_EQ(out[3], 7);
    }
    check_orders(8, 8);
    check_orders(8, 16);
    check_orders(8, 11);
    loom__topo_term();

    /* Fewer Ps than CPUs: the first ones in order; more: wrap around. */
    init_quiet("0-1/2-3;4-5/6-7", 3);
    for (int p = 0; p < 6; p++)
        CHECK_EQ(loom__topo_cpu(p), p % 3);
    check_invariants(3);
    check_orders(3, 6);
    loom__topo_term();
    init_quiet("0-1/2-3;4-5/6-7", 12);
    for (int p = 0; p < 24; p++)
        CHECK_EQ(loom__topo_cpu(p), (p % 12) % 8);
    check_invariants(12);
    check_orders(12, 24);
    loom__topo_term();
}

struct layout {
    const char *desc;
    int nprocs, nnodes;
    int cpu[16], cache[16], node[16];
};

static void check_layout(const struct layout *l)
{
    init_quiet(l->desc, l->nprocs);
    CHECK(loom__topo_fake());
    CHECK_EQ(loom__topo_nnodes(), l->nnodes);
    for (int p = 0; p < l->nprocs; p++) {
        CHECK_MSG(loom__topo_cpu(p) == l->cpu[p], "%s: P%d CPU %d", l->desc, p, loom__topo_cpu(p));
        CHECK_MSG(loom__topo_cache(p) == l->cache[p], "%s: P%d cache %d", l->desc, p, loom__topo_cache(p));
        CHECK_MSG(loom__topo_node(p) == l->node[p], "%s: P%d node %d", l->desc, p, loom__topo_node(p));
    }
    check_invariants(l->nprocs);
    check_orders(l->nprocs, 2 * l->nprocs);
    loom__topo_term();
}

static void test_fake_layouts(void)
{
    static const struct layout ls[] = {
        { "0", 1, 1, { 0 }, { 0 }, { 0 } },
        { "7", 2, 1, { 7, 7 }, { 0, 0 }, { 0, 0 } },
        { "5,3/1;0", 4, 2, { 5, 3, 1, 0 }, { 0, 0, 1, 2 }, { 0, 0, 0, 1 } },
        { "0,2/1,3", 4, 1, { 0, 2, 1, 3 }, { 0, 0, 1, 1 }, { 0, 0, 0, 0 } },
        { "0;1;2;3", 4, 4, { 0, 1, 2, 3 }, { 0, 1, 2, 3 }, { 0, 1, 2, 3 } },
        { "0/1/2/3", 4, 1, { 0, 1, 2, 3 }, { 0, 1, 2, 3 }, { 0, 0, 0, 0 } },
        { "10-12,1020-1023", 7, 1, { 10, 11, 12, 1020, 1021, 1022, 1023 }, { 0 }, { 0 } },
        { "0-3/4-7;8-11/12-15",
          16,
          2,
          { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 },
          { 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3 },
          { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 } },
    };
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
        check_layout(&ls[i]);

    /* An empty value is no value: discovery, silently. */
    init_quiet("", 2);
    CHECK(!loom__topo_fake());
    loom__topo_term();
}

static void test_malformed(void)
{
    /* What discovery gives, to compare the fallbacks with. */
    int nprocs = 4, real[8];
    init_quiet(NULL, nprocs);
    for (int p = 0; p < 2 * nprocs; p++)
        real[p] = loom__topo_cpu(p);
    loom__topo_term();

    static const char *bad[] = {
        "0-1;;", "a",        "3-1",  "0-1//2-3", "0-1/",
        "/0-1",  "0-1;",     ";0",   "0;/1",     "0-1/1-2",
        "0,0",   "0-3;2",    "1024", "0-1024",   "99999999999999999999",
        "0-",    "-1",       "0 1",  " 0",       "0-1,",
        ",0",    "0-1;2-3x", "0:1",  "0-1\t",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[1024], prefix[256];
        CHECK_OK(init_capture(bad[i], nprocs, err, sizeof err));
        snprintf(prefix, sizeof prefix, "loom: LOOM_TOPOLOGY=%s: ", bad[i]);
        size_t n = strlen(err), pl = strlen(prefix);
        static const char suffix[] = ", ignored\n";
        CHECK_MSG(n > pl + strlen(suffix) && strncmp(err, prefix, pl) == 0 &&
                          strcmp(err + n - strlen(suffix), suffix) == 0,
                  "LOOM_TOPOLOGY=%s: message: \"%s\"", bad[i], err);
        /* one line (the value itself may hold a newline) */
        CHECK_MSG(strchr(err + pl, '\n') == err + n - 1, "more than one line: \"%s\"", err);
        CHECK(!loom__topo_fake());
        for (int p = 0; p < 2 * nprocs; p++)
            CHECK_EQ(loom__topo_cpu(p), real[p]);
        check_invariants(nprocs);
        loom__topo_term();
        printf("test_topo: rejected as expected: %s", err);
    }
    env("LOOM_TOPOLOGY", NULL);
}

static void test_lifecycle(void)
{
    env("LOOM_TOPOLOGY", NULL);
    CHECK_ERR(loom__topo_init(0), EINVAL);
    CHECK_ERR(loom__topo_init(-3), EINVAL);
    CHECK_OK(loom__topo_init(2));
    CHECK_ERR(loom__topo_init(2), EBUSY);
    loom__topo_term();
    loom__topo_term(); /* twice: harmless */
    /* Before init: one CPU 0, one node. */
    CHECK_EQ(loom__topo_cpu(3), 0);
    CHECK_EQ(loom__topo_node(3), 0);
    CHECK_EQ(loom__topo_nnodes(), 1);
    CHECK_EQ(loom__topo_tier(0, 1), 0);
    CHECK(!loom__topo_fake());
    int out[4];
    CHECK_EQ(loom__topo_steal_order(1, 4, 7, out), 3);
    CHECK_EQ(loom__topo_steal_order(1, 0, 7, out), 0);
    CHECK_OK(loom__topo_init(2));
    loom__topo_term();
}

/* ------------------------------------------------------------------ fake sysfs trees */

static char base[PATH_MAX];

static void mkdirs(const char *path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            FAIL("mkdir %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        FAIL("mkdir %s: %s", p, strerror(errno));
}

__attribute__((format(printf, 2, 3))) static void put(const char *rel, const char *fmt, ...)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    mkdirs(p);
    *slash = '/';
    FILE *f = fopen(p, "w");
    if (!f)
        FAIL("%s: %s", p, strerror(errno));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    CHECK_OK(fclose(f));
}

static void cache(int cpu, int index, int level, const char *type, const char *shared)
{
    char rel[256];
    snprintf(rel, sizeof rel, "cpu/cpu%d/cache/index%d/level", cpu, index);
    put(rel, "%d\n", level);
    snprintf(rel, sizeof rel, "cpu/cpu%d/cache/index%d/type", cpu, index);
    put(rel, "%s\n", type);
    snprintf(rel, sizeof rel, "cpu/cpu%d/cache/index%d/shared_cpu_list", cpu, index);
    put(rel, "%s\n", shared);
}

/* A typical x86 CPU: L1d (own), L1i (own), L2 (SMT pair), L3 (l3). */
static void x86(int cpu, const char *pair, const char *l3)
{
    char own[16];
    snprintf(own, sizeof own, "%d", cpu);
    cache(cpu, 0, 1, "Data", own);
    cache(cpu, 1, 1, "Instruction", own);
    cache(cpu, 2, 2, "Unified", pair);
    cache(cpu, 3, 3, "Unified", l3);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void reset_tree(void)
{
    nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    mkdirs(base);
}

static void expect_at(const char *what, const char *allowed, int nprocs, int nnodes, const int *cpu,
                      const int *cachev, const int *node)
{
    env("LOOM_PIN", NULL);
    CHECK_OK(loom__topo_init_at(nprocs, base, allowed));
    CHECK(!loom__topo_fake());
    CHECK_MSG(loom__topo_nnodes() == nnodes, "%s: %d nodes", what, loom__topo_nnodes());
    for (int p = 0; p < nprocs; p++) {
        CHECK_MSG(loom__topo_cpu(p) == cpu[p], "%s: P%d CPU %d, want %d", what, p, loom__topo_cpu(p), cpu[p]);
        CHECK_MSG(loom__topo_cache(p) == cachev[p], "%s: P%d cache %d, want %d", what, p, loom__topo_cache(p),
                  cachev[p]);
        CHECK_MSG(loom__topo_node(p) == node[p], "%s: P%d node %d, want %d", what, p, loom__topo_node(p),
                  node[p]);
    }
    check_invariants(nprocs);
    check_orders(nprocs, 2 * nprocs);
    loom__topo_term();
}

static void test_sysfs(void)
{
    snprintf(base, sizeof base, "%s/loom-topo-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(base) != NULL);

    /* Two nodes (sparse numbers 0 and 2), an L3 per node, SMT pairs (i, i+4) within it. */
    reset_tree();
    put("node/node0/cpulist", "0-1,4-5\n");
    put("node/node2/cpulist", "2-3,6-7\n");
    put("node/node1/cpulist", "\n"); /* memory-only node */
    put("node/possible", "0-2\n");
    for (int c = 0; c < 8; c++) {
        char pair[16];
        snprintf(pair, sizeof pair, "%d,%d", c % 4, c % 4 + 4);
        x86(c, pair, c % 4 < 2 ? "0-1,4-5" : "2-3,6-7");
    }
    {
        int cpu[] = { 0, 1, 4, 5, 2, 3, 6, 7 }, ca[] = { 0, 0, 0, 0, 1, 1, 1, 1 },
            no[] = { 0, 0, 0, 0, 1, 1, 1, 1 };
        expect_at("2 nodes", "0-7", 8, 2, cpu, ca, no);
        int cpu2[] = { 1, 5, 3 }, ca2[] = { 0, 0, 1 }, no2[] = { 0, 0, 1 };
        expect_at("2 nodes, 3 allowed", "1,3,5", 3, 2, cpu2, ca2, no2);
        int cpu3[] = { 2, 3, 6, 7 }, ca3[] = { 0, 0, 0, 0 }, no3[] = { 0, 0, 0, 0 };
        expect_at("node 2 only", "2-3,6-7", 4, 1, cpu3, ca3, no3);
    }

    /* mbind for real: node 0 exists on every Linux machine; this tree says there are two
     * nodes (0 and 1), so loom__topo_bind does call mbind, which get_mempolicy confirms. */
    reset_tree();
    put("node/node0/cpulist", "0\n");
    put("node/node1/cpulist", "1\n");
    {
        CHECK_OK(loom__topo_init_at(2, base, "0-1"));
        CHECK_EQ(loom__topo_nnodes(), 2);
        long pg = sysconf(_SC_PAGESIZE);
        size_t len = 4 * (size_t)pg;
        char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(mem != MAP_FAILED);
        CHECK_ERR(loom__topo_bind(mem, len, 2), EINVAL);
        CHECK_ERR(loom__topo_bind(mem, len, -1), EINVAL);
        int rc = loom__topo_bind(mem + 1, len - 1, 0); /* pages 1..3 */
        if (rc == -EPERM || rc == -ENOSYS) {
            printf("test_topo: mbind not permitted here (%s), not checked\n", t_errname(rc));
        } else {
            CHECK_OK(rc);
            for (int i = 0; i < 4; i++) {
                int mode = -1;
                unsigned long mask[1024 / (8 * sizeof(unsigned long))] = { 0 };
                CHECK_OK(syscall(SYS_get_mempolicy, &mode, mask, 1024UL + 1, mem + i * pg,
                                 2UL /* MPOL_F_ADDR */));
                if (i == 0) {
                    CHECK_EQ(mode, 0); /* MPOL_DEFAULT: page 0 untouched */
                } else {
                    CHECK_EQ(mode, 1);     /* MPOL_PREFERRED */
                    CHECK_EQU(mask[0], 1); /* node 0 */
                }
            }
            memset(mem, 1, len);
        }
        CHECK_OK(munmap(mem, len));
        loom__topo_term();
    }

    /* Sub-NUMA clustering: one L3 over both nodes; groups are split by node. */
    reset_tree();
    put("node/node0/cpulist", "0-3\n");
    put("node/node1/cpulist", "4-7\n");
    for (int c = 0; c < 8; c++)
        x86(c, c % 2 ? "1,3,5,7" : "0,2,4,6", "0-7");
    {
        int cpu[] = { 0, 1, 2, 3, 4, 5, 6, 7 }, ca[] = { 0, 0, 0, 0, 1, 1, 1, 1 },
            no[] = { 0, 0, 0, 0, 1, 1, 1, 1 };
        expect_at("SNC", "0-7", 8, 2, cpu, ca, no);
    }

    /* No node directory; two interleaved L3 groups: Ps keep each group together. */
    reset_tree();
    for (int c = 0; c < 8; c++)
        x86(c, "", c % 2 ? "1,3,5,7" : "0,2,4,6");
    {
        int cpu[] = { 0, 2, 4, 6, 1, 3, 5, 7 }, ca[] = { 0, 0, 0, 0, 1, 1, 1, 1 }, no[8] = { 0 };
        expect_at("interleaved", "0-7", 8, 1, cpu, ca, no);
        int cpu2[] = { 0, 2, 4, 6, 1, 3, 5, 7, 0, 2 }, ca2[] = { 0, 0, 0, 0, 1, 1, 1, 1, 0, 0 },
            no2[10] = { 0 };
        expect_at("interleaved, wrap", "0-7", 10, 1, cpu2, ca2, no2);
    }

    /* Highest level is an instruction cache (made up): the highest data/unified wins. */
    reset_tree();
    for (int c = 0; c < 4; c++) {
        cache(c, 0, 2, "Unified", c < 2 ? "0-1" : "2-3");
        cache(c, 1, 3, "Instruction", "0-3");
    }
    {
        int cpu[] = { 0, 1, 2, 3 }, ca[] = { 0, 0, 1, 1 }, no[4] = { 0 };
        expect_at("L3 instruction", "0-3", 4, 1, cpu, ca, no);
    }

    /* Nothing at all (not even the directory): one node, each CPU its own group. */
    reset_tree();
    {
        int cpu[] = { 0, 1, 2 }, ca[] = { 0, 1, 2 }, no[3] = { 0 };
        expect_at("empty sysfs", "0-2", 3, 1, cpu, ca, no);
        char gone[PATH_MAX + 16];
        snprintf(gone, sizeof gone, "%s/nonexistent", base);
        CHECK_OK(loom__topo_init_at(3, gone, "0-2"));
        for (int p = 0; p < 3; p++)
            CHECK_EQ(loom__topo_cache(p), p);
        check_invariants(3);
        loom__topo_term();
    }

    /* Garbage and gaps: an unreadable list, an index without a type, a CPU no node lists
     * (it joins node 0), a CPU in two node lists (the lower node has it), cache dirs
     * missing for some CPUs, a shared list that leaves out the CPU itself. */
    reset_tree();
    put("node/node3/cpulist", "0-1,3\n");
    put("node/node5/cpulist", "garbage\n");
    put("node/node7/cpulist", "3-4\n");
    put("node/nodeX/cpulist", "5\n");
    cache(0, 0, 3, "Unified", "zzz"); /* unreadable: own group */
    cache(1, 0, 3, "Unified", "1,3,4");
    put("cpu/cpu1/cache/index1/level", "4\n"); /* no type: skipped */
    cache(3, 0, 3, "Unified", "0-7");
    cache(4, 0, 3, "Unified", "5"); /* without itself */
    {
        /* nodes: 0,1,3 -> node3 (dense 0); 4 -> node7 (dense 1); 2,5 unlisted -> dense 0.
         * groups: {0}, {1,3} (4 is on another node), {2}, {4}, {5} (5 is on node 0). */
        int cpu[] = { 0, 1, 3, 2, 5, 4 }, ca[] = { 0, 1, 1, 2, 3, 4 }, no[] = { 0, 0, 0, 0, 0, 1 };
        expect_at("garbage", "0-5", 6, 2, cpu, ca, no);
    }

    /* A node list longer than topo.c reads (8191 bytes): the last, cut item is dropped,
     * not read as a smaller number ("...,1023" cut to "...,10"); CPUs past 1023 left out. */
    reset_tree();
    {
        static char big[16384];
        size_t n = (size_t)snprintf(big, sizeof big, "1,3");
        for (int i = 0; i < 1637; i++)
            n += (size_t)snprintf(big + n, sizeof big - n, ",2000");
        CHECK_EQ(n, 8188);
        snprintf(big + n, sizeof big - n, ",1023");
        put("node/node0/cpulist", "%s\n", big);
        put("node/node1/cpulist", "0,2,10\n");
        int cpu[] = { 1, 3, 0, 2, 10 }, ca[] = { 0, 1, 2, 3, 4 }, no[] = { 0, 0, 1, 1, 1 };
        expect_at("long list", "0-3,10,1500", 5, 2, cpu, ca, no);
    }

    nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------ concurrent readers */

struct reader {
    int nprocs;
    int want[16][16];
};

static void *reader(void *arg)
{
    struct reader *rd = arg;
    for (int round = 0; round < 200; round++)
        for (int p = 0; p < 2 * rd->nprocs; p++) {
            int out[16];
            int n = loom__topo_steal_order(p, 2 * rd->nprocs, (uint32_t)round, out);
            if (round == 0) {
                for (int i = 0; i < n; i++)
                    CHECK_EQ(out[i], rd->want[p][i]);
            }
            CHECK_EQ(loom__topo_tier(p, 0), loom__topo_tier(0, p));
        }
    return NULL;
}

static void test_readers(void)
{
    static struct reader rd = { .nprocs = 8 };
    init_quiet("0-1/2-3;4-5/6-7", 8);
    for (int p = 0; p < 16; p++)
        loom__topo_steal_order(p, 16, 0, rd.want[p]);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK_OK(pthread_create(&th[i], NULL, reader, &rd));
    for (int i = 0; i < 4; i++)
        CHECK_OK(pthread_join(th[i], NULL));
    loom__topo_term();
}

int main(void)
{
    CHECK_OK(sched_getaffinity(0, sizeof orig_mask, &orig_mask));
    env("LOOM_TOPOLOGY", NULL);
    env("LOOM_PIN", NULL);
    test_lifecycle();
    test_real();
    test_fake_2x2x2();
    test_fake_layouts();
    test_malformed();
    test_pin();
    test_bind();
    test_sysfs();
    test_readers();
    printf("test_topo: ok\n");
    return 0;
}
