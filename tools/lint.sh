#!/usr/bin/env bash
# tools/lint.sh [BUILD_DIR [JOBS]] — static analysis of the library's sources (make lint).
#
# clang-tidy runs the checks of .clang-tidy on each src/*.c, with the flags of a clang
# configuration in BUILD_DIR (default build-lint; only its compile_commands.json is used,
# nothing is built).  cppcheck then reads src on its own, in every #if configuration.
# Any finding of either fails (exit 1), as does a file that clang-format would change.  A false positive is silenced on its line, with
# the reason: NOLINT(check) / NOLINTNEXTLINE(check) for clang-tidy, a
# "cppcheck-suppress id ; reason" comment on the line before for cppcheck.
set -euo pipefail

cd "$(dirname "$0")/.."
build=${1:-build-lint}
jobs=${2:-$(nproc)}

for tool in cmake clang clang-tidy cppcheck clang-format; do
    command -v "$tool" >/dev/null 2>&1 || { echo "lint: $tool not found" >&2; exit 1; }
done

cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
    -DLOOM_BUILD_TESTS=OFF -DLOOM_BUILD_EXAMPLES=OFF -DLOOM_BUILD_BENCH=OFF >/dev/null

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "---- clang-tidy ($(clang-tidy --version | grep -o 'version [0-9.]*'))"
# One clang-tidy per file, JOBS at a time; each one's output goes to its own file, shown
# afterwards in order (without the "N warnings generated." count of suppressed ones).
printf '%s\n' src/*.c src/hook/*.c | xargs -P "$jobs" -I{} sh -c '
    name=$(basename "$3")
    clang-tidy -p "$1" --quiet --warnings-as-errors="*" "$3" >"$2/$name.out" 2>&1 || : >"$2/$name.failed"
' sh "$build" "$out" {}
tidy_failed=0
for f in src/*.c src/hook/*.c; do
    name=$(basename "$f")
    grep -v '^[0-9]* warnings\{0,1\} generated\.$' "$out/$name.out" || true
    [ -e "$out/$name.failed" ] && tidy_failed=1
done

echo "---- cppcheck ($(cppcheck --version))"
cppcheck_failed=0
cppcheck -q -j "$jobs" --std=c11 --enable=warning,portability,performance --inline-suppr \
    --error-exitcode=1 -I include -I src src || cppcheck_failed=1

echo "---- clang-format (.clang-format: the tree stays formatted)"
format_failed=0
find src include tests examples bench -name '*.[ch]' -print0 |
    xargs -0 clang-format --dry-run -Werror || format_failed=1

if [ "$tidy_failed" -ne 0 ] || [ "$cppcheck_failed" -ne 0 ] || [ "$format_failed" -ne 0 ]; then
    echo "lint: findings above (clang-tidy: $tidy_failed, cppcheck: $cppcheck_failed, clang-format: $format_failed)" >&2
    exit 1
fi
echo "lint: clean"
