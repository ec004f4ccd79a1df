#!/usr/bin/env bash
# tests/test_httpd_curl.sh HTTPD — examples/httpd driven by a real client, curl.
#
# Starts HTTPD on a free port (it prints "httpd: listening on 127.0.0.1:PORT"), then:
#   1. one curl with several URLs (GET /, /missing, / again, /?q): one connection reused
#      for all (keep-alive), each status and body checked;
#   2. HEAD (-I), POST (405 with Allow), HTTP/1.0 (closed after the answer), and
#      "Connection: close";
#   3. 20 curls at once, 10 URLs each.
# Then SIGTERM: the server must exit with status 0.  Exits 77 (skipped) without curl.
set -uo pipefail

httpd=${1:?usage: test_httpd_curl.sh PATH_TO_HTTPD}
if ! command -v curl >/dev/null 2>&1; then
    echo "test_httpd_curl: skipped: curl is not installed (.ci/run installs it)"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/loom-httpd-curl.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "test_httpd_curl: FAIL: $*" >&2
    [ -s "$tmp/server.err" ] && { echo "---- server stderr:" >&2; cat "$tmp/server.err" >&2; }
    exit 1
}

"$httpd" 0 >"$tmp/server.out" 2>"$tmp/server.err" &
pid=$!
port=
for _ in $(seq 600); do      # up to 60 s
    port=$(sed -n 's/^httpd: listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$tmp/server.out")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "httpd exited before listening"
    sleep 0.1
done
[ -n "$port" ] || fail "httpd printed no listening line within 60 s"
base=http://127.0.0.1:$port
CURL=(curl -sS --http1.1 --max-time 60)

# check WHAT GOT WANT
check() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }

# ---- 1. several URLs in one curl: one connection, reused (num_connects 1, then 0)
out=$("${CURL[@]}" -w '[%{http_code} %{num_connects}]\n' \
      "$base/" "$base/missing" "$base/" "$base/?q=1") || fail "curl (keep-alive) failed"
want=$(printf 'Hello, World!\n[200 1]\nNot Found\n[404 0]\nHello, World!\n[200 0]\nHello, World!\n[200 0]')
check "GET / /missing / /?q=1 on one connection" "$out" "$want"

# ---- 2. HEAD, POST, HTTP/1.0, Connection: close
hdr=$("${CURL[@]}" -I "$base/" | tr -d '\r') || fail "curl -I failed"
grep -qx 'HTTP/1.1 200 OK' <<<"$hdr" || fail "HEAD /: status: $hdr"
grep -qx 'Content-Length: 14' <<<"$hdr" || fail "HEAD /: no Content-Length: 14: $hdr"
grep -qx 'Content-Type: text/plain; charset=utf-8' <<<"$hdr" || fail "HEAD /: Content-Type: $hdr"
grep -q '^Date: ..., [0-9][0-9] ... [0-9]\{4\} [0-9:]\{8\} GMT$' <<<"$hdr" || fail "HEAD /: Date: $hdr"

out=$("${CURL[@]}" -D "$tmp/h" -d 'a=1' -w '[%{http_code}]' "$base/") || fail "curl POST failed"
check "POST /" "$out" "$(printf 'Method Not Allowed\n[405]')"
grep -qx 'Allow: GET, HEAD' <(tr -d '\r' <"$tmp/h") || fail "POST /: no Allow header: $(cat "$tmp/h")"

out=$(curl -sS --http1.0 --max-time 60 -D "$tmp/h" -w '[%{http_code}]' "$base/") || fail "curl --http1.0 failed"
check "HTTP/1.0 GET /" "$out" "$(printf 'Hello, World!\n[200]')"
grep -qix 'Connection: close' <(tr -d '\r' <"$tmp/h") || fail "HTTP/1.0: no Connection: close: $(cat "$tmp/h")"

out=$("${CURL[@]}" -H 'Connection: close' -D "$tmp/h" -w '[%{http_code} %{num_connects}]\n' "$base/" "$base/") \
    || fail "curl (Connection: close) failed"
check "GET / twice with Connection: close" "$out" "$(printf 'Hello, World!\n[200 1]\nHello, World!\n[200 1]')"
grep -qix 'Connection: close' <(tr -d '\r' <"$tmp/h") || fail "Connection: close not echoed: $(cat "$tmp/h")"

# ---- 3. concurrent curls, each with 10 requests on its connection
urls=()
for _ in $(seq 10); do urls+=("$base/"); done
pids=()
for i in $(seq 20); do
    "${CURL[@]}" -w '[%{http_code} %{num_connects}]\n' "${urls[@]}" >"$tmp/c$i" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent curl failed"; done
want=$(printf 'Hello, World!\n[200 1]'; for _ in $(seq 9); do printf '\nHello, World!\n[200 0]'; done)
for i in $(seq 20); do
    check "concurrent curl $i" "$(cat "$tmp/c$i")" "$want"
done

# ---- stop: SIGTERM, exit status 0
kill -TERM "$pid"
for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "httpd did not exit within 60 s of SIGTERM"
wait "$pid"
rc=$?
pid=
[ $rc -eq 0 ] || fail "httpd exited with status $rc after SIGTERM (>128: killed by signal $((rc - 128)))"
# (chaos mode announces its seed: that line is expected)
grep -v '^loom: chaos seed [0-9]*$' "$tmp/server.err" >"$tmp/server.err2" || true
[ -s "$tmp/server.err2" ] && fail "httpd wrote to stderr"
echo "test_httpd_curl: ok (port $port)"
