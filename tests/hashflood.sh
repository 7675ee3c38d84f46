#!/usr/bin/env bash
# Hash flooding: runs the hashflood program under callgrind and compares
# the instructions per operation of each phase for crafted keys against random keys of the
# same length. Fails when any crafted/random ratio exceeds MAX_RATIO (2): crafted keys must
# cost what ordinary keys cost, whatever the pool's seed. Instruction counts, not time, so
# a loaded machine does not change the verdict.
#   usage: hashflood.sh VALGRIND HASHFLOOD_PROGRAM OUT_DIR [KEYS]
set -uo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 VALGRIND HASHFLOOD_PROGRAM OUT_DIR [KEYS]" >&2
  exit 2
fi
valgrind=$1 prog=$2 out=$3 keys=${4:-10000}
max_ratio=2
if ! command -v "$valgrind" >/dev/null 2>&1; then
  echo "hashflood: valgrind not installed (apt-get install valgrind): skipped"
  exit 77 # ctest SKIP_RETURN_CODE
fi
if [ -e "$out" ] && [ ! -d "$out" ]; then
  echo "hashflood: $out exists and is not a directory" >&2
  exit 2
fi
rm -rf "$out"
mkdir -p "$out"
# One fd per key: raise the soft limit before valgrind starts (it fixes the client's
# limit at startup, keeping a few fds for itself).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$valgrind" --tool=callgrind --callgrind-out-file="$out/cg.%p" --log-file="$out/valgrind.log" \
  "$prog" "$keys" >"$out/hashflood.log" 2>&1
rc=$?
cat "$out/hashflood.log"
if [ "$rc" -eq 77 ]; then
  exit 77
fi
if [ "$rc" -ne 0 ]; then
  echo "hashflood: the program failed under callgrind (exit status $rc); see $out" >&2
  exit 1
fi

# One dump per phase: its label and its instruction count (the "summary:" line).
for f in "$out"/cg.*.*; do
  label=$(sed -n 's/^desc: Trigger: Client Request: hashflood //p' "$f")
  [ -n "$label" ] || continue
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
  echo "$label ir=$ir"
done >"$out/dumps.txt"
if [ "$(wc -l <"$out/dumps.txt")" -ne 30 ]; then
  echo "hashflood: expected 30 dumps (5 families x 6 phases), got $(wc -l <"$out/dumps.txt"); see $out" >&2
  exit 1
fi

awk -v max="$max_ratio" '
  {
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    per[v["family"], v["phase"]] = v["ir"] / v["ops"]
    if (!(v["phase"] in seen)) { seen[v["phase"]] = 1; phases[++np] = v["phase"] }
    if (v["family"] !~ /^random/ && !(v["family"] in fseen)) { fseen[v["family"]] = 1; fams[++nf] = v["family"] }
  }
  END {
    printf "%-10s %-11s %14s %14s %8s\n", "phase", "family", "random Ir/op", "crafted Ir/op", "ratio"
    bad = 0
    for (p = 1; p <= np; p++)
      for (f = 1; f <= nf; f++) {
        len = fams[f]; sub(/^[a-z]+/, "", len)
        r = per["random" len, phases[p]]; c = per[fams[f], phases[p]]
        ratio = c / r
        flag = ratio > max ? "  > " max ": FAIL" : ""
        printf "%-10s %-11s %14.0f %14.0f %8.2f%s\n", phases[p], fams[f], r, c, ratio, flag
        if (ratio > max) bad++
      }
    if (bad) { printf "hashflood: %d phase(s) cost more than %dx for crafted keys\n", bad, max; exit 1 }
    print "hashflood: crafted keys cost what random keys cost (every ratio <= " max ")"
  }' "$out/dumps.txt"
