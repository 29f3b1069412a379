"""AsyncEngine and the *_async verifier methods: awaitables on the module's Tokio
runtime; the event loop keeps running while they work."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import pytest

import rollback
from conftest import Releases, rollback_plan


class Ticks:
    """Counts 5 ms sleeps on the running loop until stopped: proof that it ran."""

    def __init__(self) -> None:
        self.count = 0
        self.task = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.005)
            self.count += 1

    def stop(self) -> int:
        self.task.cancel()
        return self.count


def test_async_engine_runs_two_plans_concurrently_while_the_loop_ticks(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    api = Releases("api", ["a1", "a2"])

    class SlowHealth:
        name = "slow"

        async def check(self):  # async def: run on the caller's loop
            await asyncio.sleep(0.05)
            return True

    async def main():
        engine = rollback.AsyncEngine(tmp_path, targets=[web, api], verifiers=[SlowHealth()])
        ticks = Ticks()
        web_plan = rollback_plan("web", name="web")
        web_plan["stages"].append({"name": "v", "steps": [{"id": "ok", "op": "verify", "verifier": "slow",
                                                           "policy": {"interval": "10ms", "passes": 3}}]})
        dry = await engine.dry_run(web_plan)
        assert isinstance(dry, rollback.DryRun) and dry.steps[0]["change"]["to"]["id"] == "v2"
        reports = await asyncio.gather(engine.run(web_plan), engine.run(rollback_plan("api", name="api")))
        history = await engine.history()
        return reports, ticks.stop(), history

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


def test_async_def_methods_run_on_the_callers_loop(tmp_path):
    """Through AsyncEngine, `async def` apply/observe/check run on the loop that awaits
    the run: they can await an asyncio.Queue made on it (another loop would raise)."""

    class LoopBound(Releases):
        def __init__(self, queue: asyncio.Queue) -> None:
            super().__init__("web", ["v1", "v2"])
            self.queue = queue
            self.loops: list = []

        async def apply(self, change, key):  # type: ignore[override]
            self.loops.append(asyncio.get_running_loop())
            assert await self.queue.get() == "go"
            super().apply(change, key)

    class Health:
        name = "health"
        loops: list = []

        async def check(self):
            self.loops.append(asyncio.get_running_loop())
            return True

    async def main():
        queue: asyncio.Queue = asyncio.Queue()
        target, health = LoopBound(queue), Health()
        engine = rollback.AsyncEngine(tmp_path, targets=[target], verifiers=[health])
        plan = rollback_plan("web")
        plan["stages"].append({"name": "v", "steps": [{"id": "ok", "op": "verify", "verifier": "health",
                                                       "policy": {"interval": "5ms", "passes": 2}}]})
        run = asyncio.ensure_future(engine.run(plan))
        await asyncio.sleep(0.05)
        assert not run.done(), "apply waits for the queue, on this loop"
        await queue.put("go")
        report = await run
        return asyncio.get_running_loop(), target, health, report

    caller, target, health, report = asyncio.run(main())
    assert report.succeeded, str(report)
    assert target.current_version == "v1"
    assert target.loops == [caller] and health.loops == [caller, caller]


def test_the_loop_keeps_running_while_a_blocking_python_method_runs(tmp_path):
    """A Python verifier that blocks (time.sleep) runs on an engine thread: the loop
    that awaits the run keeps ticking, and the verifier saw no running loop."""
    seen = {}

    class Blocking:
        name = "blocking"

        def check(self):
            seen["thread"] = threading.current_thread() is threading.main_thread()
            time.sleep(0.3)
            return True

    async def main():
        engine = rollback.AsyncEngine(tmp_path, verifiers=[Blocking()])
        ticks = Ticks()
        plan = {"name": "wait", "stages": [{"name": "v", "steps": [
            {"id": "ok", "op": "verify", "verifier": "blocking", "policy": {"interval": "0s", "passes": 1}}]}]}
        report = await engine.run(plan)
        return report, ticks.stop()

    report, ticks = asyncio.run(main())
    assert report.succeeded
    assert seen["thread"] is False, "the blocking method ran off the loop's thread"
    assert ticks >= 20, f"the loop ticked {ticks} times in 300 ms of blocking verification"


def test_cancelling_an_awaited_run_stops_it_at_a_step_boundary_and_resume_finishes(tmp_path):
    started = asyncio.Event()

    class Slow:
        name = "slow"

        async def check(self):
            started.set()
            await asyncio.sleep(0.2)
            return True

    def plan():
        steps = [{"id": f"v{i}", "op": "verify", "verifier": "slow", "policy": {"interval": "0s", "passes": 1}}
                 for i in range(3)]
        return {"name": "three checks", "stages": [{"name": "v", "steps": steps}]}

    async def main():
        engine = rollback.AsyncEngine(tmp_path, verifiers=[Slow()])
        task = asyncio.ensure_future(engine.run(plan(), run_id="cancel-me"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):  # the run goes on to the end of its step, then stops
            report = await engine.report("cancel-me")
            if report.to_dict()["state"] != "running":
                break
            await asyncio.sleep(0.01)
        resumed = await engine.resume("cancel-me")
        return report, resumed

    report, resumed = asyncio.run(main())
    assert report.to_dict()["state"] == "cancelled", str(report)
    assert len([s for s in report.to_dict()["steps"] if s["state"] == "done"]) == 1, str(report)
    assert resumed.succeeded, str(resumed)


def test_cancelling_an_awaited_check_drops_its_work():
    """asyncio.wait_for's timeout cancels the Rust future: the command's process is
    killed (checked in the process table), and the loop goes on."""
    argv = ["sleep", "37.25"]
    verifier = rollback.Verifier({"kind": "command", "name": "slow", "config": {"argv": argv, "timeout": "60s"}})

    def running() -> bool:
        return subprocess.run(["pgrep", "-f", " ".join(argv)], capture_output=True).returncode == 0

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(verifier.check_async(), 0.5)
        for _ in range(100):
            if not running():
                return True
            await asyncio.sleep(0.02)
        return False

    assert asyncio.run(main()), "the check's process outlived its cancelled await"
