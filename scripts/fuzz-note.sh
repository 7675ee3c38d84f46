#!/usr/bin/env bash
# Says what the fuzz test (ctest fuzz_ops, fuzz/run.sh) will do, and afterwards what it
# did, so that `make test` never fuzzes or skips silently.
#   usage: scripts/fuzz-note.sh plan|result BUILD_DIR
#   env:   FUZZ_SECONDS (the Makefile's)
set -uo pipefail
mode=$1 build=$2
seconds=${FUZZ_SECONDS:-60}
status=$build/fuzz/status
case "$mode" in
plan)
  rm -f "$status"
  if [ "$seconds" = 0 ]; then
    echo "fuzz: fuzz_ops will be SKIPPED (FUZZ_SECONDS=0)"
  elif ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: fuzz_ops will be SKIPPED: cargo-fuzz is not installed" \
      "(cargo install cargo-fuzz --locked --version 0.13.2)"
  elif [ -d "$build/fuzz/target" ]; then
    echo "fuzz: fuzz_ops will fuzz for $seconds s (the fuzz target is built already)"
  else
    echo "fuzz: fuzz_ops will build the fuzz target first (about a minute and 250 MB in" \
      "$build/fuzz, once), then fuzz for $seconds s"
  fi
  ;;
result)
  if [ -s "$status" ]; then
    cat "$status"
  else
    echo "fuzz: fuzz_ops did not run (not in this ctest run, or stopped before it started)"
  fi
  ;;
*)
  echo "usage: $0 plan|result BUILD_DIR" >&2
  exit 2
  ;;
esac
