/*
 * ctx_x86_64_sysv_elf.S — goroutine context switch for x86-64, System V ABI, ELF, GNU as.
 *
 * A switch saves only what the ABI says a callee must preserve: rbx, rbp, r12-r15, the
 * stack pointer, and the floating-point control state (MXCSR and the x87 control word,
 * "callee-saved" control bits per the SysV ABI §3.2.3).  Everything else is caller-saved,
 * so the C compiler has already spilled it around the call.  No syscall, no signal mask:
 * that is why loom does not use ucontext (swapcontext calls sigprocmask on every switch).
 *
 * Saved frame, growing down from the switched-out stack's top, as stored at *save_sp:
 *
 *   offset  contents
 *   ------  ---------------------------------------------
 *   +0      MXCSR (4 bytes) | x87 control word (2) | pad (2)
 *   +8      r15
 *   +16     r14
 *   +24     r13
 *   +32     r12
 *   +40     rbx
 *   +48     rbp
 *   +56     return address (where the switched-out code resumes)
 *
 * A fresh stack (loom__ctx_init) holds the same frame with r12 = entry, rbp = 0 (ends
 * frame-pointer walks) and the return address pointing at loom__ctx_trampoline, which
 * calls entry with the stack 16-byte aligned as the ABI requires at a call.
 */
        .text

/* void loom__ctx_switch(void **save_sp, void *load_sp) */
        .globl  loom__ctx_switch
        .hidden loom__ctx_switch
        .type   loom__ctx_switch, @function
        .align  16
loom__ctx_switch:
        .cfi_startproc
        pushq   %rbp                    /* save callee-saved rbp */
        .cfi_adjust_cfa_offset 8
        pushq   %rbx                    /* save rbx */
        .cfi_adjust_cfa_offset 8
        pushq   %r12                    /* save r12 */
        .cfi_adjust_cfa_offset 8
        pushq   %r13                    /* save r13 */
        .cfi_adjust_cfa_offset 8
        pushq   %r14                    /* save r14 */
        .cfi_adjust_cfa_offset 8
        pushq   %r15                    /* save r15 */
        .cfi_adjust_cfa_offset 8
        subq    $8, %rsp                /* room for the FP control words */
        .cfi_adjust_cfa_offset 8
        stmxcsr (%rsp)                  /* save MXCSR (SSE rounding mode, exception masks) */
        fnstcw  4(%rsp)                 /* save x87 control word (precision, rounding) */
        movl    (%rsp), %r8d            /* r8d = our MXCSR (r8, r9 are scratch in the ABI) */
        movzwl  4(%rsp), %r9d           /* r9d = our x87 control word */
        movq    %rsp, (%rdi)            /* *save_sp = rsp: the old context is now complete */
        movq    %rsi, %rsp              /* switch to the new stack */
        cmpl    (%rsp), %r8d            /* same MXCSR as the new context? (the usual case) */
        je      1f                      /* yes: skip the slow, serialising ldmxcsr */
        ldmxcsr (%rsp)                  /* no: restore the new context's MXCSR */
1:      cmpw    4(%rsp), %r9w           /* same x87 control word? */
        je      2f                      /* yes: skip fldcw */
        fldcw   4(%rsp)                 /* no: restore the new context's x87 control word */
2:
        addq    $8, %rsp                /* drop the control-word slot */
        popq    %r15                    /* restore r15 */
        popq    %r14                    /* restore r14 */
        popq    %r13                    /* restore r13 */
        popq    %r12                    /* restore r12 */
        popq    %rbx                    /* restore rbx */
        popq    %rbp                    /* restore rbp */
        ret                             /* resume where the new context switched out */
        .cfi_endproc
        .size   loom__ctx_switch, .-loom__ctx_switch

/* void *loom__ctx_init(void *stack_top, void (*entry)(void))
 * Writes a frame for loom__ctx_switch below stack_top (16-byte aligned) and returns its
 * address, to be passed as load_sp. */
        .globl  loom__ctx_init
        .hidden loom__ctx_init
        .type   loom__ctx_init, @function
        .align  16
loom__ctx_init:
        .cfi_startproc
        movq    %rdi, %rax              /* rax = stack_top */
        andq    $-16, %rax              /* align it down to 16 */
        subq    $80, %rax               /* frame (64) + 16: trampoline's rsp stays 16-aligned */
        movl    $0x1f80, (%rax)         /* MXCSR default: all exceptions masked, round to nearest */
        movw    $0x037f, 4(%rax)        /* x87 CW default: extended precision, all masked */
        movw    $0, 6(%rax)             /* pad */
        movq    $0, 8(%rax)             /* r15 = 0 */
        movq    $0, 16(%rax)            /* r14 = 0 */
        movq    $0, 24(%rax)            /* r13 = 0 */
        movq    %rsi, 32(%rax)          /* r12 = entry, for the trampoline */
        movq    $0, 40(%rax)            /* rbx = 0 */
        movq    $0, 48(%rax)            /* rbp = 0: frame-pointer walks stop here */
        leaq    loom__ctx_trampoline(%rip), %rcx  /* rcx = trampoline address */
        movq    %rcx, 56(%rax)          /* return address = trampoline */
        movq    $0, 64(%rax)            /* a zero word above: a fake return address for unwinders */
        ret                             /* return the frame address */
        .cfi_endproc
        .size   loom__ctx_init, .-loom__ctx_init

/* First code a fresh goroutine runs: rsp is 16-byte aligned here, r12 holds entry. */
        .type   loom__ctx_trampoline, @function
        .align  16
loom__ctx_trampoline:
        .cfi_startproc
        .cfi_undefined rip              /* outermost frame: unwinders stop here */
        xorl    %ebp, %ebp              /* no caller frame */
        callq   *%r12                   /* entry(): never returns */
        ud2                             /* trap if it ever does */
        .cfi_endproc
        .size   loom__ctx_trampoline, .-loom__ctx_trampoline

        .section .note.GNU-stack,"",@progbits
