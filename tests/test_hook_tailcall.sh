#!/usr/bin/env bash
# tests/test_hook_tailcall.sh LIBLOOM_SO HOOK_DYNLIST — libloom_hook tells loom's own calls
# into libc from a program's by the return address: inside loom's code means loom is calling
# (src/hook/hook.c).  A public loom function that ends in a tail call (jmp) to a function the
# hook defines would hand it the *program's* return address, and loom's call would be hooked.
# This checks that no function libloom.so exports jumps to one of the hooked names.
# Exits 77 (skipped) without objdump or nm.
set -uo pipefail
so=${1:?usage: test_hook_tailcall.sh LIBLOOM_SO HOOK_DYNLIST}
list=${2:?usage: test_hook_tailcall.sh LIBLOOM_SO HOOK_DYNLIST}
for tool in objdump nm; do
    command -v "$tool" >/dev/null 2>&1 || { echo "test_hook_tailcall: skipped: no $tool"; exit 77; }
done
# the names between the braces of the dynamic list
hooked=$(sed -e 's|/\*.*\*/||g' -e '/^ *\*/d' -e '/^ *\/\*/d' "$list" | tr -s ' {};\n' '\n' | grep -E '^[A-Za-z_][A-Za-z0-9_]*$' | sort -u)
[ -n "$hooked" ] || { echo "test_hook_tailcall: FAIL: no names in $list"; exit 1; }
exported=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TtWi]$/ {print $3}' | sed 's/@.*//' | sort -u)
# "function target" for every jmp to a symbol
jumps=$(objdump -d --no-show-raw-insn "$so" | awk '
    /^[0-9a-f]+ <[^>]+>:$/ { fn = $2; gsub(/[<>:]/, "", fn); next }
    /\tjmp / && /<[^>]+>$/ { t = $NF; gsub(/[<>]/, "", t); sub(/@.*/, "", t); print fn, t }')
bad=0
while read -r fn target; do
    [ -n "$fn" ] || continue
    if grep -qxF "$target" <<<"$hooked" && grep -qxF "$fn" <<<"$exported"; then
        echo "test_hook_tailcall: FAIL: $fn (exported) tail-calls $target, which libloom_hook defines"
        bad=1
    fi
done <<<"$jumps"
[ $bad -eq 0 ] || exit 1
echo "test_hook_tailcall: ok ($(wc -l <<<"$hooked") hooked names, no exported function of libloom.so jumps to one)"
