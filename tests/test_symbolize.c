/*
 * test_symbolize.c — src/symbolize.c: code addresses to "function+0xOFF (module)".
 *
 * Checks a static function of this program (at its address and at a return address inside
 * it), a size-0 assembler symbol, loom's own functions, libc's write, the vDSO, addresses
 * outside every module, truncation, a library whose file on disk was replaced by corrupt
 * or truncated copies (must give "0xADDR (module)", never a crash), and two threads
 * calling at once while the cache is flushed under them.  Prints how long a call takes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "t.h"
#include "../src/symbolize.h"
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loom.h>

static char exe[256]; /* this program's basename, as the symbolizer should show it */

static const char *sym(uintptr_t pc)
{
    static __thread char b[1024];
    size_t n = loom__symbolize(pc, b, sizeof b);
    CHECK_EQU(n, strlen(b));
    return b;
}

/* s is "name+0xOFF (module)": name and offset out (false if not of that form). */
static bool parse(const char *s, char *name, size_t cap, unsigned long long *off, const char **mod)
{
    const char *plus = strstr(s, "+0x");
    const char *paren = strstr(s, " (");
    if (!plus || !paren || plus > paren || plus == s || (size_t)(plus - s) >= cap)
        return false;
    memcpy(name, s, (size_t)(plus - s));
    name[plus - s] = '\0';
    char *end;
    *off = strtoull(plus + 3, &end, 16);
    if (end != paren)
        return false;
    *mod = paren + 2;
    return s[strlen(s) - 1] == ')';
}

static void check_exact(uintptr_t pc, const char *want)
{
    const char *got = sym(pc);
    CHECK_MSG(strcmp(got, want) == 0, "pc %#lx: got \"%s\", want \"%s\"", (unsigned long)pc, got, want);
    printf("ok   %#14lx -> %s\n", (unsigned long)pc, got);
}

/* ---- functions of this program */

__attribute__((noinline)) static void *ret_addr(void)
{
    return __builtin_return_address(0);
}

__attribute__((noinline)) static uintptr_t probe_fn(void)
{
    void *ra = ret_addr();
    __asm__ __volatile__("" ::: "memory"); /* no tail call: ra stays inside probe_fn */
    return (uintptr_t)ra;
}

/* A function symbol of size 0 (no .size): it covers up to the next symbol. */
__asm__(".pushsection .text\n"
        ".globl t_zero_size_fn\n"
        ".hidden t_zero_size_fn\n"
        ".type t_zero_size_fn, @function\n"
        "t_zero_size_fn:\n"
        "  nop\n  nop\n  nop\n  nop\n  ret\n"
        ".popsection\n");
__attribute__((visibility("hidden"))) extern void t_zero_size_fn(void);

static void test_self(void)
{
    char want[512];
    uintptr_t f = (uintptr_t)probe_fn;
    snprintf(want, sizeof want, "probe_fn+0x0 (%s)", exe);
    check_exact(f, want);

    uintptr_t ra = probe_fn();
    CHECK_MSG(ra > f && ra - f < 4096, "return address %#lx vs probe_fn %#lx", (unsigned long)ra,
              (unsigned long)f);
    snprintf(want, sizeof want, "probe_fn+%#lx (%s)", (unsigned long)(ra - f), exe);
    check_exact(ra, want);

    snprintf(want, sizeof want, "t_zero_size_fn+0x3 (%s)", exe);
    check_exact((uintptr_t)t_zero_size_fn + 3, want);

    snprintf(want, sizeof want, "loom_yield+0x0 (%s)", exe);
    check_exact((uintptr_t)loom_yield, want);
    snprintf(want, sizeof want, "loom_yield+0x1 (%s)", exe);
    check_exact((uintptr_t)loom_yield + 1, want);
    snprintf(want, sizeof want, "loom__symbolize+0x0 (%s)", exe);
    check_exact((uintptr_t)loom__symbolize, want);
}

/* pc is the start of a function of the library h (RTLD_NEXT: after this program): the
 * answer is "NAME+0x0 (mod)" where NAME resolves to pc again, and "NAME+0x1" after it. */
static void check_lib_fn(void *h, uintptr_t pc, const char *needle, const char *modpart)
{
    char name[256];
    unsigned long long off;
    const char *mod;
    const char *got = sym(pc);
    CHECK_MSG(parse(got, name, sizeof name, &off, &mod), "pc %#lx: \"%s\"", (unsigned long)pc, got);
    CHECK_MSG(off == 0 && strstr(name, needle) && strstr(mod, modpart),
              "pc %#lx: \"%s\" (want a name with %s, +0x0, a module with %s)", (unsigned long)pc, got, needle,
              modpart);
    CHECK_MSG((uintptr_t)dlsym(h, name) == pc, "\"%s\": dlsym(%s) = %p, not %#lx", got, name, dlsym(h, name),
              (unsigned long)pc);
    printf("ok   %#14lx -> %s\n", (unsigned long)pc, got);
    char name1[256];
    got = sym(pc + 1);
    CHECK_MSG(parse(got, name1, sizeof name1, &off, &mod) && off == 1 && strcmp(name, name1) == 0 &&
                      strstr(mod, modpart),
              "pc %#lx: \"%s\"", (unsigned long)pc + 1, got);
}

static void test_libc(void)
{
    uintptr_t w = (uintptr_t)dlsym(RTLD_NEXT, "write"); /* libc's, not a sanitizer's */
    CHECK(w != 0);
    check_lib_fn(RTLD_NEXT, w, "write", "libc");
    /* &write: libc's, or an interceptor in this program under a sanitizer */
    const char *got = sym((uintptr_t)&write);
    CHECK_MSG(strstr(got, "write") && strstr(got, "+0x0 ("), "&write: \"%s\"", got);
    printf("ok   %#14lx -> %s\n", (unsigned long)(uintptr_t)&write, got);
}

static void test_outside(void)
{
    check_exact(0x10, "0x10");
    check_exact(0, "0x0");
    check_exact(UINTPTR_MAX, "0xffffffffffffffff");
}

static void test_vdso(void)
{
    uintptr_t v = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (!v) {
        printf("note: no vDSO, skipped\n");
        return;
    }
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)v;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(v + eh->e_phoff);
    uintptr_t end = v;
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD && v + ph[i].p_vaddr + ph[i].p_memsz > end)
            end = v + ph[i].p_vaddr + ph[i].p_memsz;
    int named = 0, clock = 0;
    char first[256] = "";
    for (uintptr_t pc = v; pc < end; pc++) {
        const char *got = sym(pc);
        CHECK_MSG(strstr(got, "vdso"), "vDSO pc %#lx: \"%s\"", (unsigned long)pc, got);
        if (strstr(got, "+0x"))
            named++;
        if (strstr(got, "clock_gettime+0x0 ") && !clock++)
            snprintf(first, sizeof first, "%s", got);
    }
    CHECK_MSG(clock > 0, "no clock_gettime in the vDSO (%d named addresses)", named);
    printf("ok   vDSO: %d of %lu addresses named, e.g. %s\n", named, (unsigned long)(end - v), first);
}

static void test_truncation(void)
{
    char full[512], b[16];
    size_t n = loom__symbolize((uintptr_t)loom_yield, full, sizeof full);
    CHECK_GT(n, 8);
    memset(b, 'X', sizeof b);
    CHECK_EQU(loom__symbolize((uintptr_t)loom_yield, b, 8), 7);
    CHECK(b[7] == '\0' && memcmp(b, full, 7) == 0);
    for (size_t i = 8; i < sizeof b; i++)
        CHECK(b[i] == 'X');
    memset(b, 'X', sizeof b);
    CHECK_EQU(loom__symbolize((uintptr_t)loom_yield, b, 1), 0);
    CHECK(b[0] == '\0' && b[1] == 'X');
    memset(b, 'X', sizeof b);
    CHECK_EQU(loom__symbolize((uintptr_t)loom_yield, b, 0), 0);
    CHECK(b[0] == 'X');
    CHECK_EQU(loom__symbolize(0x10, NULL, 0), 0);
    memset(b, 'X', sizeof b);
    CHECK_EQU(loom__symbolize(0x123456, b, 5), 4);
    CHECK(strcmp(b, "0x12") == 0);
    printf("ok   truncation: \"%.7s\" from \"%s\"\n", full, full);
}

/* ---- a library whose file is replaced on disk by damaged copies */

static unsigned char *slurp(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK_MSG(fd >= 0, "%s: %s", path, strerror(errno));
    struct stat st;
    CHECK_OK(fstat(fd, &st));
    unsigned char *b = malloc((size_t)st.st_size);
    CHECK(b);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
        CHECK_MSG(r > 0, "read %s", path);
        got += (size_t)r;
    }
    close(fd);
    *size = got;
    return b;
}

static void spit(const char *path, const void *b, size_t n)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK_MSG(fd >= 0, "%s: %s", tmp, strerror(errno));
    size_t put = 0;
    while (put < n) {
        ssize_t r = write(fd, (const char *)b + put, n - put);
        CHECK_MSG(r > 0, "write %s", tmp);
        put += (size_t)r;
    }
    CHECK_OK(close(fd));
    CHECK_OK(rename(tmp, path)); /* the loaded library keeps the old inode */
}

/* After the file at the library's path became (b, n): every answer names the module and is
 * either a name+offset or the address; strict: the address only. */
static int damaged(const char *what, const char *path, const void *b, size_t n, const uintptr_t *pcs,
                   int npcs, const char *mod, bool strict)
{
    spit(path, b, n);
    loom__symbolize_term();
    int named = 0;
    for (int i = 0; i < npcs; i++) {
        const char *got = sym(pcs[i]);
        char suffix[300], hex[64];
        snprintf(suffix, sizeof suffix, " (%s)", mod);
        size_t gl = strlen(got), sl = strlen(suffix);
        CHECK_MSG(gl > sl && strcmp(got + gl - sl, suffix) == 0, "%s: \"%s\"", what, got);
        snprintf(hex, sizeof hex, "%#lx (", (unsigned long)pcs[i]);
        bool plain = strncmp(got, hex, strlen(hex)) == 0;
        CHECK_MSG(plain || (!strict && strstr(got, "+0x")), "%s: \"%s\"", what, got);
        named += !plain;
    }
    return named;
}

static void sym_name_out(Elf64_Sym *s)
{
    s->st_name = 0xfffffff0u;
}
static void sym_no_section(Elf64_Sym *s)
{
    s->st_shndx = 0xfff0;
    s->st_size = 0;
}

/* fn on every symbol of the file image b (section headers bsh) */
static void each_sym(unsigned char *b, Elf64_Shdr *bsh, size_t shnum, void (*fn)(Elf64_Sym *))
{
    for (size_t i = 1; i < shnum; i++) {
        if (bsh[i].sh_type != SHT_DYNSYM && bsh[i].sh_type != SHT_SYMTAB)
            continue;
        Elf64_Sym *s = (Elf64_Sym *)(b + bsh[i].sh_offset);
        for (size_t k = 0; k < bsh[i].sh_size / sizeof *s; k++)
            fn(&s[k]);
    }
}

static void test_damaged_file(void)
{
    void *libm = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    CHECK(libm);
    Dl_info di;
    CHECK(dladdr(dlsym(libm, "frexp"), &di) && di.dli_fname);
    size_t n;
    char libpath[1024];
    snprintf(libpath, sizeof libpath, "%s", di.dli_fname);
    unsigned char *orig = slurp(libpath, &n);
    dlclose(libm);

    const char *tmpd = getenv("TMPDIR");
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, "%s/loom_sym_XXXXXX", tmpd && *tmpd ? tmpd : "/tmp");
    CHECK(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/libsymtest.so", dir);
    spit(path, orig, n);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK_MSG(h, "dlopen %s: %s", path, dlerror());
    /* not cos or sin: IFUNCs, whose dlsym is an implementation absent from .dynsym */
    uintptr_t fa = (uintptr_t)dlsym(h, "frexp"), la = (uintptr_t)dlsym(h, "ldexp");
    CHECK(fa && la);
    loom__symbolize_term();
    check_lib_fn(h, fa, "frexp", "libsymtest.so");
    check_lib_fn(h, la, "", "libsymtest.so"); /* ldexp or its alias scalbn */
    uintptr_t pcs[] = { fa, fa + 1, fa + 40, la, la + 7 };
    int np = (int)(sizeof pcs / sizeof pcs[0]);
    const char *mod = "libsymtest.so";

    unsigned char *b = malloc(n);
    CHECK(b);
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)orig;
    Elf64_Ehdr *beh = (Elf64_Ehdr *)b;
    size_t shoff = eh->e_shoff, shnum = eh->e_shnum;
    CHECK(shoff > 0 && shoff + shnum * sizeof(Elf64_Shdr) <= n);
    Elf64_Shdr *bsh = (Elf64_Shdr *)(b + shoff);
    int nvar = 0;
#define VARIANT(what, strict, ...) \
    do { \
        memcpy(b, orig, n); \
        __VA_ARGS__; \
        damaged(what, path, b, n, pcs, np, mod, strict); \
        nvar++; \
    } while (0)

    VARIANT("intact copy", false, (void)0);
    CHECK_EQ(damaged("intact copy again", path, orig, n, pcs, np, mod, false), np);
    VARIANT("e_shoff at the end", true, beh->e_shoff = n);
    VARIANT("e_shoff huge", true, beh->e_shoff = ~(uint64_t)0 - 63);
    VARIANT("e_shoff unaligned", true, beh->e_shoff = shoff + 1);
    VARIANT("e_shoff 0", true, beh->e_shoff = 0);
    VARIANT("e_shnum 0xffff", true, beh->e_shnum = 0xffff);
    VARIANT("e_shnum 0, shdr[0].sh_size huge", true, beh->e_shnum = 0; bsh[0].sh_size = ~(uint64_t)0);
    VARIANT("e_shentsize 32", true, beh->e_shentsize = 32);
    VARIANT("sh_offset huge", true, for (size_t i = 1; i < shnum; i++) bsh[i].sh_offset = ~(uint64_t)0 - 8);
    VARIANT("sh_offset past the end", true, for (size_t i = 1; i < shnum; i++) bsh[i].sh_offset = n - 8);
    VARIANT("sh_size huge", true, for (size_t i = 1; i < shnum; i++) bsh[i].sh_size = ~(uint64_t)0 / 2);
    VARIANT("sh_link out of range", true, for (size_t i = 1; i < shnum; i++) bsh[i].sh_link = 0xfffff);
    VARIANT("sh_entsize 0", true, for (size_t i = 1; i < shnum; i++) bsh[i].sh_entsize = 0);
    VARIANT("string tables past the end", true,
            for (size_t i = 1; i < shnum; i++) if (bsh[i].sh_type == SHT_STRTAB) bsh[i].sh_size = n);
    VARIANT("st_name past the strings", true, each_sym(b, bsh, shnum, sym_name_out));
    VARIANT("st_shndx out of range, size 0", false, each_sym(b, bsh, shnum, sym_no_section));
    VARIANT("a program header changed", true, ((Elf64_Phdr *)(b + eh->e_phoff))[0].p_align ^= 1);
    VARIANT("not ELF", true, memset(b, 0, 64));
    VARIANT("ELF32 class", true, b[EI_CLASS] = ELFCLASS32);
    /* truncated copies */
    size_t cuts[] = { 0, 1, 63, 64, 200, 4096, n / 2, shoff, shoff + 100, n - 1 };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu bytes", cuts[i]);
        damaged(what, path, orig, cuts[i], pcs, np, mod, cuts[i] < n - 1);
        nvar++;
    }
    /* random damage to the headers and the symbol tables, the program headers kept */
    t_rng r;
    t_rng_seed(&r, 42);
    size_t dynoff = 0, dynsz = 0;
    for (size_t i = 1; i < shnum; i++)
        if (((const Elf64_Shdr *)(orig + shoff))[i].sh_type == SHT_DYNSYM) {
            dynoff = ((const Elf64_Shdr *)(orig + shoff))[i].sh_offset;
            dynsz = ((const Elf64_Shdr *)(orig + shoff))[i].sh_size;
        }
    CHECK(dynsz > 0);
    int rounds = (int)t_scale(60), named = 0;
    for (int k = 0; k < rounds; k++) {
        memcpy(b, orig, n);
        int flips = 1 + (int)t_rng_below(&r, 16);
        for (int f = 0; f < flips; f++) {
            uint64_t v = t_rng_next(&r);
            switch (t_rng_below(&r, 4)) {
            case 0: b[shoff + t_rng_below(&r, shnum * sizeof(Elf64_Shdr))] = (unsigned char)v; break;
            case 1: b[dynoff + t_rng_below(&r, dynsz)] = (unsigned char)v; break;
            case 2: /* one whole field of a section header */
                memcpy(b + shoff + t_rng_below(&r, shnum) * sizeof(Elf64_Shdr) + 8 * t_rng_below(&r, 8), &v,
                       8);
                break;
            default: {
                static const size_t fields[] = { offsetof(Elf64_Ehdr, e_shoff), offsetof(Elf64_Ehdr, e_shnum),
                                                 offsetof(Elf64_Ehdr, e_shentsize),
                                                 offsetof(Elf64_Ehdr, e_shstrndx) };
                size_t at = fields[t_rng_below(&r, 4)];
                memcpy(b + at, &v, at == offsetof(Elf64_Ehdr, e_shoff) ? 8 : 2);
            }
            }
        }
        char what[64];
        snprintf(what, sizeof what, "random damage %d", k);
        named += damaged(what, path, b, n, pcs, np, mod, false) > 0;
        nvar++;
    }
#undef VARIANT
    printf("ok   %d damaged copies of %s: module kept, no crash (%d random ones still named something)\n",
           nvar, libpath, named);
    loom__symbolize_term();
    dlclose(h);
    unlink(path);
    rmdir(dir);
    free(b);
    free(orig);
}

/* ---- two threads at once, the cache flushed under them */

enum { NPC = 12 };
static uintptr_t race_pc[NPC];
static char race_want[NPC][512];
static long race_calls;

static void *race_thread(void *arg)
{
    long id = (long)arg, bad = 0;
    char b[512];
    for (long i = 0; i < race_calls; i++) {
        int k = (int)((i * 7 + id * 5) % NPC);
        loom__symbolize(race_pc[k], b, sizeof b);
        if (strcmp(b, race_want[k]) != 0 && bad++ == 0)
            fprintf(stderr, "thread %ld: pc %#lx: got \"%s\", want \"%s\"\n", id, (unsigned long)race_pc[k],
                    b, race_want[k]);
        if (id == 1 && i % 997 == 0)
            loom__symbolize_term();
    }
    return (void *)bad;
}

static void test_race(void)
{
    uintptr_t v = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    uintptr_t pcs[NPC] = { (uintptr_t)probe_fn,
                           (uintptr_t)probe_fn + 3,
                           (uintptr_t)loom_yield,
                           (uintptr_t)loom__symbolize + 9,
                           (uintptr_t)dlsym(RTLD_NEXT, "write"),
                           (uintptr_t)dlsym(RTLD_NEXT, "read") + 2,
                           (uintptr_t)dlsym(RTLD_NEXT, "pthread_create"),
                           (uintptr_t)dlsym(RTLD_NEXT, "malloc"),
                           0x10,
                           v ? v + 0x800 : 0x20,
                           (uintptr_t)t_zero_size_fn + 1,
                           (uintptr_t)race_thread + 5 };
    for (int k = 0; k < NPC; k++) {
        race_pc[k] = pcs[k];
        snprintf(race_want[k], sizeof race_want[k], "%s", sym(pcs[k]));
    }
    race_calls = 10000;
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        CHECK_OK(pthread_create(&t[i], NULL, race_thread, (void *)i));
    for (int i = 0; i < 2; i++) {
        void *bad;
        CHECK_OK(pthread_join(t[i], &bad));
        CHECK_MSG(bad == NULL, "thread %d: %ld inconsistent answers", i, (long)bad);
    }
    printf("ok   2 threads x %ld calls over %d addresses agree (cache flushed every 997 calls)\n", race_calls,
           NPC);
}

/* ---- on a goroutine's stack */

static int in_goroutine(void *arg)
{
    (void)arg;
    char want[512];
    snprintf(want, sizeof want, "loom_yield+0x0 (%s)", exe);
    check_exact((uintptr_t)loom_yield, want);
    return 0;
}

static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One call's cost, in this thread's CPU time (the machine may be busy): the first for a
 * module (open, mmap, index) and then cached ones. */
static void timing(void)
{
    uintptr_t pcs[2] = { (uintptr_t)probe_fn, (uintptr_t)dlsym(RTLD_NEXT, "write") };
    const char *what[2] = { "this program", "libc" };
    char b[512];
    for (int k = 0; k < 2; k++) {
        loom__symbolize_term();
        int64_t t0 = cpu_ns();
        loom__symbolize(pcs[k], b, sizeof b);
        int64_t cold = cpu_ns() - t0;
        long n = t_scale(200000);
        t0 = cpu_ns();
        for (long i = 0; i < n; i++)
            loom__symbolize(pcs[k] + (uintptr_t)(i & 7), b, sizeof b);
        int64_t warm = (cpu_ns() - t0) / n;
        printf("time %-12s first call %7.1f us, cached %5lld ns per call  (%s)\n", what[k], cold / 1e3,
               (long long)warm, b);
    }
}

int main(void)
{
    char p[4096];
    ssize_t n = readlink("/proc/self/exe", p, sizeof p - 1);
    CHECK(n > 0);
    p[n] = '\0';
    const char *slash = strrchr(p, '/');
    const char *base = slash ? slash + 1 : p;
    CHECK(strlen(base) < sizeof exe);
    memcpy(exe, base, strlen(base) + 1);

    test_self();
    test_libc();
    test_outside();
    test_vdso();
    test_truncation();
    test_damaged_file();
    test_race();
    T_RUN(in_goroutine, NULL);
    timing();
    loom__symbolize_term();
    printf("test_symbolize: all checks passed\n");
    return 0;
}
