#!/usr/bin/env bash
# What `make demo` and `make test` need, checked before they build: Rust, a C and C++
# compiler, make, binutils, CMake and OpenSSL 3's headers (the demo's TLS runs and test_tls;
# libconnpool itself does not use OpenSSL); for the tests also valgrind, pkg-config and
# cargo-fuzz.
# Missing system tools are installed with apt-get when this runs as root on Debian or Ubuntu
# (non-interactively); otherwise it stops at once and prints the command to run.
#   usage: scripts/ensure-tools.sh demo|test
#   env:   FUZZ_SECONDS   0: the fuzz test is skipped, so cargo-fuzz is not installed
set -euo pipefail
mode=${1:-test}
case "$mode" in
demo | test) ;;
*)
  echo "usage: $0 demo|test" >&2
  exit 2
  ;;
esac
have() { command -v "$1" >/dev/null 2>&1; }
say() { echo "ensure-tools: $*"; }

# Rust first: nothing here can install it without asking.
if ! have cargo; then
  say "Rust (cargo) is not installed or not on PATH. Install it with rustup, then run make $mode again:"
  echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y && . \"\$HOME/.cargo/env\""
  exit 1
fi
need_rust=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
have_rust=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need_rust" "$have_rust" | sort -V | head -n 1)" != "$need_rust" ]; then
  say "rustc $have_rust is older than $need_rust (Cargo.toml rust-version): run \`rustup update stable\`"
  exit 1
fi

# System tools, as Debian package names.
pkgs=()
have cc && have gcc || pkgs+=(gcc)
have c++ || pkgs+=(g++)
have make || pkgs+=(make)
{ have ld && have ar && have nm && have objcopy && have readelf; } || pkgs+=(binutils)
if have cmake; then
  cmake_version=$(cmake --version | awk 'NR == 1 {print $3}')
  if [ "$(printf '3.20\n%s\n' "$cmake_version" | sort -V | head -n 1)" != 3.20 ]; then
    say "cmake $cmake_version is older than 3.20: install a newer CMake (https://cmake.org/download/)"
    exit 1
  fi
else
  pkgs+=(cmake)
fi
# OpenSSL's headers, as the compiler sees them (no compiler yet: it comes with them).
openssl_h() { printf '#include <openssl/opensslv.h>\nOPENSSL_VERSION_TEXT\n' | cc -E -P -x c - 2>/dev/null | tail -n 1; }
if ! have cc || ! openssl_h | grep -q '^"OpenSSL'; then
  pkgs+=(libssl-dev)
fi
if [ "$mode" = test ]; then
  have valgrind || pkgs+=(valgrind)
  have pkg-config || pkgs+=(pkg-config)
fi

if [ ${#pkgs[@]} -gt 0 ]; then
  if have apt-get && [ "$(id -u)" = 0 ]; then
    say "installing ${pkgs[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" </dev/null >/dev/null
  elif have apt-get; then
    say "missing: ${pkgs[*]}. Install them, then run make $mode again:"
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${pkgs[*]}"
    exit 1
  else
    say "missing: ${pkgs[*]} (Debian package names): install them with your package manager," \
      "then run make $mode again"
    exit 1
  fi
fi

# cargo-fuzz for the fuzz test (a cargo subcommand, installed into ~/.cargo/bin, no root
# needed). The pinned version is the one fuzz/run.sh is written against; an existing
# cargo-fuzz of another version is left alone. Without it the fuzz test is skipped, and
# the test command says so (scripts/fuzz-note.sh).
fuzz_version=0.13.2
if [ "$mode" = test ] && [ "${FUZZ_SECONDS:-60}" != 0 ] && ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz $fuzz_version for the fuzz test (cargo install, about 1 min)"
  cargo install cargo-fuzz --locked --version "$fuzz_version" </dev/null ||
    say "WARNING: could not install cargo-fuzz $fuzz_version: the fuzz test will be SKIPPED"
fi

say "ok: $(rustc --version), $(cmake --version | head -n 1), $(cc --version | head -n 1), $(openssl_h | tr -d '"')$(
  [ "$mode" = test ] && echo ", $(valgrind --version), pkg-config $(pkg-config --version)")"
