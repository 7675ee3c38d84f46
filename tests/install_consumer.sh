#!/usr/bin/env bash
# Install the build tree into a temporary prefix, then build and run a small
# out-of-tree consumer against it: with find_package (shared and static) and
# with pkg-config (shared and static).
#   usage: install_consumer.sh BUILD_DIR CONSUMER_SOURCE_DIR [CMAKE] [CC]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 BUILD_DIR CONSUMER_SOURCE_DIR [CMAKE] [CC]" >&2
  exit 2
fi
build=$1 src=$2 cmake=${3:-cmake} cc=${4:-cc}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/connpool-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p'; }

step "cmake --install $build --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix"
libdir=$(cd "$prefix" && ls -d lib*/pkgconfig | head -n 1)
libdir=$prefix/${libdir%/pkgconfig}
ls -l "$libdir" "$prefix/include"
[ -f "$libdir/libconnpool.a" ] || fail "libconnpool.a not installed"
[ -L "$libdir/libconnpool.so" ] || fail "libconnpool.so link not installed"
[ -L "$libdir/libconnpool.so.0" ] || fail "libconnpool.so.0 link not installed"
[ -f "$(readlink -f "$libdir/libconnpool.so")" ] || fail "libconnpool.so link is dangling"
[ -f "$prefix/include/connpool.h" ] || fail "connpool.h not installed"
[ -f "$prefix/include/connpool.hpp" ] || fail "connpool.hpp not installed"
if command -v c++ >/dev/null 2>&1; then
  step "connpool.hpp compiles as C++17 from $prefix/include"
  printf '#include <connpool.hpp>\nint main() { libconnpool::Pool pool; return (int)pool.idle(); }\n' |
    c++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I"$prefix/include" -x c++ - ||
    fail "the installed connpool.hpp does not compile"
fi
cat "$libdir/pkgconfig/connpool.pc"

run() {
  local exe=$1
  shift
  echo "+ $exe"
  env "$@" "$exe" || fail "$exe exited with status $?"
}

for link in shared static; do
  step "find_package(connpool), CONNPOOL_LINK=$link"
  "$cmake" -S "$src" -B "$tmp/build-$link" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" -DCONNPOOL_LINK=$link -DCMAKE_BUILD_TYPE=Release
  "$cmake" --build "$tmp/build-$link"
  exe=$tmp/build-$link/consumer
  echo "NEEDED: $(needed "$exe" | tr '\n' ' ')"
  if [ $link = shared ]; then
    needed "$exe" | grep -qx 'libconnpool.so.0' || fail "$exe does not need libconnpool.so.0"
    run "$exe"   # finds the library through the RUNPATH CMake set
  else
    needed "$exe" | grep -q 'libconnpool' && fail "$exe (static) still needs libconnpool"
    run "$exe"
  fi
done

if ! command -v pkg-config >/dev/null 2>&1; then
  echo
  echo "install_consumer: find_package shared + static ok; pkg-config not installed: reported as skipped"
  exit 77 # ctest SKIP_RETURN_CODE: the pkg-config half did not run
fi
export PKG_CONFIG_PATH="$libdir/pkgconfig"
step "pkg-config --modversion connpool: $(pkg-config --modversion connpool)"

step "cc main.c \$(pkg-config --cflags --libs connpool)"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror -o "$tmp/pc-shared" "$src/main.c" \
  $(pkg-config --cflags --libs connpool)
needed "$tmp/pc-shared" | grep -qx 'libconnpool.so.0' || fail "pc-shared does not need libconnpool.so.0"
run "$tmp/pc-shared" LD_LIBRARY_PATH="$libdir"

step "cc main.c \$(pkg-config --static --cflags --libs connpool), libconnpool.a"
# -lconnpool would pick libconnpool.so while both are installed: ask for the
# archive by name.
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror -o "$tmp/pc-static" "$src/main.c" \
  $(pkg-config --static --cflags --libs connpool | sed 's/-lconnpool\b/-l:libconnpool.a/')
needed "$tmp/pc-static" | grep -q 'libconnpool' && fail "pc-static still needs libconnpool"
run "$tmp/pc-static"

echo
echo "install_consumer: ok (find_package shared + static, pkg-config shared + static)"
