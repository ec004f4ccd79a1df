#!/usr/bin/env bash
# tests/install.sh BUILD_DIR — proves that an installed loom can be used out of tree.
#
# Installs BUILD_DIR with `cmake --install BUILD_DIR --prefix <tmp>/prefix`, then builds
# examples/hello_installed.c (copied to a temp dir, so only the installed header is seen):
#   1. with pkg-config: linked against the shared library (run with LD_LIBRARY_PATH), and
#      statically against libloom.a (checked to need no libloom.so);
#   2. as a small CMake project: find_package(loom REQUIRED) + target_link_libraries(x loom::loom)
#      (and loom::loom_shared when it is exported), with CMAKE_PREFIX_PATH=<tmp>/prefix.
#   3. libloom_hook the same ways (pkg-config loom-hook; loom::hook, loom::hook_shared), with
#      tests/hook_installed.c: a goroutine's plain read() parks.
# Runs every binary and checks its line.  Prints "install: ok", or exits 1 with a reason.
# Needs cmake, a C compiler (CC, default cc), pkg-config, nm and readelf (binutils).
set -euo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BUILD_DIR   (a configured and built loom tree)" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
srcdir=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC:-cc}
want="hello from loom: 10 goroutines sent sum=285"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/loom-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

fail() {
    echo "install: FAIL: $*" >&2
    exit 1
}

# Runs a command quietly; on failure shows its output and fails with the given reason.
quiet() {
    local why=$1; shift
    if ! "$@" >"$tmp/cmd.log" 2>&1; then
        cat "$tmp/cmd.log" >&2
        fail "$why (command: $*)"
    fi
}

for tool in cmake pkg-config nm readelf "$cc"; do
    command -v "$tool" >/dev/null 2>&1 || fail "'$tool' not found (CI installs it in .ci/run)"
done

# Runs a built program (with an optional environment assignment) and checks its output.
check_run() {
    local what=$1; shift
    local out rc=0
    out=$(timeout 60 env "$@" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] || { printf '%s\n' "$out" >&2; fail "$what exited with status $rc"; }
    printf '%s\n' "$out" | grep -qxF "$want" || {
        printf '%s\n' "$out" >&2
        fail "$what printed no line '$want'"
    }
    echo "install: $what: ok"
}

# ---- install
quiet "cmake --install failed" cmake --install "$build" --prefix "$prefix"
[ -f "$prefix/include/loom.h" ] || fail "no include/loom.h under $prefix"

pc=$(find "$prefix" -name loom.pc -path '*/pkgconfig/*' | sed -n 1p)
[ -n "$pc" ] || fail "no loom.pc installed under $prefix"
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")                 # <prefix>/lib or <prefix>/lib/x86_64-linux-gnu
[ -f "$libdir/libloom.a" ] || fail "no libloom.a in $libdir (beside pkgconfig/)"
ls "$libdir"/libloom.so* >/dev/null 2>&1 || fail "no libloom.so in $libdir"
# The library builds with -fvisibility=hidden: the public API must still be exported.
nm -D --defined-only "$libdir/libloom.so" | grep -q ' T loom_run$' \
    || fail "libloom.so does not export loom_run: the declarations in loom.h need default" \
            "visibility (e.g. #pragma GCC visibility push(default) ... pop around them)"
cfgdir=$(find "$prefix" -name loomConfig.cmake -printf '%h\n' | sed -n 1p)
[ -n "$cfgdir" ] || fail "no loomConfig.cmake installed under $prefix"
echo "install: installed to $prefix (lib dir ${libdir#"$prefix"/}, pkg-config ${pc#"$prefix"/})"

# Out of tree: the example alone in a fresh directory.
proj=$tmp/proj
mkdir -p "$proj"
cp "$srcdir/examples/hello_installed.c" "$proj/"

# ---- 1. pkg-config
export PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
pkgconf=(pkg-config)
pcprefix=$(pkg-config --variable=prefix loom) || fail "pkg-config cannot read $pc"
pcprefix_real=$(cd "$pcprefix" 2>/dev/null && pwd -P) || pcprefix_real=$pcprefix
if [ "$pcprefix_real" != "$(cd "$prefix" && pwd -P)" ]; then
    # loom.pc carries the prefix given at configure time; `cmake --install --prefix` cannot
    # change it.  `make install` configures and installs with the same PREFIX, so it is right
    # there; here, tell pkg-config where the files really are.
    echo "install: note: loom.pc says prefix=$pcprefix (the configure-time prefix), not $prefix;" \
         "overriding it (a relocatable loom.pc would use \${pcfiledir})"
    pkgconf=(pkg-config "--define-variable=prefix=$prefix")
fi
cflags=$("${pkgconf[@]}" --cflags loom)
libs=$("${pkgconf[@]}" --libs loom)
slibs=$("${pkgconf[@]}" --static --libs loom)
echo "install: pkg-config: cflags '$cflags' libs '$libs' static libs '$slibs'"

# shared
# shellcheck disable=SC2086   # word splitting of pkg-config output is intended
quiet "pkg-config shared build failed" \
    "$cc" -std=gnu11 -Wall -Wextra -Werror "$proj/hello_installed.c" $cflags -o "$tmp/hello_shared" $libs
readelf -d "$tmp/hello_shared" | grep -q 'NEEDED.*libloom\.so' \
    || fail "hello_shared is not linked against libloom.so"
check_run "pkg-config, shared" LD_LIBRARY_PATH="$libdir" "$tmp/hello_shared"

# static: -lloom would pick libloom.so when both are there; ask for the archive by name.
static_libs=""
for w in $slibs; do
    if [ "$w" = "-lloom" ]; then w="-l:libloom.a"; fi
    static_libs+="$w "
done
# shellcheck disable=SC2086
quiet "pkg-config static build failed" \
    "$cc" -std=gnu11 -Wall -Wextra -Werror "$proj/hello_installed.c" $cflags -o "$tmp/hello_static" $static_libs
if readelf -d "$tmp/hello_static" | grep -q 'NEEDED.*libloom'; then
    fail "hello_static still needs a shared libloom"
fi
check_run "pkg-config, static" "$tmp/hello_static"

# ---- 2. CMake find_package
cat >"$proj/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.16)
project(hello_installed C)
find_package(loom REQUIRED)
add_executable(x hello_installed.c)
target_link_libraries(x loom::loom)
if(TARGET loom::loom_shared)
  add_executable(x_shared hello_installed.c)
  target_link_libraries(x_shared loom::loom_shared)
endif()
EOF
cmake_args=(-S "$proj" -B "$proj/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release)
if [ -n "${CC:-}" ]; then cmake_args+=(-DCMAKE_C_COMPILER="$CC"); fi
quiet "find_package(loom) project did not configure" cmake "${cmake_args[@]}"
quiet "find_package(loom) project did not build" cmake --build "$proj/build"
check_run "cmake find_package, loom::loom" "$proj/build/x"
if [ -x "$proj/build/x_shared" ]; then
    check_run "cmake find_package, loom::loom_shared" "$proj/build/x_shared"
fi

# ---- 3. libloom_hook: pkg-config loom-hook (shared, and static with -l:libloom_hook.a) and
# CMake loom::hook / loom::hook_shared, each running tests/hook_installed.c
want="hello from loom-hook: active=1 read=5 kernel_nonblock=1 view_nonblock=0 spare_lends=0"
[ -f "$prefix/include/loom_hook.h" ] || fail "no include/loom_hook.h under $prefix"
[ -f "$libdir/libloom_hook.a" ] || fail "no libloom_hook.a in $libdir"
[ -f "$pcdir/loom-hook.pc" ] || fail "no loom-hook.pc in $pcdir"
nm -D --defined-only "$libdir/libloom_hook.so" | grep -q ' T read$' \
    || fail "libloom_hook.so does not export read"
cp "$srcdir/tests/hook_installed.c" "$proj/"
hcflags=$("${pkgconf[@]}" --cflags loom-hook)
hlibs=$("${pkgconf[@]}" --libs loom-hook)
hslibs=$("${pkgconf[@]}" --static --libs loom-hook)
echo "install: pkg-config loom-hook: libs '$hlibs' static libs '$hslibs'"
# shellcheck disable=SC2086
quiet "pkg-config loom-hook shared build failed" \
    "$cc" -std=gnu11 -Wall -Wextra -Werror "$proj/hook_installed.c" $hcflags -o "$tmp/hook_shared" $hlibs
readelf -d "$tmp/hook_shared" | grep -q 'NEEDED.*libloom_hook\.so' \
    || fail "hook_shared is not linked against libloom_hook.so"
check_run "pkg-config loom-hook, shared" LD_LIBRARY_PATH="$libdir" "$tmp/hook_shared"
static_libs=""
for w in $hslibs; do
    case $w in
    -lloom) w="-l:libloom.a" ;;
    -lloom_hook) w="-l:libloom_hook.a" ;;
    esac
    static_libs+="$w "
done
# shellcheck disable=SC2086
quiet "pkg-config loom-hook static build failed" \
    "$cc" -std=gnu11 -Wall -Wextra -Werror "$proj/hook_installed.c" $hcflags -o "$tmp/hook_static" $static_libs
if readelf -d "$tmp/hook_static" | grep -q 'NEEDED.*libloom'; then
    fail "hook_static still needs a shared libloom"
fi
nm -D --defined-only "$tmp/hook_static" | grep -q ' T read$' \
    || fail "hook_static does not export read (hook.dynlist)"
check_run "pkg-config loom-hook, static" "$tmp/hook_static"
cat >"$proj/CMakeLists.txt" <<'EOF2'
cmake_minimum_required(VERSION 3.16)
project(hook_installed C)
find_package(loom REQUIRED)
add_executable(h hook_installed.c)
target_link_libraries(h loom::hook)
add_executable(h_shared hook_installed.c)
target_link_libraries(h_shared loom::hook_shared)
EOF2
rm -rf "$proj/build"
quiet "find_package(loom) loom::hook project did not configure" cmake "${cmake_args[@]}"
quiet "find_package(loom) loom::hook project did not build" cmake --build "$proj/build"
check_run "cmake find_package, loom::hook" "$proj/build/h"
check_run "cmake find_package, loom::hook_shared" "$proj/build/h_shared"

echo "install: ok"
