#!/usr/bin/env bash
# The shared library must export only connpool_* functions and carry the
# expected SONAME.
#   usage: check_exports.sh LIBRARY SONAME
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 LIBRARY SONAME" >&2
  exit 2
fi
lib=$1 soname=$2
fail=0

syms=$(nm -D --defined-only "$lib")
count=$(printf '%s\n' "$syms" | awk 'NF' | wc -l)
bad=$(printf '%s\n' "$syms" | awk 'NF && !($(NF-1) == "T" && $NF ~ /^connpool_/)')
if [ "$count" -eq 0 ]; then
  echo "FAIL: $lib exports no symbols"
  fail=1
elif [ -n "$bad" ]; then
  echo "FAIL: $lib exports symbols other than connpool_* functions:"
  printf '%s\n' "$bad"
  fail=1
fi

found=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ "$found" != "$soname" ]; then
  echo "FAIL: SONAME of $lib is '${found}', expected '$soname'"
  fail=1
fi

if [ "$fail" -eq 0 ]; then
  echo "ok: $count connpool_* functions exported, SONAME $found"
  printf '%s\n' "$syms" | awk 'NF{print "  " $NF}'
fi
exit "$fail"
