#!/usr/bin/env bash
# End-to-end benchmark: the demo reverse proxy on loopback, pool on
# against pool off: requests/s, p50/p99 latency and backend connections opened.
#
#   bench/e2e.sh [BUILD_DIR]        (default: build)
#   env: ROUNDS (3), SECONDS_PER_RUN (5), CONNECTIONS (32)
#
# The hook: this script drives BUILD_DIR/demo, the demo's own driver, which starts the
# backend, the proxy (with and without libconnpool) and the load generator it is built
# with, and prints one table per invocation. Each round runs both kinds back to back
# (interleaved, as connpool_bench does), in steady state (one burst, a backend that keeps
# idle connections 60 s and never closes after N requests); the targets are judged on the
# median over rounds:
#   - pool on >= 3x the requests/s of pool off (the demo's "With the pool: N.Nx" line);
#   - backend connections opened with the pool <= connections + 10% (--check-max-accepted:
#     the demo fails the run otherwise).
# Exit 77 (skipped) while the demo is not built in BUILD_DIR.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
rounds=${ROUNDS:-3}
seconds=${SECONDS_PER_RUN:-5}
conns=${CONNECTIONS:-32}
demo=$build/demo
if [ ! -x "$demo" ] || [ ! -x "$build/proxy" ]; then
  echo "e2e: skipped: the demo proxy is not built in $build yet" \
       "(needs $build/demo, proxy, backend, loadgen)"
  exit 77
fi
max_accepted=$((conns + (conns + 9) / 10))
echo "e2e: $rounds rounds of pool vs no pool, $seconds s each, $conns client connections," \
     "backend connections allowed with the pool: $max_accepted"
ratios=()
status=0
for r in $(seq 1 "$rounds"); do
  echo
  echo "== round $r"
  out=$("$demo" --runs pool,no-pool --seconds "$seconds" --connections "$conns" --backends 1 \
        --bursts 1 --idle-ms 60000 --max-requests 100000000 \
        --check-max-accepted "$max_accepted" 2>&1) || status=1
  printf '%s\n' "$out"
  ratio=$(sed -n 's/^With the pool: \([0-9.]*\)x the requests\/s.*/\1/p' <<<"$out")
  if [ -n "$ratio" ]; then
    ratios+=("$ratio")
  else
    echo "e2e: no 'With the pool: N.Nx the requests/s' line in the demo's output" >&2
    status=1
  fi
done
if [ ${#ratios[@]} -gt 0 ]; then
  median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
  verdict=$(awk -v m="$median" 'BEGIN {print (m >= 3) ? "MET" : "MISSED"}')
  echo
  echo "e2e: pool on / pool off requests/s, median of ${#ratios[@]} rounds: ${median}x (target >= 3x): $verdict"
fi
[ $status -eq 0 ] && echo "e2e: backend connections with the pool <= $max_accepted in every round: MET"
exit $status
