/*
 * text_begin_elf.S — marks where loom's code starts.
 *
 * The build links every loom object into one relocatable object (ld -r), this file first
 * and text_end_elf.S last, so loom's whole .text is one input section for the final link:
 * [loom__text_begin, loom__text_end) then holds all of loom's code, whether the library
 * is linked statically or shared.  The preemption handler (src/preempt_signal.c) never switches a
 * goroutine out while its PC is inside that range.
 */
    .text
    .globl  loom__text_begin
    .hidden loom__text_begin
    .type   loom__text_begin, @object
loom__text_begin:                       /* first byte of loom's code */
    .section .note.GNU-stack,"",@progbits   /* no executable stack */
