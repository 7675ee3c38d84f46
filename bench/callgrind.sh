#!/usr/bin/env bash
# Instructions per acquire+release pair for every contender (callgrind counts are stable on
# a loaded machine, unlike wall time), and where libconnpool's instructions go.
#
#   bench/callgrind.sh [BUILD_DIR]      (default: build; run after the CMake build)
#
# libconnpool is rebuilt with the cargo profile "profiling" (release + line tables; built
# as the CMake build does, `cargo rustc --crate-type cdylib`, so with the same LTO) into
# BUILD_DIR/cargo-profiling and swapped in through LD_LIBRARY_PATH (the bench links with
# RUNPATH, which LD_LIBRARY_PATH overrides). connpool_bench --callgrind runs each contender's
# timed loop between CALLGRIND_ZERO_STATS and CALLGRIND_DUMP_STATS_AT, so each dump holds
# exactly that loop: PAIRS pairs (env, default 20000), in the 1-key and KEYS-keys scenarios.
# Output: a table on stdout, and BUILD_DIR/callgrind/ with the dumps and annotate reports.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
pairs=${PAIRS:-20000}
keys=${KEYS:-10000}
bench=$build/bench/connpool_bench
out=$build/callgrind
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 77; }
[ -x "$bench" ] || { echo "callgrind.sh: build first ($bench is missing)" >&2; exit 1; }

prof=$build/cargo-profiling
env --unset=MAKEFLAGS CARGO_TARGET_DIR="$prof" \
  cargo rustc --profile profiling --locked --quiet --lib --crate-type cdylib \
  --manifest-path "$src/Cargo.toml"
ln -sf libconnpool.so "$prof/profiling/libconnpool.so.0"

rm -rf "$out"
mkdir -p "$out"
LD_LIBRARY_PATH="$prof/profiling${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$out/cg.%p" --log-file="$out/valgrind.%p.log" \
  "$bench" --callgrind --pairs "$pairs" --keys "$keys" >"$out/bench.log"

# Each dump: its label (from CALLGRIND_DUMP_STATS_AT) and its total instruction count.
for f in "$out"/cg.*.*; do
  label=$(sed -n 's/^desc: Trigger: Client Request: bench //p' "$f")
  [ -n "$label" ] || continue
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
  printf '%s\t%s\t%s\n' "$label" "$ir" "$f"
done | sort >"$out/dumps.tsv"
[ -s "$out/dumps.tsv" ] || { echo "callgrind.sh: no dumps (see $out)" >&2; exit 1; }

awk -F'\t' '
  {
    split($1, kv, " "); sc = kv[1]; sub("scenario=", "", sc); np = kv[2]; sub("pairs=", "", np)
    who = $1; sub(/.*contender=/, "", who); split(who, cv, "|")
    per = $2 / np
    if (cv[1] ~ /^harness/) base[sc] = per
    key = sc SUBSEP cv[1] "|" cv[2]; ir[key] = per; order[++n] = key; scen[key] = sc
    name[key] = cv[1]; var[key] = cv[2]
  }
  END {
    printf "%-12s %-26s %-11s %12s %14s\n", "scenario", "contender", "variant", "Ir/pair", "Ir/pair - loop"
    for (i = 1; i <= n; i++) {
      k = order[i]
      printf "%-12s %-26s %-11s %12.1f %14.1f\n", scen[k], name[k], var[k], ir[k], ir[k] - base[scen[k]]
    }
    # The ratio targets, by instructions net of the loop (the timed run judges them
    # by time; instructions miss cache misses, locks'"'"' atomics and the kernel).
    split("1key manykeys", scs, " ")
    for (j = 1; j <= 2; j++) {
      sc = scs[j]
      lib = net(sc, "libconnpool (C ABI)|check off"); libk = net(sc, "libconnpool (key handle)|check off")
      sf = net(sc, "C floor (string key)|check off"); hf = net(sc, "C floor (key handle)|check off")
      rws = net(sc, "rust-web-server ConnPool|check off")
      printf "\ntargets by instructions per pair, net of the loop, scenario %s:\n", sc
      judge("libconnpool string / C string floor", lib, sf, 1.5, 1)
      judge("libconnpool handle / C handle+clock floor", libk, hf, 1.2, 1)
      judge("rust-web-server ConnPool / libconnpool string", rws, lib, 3, 0)
      judge("rust-web-server ConnPool / libconnpool handle", rws, libk, 4, 0)
    }
  }
  function net(sc, who,   k) { k = sc SUBSEP who; return (k in ir) ? ir[k] - base[sc] : 0 }
  function judge(what, a, b, limit, le,   r) {
    if (a <= 0 || b <= 0) { printf "  %-48s %8s  (not measured)\n", what, "-"; return }
    r = a / b
    printf "  %-48s %7.2fx  %s %s %.1fx\n", what, r, ((le && r <= limit) || (!le && r >= limit)) ? "MET" : "MISSED", le ? "<=" : ">=", limit
  }' "$out/dumps.tsv" | tee "$out/summary.txt"
# Rows whose count does not mean what it does at full speed (connpool_bench says which).
sed -n 's/^callgrind: note: /note: /p; /^  /p' "$out/bench.log" | tee -a "$out/summary.txt"

# Where libconnpool's instructions go, per category and per source line
# (bench/callgrind_lines.py; with LTO nearly everything is inlined into connpool_acquire
# and connpool_release, and callgrind attributes each inlined line to its source file).
# callgrind_annotate 3.19 books a dump taken after CALLGRIND_ZERO_STATS entirely to
# __libc_start_main (the "calls=0" records of the frames that were live at the zeroing);
# the copies given to it have those records as calls=1.
for f in $(awk -F'\t' '$1 ~ /contender=libconnpool/ {print $3}' "$out/dumps.tsv"); do
  label=$(sed -n 's/^desc: Trigger: Client Request: bench //p' "$f")
  name=$(sed -E 's/ pairs=[0-9]+//; s/[^A-Za-z0-9=]+/-/g; s/-$//' <<<"$label")
  sed 's/^calls=0 /calls=1 /' "$f" >"$out/$name.cg"
  callgrind_annotate --inclusive=no "$out/$name.cg" >"$out/$name.annotate.txt" 2>/dev/null || true
  echo
  echo "== $label"
  if command -v python3 >/dev/null; then
    python3 "$src/bench/callgrind_lines.py" "$f" "$pairs" --lines 25 | tee "$out/$name.lines.txt"
  else
    sed -n '/file:function/,$p' "$out/$name.annotate.txt" | head -30
  fi
done
echo
echo "(dumps, annotate reports and line tables: $out)"
