#!/usr/bin/env bash
# Runs every side-by-side benchmark (engine, verification, Docker, PostgreSQL, S3 + Redis, the
# Kubernetes API double, Python overhead) in one go and prints one table of their
# comparisons, ratios first. Needs the servers scripts/test.sh starts and the
# ROLLBACK_TEST_* variables it exports, e.g.:
#
#   source <(QUICK=1 ./scripts/test.sh --env)    # start the servers, export their variables
#   benches/all.sh            # full runs (release build; tens of minutes)
#   benches/all.sh --test     # one quick round of each (smoke)
#   benches/all.sh --plots DIR   # also: the scaling series as PNG plots in DIR, and how each grows
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
mode=(bench)
test_flag=""
plots=""
while [ $# -gt 0 ]; do
  case "$1" in
    --test) mode=(test); test_flag="--test" ;;
    --plots) plots="${2:?--plots needs a directory}"; shift ;;
    *) echo "usage: benches/all.sh [--test] [--plots DIR]" >&2; exit 2 ;;
  esac
  shift
done
failed=()
for bench in engine verify docker db pitr storage k8s journal; do
  echo "==> $bench" >&2
  cargo "${mode[@]}" -q -p rollback-benches --bench "$bench" -- ${test_flag:+"$test_flag"} 2>&1 | tee -a "$log" >&2 ||
    failed+=("$bench")
done
if [ -z "$test_flag" ] && [ -x .venv/bin/maturin ]; then
  # Full mode measures the release build of the Python package.
  echo "==> python package (maturin develop --release)" >&2
  (cd rollback-py && VIRTUAL_ENV="$PWD/../.venv" ../.venv/bin/maturin develop --release --quiet --features bench) >&2
fi
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import rollback' 2>/dev/null; then
  echo "==> python overhead" >&2
  (cd rollback-py && ../.venv/bin/python bench/overhead.py ${test_flag:+--quick}) 2>&1 | tee -a "$log" >&2
fi
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo
echo "| area | comparison | ratio | target | ours | reference |"
echo "|---|---|---:|---|---:|---:|"
grep -a '^SUMMARY' "$log" | while IFS=$'\t' read -r _ area what ours ref ratio target; do
  echo "| $area | $what | $ratio | $target | $ours | $ref |"
done
if [ -n "$plots" ]; then
  mkdir -p "$plots"
  grep -a '^SERIES' "$log" > "$plots/series.tsv"
  echo
  echo "How cost grows (plots in $plots; k is the exponent of the total between neighbouring points):"
  echo
  profile=(--release)
  [ -n "$test_flag" ] && profile=()
  cargo run -q ${profile[@]+"${profile[@]}"} -p rollback-benches --bin rollback-bench-plot -- "$plots/series.tsv" "$plots" || {
    rm -f "$log"
    exit 1
  }
fi
rm -f "$log"
if [ ${#failed[@]} -gt 0 ]; then
  echo "benches that failed: ${failed[*]}" >&2
  exit 1
fi
