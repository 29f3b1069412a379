#!/usr/bin/env bash
# Builds the Python package `rollback` into the repository's .venv with
# `maturin develop` (debug; backends db + docker from pyproject.toml) and runs its
# pytest suite. Server-backed tests read ROLLBACK_TEST_POSTGRES_URL,
# ROLLBACK_TEST_ALEMBIC, ROLLBACK_TEST_DOCKER, ROLLBACK_TEST_REDIS_URL and
# ROLLBACK_TEST_S3_ENDPOINT like the Rust tests (and the API double this script builds): missing ones
# fail under CI=true and are skipped with a loud NOT RUN locally.
# Usage: rollback-py/scripts/test_python.sh [pytest args...]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${ROLLBACK_VENV:-$(cd "$here/.." && pwd)/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
need=()
[ -x "$venv/bin/maturin" ] || need+=('maturin>=1.9.4,<2')
"$venv/bin/python" -c 'import pytest' 2>/dev/null || need+=(pytest)
"$venv/bin/python" -c 'import psycopg2' 2>/dev/null || need+=(psycopg2-binary) # Alembic on PostgreSQL
"$venv/bin/python" -c 'import mypy' 2>/dev/null || need+=(mypy) # stubtest and --strict over the examples
if [ ${#need[@]} -gt 0 ]; then
  "$venv/bin/python" -m pip install -q "${need[@]}"
fi
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
cd "$here"
start=$(date +%s)
maturin develop --quiet 2>&1 | grep -v '^🔗\|^📦\|^✏️\|^🛠' || true
"$venv/bin/python" -c 'import rollback, sys; print("rollback", rollback.__version__, "backends", rollback.BACKENDS, file=sys.stderr)'
echo "rollback-py: maturin develop took $(( $(date +%s) - start )) s" >&2
# The Kubernetes API double as a process, for the k8s tests (no cluster here).
cargo build -q -p rollback-k8s --features api-double --bin rollback-k8s-api-double
export ROLLBACK_TEST_K8S_DOUBLE="${CARGO_TARGET_DIR:-$here/../target}/debug/rollback-k8s-api-double"
exec "$venv/bin/python" -m pytest -q -rs "$@"
