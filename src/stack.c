/*
 * stack.c — goroutine stacks, carved from large arenas, and the G records.
 *
 * A G record (the goroutine's descriptor, proc.c) and its stack live apart:
 *   - G records come from dense record arenas (64-byte aligned, never freed while the
 *     runtime runs; dead ones wait in free lists, proc.c's gfput/gfget), so creating a
 *     goroutine writes ~300 bytes next to its siblings instead of touching a page of its own;
 *   - a stack is attached to a G when the G first runs (loom__stack_get, from gogo) and
 *     detached when it dies (loom__stack_put), so a goroutine that waits in a run queue
 *     holds no stack, and the fresh page its first frames touch is faulted in by the P that
 *     runs it: with several Ps, spawning many goroutines faults their pages in parallel.
 * On these VMs the first touch of a fresh page costs ~12 µs and a warm one 40 ns, so a
 * million spawned goroutines are bounded by page faults; see the bench notes in README.
 *
 * A stack slot of a power-of-two size class:
 *
 *   slot base                                                      slot top
 *   | guard page | stack, grows down <----------------------- | header (64 B) |
 *                ^ stack_lo                                    ^ stack top (16-aligned)
 *
 * The header names the G that owns the slot (for the SIGSEGV handler), links free slots,
 * and remembers the slot's guard and tool state.  Slots come from arenas reserved with
 * one mmap each (MAP_NORESERVE, 1 GiB or 64 slots): the kernel maps nothing until a page
 * is touched, and a million stacks cost a handful of mappings instead of one or two each
 * (vm.max_map_count is 65530 on a stock kernel).  Arenas are kept per NUMA node (topo.c).
 * Fresh slots are prepared in batches of SLOT_BATCH: one process_madvise call installs their
 * guard pages (under arena_lock), one more populates their top pages (outside it: a page
 * populated in a batch costs ~3 µs of kernel time here, and its first touch still ~9 µs
 * against ~15 µs for a plain fault: the hypervisor fills each page at its first user touch).
 *
 * Overflow: the lowest page of every slot is a guard page.  On Linux 6.13+ it is a guard
 * marker (madvise MADV_GUARD_INSTALL), which costs no mapping, so every slot has one.  On
 * older kernels it is made PROT_NONE while the mapping budget allows — each such guard
 * splits the arena mapping, costing two map entries — i.e. for the first max_map_count/4
 * slots (LOOM_GUARD_STACKS overrides).  A goroutine that runs into a guard page faults;
 * the SIGSEGV handler (fatal.c), on an alternate signal stack, finds the slot with
 * loom__stack_find and prints "loom: fatal: goroutine N overflowed its stack".  Slots
 * beyond the budget keep the page as a red zone that is never written in normal
 * operation; every switch away from a goroutine checks its stack pointer against
 * stack_lo, and a goroutine's exit checks that the red zone is still zero (reading a
 * never-written page costs a page of RSS on these VMs, so not at every switch).
 *
 * Reuse: slots are never unmapped while the runtime runs (munmap costs ~89 µs here);
 * free slots of the default class go to per-P LIFO caches and overflow to the global
 * per-class free lists here, so the warmest stacks are reused first.  loom__stack_term
 * unmaps every arena when loom_run returns.
 */
#include "internal.h"
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define PAGE        4096u
#define ARENA_BYTES (1ull << 30)
#define MAX_ARENAS  4096
#define NCLASSES    15  /* 16 KiB .. 256 MiB */
#define NODES       8   /* arenas kept per NUMA node (topo.c); more nodes share */
#define SLOT_BATCH  64  /* fresh slots prepared per batch */
#define HDR         64u /* slot header size */
#define PCACHE_MAX  64  /* per-P stack cache, default class */

typedef struct {
    uintptr_t base, end; /* reserved range */
    size_t slot;         /* slot size (class); 0 for a G record arena */
} arena;

/* at the top of every slot */
typedef struct {
    G *owner;       /* the G running on it, or NULL */
    uintptr_t next; /* free-list link */
    unsigned vg_id; /* valgrind stack registration */
    bool guarded;   /* a guard page (marker or PROT_NONE) sits below stack_lo */
    bool used;      /* has carried a goroutine before (ASan: unpoison on reuse) */
} slot_hdr;

static arena arenas[MAX_ARENAS]; /* published by narenas (release) */
static uint32_t narenas;
static loom__lock arena_lock = LOOM__LOCK_INIT;
static uintptr_t bump[NCLASSES][NODES], bump_end[NCLASSES][NODES]; /* under arena_lock */
static uintptr_t prepared[NCLASSES][NODES];   /* slots below this are prepared; under arena_lock */
static uintptr_t guarded_to[NCLASSES][NODES]; /* prepared slots below this have a guard; under arena_lock */
static uintptr_t class_free[NCLASSES];        /* free slots (header addresses); under arena_lock */
static long guard_budget;                     /* under arena_lock */
static bool guard_markers = true;             /* MADV_GUARD_INSTALL works; under arena_lock */
static int self_pidfd = -1;                   /* for process_madvise; under arena_lock */
static bool vectored = true;                  /* process_madvise takes our advice; under arena_lock */
/* G records: their own lock, so spawning never waits behind a P preparing stack slots */
static loom__lock g_lock = LOOM__LOCK_INIT;
static uintptr_t gbump[NODES], gbump_end[NODES]; /* under g_lock */
#define G_CHUNK (64u << 10)                      /* G record pages are populated this many bytes at a time */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14+; older kernels say EINVAL */
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13+ */
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
size_t loom__stack_default = LOOM_STACK_DEFAULT;
static size_t default_slot; /* the default class's slot size */

static size_t g_record_size(void) { return (sizeof(G) + 63) & ~(size_t)63; }

static int class_of(size_t slot) {
    int c = 0;
    for (size_t s = LOOM_STACK_MIN; s < slot; s <<= 1) c++;
    return c;
}

size_t loom__stack_class_size(size_t want) {
    if (want == 0) want = loom__stack_default;
    /* the slot holds the stack, its guard page and the header: it, not the request, must
     * fit the largest class */
    if (want > LOOM_STACK_MAX - PAGE - HDR) return 0;
    size_t need = want + PAGE + HDR;
    size_t s = LOOM_STACK_MIN;
    while (s < need) s <<= 1;
    return s;
}

void loom__stack_init(void) {
    long req = loom__env_long("LOOM_STACK_SIZE", LOOM_STACK_DEFAULT, LOOM_STACK_MIN, LOOM_STACK_MAX);
    /* the default class is the one whose slot is LOOM_STACK_SIZE, rounded up to a power of two */
    size_t s = LOOM_STACK_MIN;
    while (s < (size_t)req) s <<= 1;
    loom__stack_default = s - PAGE - HDR;
    default_slot = s;
    long maxmap = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        char line[32], *end;
        if (fgets(line, sizeof line, f)) {
            errno = 0;
            long v = strtol(line, &end, 10);
            if (!errno && end != line && (*end == '\n' || *end == '\0') && v > 0) maxmap = v;
        }
        fclose(f);
    }
    /* each guard costs two map entries; leave at least half the table to the program */
    guard_budget = loom__env_long("LOOM_GUARD_STACKS", maxmap / 4, 0, maxmap / 4);
    guard_markers = guard_budget > 0; /* LOOM_GUARD_STACKS=0 turns guards off */
    vectored = true;
    self_pidfd = -1;
}

size_t loom_default_stack_size(void) { return loom__stack_default; }

static bool add_arena(uintptr_t base, size_t bytes, size_t slot) {
    uint32_t n = LOAD(&narenas);
    if (n >= MAX_ARENAS) return false;
    arenas[n] = (arena){ base, base + bytes, slot };
    STORE_REL(&narenas, n + 1);
    return true;
}

/* An arena for class c on NUMA node `node`: its pages come from that node's memory when
 * the machine has several (topo.c; mbind before any page is touched), so the stacks a P
 * allocates sit next to the CPU that runs them.  arena_lock held. */
static bool new_arena(int c, size_t slot, int node) {
    if (LOAD(&narenas) >= MAX_ARENAS) return false;
    size_t bytes = ARENA_BYTES;
    if (bytes < 64 * slot) bytes = 64 * slot;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    loom__topo_bind(p, bytes, node); /* best effort: a refusal leaves the default policy */
    if (!add_arena((uintptr_t)p, bytes, slot)) {
        munmap(p, bytes);
        return false;
    }
    bump[c][node % NODES] = prepared[c][node % NODES] = (uintptr_t)p;
    bump_end[c][node % NODES] = (uintptr_t)p + bytes;
    return true;
}

/* One madvise for each page of iov, in as few system calls as the kernel allows
 * (process_madvise on ourselves, pidfd, takes any advice since Linux 6.13; *vec false: it
 * does not, and a refusal clears it).  Returns false if the advice itself failed. */
static bool advise_iov(int pidfd, bool *vec, struct iovec *iov, int n, int advice) {
    if (*vec) {
        long r = pidfd >= 0 ? syscall(SYS_process_madvise, pidfd, iov, (size_t)n, advice, 0) : -1;
        if (r == (long)n * PAGE) return true;
        if (r < 0 && errno != EINVAL && errno != ENOSYS && errno != EPERM && errno != EBADF) return false;
        if (r < 0) *vec = false; /* an older kernel: one call per page from now on */
    }
    for (int i = 0; i < n; i++)
        if (madvise(iov[i].iov_base, PAGE, advice) != 0) return false;
    return true;
}

/* advise_iov with the arena's own pidfd and kernel knowledge; arena_lock held. */
static bool advise_pages(struct iovec *iov, int n, int advice) {
    if (vectored && self_pidfd < 0) self_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    return advise_iov(self_pidfd, &vectored, iov, n, advice);
}

/* Prepares the fresh slots [from, from + k * slot): their guard pages (their top pages are
 * populated after the lock, populate_tops; nothing is written to them here: the first write
 * to a page is the expensive part, and it is left to the P that runs the goroutine).
 * Returns the end of the guarded ones.  arena_lock held. */
static uintptr_t prepare_slots(uintptr_t from, int k, size_t slot) {
    struct iovec iov[SLOT_BATCH];
    int guarded = 0;
    for (int i = 0; i < k; i++) iov[i] = (struct iovec){ (void *)(from + (size_t)i * slot), PAGE };
    if (guard_markers && advise_pages(iov, k, MADV_GUARD_INSTALL)) {
        guarded = k;
    } else {
        guard_markers = false;
        while (guarded < k && guard_budget > 0 && mprotect(iov[guarded].iov_base, PAGE, PROT_NONE) == 0) {
            guard_budget--;
            guarded++;
        }
    }
    return from + (size_t)guarded * slot;
}

/* Populates the top pages of the fresh slots [from, from + k * slot), outside arena_lock
 * (64 pages take ~200 µs here, which the other Ps waited out under the lock).  Only a
 * speed-up: failure is fine, and a slot handed out meanwhile just faults its page in.
 * pidfd and vec are arena_lock's values, read under it. */
static void populate_tops(uintptr_t from, int k, size_t slot, int pidfd, bool vec) {
    struct iovec iov[SLOT_BATCH];
    for (int i = 0; i < k; i++)
        iov[i] = (struct iovec){ (void *)(from + (size_t)(i + 1) * slot - PAGE), PAGE };
    (void)advise_iov(pidfd, &vec, iov, k, MADV_POPULATE_WRITE);
}

static slot_hdr *hdr_of(uintptr_t base, size_t slot) { return (slot_hdr *)(base + slot - HDR); }

/* A free or fresh slot of class size `slot` on node; returns its header, or NULL. */
static slot_hdr *slot_alloc(size_t slot, int node) {
    int c = class_of(slot), nd = node % NODES;
    int saved = errno; /* mmap/madvise failures must not leak into the goroutine's errno */
    loom__lock_acquire(&arena_lock);
    slot_hdr *h = (slot_hdr *)class_free[c];
    if (h) {
        class_free[c] = h->next;
        loom__lock_release(&arena_lock);
        return h;
    }
    if (bump[c][nd] + slot > bump_end[c][nd] && !new_arena(c, slot, node)) {
        loom__lock_release(&arena_lock);
        errno = saved;
        return NULL;
    }
    uintptr_t base = bump[c][nd];
    bump[c][nd] += slot;
    int batch = 0;
    if (base >= prepared[c][nd]) {
        batch = (int)((bump_end[c][nd] - base) / slot);
        if (batch > SLOT_BATCH) batch = SLOT_BATCH;
        guarded_to[c][nd] = prepare_slots(base, batch, slot);
        prepared[c][nd] = base + (size_t)batch * slot;
    }
    bool guarded = base < guarded_to[c][nd];
    int pidfd = self_pidfd;
    bool vec = vectored;
    loom__lock_release(&arena_lock);
    if (batch) populate_tops(base, batch, slot, pidfd, vec);
    errno = saved;
    h = hdr_of(base, slot); /* the slot's first write: outside the lock */
    h->guarded = guarded;
    return h;
}

static void slot_free(slot_hdr *h, size_t slot) {
    int c = class_of(slot);
    loom__lock_acquire(&arena_lock);
    h->next = class_free[c];
    class_free[c] = (uintptr_t)h;
    loom__lock_release(&arena_lock);
}

/* Would loom__stack_get give g a warm stack from p's cache (no page to fault in)? */
bool loom__stack_cached(P *p, G *g) { return g->slot_size == default_slot && p->stackcache; }

/* Attaches a stack of class g->slot_size to g (its first run): from P p's cache for the
 * default class, else the free lists or a fresh slot of p's node.  False: out of memory. */
bool loom__stack_get(P *p, G *g) {
    size_t slot = g->slot_size;
    slot_hdr *h = NULL;
    if (p && loom__stack_cached(p, g)) {
        h = (slot_hdr *)p->stackcache;
        p->stackcache = h->next;
        p->nstackcache--;
    } else {
        h = slot_alloc(slot, p ? loom__topo_node(p->id) : 0);
        if (!h) return false;
    }
    uintptr_t base = (uintptr_t)h + HDR - slot;
    h->owner = g;
    g->stack_base = base;
    g->stack_lo = (char *)base + PAGE;
    g->stack_size = ((uintptr_t)h - (uintptr_t)g->stack_lo) & ~(size_t)15;
    g->guarded = h->guarded;
    if (!h->vg_id) h->vg_id = loom__fiber_new_stack(g->stack_lo, g->stack_size);
    if (h->used) loom__fiber_reuse_stack(g);
    h->used = true;
    return true;
}

/* Detaches g's stack (g is dead) into P p's cache, spilling half of a full cache. */
void loom__stack_put(P *p, G *g) {
    if (!g->stack_base) return;
    size_t slot = g->slot_size;
    slot_hdr *h = hdr_of(g->stack_base, slot);
    h->owner = NULL;
    g->stack_base = 0;
    g->stack_lo = NULL;
    g->stack_size = 0;
    if (!p || slot != default_slot) {
        slot_free(h, slot);
        return;
    }
    h->next = p->stackcache;
    p->stackcache = (uintptr_t)h;
    if (++p->nstackcache >= PCACHE_MAX) {
        /* the colder half goes to the class's free list in one splice under arena_lock
         * (one slot at a time took the lock, and a cache miss under it, per slot) */
        slot_hdr *cut = (slot_hdr *)p->stackcache;
        for (int i = 1; i < PCACHE_MAX / 2; i++) cut = (slot_hdr *)cut->next;
        slot_hdr *first = (slot_hdr *)cut->next, *last = first;
        while (last->next) last = (slot_hdr *)last->next;
        cut->next = 0;
        p->nstackcache = PCACHE_MAX / 2;
        int c = class_of(slot);
        loom__lock_acquire(&arena_lock);
        last->next = class_free[c];
        class_free[c] = (uintptr_t)first;
        loom__lock_release(&arena_lock);
    }
}

/* A fresh, zeroed G record from the dense record arenas of NUMA node `node`.  Whoever
 * takes the first record of a G_CHUNK populates the chunk (outside the lock): a page
 * populated in a batch and then touched costs about half of a plain first fault here.
 * The record arenas ask for transparent huge pages: on these VMs the first user touch of
 * every 4 KiB page costs ~9-15 µs even after populating it (a hypervisor fill per page),
 * while memory in a huge page costs ~1-2 µs per 4 KiB once the guest has used it before
 * (measured: 64 MiB touched page by page).  Records are dense, so a huge page wastes at
 * most 2 MiB per node; stacks cannot do the same (a slot touches one page of 64 KiB). */
G *loom__g_alloc(int node) {
    size_t sz = g_record_size();
    int saved = errno, nd = node % NODES;
    loom__lock_acquire(&g_lock);
    if (gbump[nd] + sz > gbump_end[nd]) {
        size_t bytes = 64u << 20; /* 64 MiB reserved: ~250k records */
        void *p =
                mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        loom__lock_acquire(&arena_lock);
        bool added = p != MAP_FAILED && add_arena((uintptr_t)p, bytes, 0);
        loom__lock_release(&arena_lock);
        if (!added) {
            if (p != MAP_FAILED) munmap(p, bytes);
            loom__lock_release(&g_lock);
            errno = saved;
            return NULL;
        }
        loom__topo_bind(p, bytes, node);
        (void)madvise(p, bytes, MADV_HUGEPAGE);
        gbump[nd] = (uintptr_t)p;
        gbump_end[nd] = gbump[nd] + bytes;
    }
    uintptr_t at = gbump[nd];
    gbump[nd] += sz;
    uintptr_t chunk = (at + G_CHUNK - 1) & ~(uintptr_t)(G_CHUNK - 1);
    bool fill = chunk < at + sz && chunk + G_CHUNK <= gbump_end[nd];
    loom__lock_release(&g_lock);
    if (fill) (void)madvise((void *)chunk, G_CHUNK, MADV_POPULATE_WRITE); /* a speed-up only */
    errno = saved;
    return (G *)at;
}

/* Async-signal-safe: used by the SIGSEGV handler.  Finds the stack slot holding addr. */
bool loom__stack_find(uintptr_t addr, G **gp, uintptr_t *lo, uintptr_t *hi, bool *guard) {
    uint32_t n = LOAD_ACQ(&narenas);
    for (uint32_t i = 0; i < n; i++) {
        arena *a = &arenas[i];
        if (addr < a->base || addr >= a->end || a->slot == 0) continue;
        uintptr_t base = a->base + (addr - a->base) / a->slot * a->slot;
        *gp = hdr_of(base, a->slot)->owner;
        *lo = base;
        *hi = base + a->slot;
        *guard = addr < base + PAGE;
        return *gp != NULL;
    }
    return false;
}

void loom__stack_term(void) {
    uint32_t n = LOAD(&narenas);
    /* the tools' registrations of every prepared slot */
    for (uint32_t i = 0; i < n; i++) {
        arena *a = &arenas[i];
        if (!a->slot) continue;
        int c = class_of(a->slot);
        for (int nd = 0; nd < NODES; nd++) {
            if (prepared[c][nd] <= a->base || prepared[c][nd] > a->end) continue;
            for (uintptr_t b = a->base; b < prepared[c][nd]; b += a->slot) {
                slot_hdr *h = hdr_of(b, a->slot);
                if (h->vg_id) loom__fiber_free_stack(h->vg_id);
            }
        }
    }
    for (uint32_t i = 0; i < n; i++) munmap((void *)arenas[i].base, arenas[i].end - arenas[i].base);
    STORE(&narenas, 0);
    memset(bump, 0, sizeof bump);
    memset(bump_end, 0, sizeof bump_end);
    memset(prepared, 0, sizeof prepared);
    memset(guarded_to, 0, sizeof guarded_to);
    memset(class_free, 0, sizeof class_free);
    memset(gbump, 0, sizeof gbump);
    memset(gbump_end, 0, sizeof gbump_end);
    if (self_pidfd >= 0) close(self_pidfd);
    self_pidfd = -1;
}

/* The stack-overflow check run at every switch away from a goroutine (see above). */
/* The check at goroutine exit for an unguarded slot: its red zone must still be all zero.
 * Reading a never-touched page maps a page on these VMs (no shared zero page), so this
 * runs at exit, not per switch; a slot pays that page once in its life, and only slots
 * without a guard (old kernels, beyond the mapping budget) pay it. */
bool loom__stack_redzone_ok(G *g) {
    if (g->guarded || !g->stack_base) return true;
    const uint64_t *red = (const uint64_t *)g->stack_base;
    return (red[0] | red[1] | red[PAGE / 8 - 2] | red[PAGE / 8 - 1]) == 0;
}
