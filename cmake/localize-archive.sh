#!/usr/bin/env bash
# Makes a Rust static library export only the C API: every member is linked into one
# relocatable object (ld -r), every global symbol but connpool_* is made local (objcopy),
# and the object is archived alone. A Rust staticlib otherwise exports ~2,000 symbols (std,
# rust_eh_personality, compiler builtins) that collide when a program links two Rust static
# libraries (rust-lang/rust#44322, #104707). Undefined references (libc, libgcc_s) stay as
# they are; local symbols still resolve inside the object, and the unwinder reaches
# rust_eh_personality through .eh_frame, not by name. The single object also drops the
# embedded LLVM bitcode (see below).
#   usage: localize-archive.sh IN.a OUT.a
#   env:   LD, OBJCOPY, AR, NM (default: ld, objcopy, ar, nm from binutils)
# Does nothing when OUT.a is newer than IN.a.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 IN.a OUT.a" >&2
  exit 2
fi
in=$1 out=$2
ld=${LD:-ld} objcopy=${OBJCOPY:-objcopy} ar=${AR:-ar} nm=${NM:-nm}
for tool in "$ld" "$objcopy" "$ar" "$nm"; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "localize-archive: $tool not found (apt-get install binutils)" >&2; exit 1; }
done
if [ "$out" -nt "$in" ]; then
  exit 0
fi

mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/connpool-localize.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
obj=$tmp/connpool.o
# --force-group-allocation dissolves COMDAT groups (DW.ref.rust_eh_personality is one): a
# group kept in our object would make the linker drop another Rust library's copy of it,
# whose symbol it could then no longer reach, ours being local.
"$ld" -r --force-group-allocation --whole-archive "$in" -o "$obj"
# .llvmbc/.llvmcmd: LLVM bitcode the sysroot's objects embed for Rust's own LTO. No C
# linker uses it, and binutils with an LLVM plugin installed tries to read it and fails.
"$objcopy" --wildcard --keep-global-symbol='connpool_*' \
  --remove-section=.llvmbc --remove-section=.llvmcmd "$obj"
rm -f "$tmp/out.a"
"$ar" rcsD "$tmp/out.a" "$obj"

# The result must still define the C API and nothing else globally.
globals=$("$nm" --defined-only -g "$tmp/out.a" | awk 'NF >= 3 {print $3}')
api=$(grep -c '^connpool_' <<<"$globals" || true)
other=$(grep -vc '^connpool_' <<<"$globals" || true)
if [ "$api" -eq 0 ] || [ "$other" -ne 0 ]; then
  echo "localize-archive: $out would define $api connpool_* and $other other global symbols" >&2
  exit 1
fi
mv "$tmp/out.a" "$out"
echo "localize-archive: $out: 1 object, $api global symbols (connpool_*), from $("$ar" t "$in" | wc -l) members"
