#!/usr/bin/env bash
# Builds the Python package `rollback` into the repository's .venv with
# `maturin develop` (debug; backends db + docker from pyproject.toml) and runs its
# pytest suite. Server-backed tests read ROLLBACK_TEST_POSTGRES_URL,
# ROLLBACK_TEST_ALEMBIC and ROLLBACK_TEST_DOCKER like the Rust tests: missing ones
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
if [ ${#need[@]} -gt 0 ]; then
  "$venv/bin/python" -m pip install -q "${need[@]}"
fi
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
cd "$here"
start=$(date +%s)
maturin develop --quiet 2>&1 | grep -v '^🔗\|^📦\|^✏️\|^🛠' || true
"$venv/bin/python" -c 'import rollback, sys; print("rollback", rollback.__version__, "backends", rollback.BACKENDS, file=sys.stderr)'
echo "rollback-py: maturin develop took $(( $(date +%s) - start )) s" >&2
exec "$venv/bin/python" -m pytest -q -rs "$@"
