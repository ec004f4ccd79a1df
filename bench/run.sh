#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — loom beside Go on the same workloads.
#
# Builds the Go twins (bench/go/<name>) into BUILD_DIR/bench-go/, runs every
# loom/Go pair interleaved BENCH_REPS times (default 3) with LOOM_PROCS/GOMAXPROCS
# as each workload says, prints a table (workload, loom median, Go median,
# loom/Go, spread min–max, target, met/MISSED) and writes bench/results.md and
# bench/results.png (gnuplot).  Installs golang-go, wrk and gnuplot-nox with
# apt-get when missing (as root), else says what it skipped.
#
# Environment:
#   BENCH_REPS=N        runs per implementation and workload (default 3)
#   BENCH_ONLY="a b"    only these runs (names as in the RUNS table, e.g. "skynet pingpong@1")
#   BENCH_NET_SECS=S    seconds per wrk / netclient run (default 5)
#   BENCH_WRK_THREADS=N wrk's threads (default 2, wrk's own default: one wrk thread
#                       saturates a CPU here at ~85k req/s, below 2x Go)
#   BENCH_RESULTS=FILE  where to write the markdown (default bench/results.md);
#                       the chart goes beside it with the extension .png
#   BENCH_NO_INSTALL=1  never call apt-get
#   BENCH_SLOW=S        a workload whose first run took longer than S seconds (either
#                       side; default 40) runs only once more, to keep make bench short
# The C programs themselves must already be built (make bench does that).
set -u
export LC_ALL=C

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
if [ ! -d "$BUILD" ]; then
    echo "run.sh: build directory '$BUILD' does not exist (build the library first: make build)" >&2
    exit 2
fi
BUILD=$(cd "$BUILD" && pwd)
REPS=${BENCH_REPS:-3}
NET_SECS=${BENCH_NET_SECS:-5}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
SLOW=${BENCH_SLOW:-40}
NPROC=$(nproc)
RESULTS_MD=${BENCH_RESULTS:-$SRC/bench/results.md}
RESULTS_PNG=${RESULTS_MD%.md}.png
CBIN=$BUILD/bench
GOBIN=$BUILD/bench-go
WORK=$BUILD/bench-results
mkdir -p "$WORK" "$GOBIN"
rm -f "$WORK"/*.out "$WORK"/*.err "$WORK"/*.log 2>/dev/null

SKIPPED=()   # lines for the report: what was not measured and why
FAILED=()    # lines for the report: runs that failed (wrong answer, crash, timeout)
say() { echo "run.sh: $*"; }
skip() { say "skipped: $*"; SKIPPED+=("$*"); }

# ---------------------------------------------------------------- tools
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v gnuplot >/dev/null 2>&1 || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ]; then
    if [ -z "${BENCH_NO_INSTALL:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing ${need[*]} with apt-get"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } \
               >"$WORK/apt.log" 2>&1; then
            say "apt-get install ${need[*]} failed (see $WORK/apt.log)"
        fi
    else
        say "missing ${need[*]} and cannot install them (needs root and apt-get)"
    fi
fi
HAVE_GO=0; command -v go >/dev/null 2>&1 && HAVE_GO=1
HAVE_WRK=0; command -v wrk >/dev/null 2>&1 && HAVE_WRK=1
HAVE_GNUPLOT=0; command -v gnuplot >/dev/null 2>&1 && HAVE_GNUPLOT=1
[ $HAVE_GO = 1 ] || skip "Go twins: go not installed (apt-get install golang-go)"
[ $HAVE_GNUPLOT = 1 ] || skip "chart: gnuplot not installed (apt-get install gnuplot-nox)"

# ---------------------------------------------------------------- Go twins
GO_BUILT=" "
if [ $HAVE_GO = 1 ]; then
    # No dependencies: never touch the network; work without $HOME (CI).
    export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local GO111MODULE=on
    [ -n "${HOME:-}" ] || export GOCACHE=${GOCACHE:-$GOBIN/.cache} GOPATH=${GOPATH:-$GOBIN/.gopath}
    for d in "$SRC"/bench/go/*/; do
        name=$(basename "$d")
        [ "$name" = internal ] && continue
        if (cd "$SRC/bench/go" && go build -o "$GOBIN/$name" "./$name") >"$WORK/go-build-$name.log" 2>&1; then
            GO_BUILT+="$name "
        else
            say "go build $name failed:"; cat "$WORK/go-build-$name.log"
            FAILED+=("go build $name failed")
        fi
    done
    say "built Go twins into $GOBIN:$GO_BUILT"
fi

# ---------------------------------------------------------------- runs
# name        program     procs  timeout(s)  kind
#   kind: pair (C + Go twin), c (C only: physical limits), wrk / netclient (servers),
#         wrkc (a C-only server under wrk: a physical limit)
RUNS="
yield@1       yield       1     120   pair
pingpong@1    pingpong    1     120   pair
pingpong@all  pingpong    all   120   pair
threadring    threadring  all   180   pair
skynet        skynet      all   180   pair
sieve         sieve       all   180   pair
spawn         spawn       all   240   pair
timers        timers      all   240   pair
preempt@1     preempt     1     120   pair
prio          prio        all   180   pair
prio@pin      prio        all   180   pair
syscall@1     syscall     1     120   pair
fanout        fanout      all   180   pair
mutex         mutex       all   180   pair
httpd         httpd       all   0     wrk
httpd-epoll   epoll_loop  1     0     wrkc
httpd-lc      httpd       all   0     netclient
echo          echo        all   0     netclient
swap          swap        1     60    c
cacheline     cacheline   2     60    c
"

# Rows of the table: run | metric | label | better (lower/higher) | target (kind:value:text)
ROWS="
yield@1      | ns_per_switch     | yield: switch at 1 P          | lower  | le:20:≤ 20 ns
pingpong@1   | ns_per_roundtrip  | pingpong: round trip, 1 P     | lower  |
pingpong@all | ns_per_roundtrip  | pingpong: round trip, all Ps  | lower  | le:80:≤ 80 ns
threadring   | ns_per_pass       | threadring: token pass        | lower  |
skynet       | ms                | skynet: 1M goroutines         | lower  | le:300:≤ 300 ms
skynet       | peak_rss_mib      | skynet: peak RSS              | lower  |
sieve        | ms                | sieve: 2000 primes            | lower  |
spawn        | ns_per_spawn      | spawn: 1M parked              | lower  | ltgo::faster than Go
spawn        | kib_per_goroutine | spawn: RSS per goroutine      | lower  | le:4.5:≤ 4.5 KiB
spawn        | ns_per_release    | spawn: release per goroutine  | lower  |
spawn        | peak_rss_mib      | spawn: peak RSS               | lower  |
timers       | total_ms          | timers: 1M sleepers, total    | lower  | le:1300:≤ 1.3 s
timers       | worst_late_ms     | timers: worst lateness        | lower  | le:20:≤ 20 ms
timers       | peak_rss_mib      | timers: peak RSS              | lower  |
preempt@1    | worst_ms          | preempt: worst 1 ms wake-up   | lower  | le:3:≤ 3 ms
preempt@1    | p50_ms            | preempt: median 1 ms wake-up  | lower  |
prio         | worst_ms          | prio: worst 1 ms wake-up      | lower  | le:1:≤ 1 ms
prio         | p50_ms            | prio: median 1 ms wake-up     | lower  |
prio@pin     | worst_ms          | prio, LOOM_PIN=1: worst       | lower  | le:1:≤ 1 ms
prio@pin     | p50_ms            | prio, LOOM_PIN=1: median      | lower  |
syscall@1    | progress_ratio    | syscall: progress vs. no block| higher |
syscall@1    | worst_gap_ms      | syscall: worst stall          | lower  |
fanout       | ms_1p             | fanout: fib(35), 1 P          | lower  |
fanout       | ms                | fanout: fib(35), all Ps       | lower  |
fanout       | speedup           | fanout: speedup 1 P → all     | higher |
mutex        | ns_per_cs         | mutex: 100 contenders         | lower  |
httpd        | req_per_s         | httpd (wrk): throughput       | higher | gego:2:≥ 2× Go
httpd        | p50_ms            | httpd (wrk): p50 latency      | lower  |
httpd        | p99_ms            | httpd (wrk): p99 latency      | lower  |
httpd-epoll  | req_per_s         | limit: 1-thread epoll loop (wrk)| higher |
httpd-epoll  | p99_ms            | limit: epoll loop p99 (wrk)   | lower  |
httpd-lc     | req_per_s         | httpd (netclient): throughput | higher |
httpd-lc     | p50_ms            | httpd (netclient): p50 latency| lower  |
httpd-lc     | p99_ms            | httpd (netclient): p99 latency| lower  |
echo         | req_per_s         | echo (netclient): throughput  | higher |
echo         | p50_ms            | echo (netclient): p50 latency | lower  |
echo         | p99_ms            | echo (netclient): p99 latency | lower  |
swap         | ns_per_switch     | limit: raw register swap      | lower  |
cacheline    | ns_per_roundtrip  | limit: cache line ping-pong   | lower  |
"

declare -A VALS   # "impl|run|metric" -> space-separated values
declare -A BAD    # "impl|run" -> why it failed / was skipped
declare -A UNIT   # "run|metric" -> unit
declare -A NRUNS  # "impl|run" -> runs that gave a result
LAST_SECS=0       # wall time of the last run_one / run_server

selected() {
    [ -z "${BENCH_ONLY:-}" ] && return 0
    local w
    for w in $BENCH_ONLY; do
        [ "$w" = "$1" ] || [ "$w" = "${1%@*}" ] && return 0
    done
    return 1
}

procs_of() { if [ "$1" = all ]; then echo "$NPROC"; else echo "$1"; fi; }

# collect IMPL RUN FILE: parses RESULT lines into VALS.
collect() {
    local impl=$1 run=$2 file=$3 line metric value unit n=0
    while read -r line; do
        metric=$(sed -n 's/.* metric=\([^ ]*\).*/\1/p' <<<"$line")
        value=$(sed -n 's/.* value=\([^ ]*\).*/\1/p' <<<"$line")
        unit=$(sed -n 's/.* unit=\([^ ]*\).*/\1/p' <<<"$line")
        [ -n "$metric" ] && [ -n "$value" ] || continue
        VALS["$impl|$run|$metric"]+="$value "
        UNIT["$run|$metric"]=$unit
        n=$((n + 1))
    done < <(grep '^RESULT ' "$file")
    [ $n -gt 0 ]
}

# run_one IMPL RUN REP PROGRAM PROCS TIMEOUT
run_one() {
    local impl=$1 run=$2 rep=$3 prog=$4 procs=$5 tmo=$6 bin rc
    [ -z "${BAD[$impl|$run]:-}" ] || return 0      # failed before: don't retry
    if [ "$impl" = loom ]; then bin=$CBIN/bench_$prog; else bin=$GOBIN/$prog; fi
    local out=$WORK/$impl-$run-$rep.out err=$WORK/$impl-$run-$rep.err t0=$SECONDS
    # a run named NAME@pin pins loom's P threads to their CPUs (Go cannot)
    local pin=0
    [[ $run = *@pin ]] && pin=1
    LOOM_PIN=$pin LOOM_PROCS=$procs GOMAXPROCS=$procs timeout -k 5 "$tmo" "$bin" </dev/null >"$out" 2>"$err"
    rc=$?
    LAST_SECS=$((SECONDS - t0))
    if [ $rc -eq 0 ] && collect "$impl" "$run" "$out"; then
        NRUNS["$impl|$run"]=$(( ${NRUNS[$impl|$run]:-0} + 1 ))
    else
        local why="exit $rc"
        [ $rc = 124 ] && why="timed out after ${tmo}s"
        BAD["$impl|$run"]="$why"
        FAILED+=("$impl $run: $why: $(grep -m1 -E 'FAIL|fatal' "$err" || tail -n1 "$err")")
        say "FAILED $impl $run ($why); stderr:"; tail -n 5 "$err" | sed 's/^/    /'
    fi
}

# ---- servers
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 12000))   # below the ephemeral range (32768-): no client socket holds it
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    echo 18080
}

wait_port() {  # wait_port PORT PID: until it accepts (10 s)
    for _ in $(seq 100); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
        SERVER_PID=
    fi
}
trap 'stop_server' EXIT

# One HTTP GET over bash's /dev/tcp: the server must answer 200 with a body.
http_check() {
    local resp
    resp=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"
        printf "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3
        cat <&3' _ "$1" 2>/dev/null)
    grep -q '^HTTP/1\.[01] 200' <<<"$resp"
}

to_ms() {  # wrk latency "123.45us" / "1.2ms" / "1.5s" -> ms
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0;
                           else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

# run_server IMPL RUN REP PROGRAM PROCS KIND
run_server() {
    local impl=$1 run=$2 rep=$3 prog=$4 procs=$5 kind=$6 bin port
    [ -z "${BAD[$impl|$run]:-}" ] || return 0
    if [ "$kind" = wrkc ]; then bin=$CBIN/bench_$prog
    elif [ "$impl" = loom ]; then bin=$BUILD/examples/$prog; else bin=$GOBIN/$prog; fi
    local out=$WORK/$impl-$run-$rep.out err=$WORK/$impl-$run-$rep.err log=$WORK/$impl-$run-$rep.log
    port=$(free_port)
    # The server gets the port as its first argument and in $PORT.
    PORT=$port LOOM_PROCS=$procs GOMAXPROCS=$procs "$bin" "$port" </dev/null >"$log" 2>&1 &
    SERVER_PID=$!
    if ! wait_port "$port" "$SERVER_PID"; then
        BAD["$impl|$run"]="server did not listen on port $port"
        FAILED+=("$impl $run: server did not listen on port $port: $(tail -n1 "$log")")
        say "FAILED $impl $run: server did not listen on $port"; tail -n 5 "$log" | sed 's/^/    /'
        stop_server; return
    fi
    local ok=1 why=
    if [ "$kind" = wrk ] || [ "$kind" = wrkc ]; then
        if ! http_check "$port"; then
            ok=0; why="no 200 answer to GET /"
        else
            LOOM_PROCS=$procs timeout -k 5 $((NET_SECS + 60)) \
                wrk -t"$WRK_THREADS" -c64 -d"${NET_SECS}s" --latency "http://127.0.0.1:$port/" </dev/null >"$err" 2>&1
            local rps p50 p99 non2xx
            rps=$(awk '/^Requests\/sec:/ { print $2 }' "$err")
            p50=$(awk '$1 == "50%" { print $2 }' "$err")
            p99=$(awk '$1 == "99%" { print $2 }' "$err")
            non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$err")
            if [ -z "$rps" ] || [ -z "$p50" ] || [ -z "$p99" ]; then
                ok=0; why="wrk gave no result"
            elif [ -n "$non2xx" ] && [ "$non2xx" != 0 ]; then
                ok=0; why="$non2xx responses were not 2xx"
            else
                {
                    echo "RESULT name=httpd metric=req_per_s value=$rps unit=req/s procs=$procs"
                    echo "RESULT name=httpd metric=p50_ms value=$(to_ms "$p50") unit=ms procs=$procs"
                    echo "RESULT name=httpd metric=p99_ms value=$(to_ms "$p99") unit=ms procs=$procs"
                } >"$out"
                grep -q 'Socket errors' "$err" && say "note: $impl $run: wrk $(grep 'Socket errors' "$err")"
            fi
        fi
    else
        local mode=echo
        [ "$prog" = httpd ] && mode=http
        LOOM_PROCS=$procs timeout -k 5 $((NET_SECS + 60)) "$CBIN/bench_netclient" --name="$prog" --mode=$mode \
            --port="$port" --duration_ms=$((NET_SECS * 1000)) </dev/null >"$out" 2>"$err" || { ok=0; why="netclient: $(tail -n1 "$err")"; }
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        ok=0; why="${why:+$why; }the server died: $(tail -n1 "$log")"
    fi
    stop_server
    if [ $ok = 1 ] && collect "$impl" "$run" "$out"; then
        NRUNS["$impl|$run"]=$(( ${NRUNS[$impl|$run]:-0} + 1 ))
        return
    fi
    BAD["$impl|$run"]="${why:-no result}"
    FAILED+=("$impl $run: ${why:-no result}")
    say "FAILED $impl $run: ${why:-no result}"
}

# ---------------------------------------------------------------- measure
T_START=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
while read -r -u 9 run prog procs tmo kind; do
    [ -n "$run" ] || continue
    selected "$run" || continue
    p=$(procs_of "$procs")
    impls="loom go"
    case $kind in
        c|wrkc) impls=loom ;;
    esac
    # what can run at all
    if [ "$kind" = c ] || [ "$kind" = pair ] || [ "$kind" = wrkc ]; then
        [ -x "$CBIN/bench_$prog" ] || { BAD["loom|$run"]="not built"; skip "$run (loom): $CBIN/bench_$prog not built"; }
    elif [ ! -x "$BUILD/examples/$prog" ]; then
        BAD["loom|$run"]="not built"; skip "examples/$prog not built (loom side of $run)"
    fi
    if [ "$kind" != c ] && [ "$kind" != wrkc ]; then
        if [ $HAVE_GO = 0 ] || [[ "$GO_BUILT" != *" $prog "* ]]; then BAD["go|$run"]="not built"; fi
    fi
    if [[ $kind = wrk* ]] && [ $HAVE_WRK = 0 ]; then
        BAD["loom|$run"]="no wrk"; BAD["go|$run"]="no wrk"; skip "$run: wrk not installed (apt-get install wrk)"
    fi
    if [ "$kind" = netclient ] && [ ! -x "$CBIN/bench_netclient" ]; then
        BAD["loom|$run"]="no netclient"; BAD["go|$run"]="no netclient"; skip "$run: bench_netclient not built"
    fi
    say "running $run ($impls; procs=$p; $REPS times)"
    reps=$REPS
    for ((rep = 1; rep <= reps; rep++)); do
        order=$impls
        [ $((rep % 2)) = 0 ] && [ "$impls" = "loom go" ] && order="go loom"   # alternate who goes first
        slowest=0
        for impl in $order; do
            LAST_SECS=0
            case $kind in
                pair|c) run_one "$impl" "$run" "$rep" "$prog" "$p" "$tmo" ;;
                *)      run_server "$impl" "$run" "$rep" "$prog" "$p" "$kind" ;;
            esac
            [ "$LAST_SECS" -gt "$slowest" ] && slowest=$LAST_SECS
        done
        if [ "$rep" = 1 ] && [ "$slowest" -gt "$SLOW" ] && [ "$reps" -gt 2 ]; then
            reps=2
            say "$run: a run took ${slowest}s (> BENCH_SLOW=${SLOW}s): 2 runs per side only"
            SKIPPED+=("$run: runs 3 to $REPS per side (a run took ${slowest}s > BENCH_SLOW=${SLOW}s); medians of 2")
        fi
    done
done 9<<<"$RUNS"
T_END=$(date +%s)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
stats() {  # stats "v1 v2 ..." -> "median min max" or empty
    [ -n "${1// /}" ] || return 0
    tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
}
fmt() {  # a number for humans
    awk -v v="$1" 'BEGIN { a = v < 0 ? -v : v;
        if (a >= 1000) printf "%.0f", v; else if (a >= 100) printf "%.1f", v;
        else if (a >= 1) printf "%.2f", v; else printf "%.3f", v }'
}

TABLE_MD=$WORK/table.md
CHART_DAT=$WORK/ratios.dat
: >"$CHART_DAT"
{
    echo "| workload | metric | loom median | Go median | loom/Go | loom spread (min–max) | Go spread (min–max) | target | status |"
    echo "|---|---|---:|---:|---:|---|---|---|---|"
} >"$TABLE_MD"
printf '\n%-32s %12s %12s %8s  %-21s %-21s %-16s %s\n' workload "loom median" "Go median" loom/Go "loom spread" "Go spread" target status
MET=0; MISSED=0
while IFS='|' read -r run metric label better target; do
    run=$(xargs <<<"$run"); metric=$(xargs <<<"$metric"); better=$(xargs <<<"$better")
    label=$(sed 's/^ *//; s/ *$//' <<<"$label"); target=$(sed 's/^ *//; s/ *$//' <<<"$target")
    [ -n "$run" ] || continue
    selected "$run" || continue
    unit=${UNIT[$run|$metric]:-}
    read -r lm lmin lmax <<<"$(stats "${VALS[loom|$run|$metric]:-}")"
    read -r gm gmin gmax <<<"$(stats "${VALS[go|$run|$metric]:-}")"
    L="—"; G="—"; R="—"; LS="—"; GS="—"
    if [ -n "${lm:-}" ]; then L="$(fmt "$lm") $unit"; LS="$(fmt "$lmin")–$(fmt "$lmax")"
    elif [ -n "${BAD[loom|$run]:-}" ]; then L="${BAD[loom|$run]}"; fi
    if [ -n "${gm:-}" ]; then G="$(fmt "$gm") $unit"; GS="$(fmt "$gmin")–$(fmt "$gmax")"
    elif grep -q ' c$' <<<"$(grep "^$run " <<<"$RUNS")"; then G="(no twin)"
    elif [ -n "${BAD[go|$run]:-}" ]; then G="${BAD[go|$run]}"; fi
    if [ -n "${lm:-}" ] && [ -n "${gm:-}" ] && awk -v g="$gm" 'BEGIN { exit !(g != 0) }'; then
        R=$(awk -v l="$lm" -v g="$gm" 'BEGIN { printf "%.2f", l / g }')
        # chart: loom's advantage, > 1 = loom better, whichever way the metric points
        adv=$(awk -v l="$lm" -v g="$gm" -v b="$better" 'BEGIN { if (l <= 0 || g <= 0) exit 1;
              printf "%.4f", (b == "higher") ? l / g : g / l }') && printf '"%s" %s\n' "$label" "$adv" >>"$CHART_DAT"
    fi
    T="—"; S="—"
    if [ -n "$target" ]; then
        tk=${target%%:*}; rest=${target#*:}; tv=${rest%%:*}; T=${rest#*:}
        if [ -z "${lm:-}" ]; then
            case ${BAD[loom|$run]:-} in
                "not built"|"no wrk"|"no netclient"|"") S="not measured" ;;
                *) S="MISSED (run failed)"; MISSED=$((MISSED + 1)) ;;
            esac
        else
            case $tk in
                le)   ok=$(awk -v l="$lm" -v t="$tv" 'BEGIN { print (l <= t) }') ;;
                ge)   ok=$(awk -v l="$lm" -v t="$tv" 'BEGIN { print (l >= t) }') ;;
                ltgo) ok=$( [ -n "${gm:-}" ] && awk -v l="$lm" -v g="$gm" 'BEGIN { print (l < g) }' || echo x) ;;
                gego) ok=$( [ -n "${gm:-}" ] && awk -v l="$lm" -v g="$gm" -v t="$tv" 'BEGIN { print (l >= t * g) }' || echo x) ;;
                *)    ok=x ;;
            esac
            case $ok in
                1) S=met; MET=$((MET + 1)) ;;
                0) S=MISSED; MISSED=$((MISSED + 1)) ;;
                *) S="MISSED (no Go result)"; MISSED=$((MISSED + 1)) ;;
            esac
        fi
    fi
    printf '%-32s %12s %12s %8s  %-21s %-21s %-16s %s\n' "$label" "$L" "$G" "$R" "$LS" "$GS" "$T" "$S"
    echo "| $label | $metric | $L | $G | $R | $LS | $GS | $T | $S |" >>"$TABLE_MD"
done <<<"$ROWS"
echo

# ---- chart
CHART_OK=0
if [ $HAVE_GNUPLOT = 1 ] && [ -s "$CHART_DAT" ]; then
    cat >"$WORK/chart.gp" <<EOF
set terminal pngcairo size 1200,620 font "sans,10"
set output "$RESULTS_PNG"
set title "loom vs Go $(go version 2>/dev/null | awk '{ print $3 }' | sed 's/^go//') on $NPROC CPUs: loom's advantage (Go ÷ loom for times, loom ÷ Go for rates; > 1 = loom better)"
set style fill solid 0.85 border -1
set logscale y 2
set yrange [0.0625:64]
set ytics ("1/16" 0.0625, "1/8" 0.125, "1/4" 0.25, "1/2" 0.5, "1" 1, "2" 2, "4" 4, "8" 8, "16" 16, "32" 32, "64" 64)
set ylabel "× (log scale)"
set grid ytics
set offsets 0.6, 0.6, 0, 0
set xtics rotate by -35 left font ",9"
set bmargin 11
set rmargin 12
set key off
clip(v) = v > 64 ? 64 : (v < 0.0625 ? 0.0625 : v)
# bars grow from 1 (parity) up to loom's advantage or down to its disadvantage
plot "$CHART_DAT" using 0:(clip(\$2)):(\$0 - 0.35):(\$0 + 0.35):(clip(\$2) < 1 ? clip(\$2) : 1):(clip(\$2) < 1 ? 1 : clip(\$2)):(\$2 >= 1 ? 0x3b9c5a : 0xd0503c):xtic(1) \
         with boxxyerror lc rgb variable, \
     1 with lines lc rgb "black" lw 1.5
EOF
    if gnuplot "$WORK/chart.gp" >"$WORK/gnuplot.log" 2>&1; then CHART_OK=1
    else say "gnuplot failed:"; cat "$WORK/gnuplot.log"; fi
fi

# ---- results.md
CC_VER=$( (${CC:-cc} --version 2>/dev/null || gcc --version) | head -n1)
GO_VER=$(go version 2>/dev/null || echo "not installed")
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
MEM=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
{
    echo "# loom benchmarks"
    echo
    echo "Generated by \`bench/run.sh\` (\`make bench\`) on $(date -u '+%Y-%m-%d %H:%M UTC'); $REPS runs per"
    echo "implementation and workload, loom and Go interleaved; medians, with the spread (min–max)."
    echo
    echo "| machine | |"
    echo "|---|---|"
    echo "| nproc | $NPROC |"
    echo "| CPU | ${CPU:-?} |"
    echo "| memory | ${MEM:-?} |"
    echo "| kernel | $(uname -sr) |"
    echo "| go | $GO_VER |"
    echo "| cc | $CC_VER |"
    echo "| wrk | $( [ $HAVE_WRK = 1 ] && wrk --version 2>&1 | head -n1 | awk '{ print $1, $2 }' || echo "not installed") |"
    echo "| loom build | $(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null) |"
    echo "| wall time of the runs | $((T_END - T_START)) s |"
    echo "| load average before / after | $LOAD_BEFORE / $LOAD_AFTER |"
    echo
    echo "\"all Ps\" is LOOM_PROCS = GOMAXPROCS = $NPROC; \"1 P\" is 1. **loom/Go** is the ratio of the medians:"
    echo "below 1 is better for times, latencies and memory, above 1 for req/s, speedup and progress."
    echo "Targets are checked against loom's median. Physical limits have no Go twin."
    echo
    cat "$TABLE_MD"
    echo
    echo "Targets: $MET met, $MISSED missed."
    if [ $CHART_OK = 1 ]; then
        echo
        echo "![loom's advantage over Go per workload, log scale](results.png)"
    fi
    echo
    echo "## Workloads"
    echo
    echo "Each is \`bench/<name>.c\` (loom) beside \`bench/go/<name>/main.go\` (Go): same parameters, same"
    echo "output, each checks its own answer and exits non-zero on a wrong one."
    echo
    echo "- **yield**: two goroutines, loom_yield / runtime.Gosched at 1 P; ns per switch."
    echo "- **pingpong**: an int64 sent over an unbuffered channel and sent back + 1; ns per round trip."
    echo "- **threadring**: 503 goroutines in a ring of unbuffered channels, 10M token passes; ns per pass."
    echo "- **skynet**: 1M leaf goroutines in a 10-ary tree (1,111,111 in all), sums over unbuffered channels; must be 499999500000."
    echo "- **sieve**: the concurrent prime sieve, a filter goroutine per prime, to the 2000th prime (17389)."
    echo "- **spawn**: 1M goroutines each signalling a WaitGroup and parking on one channel, then released by closing it; ns per spawn"
    echo "  (spawn until all are parked), RSS per goroutine = growth of getrusage ru_maxrss over that phase / 1M."
    echo "- **timers**: 1M goroutines sleeping 1..1000 ms (the same splitmix64 durations in both); total time, worst lateness."
    echo "- **preempt**: a goroutine spinning on a relaxed atomic load (no calls) beside one sleeping 1 ms 100 times, at 1 P."
    echo "- **prio**: 100 goroutines per P spinning without calls (loom: LOOM_PRIO_LOW) beside one sleeping 1 ms 1000 times (30 s at most)"
    echo "  (loom: LOOM_PRIO_HIGH; Go has no priorities: the same workload at one level), at all Ps; lateness of the wake-ups."
    echo "  **prio@pin** is the same with LOOM_PIN=1 (each P's thread pinned to its CPU; the Go side is unchanged): this VM's kernel"
    echo "  (kernel.sched_vcpu_pack) was seen leaving one vCPU idle for milliseconds while runnable threads waited on the other."
    echo "- **syscall**: at 1 P, a goroutine blocks 200 ms in a plain blocking read() on a pipe (loom: not wrapped in"
    echo "  loom_block_begin/end; Go: syscall.Read); the ratio of another goroutine's work in those 200 ms to a run without the blocker."
    echo "- **fanout**: fib(35) forking a goroutine per split while n > 20, joined over a 1-slot channel; 1 P and all Ps"
    echo "  (loom: each in its own forked process; Go: GOMAXPROCS changed in-process); one warm-up run each."
    echo "  The serial leaves are compiled by cc -O2 on one side and by Go on the other, so the ms rows compare"
    echo "  compilers as much as schedulers; the speedup row is the scheduler's figure."
    echo "- **mutex**: 100 goroutines × 50,000 lock/increment/unlock of one mutex at all Ps; ns per critical section."
    echo "- **httpd**: examples/httpd.c vs. a net/http hello server, driven by \`wrk -t$WRK_THREADS -c64 -d${NET_SECS}s --latency\`"
    echo "  and by bench_netclient --mode=http (loom: 64 keep-alive connections, one GET at a time, every answer checked)."
    echo "- **echo**: examples/echo.c vs. a Go TCP echo server, driven by bench_netclient (loom): 64 connections,"
    echo "  64-byte messages one at a time for ${NET_SECS} s, every echo checked."
    echo "- **limits**: bench/swap.c swaps callee-saved registers and the stack pointer in a few lines of assembly;"
    echo "  bench/cacheline.c bounces one cache line between two pinned pthreads."
    if [ ${#SKIPPED[@]} -gt 0 ] || [ ${#FAILED[@]} -gt 0 ]; then
        echo
        echo "## Skipped and failed"
        echo
        for s in "${SKIPPED[@]}"; do echo "- skipped: $s"; done
        for s in "${FAILED[@]}"; do echo "- FAILED: $s"; done
    fi
} >"$RESULTS_MD"
say "wrote $RESULTS_MD$( [ $CHART_OK = 1 ] && echo " and $RESULTS_PNG")"
for s in "${SKIPPED[@]}"; do say "skipped: $s"; done
for s in "${FAILED[@]}"; do say "FAILED: $s"; done
say "targets: $MET met, $MISSED missed; runs took $((T_END - T_START)) s"
# Failed runs (wrong answers, crashes, hangs) fail make bench; missed targets do not.
[ ${#FAILED[@]} -eq 0 ]
