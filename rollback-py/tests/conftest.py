"""Shared helpers: server gating like the Rust tests' `server_env`, and in-memory
Python targets whose state is what the tests assert on."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from typing import Any, Dict, Iterator, List, Optional

import pytest


def server_env(var: str, what: str) -> str:
    """The variable's value; under CI=true a missing one fails the test, locally it
    skips loudly (run pytest with -rs to see the reasons)."""
    value = os.environ.get(var)
    if value:
        return value
    if os.environ.get("CI") == "true":
        pytest.fail(f"{var} is not set: {what} is required under CI (scripts/test.sh starts or installs it)")
    print(f"\n*** NOT RUN: {what} tests need {var} (run ./scripts/test.sh) ***\n", file=sys.stderr)
    pytest.skip(f"*** NOT RUN: {what} tests need {var} ***")


class Releases:
    """A versioned Python target: the 'backend' is `self.current_version`, and every
    effect is recorded in `self.effects` (what tests assert on)."""

    category = "app"

    def __init__(self, name: str, versions: List[str], current: Optional[str] = None) -> None:
        self.name = name
        self.versions = list(versions)  # oldest first
        self.current_version = current or versions[-1]
        self.effects: List[tuple] = []
        self.keys: Dict[str, str] = {}
        self.fail_apply: Optional[BaseException] = None
        self.apply_gate: Optional[threading.Event] = None
        self.lock = threading.Lock()

    def identity(self) -> str:
        return f"test:{self.name}"

    def current(self) -> str:
        return self.current_version

    def history(self) -> List[Any]:
        return [{"id": v, "description": f"release {v}"} for v in reversed(self.versions)]

    def apply(self, change: Dict[str, Any], key: str) -> None:
        if self.apply_gate is not None:
            self.apply_gate.wait(30)
        if self.fail_apply is not None:
            raise self.fail_apply
        with self.lock:
            self.current_version = change["to"]["id"]
            self.keys[key] = change["to"]["id"]
            self.effects.append(("apply", change["from"]["id"], change["to"]["id"], key))

    def observe(self, change: Dict[str, Any], key: str) -> Any:
        if self.current_version == change["to"]["id"]:
            return "done"
        if self.current_version == change["from"]["id"]:
            return "not_started"
        return ("diverged", f"{self.name} is at {self.current_version}")


class Flag:
    """An action target (a feature flag) with prepare/apply/observe."""

    category = "flag"

    def __init__(self, name: str, enabled: bool = True) -> None:
        self.name = name
        self.enabled = enabled
        self.effects: List[bool] = []

    def prepare(self, request: Dict[str, Any]) -> Dict[str, Any]:
        action = request["action"]["action"]
        want = {"off": False, "on": True}[action]
        return {
            "from": "on" if self.enabled else "off",
            "to": "on" if want else "off",
            "description": f"flag {self.name} {action}",
        }

    def apply(self, change: Dict[str, Any], key: str) -> None:
        self.enabled = change["to"]["id"] == "on"
        self.effects.append(self.enabled)

    def observe(self, change: Dict[str, Any], key: str) -> str:
        now = "on" if self.enabled else "off"
        return "done" if now == change["to"]["id"] else "not_started"


def rollback_plan(target: str = "web", name: str = "web back", **step: Any) -> Dict[str, Any]:
    return {
        "name": name,
        "stages": [{"name": "app", "steps": [{"id": f"{target}-back", "op": "rollback", "target": target, "to": "previous", **step}]}],
    }


@contextlib.contextmanager
def api_double() -> Iterator[str]:
    """The Kubernetes API double as a process (it emulates the controllers); its URL."""
    binary = server_env("ROLLBACK_TEST_K8S_DOUBLE", "the Kubernetes API double binary (test_python.sh builds it)")
    proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://"), url
    try:
        yield url
    finally:
        proc.stdin.close()
        proc.wait(10)
