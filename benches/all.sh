#!/usr/bin/env bash
# Runs every side-by-side benchmark (engine, verification, Docker, PostgreSQL, S3 + Redis, the
# Kubernetes API double, Python overhead) in one go and prints one table of their
# comparisons, ratios first. Needs the servers scripts/test.sh starts and the
# ROLLBACK_TEST_* variables it exports, e.g.:
#
#   source <(QUICK=1 ./scripts/test.sh --env)    # start the servers, export their variables
#   benches/all.sh            # full runs (release build; tens of minutes)
#   benches/all.sh --test     # one quick round of each (smoke)
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
mode=(bench)
[ "${1:-}" = "--test" ] && mode=(test)
for bench in engine verify docker db pitr storage k8s; do
  echo "==> $bench" >&2
  cargo "${mode[@]}" -q -p rollback-benches --bench "$bench" -- ${1:+"$1"} 2>&1 | tee -a "$log" >&2
done
if [ -z "${1:-}" ] && [ -x .venv/bin/maturin ]; then
  # Full mode measures the release build of the Python package.
  echo "==> python package (maturin develop --release)" >&2
  (cd rollback-py && VIRTUAL_ENV="$PWD/../.venv" ../.venv/bin/maturin develop --release --quiet --features bench) >&2
fi
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import rollback' 2>/dev/null; then
  echo "==> python overhead" >&2
  (cd rollback-py && ../.venv/bin/python bench/overhead.py ${1:+--quick}) 2>&1 | tee -a "$log" >&2
fi
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo
echo "| area | comparison | ratio | target | ours | reference |"
echo "|---|---|---:|---|---:|---:|"
grep -a '^SUMMARY' "$log" | while IFS=$'\t' read -r _ area what ours ref ratio target; do
  echo "| $area | $what | $ratio | $target | $ours | $ref |"
done
rm -f "$log"
