#!/usr/bin/env bash
# tests/test_trace.sh TARGET_OR_BIN_DIR TOOLS_DIR — LOOM_TRACE end to end.
#
# TARGET is tests/trace_target.c built (or a directory holding trace_target); TOOLS_DIR holds
# loom-trace-check.py and loom-trace-png.py.
#   1. The checker itself: a hand-written good trace passes (with expectations that hold)
#      and hand-written bad ones fail with the right message: run slices overlapping on one
#      P, one goroutine on two Ps at once, a negative dur, a thread's stamps going back,
#      truncated JSON, a goroutine running before its spawn, a P out of range for --procs,
#      missing fields, an unknown block reason, an empty file, expectations that fail.
#      The PNG tool draws the good trace.
#   2. trace_target with LOOM_PROCS=2 and LOOM_TRACE=<tmp file>: the file must exist and pass
#      the checker with --procs, at least the spawns the program made, spawn/block/unblock/run
#      events, block reasons chan recv, chan send, select, sleep, mutex and waitgroup (the
#      program makes each certain), and a steal event when loom_stats counted steals.  Then
#      it is drawn: a PNG with the right signature, IHDR width and decodable pixels.
#   3. LOOM_TRACE naming a file in a directory that does not exist: the program still runs
#      and exits 0, with a warning about LOOM_TRACE on stderr.
# Exits 77 (skipped) when python3 is missing, except in CI (CI set), where that fails.
set -uo pipefail

usage="usage: test_trace.sh TARGET_OR_BIN_DIR TOOLS_DIR"
target=${1:?$usage}
tools=${2:?$usage}
[ -d "$target" ] && target=$target/trace_target
case $target in */*) ;; *) target=./$target ;; esac
check=$tools/loom-trace-check.py
png=$tools/loom-trace-png.py

# the interpreter itself, not a wrapper in PATH that picks one at each start (pyenv's shim)
py=$(python3 -c 'import sys, json, zlib; print(sys.executable)' 2>/dev/null) || py=
if [ -z "$py" ]; then
    if [ -n "${CI:-}" ]; then
        echo "test_trace: FAIL: python3 is not installed or does not run (the trace tools need it)" >&2
        exit 1
    fi
    echo "test_trace: skipped: python3 is not installed or does not run"
    exit 77
fi
for f in "$target" "$check" "$png"; do
    [ -e "$f" ] || { echo "test_trace: FAIL: $f does not exist" >&2; exit 1; }
done
echo "test_trace: $("$py" --version 2>&1) ($py)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/loom-trace.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() {
    echo "test_trace: FAIL: $*" >&2
    failed=1
}

# ---------------------------------------------------------------- 1: the checker itself

# A small trace that follows the format: two Ps, two threads, every kind of event.
# M1: G1 on P0 spawns G2 and G3, blocks in a channel receive; G2 runs, G1 again until it exits.
# M2: idle, steals G3 onto P1, unblocks G1, blocking call, preempted.
cat >"$tmp/good.json" <<'EOF'
{"traceEvents":[
{"ph":"M","pid":1,"name":"process_name","args":{"name":"loom Ps"}},
{"ph":"M","pid":2,"name":"process_name","args":{"name":"loom threads (Ms)"}},
{"ph":"M","pid":1,"tid":0,"name":"thread_name","args":{"name":"P0"}},
{"ph":"M","pid":1,"tid":1,"name":"thread_name","args":{"name":"P1"}},
{"ph":"M","pid":2,"tid":1,"name":"thread_name","args":{"name":"M1"}},
{"ph":"i","s":"t","cat":"sched","pid":1,"tid":0,"ts":10.000,"name":"spawn","args":{"m":1,"g":1,"new":2}},
{"ph":"i","s":"t","cat":"sched","pid":1,"tid":0,"ts":11.000,"name":"spawn","args":{"m":1,"g":1,"new":3}},
{"ph":"i","s":"t","cat":"sched","pid":1,"tid":0,"ts":20.500,"name":"block","args":{"m":1,"g":1,"reason":"chan recv"}},
{"ph":"X","cat":"run","pid":1,"tid":0,"ts":5.000,"dur":15.500,"name":"G1 main","args":{"m":1,"g":1,"end":"block"}},
{"ph":"M","pid":2,"tid":2,"name":"thread_name","args":{"name":"M2"}},
{"ph":"X","cat":"park","pid":2,"tid":2,"ts":0.500,"dur":11.000,"name":"idle","args":{"m":2}},
{"ph":"i","s":"t","cat":"sched","pid":1,"tid":1,"ts":12.000,"name":"steal","args":{"m":2,"from":0,"n":1,"g":3}},
{"ph":"i","s":"t","cat":"sched","pid":1,"tid":1,"ts":14.000,"name":"unblock","args":{"m":2,"g":1,"by":3}},
{"ph":"X","cat":"run","pid":1,"tid":1,"ts":12.000,"dur":8.000,"name":"G3 odd \"name\" \\ here","args":{"m":2,"g":3,"end":"syscall"}},
{"ph":"X","cat":"syscall","pid":2,"tid":2,"ts":20.000,"dur":5.000,"name":"blocking call","args":{"m":2,"g":3}},
{"ph":"i","s":"t","cat":"sched","pid":1,"tid":1,"ts":28.000,"name":"preempt","args":{"m":2,"g":3,"kind":"async"}},
{"ph":"X","cat":"run","pid":1,"tid":1,"ts":25.000,"dur":3.000,"name":"G3 odd \"name\" \\ here","args":{"m":2,"g":3,"end":"preempt"}},
{"ph":"i","s":"t","cat":"sched","pid":2,"tid":2,"ts":29.000,"name":"unblock","args":{"m":2,"g":2,"by":0}},
{"ph":"X","cat":"run","pid":1,"tid":0,"ts":20.500,"dur":4.500,"name":"G2","args":{"m":1,"g":2,"end":"yield"}},
{"ph":"X","cat":"run","pid":1,"tid":0,"ts":25.000,"dur":5.000,"name":"G1 main","args":{"m":1,"g":1,"end":"exit"}}
]}
EOF

# checker_ok NAME ARGS...: the checker must accept
checker_ok() {
    local name=$1
    shift
    if ! "$py" "$check" "$@" >"$tmp/out" 2>&1; then
        cat "$tmp/out"
        fail "checker: $name: rejected"
    fi
}
# checker_bad NAME REGEX ARGS...: the checker must exit 1 with a FAIL line matching REGEX
checker_bad() {
    local name=$1 re=$2 rc
    shift 2
    "$py" "$check" "$@" >"$tmp/out" 2>&1
    rc=$?
    if [ "$rc" -ne 1 ]; then
        cat "$tmp/out"
        fail "checker: $name: exit status $rc, not 1"
    elif ! grep -Eq -- "FAIL: .*$re" "$tmp/out"; then
        cat "$tmp/out"
        fail "checker: $name: no message matching /$re/"
    else
        echo "test_trace: checker rejects $name: $(grep -m1 'FAIL' "$tmp/out" | cut -c1-150)"
    fi
}

checker_ok "good trace" "$tmp/good.json"
grep -q 'loom-trace-check: ok' "$tmp/out" || fail "checker: good trace: no 'ok' line"
grep -Eq 'Ps 2 .*Ms 2, goroutines seen 3' "$tmp/out" || { cat "$tmp/out"; fail "checker: good trace: wrong summary"; }
checker_ok "good trace with expectations" "$tmp/good.json" --procs 2 --expect-spawns 2 \
    --expect-event spawn --expect-event block --expect-event unblock --expect-event steal \
    --expect-event preempt --expect-event run --expect-event idle --expect-event 'blocking call' \
    --expect-reason 'chan recv'
checker_ok "good trace, P1 a spare P of --procs 1" "$tmp/good.json" --procs 1

# The bad traces: good.json with one piece of text replaced (all made in one python3 run).
"$py" - "$tmp" <<'EOF' || fail "making the bad traces"
import sys
d = sys.argv[1]
good = open(d + "/good.json").read()
bad = [  # name, text in good.json, its replacement
    ("overlap_p", r'"ts":20.500,"dur":4.500,"name":"G2"', r'"ts":19.000,"dur":6.000,"name":"G2"'),
    ("overlap_g", r'"ts":25.000,"dur":3.000,"name":"G3 odd \"name\" \\ here","args":{"m":2,"g":3',
                  r'"ts":25.000,"dur":3.000,"name":"G1","args":{"m":2,"g":1'),
    ("negdur", r'"ts":0.500,"dur":11.000', r'"ts":0.500,"dur":-1.000'),
    ("backwards", r'"ts":14.000,"name":"unblock"', r'"ts":11.900,"name":"unblock"'),
    ("early", r'"ts":11.000,"name":"spawn"', r'"ts":13.000,"name":"spawn"'),
    ("range", r'"tid":1,"ts":12.000,"name":"steal"', r'"tid":4,"ts":12.000,"name":"steal"'),
    ("noend", r',"end":"exit"', r''),
    ("nom", r'{"m":2,"g":3,"kind"', r'{"g":3,"kind"'),
    ("reason", r'chan recv', r'chan rcv'),
]
for name, old, new in bad:
    assert good.count(old) == 1, "%s: %r found %d times in good.json" % (name, old, good.count(old))
    open("%s/%s.json" % (d, name), "w").write(good.replace(old, new))
open(d + "/truncated.json", "w").write(good[:-60])
open(d + "/empty.json", "w").write("")
open(d + "/list.json", "w").write("[]\n")
EOF
checker_bad "run slices overlapping on one P" "P0 runs two goroutines at once" "$tmp/overlap_p.json"
checker_bad "a goroutine on two Ps at once" "goroutine 1 runs twice at once" "$tmp/overlap_g.json"
checker_bad "a negative dur" "negative dur" "$tmp/negdur.json"
checker_bad "a thread's stamps going back" "thread M2's events go back in time" "$tmp/backwards.json"
checker_bad "truncated JSON" "not valid JSON" "$tmp/truncated.json"
checker_bad "a goroutine running before its spawn" "goroutine 3 runs 1.000 us before it is spawned" "$tmp/early.json"
checker_bad "a P out of range" "P 4 out of range for --procs 2" "$tmp/range.json" --procs 2
checker_bad "a run slice without args.end" "missing args.end" "$tmp/noend.json"
checker_bad "an event without args.m" "missing args.m" "$tmp/nom.json"
checker_bad "an unknown block reason" "unknown block reason 'chan rcv'" "$tmp/reason.json"
checker_bad "an empty file" "no trace written" "$tmp/empty.json"
checker_bad "a JSON list" "traceEvents" "$tmp/list.json"
checker_bad "too few spawns" "at least 3 spawn events, found 2" "$tmp/good.json" --expect-spawns 3
checker_bad "a missing event" "expected a 'handoff' event" "$tmp/good.json" --expect-event handoff
checker_bad "a missing block reason" "reason 'sleep'" "$tmp/good.json" --expect-reason sleep

# check_png FILE WIDTH: signature, IHDR first with the width asked for, and the pixels decode
check_png() {
    local f=$1 w=$2 sig ihdr width height
    [ -s "$f" ] || { fail "$f: no PNG written"; return; }
    sig=$(od -An -tx1 -N8 "$f" | tr -d ' \n')
    [ "$sig" = 89504e470d0a1a0a ] || { fail "$f: not a PNG (signature $sig)"; return; }
    ihdr=$(od -An -c -j12 -N4 "$f" | tr -d ' \n')
    [ "$ihdr" = IHDR ] || { fail "$f: first chunk is '$ihdr', not IHDR"; return; }
    width=$(od -An -tu1 -j16 -N4 "$f" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
    height=$(od -An -tu1 -j20 -N4 "$f" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
    [ "$width" -eq "$w" ] || fail "$f: IHDR width $width, not $w"
    [ "$height" -ge 100 ] && [ "$height" -le 4000 ] || fail "$f: IHDR height $height"
    "$py" - "$f" <<'EOF' || fail "$f: the PNG does not decode"
import struct, sys, zlib
d = open(sys.argv[1], "rb").read()
pos, idat, w = 8, b"", None
while pos < len(d):
    n, kind = struct.unpack(">I4s", d[pos:pos + 8])
    body = d[pos + 8:pos + 8 + n]
    assert struct.unpack(">I", d[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body), "bad CRC in %r" % kind
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert (depth, ctype) == (8, 2), "not 8-bit RGB"
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
    if kind == b"IEND":
        break
raw = zlib.decompress(idat)
assert len(raw) == h * (1 + 3 * w), "pixel data is %d bytes, not %d" % (len(raw), h * (1 + 3 * w))
assert len(set(raw[1 + r * (1 + 3 * w):(r + 1) * (1 + 3 * w)] for r in range(h))) > 10, "a blank image"
EOF
    echo "test_trace: $f: PNG ${width}x${height}"
}

if "$py" "$png" "$tmp/good.json" "$tmp/good.png" --width 800 >"$tmp/out" 2>&1; then
    check_png "$tmp/good.png" 800
else
    cat "$tmp/out"
    fail "loom-trace-png.py failed on the good trace"
fi

# ---------------------------------------------------------------- 2: a real trace

trace=$tmp/trace.json
LOOM_PROCS=2 LOOM_TRACE=$trace timeout -k 10 200 "$target" >"$tmp/run.out" 2>"$tmp/run.err"
rc=$?
cat "$tmp/run.out"
if [ "$rc" -ne 0 ]; then
    cat "$tmp/run.err"
    fail "trace_target with LOOM_TRACE exited with status $rc"
fi
line=$(grep -m1 '^trace_target: spawns=' "$tmp/run.out")
spawns=$(sed -n 's/.*spawns=\([0-9]*\).*/\1/p' <<<"$line")
steals=$(sed -n 's/.*steals=\([0-9]*\).*/\1/p' <<<"$line")
procs=$(sed -n 's/.*procs=\([0-9]*\).*/\1/p' <<<"$line")
if [ -z "$spawns" ] || [ -z "$steals" ] || [ -z "$procs" ]; then
    fail "trace_target did not print its counts"
elif [ ! -s "$trace" ]; then
    fail "no trace written: LOOM_TRACE=$trace left $( [ -e "$trace" ] && echo 'an empty file' || echo 'no file')"
else
    echo "test_trace: trace of $(wc -c <"$trace") bytes"
    expect=(--procs "$procs" --expect-spawns "$spawns"
            --expect-event spawn --expect-event block --expect-event unblock --expect-event run
            --expect-reason 'chan recv' --expect-reason 'chan send' --expect-reason select
            --expect-reason sleep --expect-reason mutex --expect-reason waitgroup)
    if [ "$steals" -gt 0 ]; then
        expect+=(--expect-event steal)
    else
        echo "test_trace: loom_stats counted no steals this time: no steal event expected"
    fi
    if "$py" "$check" "$trace" "${expect[@]}" >"$tmp/out" 2>&1; then
        cat "$tmp/out"
    else
        cat "$tmp/out"
        keep=${TMPDIR:-/tmp}/loom-trace-failed.json
        cp "$trace" "$keep" && echo "test_trace: the trace is kept in $keep"
        fail "the trace of trace_target does not pass loom-trace-check.py"
    fi
    if "$py" "$png" "$trace" "$tmp/trace.png" >"$tmp/out" 2>&1; then
        cat "$tmp/out"
        check_png "$tmp/trace.png" 1600
    else
        cat "$tmp/out"
        fail "loom-trace-png.py failed on the trace of trace_target"
    fi
fi

# ---------------------------------------------------------------- 3: a trace file that cannot be created

nodir=$tmp/no/such/dir/trace.json
LOOM_PROCS=2 LOOM_TRACE=$nodir timeout -k 10 200 "$target" >"$tmp/nodir.out" 2>"$tmp/nodir.err"
rc=$?
if [ "$rc" -ne 0 ]; then
    cat "$tmp/nodir.err"
    fail "LOOM_TRACE in a missing directory: trace_target exited with status $rc"
elif ! grep -q '^trace_target: spawns=' "$tmp/nodir.out"; then
    fail "LOOM_TRACE in a missing directory: trace_target did not run to its end"
elif ! grep -q 'LOOM_TRACE' "$tmp/nodir.err"; then
    cat "$tmp/nodir.err"
    fail "LOOM_TRACE in a missing directory: no warning naming LOOM_TRACE on stderr"
else
    echo "test_trace: LOOM_TRACE in a missing directory: $(grep -m1 LOOM_TRACE "$tmp/nodir.err")"
fi
[ -e "$nodir" ] && fail "LOOM_TRACE in a missing directory: a file appeared there"

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "test_trace: ok"
