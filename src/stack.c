/*
 * stack.c — goroutine stacks, carved from large arenas.
 *
 * A goroutine's stack and its G record share one slot of a power-of-two size class:
 *
 *   slot base                                                       slot top
 *   | guard/red zone (1 page) | stack, grows down <-------- | G record |
 *                             ^ stack_lo                     ^ stack top (16-aligned)
 *
 * The G record sits at the top so that a parked goroutine whose frames are shallow touches
 * one page in all (record + frames): 1M parked goroutines cost ~4 KiB of RSS each.  Slots
 * come from arenas reserved with one mmap each (MAP_NORESERVE, 1 GiB or 64 slots), so the
 * kernel maps nothing until a page is touched, and a million stacks cost a handful of
 * mappings instead of one or two each (vm.max_map_count is 65530 on a stock kernel).
 *
 * Overflow: the lowest page of every slot is a guard page.  On Linux 6.13+ it is a guard
 * marker (madvise MADV_GUARD_INSTALL), which costs no mapping, so every slot has one.  On
 * older kernels it is made PROT_NONE while the mapping budget allows — each such guard
 * splits the arena mapping, costing two map entries — i.e. for the first max_map_count/4
 * slots (LOOM_GUARD_STACKS overrides).  A goroutine that runs
 * into a guard page faults; the SIGSEGV handler (fatal.c), on an alternate signal stack,
 * finds the slot with loom__stack_find and prints "loom: fatal: goroutine N overflowed its
 * stack".  Slots beyond the budget keep the page as a red zone that is never written in
 * normal operation; every switch away from a goroutine checks its stack pointer against
 * stack_lo, and a goroutine's exit checks that the red zone is still zero (reading a
 * never-written page costs a page of RSS on these VMs, so not at every switch).
 * (An unguarded slot exists only on kernels before 6.13 beyond the mapping budget.)  An
 * unguarded overflow is thus reported at the goroutine's next switch if it is still deep,
 * else at its exit; only guarded slots catch it at the faulting instruction.
 *
 * Reuse: slots are never unmapped while the runtime runs (munmap costs ~89 µs here and a
 * fresh page ~12 µs to fault in); dead goroutines go to per-P LIFO caches (proc.c) and to
 * the global per-class free lists here, so the warmest stacks are reused first.
 * loom__stack_term unmaps every arena when loom_run returns.
 */
#include "internal.h"
#include <sys/mman.h>
#include <unistd.h>

#define PAGE           4096u
#define ARENA_BYTES    (1ull << 30)
#define MAX_ARENAS     4096
#define NCLASSES       15            /* 16 KiB .. 256 MiB */
#define NODES          8             /* arenas kept per NUMA node (topo.c); more nodes share */

typedef struct {
    uintptr_t base, end;     /* reserved range */
    size_t    slot;          /* slot size (class) */
} arena;

static arena        arenas[MAX_ARENAS];   /* published by narenas (release) */
static uint32_t     narenas;
static loom__lock   arena_lock = LOOM__LOCK_INIT;
static uintptr_t    bump[NCLASSES][NODES], bump_end[NCLASSES][NODES];  /* under arena_lock */
static G           *class_free[NCLASSES];                /* under arena_lock */
static long         guard_budget;                         /* under arena_lock */
static bool         guard_markers = true;   /* MADV_GUARD_INSTALL works; under arena_lock */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23              /* Linux 5.14+; older kernels say EINVAL */
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102              /* Linux 6.13+ */
#endif
size_t loom__stack_default = LOOM_STACK_DEFAULT;

static size_t g_record_size(void) { return (sizeof(G) + 63) & ~(size_t)63; }

static int class_of(size_t slot) {
    int c = 0;
    for (size_t s = LOOM_STACK_MIN; s < slot; s <<= 1) c++;
    return c;
}

size_t loom__stack_class_size(size_t want) {
    if (want == 0) want = loom__stack_default;
    if (want > LOOM_STACK_MAX) return 0;
    size_t need = want + PAGE + g_record_size() + 64;
    size_t s = LOOM_STACK_MIN;
    while (s < need) s <<= 1;
    return s;
}

void loom__stack_init(void) {
    long req = loom__env_long("LOOM_STACK_SIZE", LOOM_STACK_DEFAULT, LOOM_STACK_MIN, LOOM_STACK_MAX);
    /* the default class is the one whose slot is LOOM_STACK_SIZE, rounded up to a power of two */
    size_t s = LOOM_STACK_MIN;
    while (s < (size_t)req) s <<= 1;
    loom__stack_default = s - PAGE - g_record_size() - 64;
    long maxmap = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &maxmap) != 1) maxmap = 65530;
        fclose(f);
    }
    /* each guard costs two map entries; leave at least half the table to the program */
    guard_budget = loom__env_long("LOOM_GUARD_STACKS", maxmap / 4, 0, maxmap / 4);
    guard_markers = guard_budget > 0;     /* LOOM_GUARD_STACKS=0 turns guards off */
}

size_t loom_default_stack_size(void) { return loom__stack_default; }

/* An arena for class c on NUMA node `node`: its pages come from that node's memory when
 * the machine has several (topo.c; mbind before any page is touched), so the stacks and
 * G records a P allocates sit next to the CPU that runs them. */
static bool new_arena(int c, size_t slot, int node) {
    if (LOAD(&narenas) >= MAX_ARENAS) return false;
    size_t bytes = ARENA_BYTES;
    if (bytes < 64 * slot) bytes = 64 * slot;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    loom__topo_bind(p, bytes, node);       /* best effort: a refusal leaves the default policy */
    uint32_t n = LOAD(&narenas);
    arenas[n] = (arena){ (uintptr_t)p, (uintptr_t)p + bytes, slot };
    STORE_REL(&narenas, n + 1);
    bump[c][node % NODES] = (uintptr_t)p;
    bump_end[c][node % NODES] = (uintptr_t)p + bytes;
    return true;
}

static G *stack_alloc(size_t slot, int node);

/* Returns a G record for a slot of class size `slot`: a free one (contents stale, stack
 * warm) or a fresh one (zeroed) from node's arena.  The caller (proc.c) initialises it. */
G *loom__stack_alloc(size_t slot, int node) {
    int saved = errno;      /* mmap/madvise failures must not leak into the goroutine's errno */
    G *g = stack_alloc(slot, node);
    errno = saved;
    return g;
}

static G *stack_alloc(size_t slot, int node) {
    int c = class_of(slot);
    int nd = node % NODES;
    loom__lock_acquire(&arena_lock);
    G *g = class_free[c];
    if (g) {
        class_free[c] = g->schedlink;
        loom__lock_release(&arena_lock);
        return g;
    }
    if (bump[c][nd] + slot > bump_end[c][nd] && !new_arena(c, slot, node)) {
        loom__lock_release(&arena_lock);
        return NULL;
    }
    uintptr_t base = bump[c][nd];
    bump[c][nd] += slot;
    bool guarded = false;
    if (guard_markers && madvise((void *)base, PAGE, MADV_GUARD_INSTALL) == 0) {
        guarded = true;
    } else if (guard_budget > 0 && mprotect((void *)base, PAGE, PROT_NONE) == 0) {
        guard_markers = false;
        guard_budget--;
        guarded = true;
    }
    loom__lock_release(&arena_lock);
    /* the top page (G record and first frames) is about to be written anyway: have the
     * kernel populate it in one call, which costs less here than a first-touch fault
     * (spawning 200k parked goroutines: ~23 µs each instead of ~27) */
    madvise((void *)(base + slot - PAGE), PAGE, MADV_POPULATE_WRITE);
    g = (G *)(base + slot - g_record_size());
    g->stack_base = base;
    g->slot_size = slot;
    g->stack_lo = (char *)base + PAGE;
    g->stack_size = (size_t)((char *)g - g->stack_lo) & ~(size_t)15;
    g->guarded = guarded;
    return g;
}

/* Returns a dead G to its class list (used when a P's cache overflows or at free). */
void loom__stack_free(G *g) {
    int c = class_of(g->slot_size);
    loom__lock_acquire(&arena_lock);
    g->schedlink = class_free[c];
    class_free[c] = g;
    loom__lock_release(&arena_lock);
}

/* Async-signal-safe: used by the SIGSEGV handler. */
bool loom__stack_find(uintptr_t addr, G **gp, uintptr_t *lo, uintptr_t *hi, bool *guard) {
    uint32_t n = LOAD_ACQ(&narenas);
    for (uint32_t i = 0; i < n; i++) {
        arena *a = &arenas[i];
        if (addr < a->base || addr >= a->end) continue;
        uintptr_t base = a->base + (addr - a->base) / a->slot * a->slot;
        *gp = (G *)(base + a->slot - g_record_size());
        *lo = base;
        *hi = base + a->slot;
        *guard = addr < base + PAGE;
        return true;
    }
    return false;
}

void loom__stack_term(void) {
    uint32_t n = LOAD(&narenas);
    for (uint32_t i = 0; i < n; i++) munmap((void *)arenas[i].base, arenas[i].end - arenas[i].base);
    STORE(&narenas, 0);
    memset(bump, 0, sizeof bump);
    memset(bump_end, 0, sizeof bump_end);
    memset(class_free, 0, sizeof class_free);
}

/* The stack-overflow check run at every switch away from a goroutine (see above). */
bool loom__stack_ok(G *g, void *sp) {
    return (char *)sp >= g->stack_lo;
}

/* The check at goroutine exit for an unguarded slot: its red zone must still be all zero.
 * Reading a never-touched page maps a page on these VMs (no shared zero page), so this
 * runs at exit, not per switch; a slot pays that page once in its life, and only slots
 * without a guard (old kernels, beyond the mapping budget) pay it. */
bool loom__stack_redzone_ok(G *g) {
    if (g->guarded) return true;
    const uint64_t *red = (const uint64_t *)g->stack_base;
    return (red[0] | red[1] | red[PAGE / 8 - 2] | red[PAGE / 8 - 1]) == 0;
}
