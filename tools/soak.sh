#!/usr/bin/env bash
# tools/soak.sh BUILD [RUNS [CHAOS_RUNS]] — the plain suite RUNS times and the suite under chaos
# mode CHAOS_RUNS times (default RUNS; LOOM_CHAOS seeds drawn afresh each run), interleaved
# evenly.  Each failing test is printed
# with its seed and its output kept in BUILD/soak/; the counts are added to
# BUILD/soak-tally.txt, a line per suite run, so runs spread over days add up.  Chaos runs
# scale the million-goroutine tests down, as make test-chaos does.
set -u
build=${1:?usage: tools/soak.sh BUILD [RUNS]}
runs=${2:-20}
chaos_runs=${3:-$runs}
mkdir -p "$build/soak"
tally="$build/soak-tally.txt"
plain_ok=0 plain_bad=0 chaos_ok=0 chaos_bad=0

run_suite() {   # $1: label, $2: LOOM_CHAOS seed or empty; returns ctest's status
    local label=$1 seed=$2 log
    log="$build/soak/$label.log"
    if [ -n "$seed" ]; then
        (cd "$build" && LOOM_CHAOS=$seed LOOM_TEST_SCALE=5 ctest -j 2 --output-on-failure >"soak/$label.log" 2>&1)
    else
        (cd "$build" && ctest -j 2 --output-on-failure >"soak/$label.log" 2>&1)
    fi
    local rc=$?
    if [ $rc -ne 0 ]; then
        echo "FAILED: $label${seed:+ (LOOM_CHAOS=$seed)}: $(grep -E '^\s+[0-9]+ - ' "$log" | tr -s ' ' | tr '\n' ';')"
        echo "        output kept in $log; rerun: cd $build && ${seed:+LOOM_CHAOS=$seed }ctest -R NAME --output-on-failure"
    else
        rm -f "$log"
    fi
    return $rc
}

commit=$(git -C "$(dirname "$0")/.." rev-parse --short HEAD 2>/dev/null || echo '?')
# one tally line per suite run, written as it ends: a soak cut short still counts
tally_line() { echo "$(date -u +%Y-%m-%dT%H:%MZ) $commit plain $1 chaos $2" >>"$tally"; }

chaos_done=0
for i in $(seq 1 "$runs"); do
    if run_suite "plain-$i" ""; then plain_ok=$((plain_ok + 1)); tally_line 1/1 0/0
    else plain_bad=$((plain_bad + 1)); tally_line 0/1 0/0; fi
    # a chaos run whenever the chaos count falls behind its share of the plain count
    if [ $((chaos_done * runs)) -lt $((i * chaos_runs)) ]; then
        chaos_done=$((chaos_done + 1))
        seed=$(( (RANDOM << 15 | RANDOM) % 1000000 + 1 ))
        if run_suite "chaos-$i-seed$seed" "$seed"; then chaos_ok=$((chaos_ok + 1)); tally_line 0/0 1/1
        else chaos_bad=$((chaos_bad + 1)); tally_line 0/0 0/1; fi
    fi
    echo "soak $i/$runs: plain $plain_ok passed, $plain_bad failed; chaos $chaos_ok passed, $chaos_bad failed"
done
awk '{ split($4, p, "/"); split($6, c, "/"); pp += p[1]; pt += p[2]; cp += c[1]; ct += c[2] }
     END { printf "tally (%s): plain suite %d of %d runs passed, chaos %d of %d\n", FILENAME, pp, pt, cp, ct }' "$tally"
echo "$((plain_ok + chaos_ok)) passed, $((plain_bad + chaos_bad)) failed"
[ $((plain_bad + chaos_bad)) -eq 0 ]
