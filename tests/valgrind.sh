#!/usr/bin/env bash
# tests/valgrind.sh BUILD_DIR — runs a subset of the test programs under valgrind (memcheck).
#
# Each test in TESTS below runs with LOOM_TEST_SCALE=50 (shrunk workloads: valgrind is slow)
# and LOOM_PROCS=2 under
#   valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --quiet
# with a time limit per test (LOOM_VALGRIND_TIMEOUT seconds, default 300).  A test fails on
# any memcheck error, a definite leak, its own failure, or the time limit.  Tests not built
# (yet) are skipped with a note.  Ends with "valgrind: N passed, M failed[, K skipped]" and
# exits non-zero when any failed or none ran.
set -uo pipefail

# The subset: add names here (the program names in BUILD_DIR, from tests/NAME.c).
TESTS=(
    test_chan_basic
    test_chan_close
    test_select
    test_mutex
    test_waitgroup
    test_runtime
)

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BUILD_DIR   (a built loom tree holding the test programs)" >&2
    exit 2
fi
build=$1
limit=${LOOM_VALGRIND_TIMEOUT:-300}

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind: FAIL: valgrind is not installed (CI installs it in .ci/run)" >&2
    exit 1
fi

log=$(mktemp "${TMPDIR:-/tmp}/loom-valgrind.XXXXXX")
trap 'rm -f "$log"' EXIT

passed=0 failed=0 skipped=0
failures=()
for t in "${TESTS[@]}"; do
    exe=$build/$t
    if [ ! -x "$exe" ]; then
        echo "valgrind: note: $t is not built in $build, skipped"
        skipped=$((skipped + 1))
        continue
    fi
    start=$(date +%s)
    rc=0
    LOOM_TEST_SCALE=50 LOOM_PROCS=2 timeout -k 10 "$limit" \
        valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --quiet \
        "$exe" >"$log" 2>&1 || rc=$?
    secs=$(( $(date +%s) - start ))
    if [ "$rc" -eq 0 ]; then
        echo "valgrind: ok   $t (${secs}s)"
        passed=$((passed + 1))
    else
        case $rc in
        124|137) why="timed out after ${limit}s" ;;
        *)       why="exit status $rc" ;;
        esac
        echo "valgrind: FAIL $t: $why (${secs}s); last output:"
        tail -n 60 "$log" | sed 's/^/    /'
        failed=$((failed + 1))
        failures+=("$t")
    fi
done

if [ "$failed" -gt 0 ]; then
    echo "valgrind: failed: ${failures[*]}"
fi
line="valgrind: $passed passed, $failed failed"
if [ "$skipped" -gt 0 ]; then line+=", $skipped skipped"; fi
echo "$line"

if [ "$failed" -gt 0 ]; then exit 1; fi
if [ "$passed" -eq 0 ]; then
    echo "valgrind: FAIL: no test ran (is $build built, and is the list in $0 current?)" >&2
    exit 1
fi
exit 0
