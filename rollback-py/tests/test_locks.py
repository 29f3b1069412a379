"""Shared locks from Python: two Python processes with their own journals race for
one target through a Redis, PostgreSQL or Kubernetes Lease lock (on the API
double); the second is refused, naming the first's pid, until the first finishes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import rollback
from conftest import Releases, api_double, rollback_plan, server_env

HOLDER = r"""
import json, sys, threading
sys.path.insert(0, sys.argv[3])
import rollback
from conftest import Releases, rollback_plan

class Held(Releases):
    def apply(self, change, key):
        print("holding", flush=True)   # the lease is held while apply runs
        sys.stdin.readline()             # until the parent says go
        super().apply(change, key)

web = Held("web", ["v1", "v2"])
engine = rollback.Engine(sys.argv[1], targets=[web], lock=json.loads(sys.argv[2]))
print(engine.run(rollback_plan()).state, flush=True)
"""


@pytest.fixture(params=["redis", "postgres", "kubernetes"])
def lock(request):
    if request.param == "kubernetes":
        with api_double() as url:
            yield {"kind": "kubernetes", "namespace": "default", "cluster": {"url": url}}
        return
    var = {"redis": "ROLLBACK_TEST_REDIS_URL", "postgres": "ROLLBACK_TEST_POSTGRES_URL"}[request.param]
    server_env(var, request.param)
    yield {"kind": request.param, "url": {"from": "env", "var": var}}


def test_two_python_processes_race_for_one_target(lock, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "a"), json.dumps(lock), str(Path(__file__).parent)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        web = Releases("web", ["v1", "v2"])
        other = rollback.Engine(tmp_path / "b", targets=[web], lock=lock)
        with pytest.raises(rollback.LockedError) as refused:
            other.run(rollback_plan())
        assert f"pid {holder.pid}" in str(refused.value), str(refused.value)
        assert web.effects == [], "the refused process changed nothing"
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "succeeded"
    finally:
        holder.kill() if holder.poll() is None else None
        holder.wait(10)
    # Released: the other process goes through now.
    assert other.run(rollback_plan()).succeeded


def test_a_bad_lock_choice_is_refused_by_name(tmp_path):
    with pytest.raises(rollback.InvalidInputError) as bad:
        rollback.Engine(tmp_path, lock={"kind": "zookeeper", "url": {"from": "env", "var": "X"}})
    assert "zookeeper" in str(bad.value) and "postgres" in str(bad.value), str(bad.value)
    with pytest.raises(rollback.InvalidInputError) as typo:
        rollback.Engine(tmp_path, lock={"kind": "kubernetes", "namespace": "default", "prefx": "x"})
    assert "prefx" in str(typo.value) and "prefix" in str(typo.value), str(typo.value)
