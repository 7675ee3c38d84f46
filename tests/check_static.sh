#!/usr/bin/env bash
# Checks of the static archive.
#   check_static.sh exports ARCHIVE   the archive defines global symbols, all connpool_*
#                                     (what cmake/localize-archive.sh makes of cargo's)
#   check_static.sh lto ARCHIVE       cargo's archive was built with LTO: the library's
#                                     crates and std are merged into the crate's own
#                                     object(s); only compiler_builtins, which Rust never
#                                     LTOs (#![no_builtins]), stays separate
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 exports|lto ARCHIVE" >&2
  exit 2
fi
mode=$1 lib=$2
case "$mode" in
exports)
  globals=$(nm --defined-only -g "$lib" | awk 'NF >= 3 {print $2, $3}')
  count=$(grep -c ' connpool_' <<<"$globals" || true)
  bad=$(grep -v ' connpool_' <<<"$globals" || true)
  if [ "$count" -eq 0 ]; then
    echo "FAIL: $lib defines no connpool_* symbol"
    exit 1
  fi
  if [ -n "$bad" ]; then
    echo "FAIL: $lib defines global symbols other than connpool_*:"
    printf '%s\n' "$bad" | head -20
    echo "($(wc -l <<<"$bad") in all)"
    exit 1
  fi
  echo "ok: $lib: $(ar t "$lib" | wc -l) member(s), $count global symbols, all connpool_*"
  printf '%s\n' "$globals" | awk '{print "  " $1 " " $2}'
  ;;
lto)
  # Rust objects are named CRATE-HASH.CRATE.HASH-cgu.N.rcgu.o, the LTO'd one
  # connpool.connpool.HASH-cgu.0.rcgu.o; compiler_builtins' C objects HASH-NAME.o.
  members=$(ar t "$lib")
  crates=$(grep -E '\.rcgu\.o$' <<<"$members" | sed -E 's/^([A-Za-z0-9_]+)[-.].*/\1/' | sort | uniq -c)
  other=$(awk '$2 != "connpool" && $2 != "compiler_builtins"' <<<"$crates")
  echo "$lib: $(wc -l <<<"$members") members; Rust objects per crate:"
  printf '%s\n' "$crates"
  if [ -n "$other" ]; then
    echo "FAIL: objects of crates other than connpool and compiler_builtins: built without LTO?"
    exit 1
  fi
  if [ "$(awk '$2 == "connpool" {print $1}' <<<"$crates")" != 1 ]; then
    echo "FAIL: expected exactly one connpool object (LTO with one codegen unit)"
    exit 1
  fi
  echo "ok: std and every dependency are merged into the one connpool object (LTO)"
  ;;
*)
  echo "usage: $0 exports|lto ARCHIVE" >&2
  exit 2
  ;;
esac
