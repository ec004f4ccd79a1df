/*
 * symbolize.c — code address to "function+0xOFF (module)" without malloc, stdio or locks
 * that could be held by the interrupted code (see symbolize.h for where it runs).
 *
 * The module comes from dl_iterate_phdr: the object with a PT_LOAD segment holding pc, its
 * load bias, and its file (dlpi_name; the executable's is empty: /proc/self/exe).  The
 * symbols come from that file, mapped read-only and parsed here (ELF64, little-endian):
 * the section headers, SHT_SYMTAB with its linked string table when there is one (static
 * functions), else SHT_DYNSYM.  The vDSO has no file: its image is in memory, parsed the
 * same way.  Every offset and count read from a file is checked against the file's size
 * before use, and the file's program headers must equal the ones in memory (a library
 * replaced on disk since it was loaded gives no names rather than wrong ones), so a
 * corrupt, truncated or foreign file yields "0xADDR (module)".
 *
 * Which symbol: among STT_FUNC and STT_GNU_IFUNC symbols (defined, named), the one with
 * st_value <= off < st_value + st_size that starts nearest below off, where off = pc - bias;
 * failing that, a size-0 symbol among those starting nearest below off (any size), if its
 * section holds off.  Aliases at one address: a name without a leading '_' first, then
 * global, then weak, then the shorter name, then the first in the table ("write" rather
 * than "__write", "ldexp" rather than "scalbnf64").
 *
 * The cache: SYM_CACHE_N files stay mapped, each with a sorted index of its function
 * symbols in anonymous memory (a binary search instead of a scan per call), evicted least
 * recently used, keyed by load bias, name and program headers.  One atomic try-lock guards
 * it, taken before dl_iterate_phdr so that its callback compares the program headers in
 * memory (mapped for sure while it runs) with the cached file's.  A caller that finds it
 * taken (another thread, or a signal handler that interrupted a call on this thread) does
 * not wait: it maps the file itself, scans its table linearly (same answer) and unmaps it.
 *
 * Limits: dl_iterate_phdr takes glibc's loader lock (recursive: a handler interrupting
 * this thread's own call is fine; a crash in another thread that holds it, inside dlopen,
 * would block).  Opening a file briefly takes the lowest free fd number (a cold module, or
 * a busy cache).  Names come from the module's own file: separate debug files
 * (.gnu_debuglink, /usr/lib/debug) are not read, so static functions of stripped system
 * libraries show as "0xADDR (libc.so.6)", and IFUNC implementations (memcpy's) too.  A
 * file truncated while the cache maps it makes reading it fault (SIGBUS).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "symbolize.h"
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SYM_CACHE_N
#define SYM_CACHE_N 32 /* mapped files kept */
#endif
#define SYM_PATH_MAX 1024 /* longer module paths are not opened (shown by name only) */
#define SYM_NAME_MAX 256  /* module basename shown, truncated beyond */

/* ------------------------------------------------------------------ output */

typedef struct {
    char *buf;
    size_t cap, n; /* n chars written, n < cap whenever cap > 0 */
} out;

static void put_c(out *o, char c) {
    if (o->n + 1 < o->cap) o->buf[o->n++] = c;
}

static void put_sn(out *o, const char *s, size_t max) {
    for (size_t i = 0; i < max && s[i]; i++) put_c(o, s[i]);
}

static void put_hex(out *o, uint64_t v) {
    char t[16];
    int n = 0;
    do {
        t[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    put_c(o, '0');
    put_c(o, 'x');
    while (n) put_c(o, t[--n]);
}

static size_t out_end(out *o) {
    if (o->cap) o->buf[o->n] = '\0';
    return o->n;
}

static size_t cstrlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* Copies the basename of s (at most cap - 1 chars) into d. */
static void copy_base(char *d, size_t cap, const char *s, size_t n) {
    size_t b = n;
    while (b > 0 && s[b - 1] != '/') b--;
    size_t i = 0;
    for (; b + i < n && i + 1 < cap; i++) d[i] = s[b + i];
    d[i] = '\0';
}

#define FNV0 0xcbf29ce484222325ULL
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* ------------------------------------------------------------------ ELF */

typedef struct {
    const unsigned char *base;
    size_t size;
    const Elf64_Shdr *sh;
    size_t shnum;
    const Elf64_Sym *sym;
    size_t nsym;
    const char *str;
    size_t strsz;
} image;

/* [off, off + n * esz) lies within [0, size) (esz > 0), without overflow. */
static bool range_ok(uint64_t off, uint64_t n, uint64_t esz, size_t size) {
    return off <= size && n <= (size - off) / esz;
}

static bool ehdr_ok(const unsigned char *b, size_t size) {
    if (size < sizeof(Elf64_Ehdr)) return false;
    return b[EI_MAG0] == ELFMAG0 && b[EI_MAG1] == ELFMAG1 && b[EI_MAG2] == ELFMAG2 && b[EI_MAG3] == ELFMAG3 &&
           b[EI_CLASS] == ELFCLASS64 && b[EI_DATA] == ELFDATA2LSB;
}

/* The file's program headers, if they equal the phnum in memory (hash phash); else NULL. */
static const Elf64_Phdr *phdrs_match(const unsigned char *b, size_t size, size_t phnum, uint64_t phash) {
    if (!ehdr_ok(b, size)) return NULL;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)b;
    if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum != phnum ||
        eh->e_phoff % _Alignof(Elf64_Phdr) != 0 || !range_ok(eh->e_phoff, phnum, sizeof(Elf64_Phdr), size))
        return NULL;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(b + eh->e_phoff);
    return fnv(FNV0, ph, phnum * sizeof(Elf64_Phdr)) == phash ? ph : NULL;
}

/* Section i as the symbol table and its sh_link as its strings, if both are sound. */
static bool use_symtab(image *im, size_t i) {
    const Elf64_Shdr *s = &im->sh[i];
    if (s->sh_entsize != sizeof(Elf64_Sym) || s->sh_offset % _Alignof(Elf64_Sym) != 0 ||
        !range_ok(s->sh_offset, s->sh_size, 1, im->size) || s->sh_size < sizeof(Elf64_Sym))
        return false;
    if (s->sh_link == 0 || s->sh_link >= im->shnum) return false;
    const Elf64_Shdr *t = &im->sh[s->sh_link];
    if (t->sh_type != SHT_STRTAB || t->sh_size == 0 || !range_ok(t->sh_offset, t->sh_size, 1, im->size))
        return false;
    im->sym = (const Elf64_Sym *)(im->base + s->sh_offset);
    im->nsym = s->sh_size / sizeof(Elf64_Sym);
    im->str = (const char *)(im->base + t->sh_offset);
    im->strsz = t->sh_size;
    return true;
}

/* Parses the section headers of the ELF image [base, base + size) and picks its symbol
 * table: false when there is none usable. */
static bool elf_image(image *im, const unsigned char *base, size_t size) {
    *im = (image){ .base = base, .size = size };
    if (!ehdr_ok(base, size)) return false;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shoff == 0 ||
        eh->e_shoff % _Alignof(Elf64_Shdr) != 0 || !range_ok(eh->e_shoff, 1, sizeof(Elf64_Shdr), size))
        return false;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(base + eh->e_shoff);
    uint64_t n = eh->e_shnum ? eh->e_shnum : sh[0].sh_size; /* >= SHN_LORESERVE sections */
    if (!range_ok(eh->e_shoff, n, sizeof(Elf64_Shdr), size)) return false;
    im->sh = sh;
    im->shnum = n;
    static const uint32_t pref[2] = { SHT_SYMTAB, SHT_DYNSYM };
    for (int k = 0; k < 2; k++)
        for (size_t i = 1; i < n; i++)
            if (sh[i].sh_type == pref[k] && use_symtab(im, i)) return true;
    return false;
}

static bool sym_func(const image *im, const Elf64_Sym *s) {
    unsigned t = ELF64_ST_TYPE(s->st_info);
    return (t == STT_FUNC || t == STT_GNU_IFUNC) && s->st_shndx != SHN_UNDEF && s->st_value != 0 &&
           s->st_name != 0 && s->st_name < im->strsz && im->str[s->st_name] != '\0';
}

/* The first offset past what s may cover: its end, or for a size-0 symbol the end of its
 * section (itself when the section does not hold it; no bound without a section). */
static uint64_t sym_limit(const image *im, const Elf64_Sym *s) {
    uint64_t v = s->st_value;
    if (s->st_size) return v + s->st_size < v ? UINT64_MAX : v + s->st_size;
    if (s->st_shndx >= SHN_LORESERVE || s->st_shndx >= im->shnum) return UINT64_MAX;
    const Elf64_Shdr *sec = &im->sh[s->st_shndx];
    uint64_t end = sec->sh_addr + sec->sh_size;
    if (end < sec->sh_addr) end = UINT64_MAX;
    return v >= sec->sh_addr && v < end ? end : v;
}

static int sym_score(const image *im, uint32_t i) {
    const Elf64_Sym *s = &im->sym[i];
    int bind = ELF64_ST_BIND(s->st_info);
    return (im->str[s->st_name] != '_') * 4 + (bind == STB_GLOBAL) * 2 + (bind == STB_WEAK);
}

static size_t sym_namelen(const image *im, uint32_t i) {
    const char *s = im->str + im->sym[i].st_name;
    size_t max = im->strsz - im->sym[i].st_name, n = 0;
    while (n < max && s[n]) n++;
    return n;
}

/* Alias a is preferred to alias b: by score, then the shorter name, then the first. */
static bool better(const image *im, uint32_t a, uint32_t b) {
    int sa = sym_score(im, a), sb = sym_score(im, b);
    if (sa != sb) return sa > sb;
    size_t la = sym_namelen(im, a), lb = sym_namelen(im, b);
    return la < lb || (la == lb && a < b);
}

/* The symbol for off by a scan of the whole table, or -1 (the rule at the top). */
static long lookup_linear(const image *im, uint64_t off) {
    long best = -1;
    uint64_t bestv = 0, nearest = 0;
    bool any = false;
    for (size_t i = 0; i < im->nsym && i <= UINT32_MAX; i++) {
        const Elf64_Sym *s = &im->sym[i];
        if (!sym_func(im, s) || s->st_value > off) continue;
        if (!any || s->st_value > nearest) nearest = s->st_value;
        any = true;
        if (s->st_size && off < sym_limit(im, s) &&
            (best < 0 || s->st_value > bestv ||
             (s->st_value == bestv && better(im, (uint32_t)i, (uint32_t)best)))) {
            best = (long)i;
            bestv = s->st_value;
        }
    }
    if (best >= 0 || !any) return best;
    for (size_t i = 0; i < im->nsym && i <= UINT32_MAX; i++) {
        const Elf64_Sym *s = &im->sym[i];
        if (sym_func(im, s) && s->st_value == nearest && s->st_size == 0 && off < sym_limit(im, s) &&
            (best < 0 || better(im, (uint32_t)i, (uint32_t)best)))
            best = (long)i;
    }
    return best;
}

/* The index: the function symbols sorted by (value, table position); maxend is the
 * largest limit of a sized symbol up to and including this entry, so a walk down from the
 * nearest entry below off stops once nothing before can cover off. */
typedef struct {
    uint64_t value, limit, maxend;
    uint32_t sym, sized;
} ient;

static bool ient_less(const ient *a, const ient *b) {
    return a->value < b->value || (a->value == b->value && a->sym < b->sym);
}

static void sift(ient *x, size_t root, size_t n) {
    for (;;) {
        size_t c = 2 * root + 1;
        if (c >= n) return;
        if (c + 1 < n && ient_less(&x[c], &x[c + 1])) c++;
        if (!ient_less(&x[root], &x[c])) return;
        ient t = x[root];
        x[root] = x[c];
        x[c] = t;
        root = c;
    }
}

static void heap_sort(ient *x, size_t n) {
    for (size_t i = n / 2; i-- > 0;) sift(x, i, n);
    for (size_t end = n; end-- > 1;) {
        ient t = x[0];
        x[0] = x[end];
        x[end] = t;
        sift(x, 0, end);
    }
}

/* Builds im's index in anonymous memory; NULL when empty or out of memory. */
static ient *index_build(const image *im, size_t *np, size_t *bytesp) {
    size_t n = 0;
    for (size_t i = 0; i < im->nsym && i <= UINT32_MAX; i++) n += sym_func(im, &im->sym[i]);
    if (n == 0) return NULL;
    size_t page = (size_t)getauxval(AT_PAGESZ);
    if (page == 0) page = 4096;
    size_t bytes = (n * sizeof(ient) + page - 1) / page * page;
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED) return NULL;
    ient *x = m;
    size_t k = 0;
    for (size_t i = 0; i < im->nsym && i <= UINT32_MAX && k < n; i++) {
        const Elf64_Sym *s = &im->sym[i];
        if (!sym_func(im, s)) continue;
        x[k++] = (ient){ .value = s->st_value,
                         .limit = sym_limit(im, s),
                         .sym = (uint32_t)i,
                         .sized = s->st_size != 0 };
    }
    heap_sort(x, k);
    uint64_t maxend = 0;
    for (size_t i = 0; i < k; i++) {
        if (x[i].sized && x[i].limit > maxend) maxend = x[i].limit;
        x[i].maxend = maxend;
    }
    *np = k;
    *bytesp = bytes;
    return x;
}

/* lookup_linear's answer by binary search in the index. */
static long lookup_index(const image *im, const ient *x, size_t n, uint64_t off) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x[mid].value <= off) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return -1;
    size_t top = lo - 1;
    long best = -1;
    uint64_t bestv = 0;
    for (size_t i = top + 1; i-- > 0 && x[i].maxend > off;) {
        if (best >= 0 && x[i].value != bestv) break; /* the nearest covering start is done */
        if (x[i].sized && off < x[i].limit && (best < 0 || better(im, x[i].sym, (uint32_t)best))) {
            best = x[i].sym;
            bestv = x[i].value;
        }
    }
    if (best >= 0) return best;
    for (size_t i = top + 1; i-- > 0 && x[i].value == x[top].value;)
        if (!x[i].sized && off < x[i].limit && (best < 0 || better(im, x[i].sym, (uint32_t)best)))
            best = x[i].sym;
    return best;
}

/* ------------------------------------------------------------------ the cache */

typedef struct {
    bool used, syms; /* syms: im holds a symbol table */
    uintptr_t bias;  /* the key: bias, namehash and the program headers */
    uint64_t namehash, phash;
    size_t phnum;
    uint64_t subs;           /* dlpi_subs when the program headers were last compared */
    const char *nameptr;     /* dlpi_name then */
    const Elf64_Phdr *phdrs; /* the file's (in map), equal to the ones in memory */
    uint64_t stamp;          /* last use, for eviction */
    void *map;               /* the file, or NULL */
    size_t mapsz;
    image im;
    ient *idx; /* sorted function symbols, or NULL: scan im */
    size_t nidx, idxsz;
    char name[SYM_NAME_MAX];
} centry;

static centry cache[SYM_CACHE_N]; /* all under cache_busy */
static uint64_t cache_clock;
static int cache_busy; /* the try-lock; atomic */

static bool cache_trylock(void) {
    int free_ = 0;
    return __atomic_compare_exchange_n(&cache_busy, &free_, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

static void cache_unlock(void) { __atomic_store_n(&cache_busy, 0, __ATOMIC_RELEASE); }

static void centry_release(centry *e) {
    if (e->map) munmap(e->map, e->mapsz);
    if (e->idx) munmap(e->idx, e->idxsz);
    *e = (centry){ .used = false };
}

static bool words_equal(const void *a, const void *b, size_t n) {
    const uint64_t *x = a, *y = b;
    for (size_t i = 0; i < n / 8; i++)
        if (x[i] != y[i]) return false;
    return true;
}

/* ------------------------------------------------------------------ modules */

typedef struct {
    uintptr_t pc;
    bool locked;              /* this call holds the cache: match it in the callback */
    int hit;                  /* the matching cache entry, or -1 */
    uintptr_t bias;           /* dlpi_addr: file vaddr + bias = address */
    uint64_t namehash, phash; /* of dlpi_name; of the program headers (when not hit) */
    uint64_t subs;            /* dlpi_subs, or ~0 */
    const char *nameptr;      /* dlpi_name */
    size_t phnum;
    bool exe, vdso, longpath;
    const unsigned char *mem; /* the vDSO's image */
    size_t memsz;
    char path[SYM_PATH_MAX]; /* the file to open */
    char name[SYM_NAME_MAX]; /* what to show */
} module;

/* The cache entry for the module being looked at, or -1.  The quick match: the same bias
 * and dlpi_name pointer, and no object unloaded since the entry was last checked (subs:
 * glibc's count of unloads, ~0 when not given).  Otherwise the name's hash and the program
 * headers ph must match; they are compared here, in the callback, where ph is sure to be
 * mapped.  Computes m->namehash. */
static int cache_match(module *m, const char *nm, size_t nlen, const ElfW(Phdr) * ph) {
    bool hashed = false;
    for (int i = 0; i < SYM_CACHE_N; i++) {
        centry *e = &cache[i];
        if (!e->used || e->bias != m->bias) continue;
        if (m->subs != ~(uint64_t)0 && e->subs == m->subs && e->nameptr == nm) return i;
        if (!hashed) m->namehash = fnv(FNV0, nm, nlen);
        hashed = true;
        if (e->namehash != m->namehash || e->phnum != m->phnum) continue;
        size_t bytes = m->phnum * sizeof(ElfW(Phdr));
        if (e->phdrs ? words_equal(e->phdrs, ph, bytes) : e->phash == fnv(FNV0, ph, bytes)) {
            e->subs = m->subs;
            e->nameptr = nm;
            return i;
        }
    }
    if (!hashed) m->namehash = fnv(FNV0, nm, nlen);
    return -1;
}

static int find_cb(struct dl_phdr_info *info, size_t sz, void *arg) {
    module *m = arg;
    const ElfW(Phdr) *ph = info->dlpi_phdr;
    bool hit = false;
    uintptr_t img_start = 0; /* the ELF header: the segment at file offset 0 */
    size_t img_size = 0;
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        if (ph[i].p_type != PT_LOAD) continue;
        if (m->pc - (info->dlpi_addr + ph[i].p_vaddr) < ph[i].p_memsz) hit = true;
        if (ph[i].p_offset == 0) {
            img_start = info->dlpi_addr + ph[i].p_vaddr;
            img_size = ph[i].p_filesz;
        }
    }
    if (!hit) return 0;
    const char *nm = info->dlpi_name ? info->dlpi_name : "";
    size_t nlen = cstrlen(nm);
    m->bias = info->dlpi_addr;
    m->nameptr = nm;
    m->phnum = info->dlpi_phnum;
    uintptr_t vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    m->vdso = vdso != 0 && img_start == vdso;
    m->exe = !m->vdso && nlen == 0;
    m->longpath = false;
    m->path[0] = m->name[0] = '\0';
    m->subs = sz >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs
                      ? (uint64_t)info->dlpi_subs
                      : ~(uint64_t)0;
    m->hit = -1;
    if (m->locked && !m->vdso) m->hit = cache_match(m, nm, nlen, ph);
    else m->namehash = fnv(FNV0, nm, nlen);
    if (m->hit >= 0) return 1; /* the entry has all the rest */
    m->phash = fnv(FNV0, ph, info->dlpi_phnum * sizeof(ElfW(Phdr)));
    if (m->vdso) {
        /* The kernel maps the whole image, section headers included, in whole pages. */
        size_t page = (size_t)getauxval(AT_PAGESZ);
        if (page == 0) page = 4096;
        m->mem = (const unsigned char *)img_start;
        m->memsz = (img_size + page - 1) / page * page;
        copy_base(m->name, sizeof m->name, nlen ? nm : "[vdso]", nlen ? nlen : 6);
    } else if (m->exe) {
        static const char self[] = "/proc/self/exe";
        for (size_t i = 0; i < sizeof self; i++) m->path[i] = self[i];
    } else {
        copy_base(m->name, sizeof m->name, nm, nlen);
        if (nlen < sizeof m->path) {
            for (size_t i = 0; i <= nlen; i++) m->path[i] = nm[i];
        } else {
            m->longpath = true;
        }
    }
    return 1;
}

/* The executable's basename into m->name (m->path is free by then). */
static void exe_name(module *m) {
    ssize_t n = readlink("/proc/self/exe", m->path, sizeof m->path);
    if (n > 0 && (size_t)n < sizeof m->path) {
        copy_base(m->name, sizeof m->name, m->path, (size_t)n);
        return;
    }
    const char *fn = (const char *)getauxval(AT_EXECFN);
    if (fn) copy_base(m->name, sizeof m->name, fn, cstrlen(fn));
    else copy_base(m->name, sizeof m->name, "?", 1);
}

static int open_ro(const char *path) {
    int fd;
    do fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* Maps m's file: 1 mapped, 0 no file to read (will not change), -1 a transient failure. */
static int map_module(module *m, void **map, size_t *size) {
    if (m->longpath) return 0;
    int fd = m->path[0] ? open_ro(m->path) : -1;
    if (fd < 0 && m->exe) {
        const char *fn = (const char *)getauxval(AT_EXECFN);
        if (fn) fd = open_ro(fn);
    }
    if (fd < 0) return errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == EINTR ? -1 : 0;
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && (uint64_t)st.st_size <= SIZE_MAX) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            *map = p;
            *size = (size_t)st.st_size;
            r = 1;
        } else {
            r = -1;
        }
    }
    close(fd);
    return r;
}

/* m's entry, found by the callback or made now (evicting the least recently used); NULL
 * on a transient failure. */
static centry *cache_get(module *m) {
    if (m->hit >= 0) {
        cache[m->hit].stamp = ++cache_clock;
        return &cache[m->hit];
    }
    centry *victim = &cache[0];
    for (int i = 0; i < SYM_CACHE_N; i++) {
        centry *e = &cache[i];
        if (!e->used) {
            victim = e;
            break;
        }
        if (e->stamp < victim->stamp) victim = e;
    }
    void *map = NULL;
    size_t mapsz = 0;
    int r = map_module(m, &map, &mapsz);
    if (r < 0) return NULL;
    centry_release(victim);
    centry *e = victim;
    e->bias = m->bias;
    e->namehash = m->namehash;
    e->phash = m->phash;
    e->phnum = m->phnum;
    e->subs = m->subs;
    e->nameptr = m->nameptr;
    if (r > 0 && (e->phdrs = phdrs_match(map, mapsz, m->phnum, m->phash)) && elf_image(&e->im, map, mapsz)) {
        e->map = map;
        e->mapsz = mapsz;
        e->syms = true;
        e->idx = index_build(&e->im, &e->nidx, &e->idxsz);
    } else {
        e->phdrs = NULL;
        e->im = (image){ .base = NULL };
        if (r > 0) munmap(map, mapsz);
    }
    if (m->exe) exe_name(m);
    for (size_t i = 0; i < sizeof e->name; i++)
        if ((e->name[i] = m->name[i]) == '\0') break;
    e->name[sizeof e->name - 1] = '\0';
    e->stamp = ++cache_clock;
    e->used = true;
    return e;
}

/* Writes the answer: symbol and offset, or the address; then the module. */
static void emit(out *o, const image *im, long s, uintptr_t pc, uintptr_t bias, const char *name) {
    if (s >= 0) {
        const Elf64_Sym *sym = &im->sym[s];
        put_sn(o, im->str + sym->st_name, im->strsz - sym->st_name);
        put_c(o, '+');
        put_hex(o, (uint64_t)(pc - bias) - sym->st_value);
    } else {
        put_hex(o, pc);
    }
    put_c(o, ' ');
    put_c(o, '(');
    put_sn(o, name, SYM_NAME_MAX);
    put_c(o, ')');
}

/* ------------------------------------------------------------------ entry points */

size_t loom__symbolize(uintptr_t pc, char *buf, size_t len) {
    int saved_errno = errno;
    out o = { .buf = buf, .cap = len, .n = 0 };
    module m;
    m.pc = pc;
    m.locked = cache_trylock();
    if (dl_iterate_phdr(find_cb, &m) == 0) {
        put_hex(&o, pc);
    } else if (m.vdso) {
        image im;
        long s = elf_image(&im, m.mem, m.memsz) ? lookup_linear(&im, pc - m.bias) : -1;
        emit(&o, &im, s, pc, m.bias, m.name);
    } else if (m.locked) {
        centry *e = cache_get(&m);
        if (e) {
            long s = !e->syms ? -1
                     : e->idx ? lookup_index(&e->im, e->idx, e->nidx, pc - m.bias)
                              : lookup_linear(&e->im, pc - m.bias);
            emit(&o, &e->im, s, pc, m.bias, e->name);
        } else {
            if (m.exe) exe_name(&m);
            emit(&o, NULL, -1, pc, m.bias, m.name);
        }
    } else {
        /* Busy: this call's own mapping, scanned and dropped. */
        void *map = NULL;
        size_t mapsz = 0;
        int r = map_module(&m, &map, &mapsz);
        image im = { .base = NULL };
        long s = -1;
        if (r > 0 && phdrs_match(map, mapsz, m.phnum, m.phash) && elf_image(&im, map, mapsz))
            s = lookup_linear(&im, pc - m.bias);
        if (m.exe) exe_name(&m);
        emit(&o, &im, s, pc, m.bias, m.name);
        if (r > 0) munmap(map, mapsz);
    }
    if (m.locked) cache_unlock();
    errno = saved_errno;
    return out_end(&o);
}

void loom__symbolize_term(void) {
    int saved_errno = errno;
    while (!cache_trylock()) sched_yield();
    for (int i = 0; i < SYM_CACHE_N; i++) centry_release(&cache[i]);
    cache_unlock();
    errno = saved_errno;
}
