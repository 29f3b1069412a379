#!/usr/bin/env bash
# The wheel as users get it: `maturin build --release` (abi3, the backends of
# pyproject.toml), installed with pip into a fresh venv of Debian's python3 with no
# Rust toolchain on PATH and no package index, then used: every backend listed, a
# plan run with a Python target, the stub shipped. Also into every other CPython
# >= 3.9 found under pyenv (one abi3 wheel for all), each named as it runs.
# Usage: rollback-py/scripts/test_wheel.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${ROLLBACK_VENV:-$(cd "$here/.." && pwd)/.venv}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Under CI the release build goes into the scratch directory, removed at exit: a
# gigabyte and more that later stages do not need.
[ -n "${CI:-}" ] && export CARGO_TARGET_DIR="$work/target"
cd "$here"
start=$(date +%s)
VIRTUAL_ENV="$venv" "$venv/bin/maturin" build --release --quiet --out "$work/dist" 2>&1 | grep -v '^🔗\|^📦\|^✏️\|^🛠\|^🍹\|^🐍\|^📡' || true
wheel=$(ls "$work"/dist/*.whl)
echo "rollback-py: maturin build --release took $(( $(date +%s) - start )) s: $(basename "$wheel")" >&2
case "$(basename "$wheel")" in
  *-abi3-*) ;;
  *) echo "FAIL: $(basename "$wheel") is not an abi3 wheel" >&2; exit 1 ;;
esac

smoke='
import sys, tempfile
import rollback
assert rollback.BACKENDS == ["core", "db", "docker", "k8s", "storage"], rollback.BACKENDS
kinds = {k["kind"] for k in rollback.kinds()}
for kind in ["alembic", "docker-container", "k8s-deployment", "s3-restore", "redis-invalidate", "release-dir"]:
    assert kind in kinds, kind
class Web:
    name = "web"
    def __init__(self): self.at = "v2"
    def current(self): return self.at
    def history(self): return ["v2", "v1"]
    def apply(self, change, key): self.at = change["to"]["id"]
    def observe(self, change, key): return "done" if self.at == change["to"]["id"] else "not_started"
web = Web()
plan = {"name": "web back", "stages": [{"name": "app", "steps": [
    {"id": "back", "op": "rollback", "target": "web", "to": "previous"}]}]}
report = rollback.Engine(tempfile.mkdtemp(), targets=[web]).run(plan)
assert report.succeeded and web.at == "v1", str(report)
import importlib.resources
assert importlib.resources.files("rollback").joinpath("_rollback.pyi").is_file(), "the stub is shipped"
assert importlib.resources.files("rollback").joinpath("py.typed").is_file(), "py.typed is shipped"
print("ok", sys.version.split()[0])
'
pythons=(/usr/bin/python3)
for p in /root/.pyenv/versions/3.*/bin/python3; do
  [ -x "$p" ] && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null && pythons+=("$p")
done
for python in "${pythons[@]}"; do
  clean="$work/venv-$(basename "$(dirname "$(dirname "$python")")")"
  "$python" -m venv "$clean"
  # No Rust toolchain (not on PATH) and no index: the wheel must install as it is.
  env -i PATH=/usr/bin:/bin HOME="$work" "$clean/bin/python" -m pip install --quiet --no-index "$wheel"
  if env -i PATH="$clean/bin:/usr/bin:/bin" bash -c 'command -v cargo' >/dev/null; then
    echo "FAIL: cargo is on the clean PATH" >&2; exit 1
  fi
  echo "wheel on $python: $(env -i PATH="$clean/bin:/usr/bin:/bin" HOME="$work" "$clean/bin/python" -c "$smoke")" >&2
done
