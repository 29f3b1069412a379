#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine (run as root) and
# runs every test: installs and starts PostgreSQL, Redis, the Docker engine and an S3
# server (moto), installs Prometheus (each test starts a private one), makes a Python venv with Alembic, Django, moto and boto3, and exports
# the ROLLBACK_TEST_* variables the integration tests read.
#
#   ./scripts/test.sh            # set up + all tests
#   QUICK=1 ./scripts/test.sh    # skip the apt step (machine already set up)
#   source <(QUICK=1 ./scripts/test.sh --env)   # start the servers, export their variables
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
    # PostgreSQL for rollback-db, Redis and Docker (with busybox for the test images and
    # Debian's docker-compose for the side-by-side benchmark) for the other backends.
    local need=()
    for pkg in gcc pkg-config curl wrk; do
      command -v "$pkg" >/dev/null || need+=("$pkg")
    done
    command -v pg_ctlcluster >/dev/null || need+=(postgresql postgresql-client)
    command -v redis-server >/dev/null || need+=(redis-server redis-tools)
    command -v dockerd >/dev/null || need+=(docker.io)
    [ -x /bin/busybox ] || need+=(busybox-static)
    command -v docker-compose >/dev/null || need+=(docker-compose)
    # A real browser for the HTML report test, `script` (bsdutils) for the pty test.
    command -v chromium >/dev/null || need+=(chromium)
    command -v script >/dev/null || need+=(bsdutils)
    # A font for the benchmark plots (rollback-bench-plot).
    [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
    # pgBackRest, the second point-in-time recovery engine.
    command -v pgbackrest >/dev/null || need+=(pgbackrest)
    # Prometheus for the metric-verification tests (each starts its own, on its own port).
    [ -x /usr/bin/prometheus ] || need+=(prometheus)
    if [ ${#need[@]} -gt 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    fi
  fi
  start_postgres
  python_tools
  start_redis
  start_s3
  start_docker
  prometheus_tool
}

# The Prometheus binary the tests start privately; exports ROLLBACK_TEST_PROMETHEUS.
prometheus_tool() {
  if [ ! -x /usr/bin/prometheus ]; then
    echo "Prometheus is not installed: the Prometheus tests will fail under CI=true" >&2
    return 0
  fi
  /usr/bin/prometheus --version 2>&1 | head -1
  export ROLLBACK_TEST_PROMETHEUS=/usr/bin/prometheus
}

# A throwaway Redis on its own port; exports ROLLBACK_TEST_REDIS_URL.
start_redis() {
  if ! command -v redis-server >/dev/null; then
    echo "Redis is not installed: rollback-storage's Redis tests will fail under CI=true" >&2
    return 0
  fi
  redis-cli -p 6390 ping >/dev/null 2>&1 ||
    redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 1 30); do redis-cli -p 6390 ping >/dev/null 2>&1 && break; sleep 0.2; done
  export ROLLBACK_TEST_REDIS_URL="redis://127.0.0.1:6390/"
}

# moto's S3 server from the venv; exports ROLLBACK_TEST_S3_ENDPOINT.
start_s3() {
  if ! curl -fs http://127.0.0.1:5055/moto-api/ >/dev/null 2>&1; then
    nohup .venv/bin/moto_server -H 127.0.0.1 -p 5055 >/tmp/rollback-moto.log 2>&1 &
  fi
  for _ in $(seq 1 50); do curl -fs http://127.0.0.1:5055/moto-api/ >/dev/null 2>&1 && break; sleep 0.2; done
  export ROLLBACK_TEST_S3_ENDPOINT="http://127.0.0.1:5055"
  export ROLLBACK_TEST_BOTO3_PYTHON="$PWD/.venv/bin/python"
}

# dockerd from Debian's docker.io; exports ROLLBACK_TEST_DOCKER.
start_docker() {
  if ! command -v dockerd >/dev/null; then
    echo "Docker is not installed: rollback-docker's tests will fail under CI=true" >&2
    return 0
  fi
  if ! /usr/bin/docker info >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    nohup dockerd >/tmp/rollback-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do /usr/bin/docker info >/dev/null 2>&1 && break; sleep 0.5; done
  /usr/bin/docker info --format 'docker engine {{.ServerVersion}}'
  export ROLLBACK_TEST_DOCKER="unix:///var/run/docker.sock"
}

# A virtualenv with the Python tools the tests drive (Alembic, Django, moto, boto3); exports their paths.
python_tools() {
  if [ ! -x .venv/bin/alembic ] || [ ! -x .venv/bin/django-admin ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
      [ "$(id -u)" = 0 ] && apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    fi
    .venv/bin/pip install -q --disable-pip-version-check alembic django
  fi
  # Alembic on PostgreSQL (the secret-URL test) needs a driver.
  .venv/bin/python -c 'import psycopg2' 2>/dev/null ||
    .venv/bin/pip install -q --disable-pip-version-check psycopg2-binary
  if [ ! -x .venv/bin/moto_server ] || ! .venv/bin/python -c 'import boto3' 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check 'moto[server]' boto3
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
  # The lock-race test connects 100 processes at once.
  local conf="/etc/postgresql/$version/main/conf.d/rollback-tests.conf"
  if [ "$(id -u)" = 0 ] && [ ! -f "$conf" ]; then
    echo "max_connections = 300" > "$conf"
    pg_ctlcluster "$version" main restart 2>/dev/null || true
  fi
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

# `--env`: set up and start the servers, print their `export ROLLBACK_TEST_*=…` lines
# (for `source <(./scripts/test.sh --env)`), run nothing.
if [ "${1:-}" = "--env" ]; then
  setup >&2
  env | grep '^ROLLBACK_TEST_' | sort | sed 's/^/export /'
  exit 0
fi

# Host state the tests must leave alone, checked after every stage (and on exit, so a
# failing stage still says so): the shared daemon's docker0 bridge — a private dockerd
# started with `--bridge none` deletes it, and every later image build then fails.
host_state() {
  ip link show docker0 >/dev/null 2>&1 && echo "docker0"
  return 0
}
check_host_state() {
  local now
  now=$(host_state)
  if [ -n "$host_state_before" ] && [ "$now" != "$host_state_before" ]; then
    echo "HOST STATE DAMAGED after stage '$1': had [$host_state_before], now [$now]" >&2
    return 1
  fi
}

# Every bench once at small sizes, then the scaling series they printed drawn as
# plots (each plot must come out).
bench_smoke() {
  local dir
  dir=$(mktemp -d)
  cargo test -q -p rollback-benches --benches -- --test | tee "$dir/log" || { rm -rf "$dir"; return 1; }
  grep -a '^SERIES' "$dir/log" > "$dir/series.tsv"
  cargo run -q -p rollback-benches --bin rollback-bench-plot -- "$dir/series.tsv" "$dir/plots" || { rm -rf "$dir"; return 1; }
  for id in engine-steps docker-services k8s-requests k8s-wall s3-seconds s3-rss redis-keys journal-writers; do
    [ -s "$dir/plots/$id.png" ] || { echo "bench smoke: plot $id.png was not drawn" >&2; rm -rf "$dir"; return 1; }
  done
  rm -rf "$dir"
}

stage "setup";                 timed setup setup
host_state_before=$(host_state)
trap 'check_host_state "(exit)" || true' EXIT
stage "tests";                 timed tests run_tests
check_host_state tests
stage "python package";        timed python rollback-py/scripts/test_python.sh
check_host_state python
stage "python wheel (abi3, clean venvs)"; timed wheel rollback-py/scripts/test_wheel.sh
check_host_state wheel
stage "quickstart";            timed quickstart cargo run -q -p rollback-examples --bin quickstart
check_host_state quickstart
# One quick round of every benchmark, in the debug profile (the numbers are meaningless;
# this checks they run). Full runs: `cargo bench -p rollback-benches` (see README).
stage "benchmarks (smoke)";    timed bench-smoke bench_smoke
check_host_state bench-smoke
