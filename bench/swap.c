/* swap: physical limit for context — a raw switch of the callee-saved registers
 * and the stack pointer between two stacks, nothing else (ns per switch).
 * Needs no loom; no Go twin. */
#include "bench.h"

/* void bench_swap_ctx(void **save_sp, void *new_sp) */
#if defined(__x86_64__)
__asm__(".text\n"
        ".p2align 4\n"
        ".globl bench_swap_ctx\n"
        ".type bench_swap_ctx,@function\n"
        "bench_swap_ctx:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size bench_swap_ctx, .-bench_swap_ctx\n");
#define FRAME_WORDS 6 /* words popped before ret */
#elif defined(__aarch64__)
__asm__(".text\n"
        ".p2align 4\n"
        ".globl bench_swap_ctx\n"
        ".type bench_swap_ctx,%function\n"
        "bench_swap_ctx:\n"
        "  sub sp, sp, #160\n"
        "  stp x19, x20, [sp, #0]\n  stp x21, x22, [sp, #16]\n  stp x23, x24, [sp, #32]\n"
        "  stp x25, x26, [sp, #48]\n  stp x27, x28, [sp, #64]\n  stp x29, x30, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n  stp d10, d11, [sp, #112]\n  stp d12, d13, [sp, #128]\n"
        "  stp d14, d15, [sp, #144]\n"
        "  mov x9, sp\n  str x9, [x0]\n  mov sp, x1\n"
        "  ldp x19, x20, [sp, #0]\n  ldp x21, x22, [sp, #16]\n  ldp x23, x24, [sp, #32]\n"
        "  ldp x25, x26, [sp, #48]\n  ldp x27, x28, [sp, #64]\n  ldp x29, x30, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n  ldp d10, d11, [sp, #112]\n  ldp d12, d13, [sp, #128]\n"
        "  ldp d14, d15, [sp, #144]\n"
        "  add sp, sp, #160\n"
        "  ret\n"
        ".size bench_swap_ctx, .-bench_swap_ctx\n");
#else
#error "bench/swap.c: no register swap for this architecture"
#endif

void bench_swap_ctx(void **save_sp, void *new_sp);

static void *main_sp, *co_sp;
static int64_t co_count;

__attribute__((noreturn)) static void co_entry(void)
{
    for (;;) {
        co_count++;
        bench_swap_ctx(&co_sp, main_sp);
    }
}

int main(int argc, char **argv)
{
    bench_init(argc, argv, "swap");
    int64_t n = bench_param("switches", 20000000, 100000) / 2; /* round trips */
    static _Alignas(16) uintptr_t stack[8192];
    uintptr_t *top = stack + sizeof stack / sizeof stack[0];
#if defined(__x86_64__)
    /* After `ret` pops co_entry, rsp = top - 8: rsp+8 16-byte aligned at entry. */
    top -= 2;
    top[0] = (uintptr_t)co_entry;
    top[1] = 0;
    co_sp = top - FRAME_WORDS;
    for (int i = 0; i < FRAME_WORDS; i++)
        ((uintptr_t *)co_sp)[i] = 0;
#else
    top -= 20; /* the 160-byte frame */
    for (int i = 0; i < 20; i++)
        top[i] = 0;
    top[11] = (uintptr_t)co_entry; /* x30, restored by ldp x29, x30 at #80 */
    co_sp = top;
#endif
    for (int i = 0; i < 1000; i++) /* warm-up */
        bench_swap_ctx(&main_sp, co_sp);
    co_count = 0;
    int64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < n; i++)
        bench_swap_ctx(&main_sp, co_sp);
    int64_t el = bench_now_ns() - t0;
    if (co_count != n)
        bench_fail("coroutine ran %" PRId64 " times, want %" PRId64, co_count, n);
    bench_result("ns_per_switch", (double)el / (double)(2 * n), "ns", 1);
    return 0;
}
