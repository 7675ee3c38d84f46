#!/usr/bin/env bash
# ThreadSanitizer runs of the pthreads tests, with the Rust library instrumented too:
# stable rustc with RUSTC_BOOTSTRAP=1 and
# -Zsanitizer=thread builds libconnpool.a; the C tests are compiled with
# -fsanitize=thread and linked with Rust's TSan runtime (not gcc's: one runtime).
#   usage: tsan.sh build SRC_DIR OUT_DIR CC      build the library and every program
#          tsan.sh run OUT_DIR NAME               run one program; exit 66 on a report
set -euo pipefail
mode=$1
case "$mode" in
build)
  src=$2 out=$3 cc=$4
  mkdir -p "$out"
  sysroot=$(rustc --print sysroot)
  rt="$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/lib/librustc-stable_rt.tsan.a"
  if [ ! -f "$rt" ]; then
    echo "tsan: $rt not found (this toolchain has no TSan runtime): skipped"
    touch "$out/skipped"
    exit 0
  fi
  rm -f "$out/skipped"
  # --target keeps RUSTFLAGS off build.rs; the header it writes is unchanged.
  (cd "$src" && env -u MAKEFLAGS -u MFLAGS RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer" \
    CARGO_TARGET_DIR="$out/cargo" \
    cargo rustc --release --locked --lib --crate-type staticlib --target x86_64-unknown-linux-gnu)
  lib="$out/cargo/x86_64-unknown-linux-gnu/release/libconnpool.a"

  for name in stress cap churn watch limit limit_stress on_close canary; do
    if [ "$name" = canary ]; then file="$src/tests/c/tsan_canary.c"; else file="$src/tests/c/test_$name.c"; fi
    "$cc" -std=c11 -g -O1 -fsanitize=thread -Wall -Wextra -Werror -UNDEBUG \
      -I "$src/include" -I "$src/tests/c" -c "$file" -o "$out/$name.o"
    "$cc" -o "$out/$name" "$out/$name.o" "$lib" \
      -Wl,--whole-archive "$rt" -Wl,--no-whole-archive \
      -rdynamic -pthread -ldl -lrt -lm -lstdc++
  done
  # The Rust side must really be instrumented (the canary's race is in C only): the
  # library's code in a linked program calls the TSan runtime.
  # (grep reads all of objdump's output: with -q, pipefail would see objdump's SIGPIPE)
  if ! objdump -d --disassemble=connpool_acquire "$out/stress" | grep '__tsan_' >/dev/null; then
    echo "tsan: connpool_acquire in $out/stress is not instrumented" >&2
    exit 1
  fi
  echo "tsan: built $(ls "$out" | grep -cv '\.o$') programs (Rust code instrumented)"
  ;;
run)
  out=$2 name=$3
  if [ -f "$out/skipped" ]; then
    echo "tsan: skipped (no TSan runtime)"
    exit 77
  fi
  # halt_on_error: the first report fails the run with exitcode 66.
  set +e
  TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
    "$out/$name" 2>&1 | tee "$out/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$name" = canary ]; then
    # ctest WILL_FAIL: this run must fail, and only because TSan reported the race.
    if grep -q "ThreadSanitizer: data race" "$out/$name.log"; then exit 66; fi
    echo "tsan: the deliberate race was NOT reported"
    exit 0
  fi
  exit "$rc"
  ;;
*)
  echo "usage: $0 build SRC OUT CC | run OUT NAME" >&2
  exit 2
  ;;
esac
