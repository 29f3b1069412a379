"""AsyncEngine and the *_async verifier methods: awaitables on the module's Tokio
runtime; the event loop keeps running while they work."""

from __future__ import annotations

import asyncio

import pytest

import rollback
from conftest import Releases, rollback_plan


def test_async_engine_runs_two_plans_concurrently_while_the_loop_ticks(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    api = Releases("api", ["a1", "a2"])

    class SlowHealth:
        name = "slow"

        async def check(self):  # async def: run with asyncio.run on an engine thread
            await asyncio.sleep(0.05)
            return True

    async def main():
        engine = rollback.AsyncEngine(tmp_path, targets=[web, api], verifiers=[SlowHealth()])
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        tick = asyncio.create_task(ticker())
        web_plan = rollback_plan("web", name="web")
        web_plan["stages"].append({"name": "v", "steps": [{"id": "ok", "op": "verify", "verifier": "slow",
                                                           "policy": {"interval": "10ms", "passes": 3}}]})
        dry = await engine.dry_run(web_plan)
        assert isinstance(dry, rollback.DryRun) and dry.steps[0]["change"]["to"]["id"] == "v2"
        reports = await asyncio.gather(engine.run(web_plan), engine.run(rollback_plan("api", name="api")))
        tick.cancel()
        history = await engine.history()
        return reports, ticks, history

    (web_report, api_report), ticks, history = asyncio.run(main())
    assert web_report.succeeded and api_report.succeeded
    assert web.current_version == "v2" and api.current_version == "a1"
    assert ticks >= 10, ticks  # the loop ran during ~150 ms of verification
    assert {h["run"] for h in history} == {web_report.run, api_report.run}


def test_async_errors_are_the_same_exception_classes(tmp_path):
    async def main():
        engine = rollback.AsyncEngine(tmp_path)
        with pytest.raises(rollback.NotFoundError):
            await engine.report("missing")
        with pytest.raises(rollback.InvalidInputError):
            await engine.run(rollback_plan())

    asyncio.run(main())


def test_verifier_async_methods():
    async def main():
        v = rollback.Verifier.noop()
        checks = await asyncio.gather(*(v.check_async() for _ in range(50)))
        verdict = await rollback.Verifier({"kind": "command", "name": "t", "config": {"argv": ["true"]}}).probe_async(
            {"interval": "5ms", "passes": 2}
        )
        return checks, verdict

    checks, verdict = asyncio.run(main())
    assert all(c["outcome"] == "pass" for c in checks)
    assert verdict["passed"] and len(verdict["checks"]) == 2
