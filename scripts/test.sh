#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine (run as root) and
# runs every test. Servers the backends need are installed and started here as the
# backends land; today the suite needs none.
#
#   ./scripts/test.sh            # set up + all tests
#   QUICK=1 ./scripts/test.sh    # skip the apt step (machine already set up)
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n==> %s\n' "$*"; }
timed() {
  local name=$1; shift
  local t0=$SECONDS
  "$@"
  printf '    [%s took %ss]\n' "$name" $((SECONDS - t0))
}

setup() {
  if ! command -v cargo >/dev/null; then
    echo "cargo not found: install the Rust toolchain (rustup, Rust >= 1.89) first" >&2
    exit 1
  fi
  if [ -z "${QUICK:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Build essentials for -sys crates, curl and wrk for the side-by-side benchmarks;
    # servers (docker.io, postgresql, redis, moto) join with the backends that need them.
    local need=()
    for pkg in gcc pkg-config curl wrk; do
      command -v "$pkg" >/dev/null || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    fi
  fi
}

run_tests() {
  if command -v cargo-nextest >/dev/null; then
    cargo nextest run --workspace --all-features --no-fail-fast
  else
    cargo test --workspace --all-features --no-fail-fast --lib --bins --tests
  fi
  cargo test --workspace --all-features --doc
}

stage "setup";                 timed setup setup
stage "tests";                 timed tests run_tests
stage "quickstart";            timed quickstart cargo run -q -p rollback-examples --bin quickstart
stage "benchmarks (smoke)";    timed bench-smoke cargo bench -q -p rollback-benches -- --test
