/*
 * text_end_elf.S — marks where loom's code ends (see text_begin_elf.S).
 */
    .text
    .globl  loom__text_end
    .hidden loom__text_end
    .type   loom__text_end, @object
loom__text_end:                         /* one past loom's last instruction */
    .byte   0xcc                        /* int3: a byte so the label lies inside .text */
    .section .note.GNU-stack,"",@progbits   /* no executable stack */
