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
    # Build essentials for -sys crates, curl and wrk for the side-by-side benchmarks,
    # PostgreSQL for rollback-db; docker.io, redis and moto join with their backends.
    local need=()
    for pkg in gcc pkg-config curl wrk; do
      command -v "$pkg" >/dev/null || need+=("$pkg")
    done
    command -v pg_ctlcluster >/dev/null || need+=(postgresql postgresql-client)
    if [ ${#need[@]} -gt 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    fi
  fi
  start_postgres
  python_tools
}

# A virtualenv with the Python tools the tests drive (Alembic, Django); exports their paths.
python_tools() {
  if [ ! -x .venv/bin/alembic ] || [ ! -x .venv/bin/django-admin ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
      [ "$(id -u)" = 0 ] && apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    fi
    .venv/bin/pip install -q --disable-pip-version-check alembic django
  fi
  export ROLLBACK_TEST_ALEMBIC="$PWD/.venv/bin/alembic"
  export ROLLBACK_TEST_DJANGO_PYTHON="$PWD/.venv/bin/python"
}

# Starts the Debian cluster and a test superuser; exports ROLLBACK_TEST_POSTGRES_URL.
start_postgres() {
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "PostgreSQL is not installed: rollback-db's PostgreSQL tests will fail under CI=true" >&2
    return 0
  fi
  local version
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_lsclusters -h | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null
  pg_ctlcluster "$version" main start 2>/dev/null || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
  pg_isready -h 127.0.0.1
  if [ "$(id -u)" = 0 ]; then
    su postgres -c "psql -q -v ON_ERROR_STOP=1" <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rollback') THEN
    CREATE ROLE rollback LOGIN SUPERUSER PASSWORD 'rollback-test';
  END IF;
END $$;
SQL
  fi
  export ROLLBACK_TEST_POSTGRES_URL="postgres://rollback:rollback-test@127.0.0.1:5432/postgres"
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
