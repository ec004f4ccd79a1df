/*
 * symbolize.h — code address to "function+0xOFF (module)", for goroutine dumps.
 *
 * Safe where dladdr and stdio are not: on the monitor thread and in fatal paths (a signal
 * handler on the alternate stack).  No malloc, no stdio, no locale: the module comes from
 * dl_iterate_phdr, the symbols from the module's own ELF file (open + mmap, .symtab when
 * present, else .dynsym), so static functions of the executable resolve.  A small cache
 * keeps files mapped between calls; a call that finds it busy (another thread, or a
 * signal handler interrupting a call) maps the file for itself and unmaps it after.
 * errno is preserved.
 */
#ifndef LOOM_SYMBOLIZE_H
#define LOOM_SYMBOLIZE_H
#include <stddef.h>
#include <stdint.h>

/* Writes "function+0xOFF (module)" for the code address pc into buf (always NUL-terminated,
 * truncated to len), or "0xADDR (module)" when no symbol covers it, or "0xADDR" outside
 * every module.  The module is shown as its file's basename (the executable's through
 * /proc/self/exe; the vDSO as linux-vdso.so.1).  Returns the length written (without the
 * NUL; 0 when len is 0). */
size_t loom__symbolize(uintptr_t pc, char *buf, size_t len);

/* Unmaps the cached files; called when loom_run returns.  Later calls fill the cache again. */
void loom__symbolize_term(void);

#endif
