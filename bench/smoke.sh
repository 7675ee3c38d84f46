#!/usr/bin/env bash
# ctest bench_smoke: connpool_bench --quick must exit 0 and print every table. Timings are
# never judged (this machine is shared); the driver itself fails if a pool loses an fd.
set -euo pipefail
bench=$1
out=$("$bench" --quick)
printf '%s\n' "$out"
for table in "== primitives" "== 1 key, 1 thread" "== 1000 keys (1 idle fd each, cycled)" \
             "== memory per key" "== 5000 keys (1 idle fd each, cycled)" \
             "== 2 threads, same key" "== 2 threads, different keys" "== idle watcher" \
             "== targets,"; do
  if ! grep -qF -- "$table" <<<"$out"; then
    echo "bench_smoke: missing table: $table" >&2
    exit 1
  fi
done
if grep -q "failed (child status" <<<"$out"; then
  echo "bench_smoke: a memory measurement failed" >&2
  exit 1
fi
echo "bench_smoke: all tables printed"
