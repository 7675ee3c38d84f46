#!/usr/bin/env bash
# Builds and runs the cargo-fuzz target `ops` (fuzz/fuzz_targets/ops.rs) for SECONDS
# (default 60), starting from the committed seeds (fuzz/seeds/ops) and the corpus of earlier
# runs. Stable Rust: cargo fuzz needs nightly flags, so RUSTC_BOOTSTRAP=1.
#   usage: fuzz/run.sh [SECONDS]
#   env:   CONNPOOL_FUZZ_DIR  where the build, the generated corpus and crash artifacts go
#                             (default: fuzz/, in the git-ignored target/ corpus/ artifacts/)
#          CONNPOOL_FUZZ_SEED libFuzzer's random seed (default: a new one, printed)
#          CONNPOOL_FUZZ_JOBS cargo build jobs (default: cargo's)
#          CONNPOOL_FUZZ_REQUIRED=1  fail instead of skipping when cargo fuzz is missing
# Exit: 0 no failure found; 77 (ctest's skip code) when cargo fuzz is not installed or
# SECONDS is 0;
# 1 on a failure (a panic in the target, a sanitizer report, a leak, a timeout, an
# out-of-memory) or a build error, after printing the input and how to replay it.
# Replay a saved input: RUSTC_BOOTSTRAP=1 cargo fuzz run ops FILE   (from the repository root)
# The outcome, one line, also goes to CONNPOOL_FUZZ_DIR/status (make test prints it).
set -euo pipefail
seconds=${1:-60}
case "$seconds" in
'' | *[!0-9]*)
  echo "usage: $0 [SECONDS]" >&2
  exit 2
  ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

out=${CONNPOOL_FUZZ_DIR:-$root/fuzz}
mkdir -p "$out/corpus/ops" "$out/artifacts/ops"
out=$(cd "$out" && pwd)
rm -f "$out/status"
# Prints its arguments and keeps them as the run's outcome.
outcome() { echo "fuzz: $*" | tee "$out/status"; }

if [ "$seconds" = 0 ]; then
  outcome "fuzz_ops SKIPPED: 0 seconds asked (FUZZ_SECONDS=0)"
  exit 77
fi
if ! command -v cargo >/dev/null 2>&1 || ! cargo fuzz --version >/dev/null 2>&1; then
  if [ "${CONNPOOL_FUZZ_REQUIRED:-0}" = 1 ]; then
    outcome "fuzz_ops FAILED: cargo fuzz is not installed and CONNPOOL_FUZZ_REQUIRED=1" >&2
    exit 1
  fi
  outcome "fuzz_ops SKIPPED: cargo fuzz is not installed (install it with" \
    "\`cargo install cargo-fuzz --locked --version 0.13.2\`; make test does)"
  exit 77
fi
export RUSTC_BOOTSTRAP=1
# Not make's jobserver (a ctest run from make would pass its fds to nobody).
unset MAKEFLAGS MFLAGS
build_args=(ops --target-dir "$out/target")
if [ -n "${CONNPOOL_FUZZ_JOBS:-}" ]; then
  export CARGO_BUILD_JOBS=$CONNPOOL_FUZZ_JOBS
fi
# libFuzzer's C++ (built by libfuzzer-sys) at -O1 without debug info: half the compile time
# of the default -O3 -g (~100 s of a ~160 s first build here), and the engine's speed
# hardly matters next to the target's syscalls. (A plain `cargo fuzz` without this variable
# rebuilds libFuzzer once.)
export CXXFLAGS="${CXXFLAGS:-} -O1 -g0"

# cargo fuzz has no --locked: check that the committed fuzz/Cargo.lock needs no change.
if ! cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null; then
  outcome "fuzz_ops FAILED: fuzz/Cargo.lock is out of date" >&2
  exit 1
fi

t0=$SECONDS
echo "fuzz: $(cargo fuzz --version); building (target dir $out/target)"
if ! cargo fuzz build "${build_args[@]}"; then
  outcome "fuzz_ops FAILED: the fuzz target does not build" >&2
  exit 1
fi
echo "fuzz: built in $((SECONDS - t0)) s; fuzzing for $seconds s"

# -max_len: 6 config bytes + 2 per operation, 256 operations (the target reads no more).
# -timeout: one input runs in milliseconds; 10 s means it hangs.
# -error_exitcode/-timeout_exitcode: libFuzzer's default, 77, is ctest's skip code.
fuzz_args=(
  -max_total_time="$seconds"
  -rss_limit_mb=2048
  -max_len=518
  -timeout=10
  -error_exitcode=1
  -timeout_exitcode=1
  -print_final_stats=1
  -artifact_prefix="$out/artifacts/ops/"
)
if [ -n "${CONNPOOL_FUZZ_SEED:-}" ]; then
  fuzz_args+=(-seed="$CONNPOOL_FUZZ_SEED")
fi
# The first corpus directory receives the new inputs; the seeds are only read.
log=$out/ops.log
t1=$SECONDS
set +e
# The whole output goes to the log; the terminal gets it without the line per new input and
# the dictionary.
cargo fuzz run "${build_args[@]}" "$out/corpus/ops" "$root/fuzz/seeds/ops" -- "${fuzz_args[@]}" 2>&1 |
  tee "$log" |
  grep --line-buffered -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE)|^"|ecommended dictionary'
rc=${PIPESTATUS[0]}
set -e
echo "fuzz: fuzzed for $((SECONDS - t1)) s (exit $rc); $(find "$out/corpus/ops" -type f | wc -l) inputs in $out/corpus/ops; log $log"
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
if [ "$rc" -eq 0 ]; then
  outcome "fuzz_ops ran: built in $((t1 - t0)) s, fuzzed $((SECONDS - t1)) s (${runs:-?} inputs), no failure"
  exit 0
fi

outcome "fuzz_ops FAILED (exit $rc) after $((SECONDS - t1)) s of fuzzing: see $log" >&2
found=0
while IFS= read -r f; do
  [ -f "$f" ] || continue
  found=1
  echo "fuzz: failing input: $f ($(stat -c %s "$f") bytes)" >&2
  echo "fuzz:   base64: $(base64 -w0 "$f")" >&2
  echo "fuzz:   replay: (cd $root && RUSTC_BOOTSTRAP=1 cargo fuzz run ops $f)" >&2
  echo "fuzz:   or from the base64 (CI's build tree is gone): echo BASE64 | base64 -d >input &&" \
    "RUSTC_BOOTSTRAP=1 cargo fuzz run ops input" >&2
done < <(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
if [ "$found" -eq 0 ]; then
  echo "fuzz: no input was saved (see the output above)" >&2
fi
exit 1
