/*
 * fiber.c — telling the sanitizers and valgrind about goroutine stacks.
 *
 * A goroutine switch moves the stack pointer to memory the tools did not see allocated as
 * a stack.  Without being told, ASan reports false stack-buffer errors and loses its fake
 * stacks, TSan mixes up the shadow call stacks of different goroutines and misses their
 * happens-before edges, and valgrind thinks the program jumped to a wild stack.
 *   ASan:  __sanitizer_start_switch_fiber(&save, bottom, size) before each switch, and
 *          __sanitizer_finish_switch_fiber(save, ...) first thing on the new stack; NULL as
 *          the save pointer when the old stack is left for good (a dead goroutine).
 *   TSan:  one fiber per goroutine (__tsan_create_fiber), __tsan_switch_to_fiber right
 *          before the switch; the M's own stack uses the thread's fiber.
 *   valgrind: VALGRIND_STACK_REGISTER per slot, once (stack.c keeps the id in the slot's
 *          header), deregistered when the arenas go at runtime end.
 * In normal builds every function here is empty and the compiler drops the calls.
 */
#include "internal.h"
#include <pthread.h>

#if defined(LOOM_ASAN) || defined(LOOM_TSAN)
#define SANITIZED 1
#endif

#if defined(LOOM_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(LOOM_TSAN)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(LOOM_HAVE_VALGRIND_H)
#include <valgrind/valgrind.h>
#endif

void loom__fiber_init_g0(G *g0) {
#if defined(LOOM_TSAN)
    g0->fiber = __tsan_get_current_fiber();
#endif
#if defined(LOOM_ASAN)
    pthread_attr_t a;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, &addr, &size);
        pthread_attr_destroy(&a);
    }
    g0->asan_bottom = addr;
    g0->asan_size = size;
#endif
    (void)g0;
}

#ifdef SANITIZED
void loom__fiber_create(G *g) {
#if defined(LOOM_ASAN)
    g->asan_fake_stack = NULL;
#endif
#if defined(LOOM_TSAN)
    g->fiber = __tsan_create_fiber(0);
    if (g->name[0]) __tsan_set_fiber_name(g->fiber, g->name);
#endif
    (void)g;
}
#endif

#ifdef SANITIZED
void loom__fiber_destroy(G *g) {
#if defined(LOOM_TSAN)
    if (g->fiber) __tsan_destroy_fiber(g->fiber);
    g->fiber = NULL;
#endif
    (void)g;
}
#endif

unsigned loom__fiber_new_stack(char *lo, size_t size) {
#if defined(LOOM_HAVE_VALGRIND_H)
    unsigned id = VALGRIND_STACK_REGISTER(lo, lo + size);
    if (id) return id;
#endif
    (void)lo;
    (void)size;
    return 1; /* registered (or nothing to register): not again */
}

#ifdef SANITIZED
void loom__fiber_reuse_stack(G *g) {
#if defined(LOOM_ASAN)
    /* frames of the stack's previous goroutine were never returned from: drop their poison */
    __asan_unpoison_memory_region(g->stack_lo, g->stack_size);
#endif
    (void)g;
}
#endif

void loom__fiber_free_stack(unsigned id) {
#if defined(LOOM_HAVE_VALGRIND_H)
    VALGRIND_STACK_DEREGISTER(id); /* a no-op outside valgrind */
#endif
    (void)id;
}
