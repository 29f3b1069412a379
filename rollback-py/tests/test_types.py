"""The hand-written stub matches the compiled module (mypy's stubtest), and the
examples and the pure-Python modules type-check under `mypy --strict`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mypy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_stub_matches_the_module():
    done = mypy("mypy.stubtest", "rollback._rollback", "--allowlist", "stubtest-allowlist.txt")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_examples_and_python_modules_pass_mypy_strict():
    done = mypy("mypy", "--strict", "examples", "python/rollback")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
