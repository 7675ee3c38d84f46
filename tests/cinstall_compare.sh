#!/usr/bin/env bash
# `cargo cinstall` (cargo-c) and `cmake --install` must install the same library: the same
# files under lib/ and include/ (the CMake package, lib/cmake/connpool/, is CMake's own),
# the same link chain to the same versioned file, the same SONAME and exports, identical
# headers and equivalent connpool.pc files. Skipped (77) without cargo-c.
#   usage: cinstall_compare.sh BUILD_DIR SOURCE_DIR CMAKE SONAME
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR CMAKE SONAME" >&2
  exit 2
fi
build=$1 src=$2 cmake=$3 soname=$4
if ! cargo cinstall --version >/dev/null 2>&1; then
  echo "cinstall_compare: SKIPPED: cargo-c is not installed. To run this test, install it once" \
    "(about 7 min of compiling; it needs libssl-dev and pkg-config):"
  echo "  cargo install cargo-c --locked --version 0.10.24"
  exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/connpool-cinstall.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

echo "== cmake --install $build --prefix $tmp/cmake"
"$cmake" --install "$build" --prefix "$tmp/cmake" >/dev/null
libdir=$(cd "$tmp/cmake" && ls -d lib*/pkgconfig | head -n 1)
libdir=${libdir%/pkgconfig}

echo "== cargo cinstall --release --prefix $tmp/cargo-c --libdir $libdir"
# Its own target dir in the build tree; -j: ctest gives this test both CPUs.
(cd "$src" && env -u MAKEFLAGS -u MFLAGS CARGO_TARGET_DIR="$build/cargo-c" \
  cargo cinstall --release --locked --prefix "$tmp/cargo-c" --libdir "$libdir")

# Every file and link, with what a link points to.
listing() {
  (cd "$1" && find . \( -type f -o -type l \) -not -path "./$libdir/cmake/*" -printf '%y %p %l\n' | sort)
}
listing "$tmp/cmake" >"$tmp/cmake.list"
listing "$tmp/cargo-c" >"$tmp/cargo-c.list"
echo "== files (type, path, link target): cmake | cargo-c"
diff -y -W 150 "$tmp/cmake.list" "$tmp/cargo-c.list" || true

# The file sets must match; a link may point straight at the versioned file or through
# the SONAME link, as long as both resolve to the same versioned file.
names() { awk '{print $1, $2}' "$1"; }
if ! diff <(names "$tmp/cmake.list") <(names "$tmp/cargo-c.list") >/dev/null; then
  bad "the two installs have different files"
fi
for p in "$tmp/cmake" "$tmp/cargo-c"; do
  lib=$p/$libdir
  real=$(readlink -f "$lib/libconnpool.so")
  [ "$(readlink -f "$lib/$soname")" = "$real" ] || bad "$lib: libconnpool.so and $soname differ"
  [ -f "$real" ] && [ ! -L "$real" ] || bad "$lib: libconnpool.so does not reach a file"
  found=$(readelf -d "$real" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
  [ "$found" = "$soname" ] || bad "$real: SONAME '$found', expected '$soname'"
  echo "$p: libconnpool.so -> $(basename "$real"), SONAME $found," \
    "$(nm -D --defined-only "$real" | wc -l) exports"
done

a=$tmp/cmake/$libdir b=$tmp/cargo-c/$libdir
diff <(nm -D --defined-only "$a/libconnpool.so" | awk '{print $NF}') \
  <(nm -D --defined-only "$b/libconnpool.so" | awk '{print $NF}') ||
  bad "the shared libraries export different symbols"
for h in connpool.h connpool.hpp; do
  cmp "$tmp/cmake/include/$h" "$tmp/cargo-c/include/$h" || bad "include/$h differs"
done

# connpool.pc: the same fields once the prefix is a variable; Libs.private may differ
# only by -lc, which cargo-c lists (rustc prints it) and every C link has anyway.
pc() {
  sed -e "s|$1|PREFIX|g" "$2" | grep -E '^(Name|Description|Version|Libs|Libs.private|Cflags):' |
    sed -E 's/^Libs.private: *(.*)$/Libs.private: \1 /; s/ -lc / /g; s/ +$//' | sort
}
echo "== connpool.pc, cmake then cargo-c"
cat "$a/pkgconfig/connpool.pc"
echo "--"
cat "$b/pkgconfig/connpool.pc"
pc_a=$(pc "$tmp/cmake" "$a/pkgconfig/connpool.pc")
pc_b=$(pc "$tmp/cargo-c" "$b/pkgconfig/connpool.pc")
if [ "$pc_a" != "$pc_b" ]; then
  diff <(printf '%s\n' "$pc_a") <(printf '%s\n' "$pc_b") || true
  bad "the two connpool.pc differ"
fi

# The one intended difference: CMake installs the localized archive
# (cmake/localize-archive.sh), cargo-c rustc's own, which exports every Rust symbol.
count() { readelf -sW "$1" | awk '($5 == "GLOBAL" || $5 == "WEAK") && $7 != "UND"' | wc -l; }
echo "libconnpool.a global symbols: cmake $(count "$a/libconnpool.a") (connpool_* only)," \
  "cargo-c $(count "$b/libconnpool.a") (rustc's archive, not localized)"

if [ "$fail" -ne 0 ]; then
  exit 1
fi
echo "cinstall_compare: ok (same files, links, SONAME $soname, exports, headers and .pc)"
