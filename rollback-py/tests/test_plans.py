"""Plans built from dicts and TOML, run by the Rust engine with Python targets,
verifiers and notifiers; dry-run, resume, approval, history, undo, events."""

from __future__ import annotations

import threading
import time

import pytest

import rollback
from conftest import Flag, Releases, rollback_plan


def test_run_rolls_a_python_target_back_and_reports_it(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    events = []
    engine = rollback.Engine(tmp_path, targets=[web], on_event=events.append)
    report = engine.run(rollback_plan(), reason="error rate 7 %")
    assert report.succeeded and report.state == "succeeded", str(report)
    assert web.current_version == "v2"
    assert [e[:3] for e in web.effects] == [("apply", "v3", "v2")]
    key = web.effects[0][3]
    assert key.startswith(report.run) and "web-back" in key
    assert report.reason == "error rate 7 %"
    step = report.steps[0]
    assert step["step"] == "web-back" and step["state"] == "done"
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished", kinds
    assert "step_finished" in kinds
    assert all(e["run"] == report.run for e in events)


class CopyingReleases(Releases):
    """A target whose apply copies files one by one and says how far it is."""

    def apply(self, change, key):
        for done in range(1, 301):
            rollback.progress(done, 300, "files")
            time.sleep(0.001)
        super().apply(change, key)


def test_progress_from_a_python_target_reaches_on_event(tmp_path):
    web = CopyingReleases("web", ["v1", "v2", "v3"])
    events = []
    rollback.progress(1, 2, "files")  # outside a step: nothing, no error
    engine = rollback.Engine(tmp_path, targets=[web], on_event=events.append)
    report = engine.run(rollback_plan())
    assert report.succeeded, str(report)
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all(e["step"] == "web-back" and e["unit"] == "files" for e in progress), events
    assert (progress[-1]["done"], progress[-1]["total"]) == (300, 300), progress[-1]
    assert len(progress) < 60, f"throttled to one per 100 ms: {len(progress)} events"


def test_dry_run_prepares_everything_and_changes_nothing(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    flag = Flag("checkout-v2")
    plan = rollback.Plan.from_dict(
        {
            "name": "flag then app",
            "stages": [
                {"name": "flags", "steps": [{"id": "flag-off", "op": "action", "target": "checkout-v2", "action": "off"}]},
                {"name": "app", "steps": [{"id": "web-back", "op": "rollback", "target": "web", "to": {"back": 2}}]},
            ],
        }
    )
    engine = rollback.Engine(tmp_path, targets=[web, flag])
    dry = engine.dry_run(plan)
    assert [s["step"] for s in dry.steps] == ["flag-off", "web-back"]
    assert dry.steps[1]["change"]["to"]["id"] == "v1"
    assert dry.identities == {"web": "test:web", "checkout-v2": "python:python:checkout-v2"}
    assert "web" in str(dry)
    assert web.effects == [] and flag.effects == [] and flag.enabled
    assert engine.runs() == []  # nothing journaled


def test_plan_from_toml_with_a_python_target_kind(tmp_path):
    built = []

    class Scripted(Releases):
        def __init__(self, name, config):
            super().__init__(name, config["versions"])
            built.append(self)

    toml = """
name = "scripted back"
budget = "5m"
[[targets]]
kind = "deploy-script"
name = "api"
config = { versions = ["a", "b", "c"] }
[[stages]]
name = "app"
[[stages.steps]]
id = "api-back"
op = "rollback"
target = "api"
to = { exact = "a" }
"""
    plan = rollback.Plan.from_toml(toml)
    assert plan.name == "scripted back" and plan.budget == 300.0 and plan.step_ids == ["api-back"]
    assert rollback.Plan.from_toml(plan.to_toml()).to_dict() == plan.to_dict()
    engine = rollback.Engine(tmp_path, target_kinds={"deploy-script": Scripted})
    report = engine.run(toml)
    assert report.succeeded, str(report)
    # built once for preflight; the instance that ran is at "a"
    assert any(t.current_version == "a" for t in built)


def test_python_verifier_and_notifier_in_a_plan(tmp_path):
    web = Releases("web", ["v1", "v2"])
    calls = []

    class Health:
        name = "health"

        def check(self):
            calls.append(web.current_version)
            return {"outcome": "pass" if web.current_version == "v1" else "fail", "detail": web.current_version,
                    "measurements": {"version": 1.0}}

    class Broken:
        name = "pager"

        def notify(self, event):
            raise RuntimeError("pager is down")

    plan = rollback_plan()
    plan["stages"].append(
        {"name": "verify", "steps": [{"id": "healthy", "op": "verify", "verifier": "health",
                                      "policy": {"interval": "10ms", "passes": 2, "deadline": "5s"}}]}
    )
    engine = rollback.Engine(tmp_path, targets=[web], verifiers=[Health()], notifiers=[Broken()])
    report = engine.run(plan)
    assert report.succeeded, str(report)
    assert calls == ["v1", "v1"]
    assert report.notification_failures and "pager is down" in report.notification_failures[0]


def test_compare_and_swap_gate_stops_python_apply_when_the_target_moved(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    engine = rollback.Engine(tmp_path, targets=[web])

    real_apply = web.apply

    def moved_then_apply(change, key):  # never reached: observe reports divergence first
        real_apply(change, key)

    web.apply = moved_then_apply
    original_observe = web.observe

    def observe(change, key):
        web.current_version = "v9-hotfix"  # someone deployed a hotfix after preflight
        return original_observe(change, key)

    web.observe = observe
    report = engine.run(rollback_plan())
    assert not report.succeeded
    assert web.effects == []
    assert web.current_version == "v9-hotfix"
    assert "v9-hotfix" in str(report)


def test_failed_python_apply_then_resume_in_a_new_engine(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    web.fail_apply = ConnectionError("deploy API unreachable")
    report = rollback.Engine(tmp_path, targets=[web]).run(rollback_plan())
    assert report.state in ("failed", "escalated"), str(report)
    failed = report.steps[0]
    assert failed["state"] == "failed"
    assert "ConnectionError: deploy API unreachable" in str(failed)
    assert web.current_version == "v3"

    # The run is journaled: a new engine (as a fresh process would) reads it back.
    web.fail_apply = None
    again = rollback.Engine(tmp_path, targets=[web])
    assert again.report(report.run).state == report.state
    assert [r["run"] for r in again.runs()] == [report.run]
    history = again.history(target="web")
    assert history == []  # nothing changed in place


def test_resume_finishes_a_run_interrupted_by_cancel(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    api = Releases("api", ["a1", "a2"])
    plan = {
        "name": "two stages",
        "stages": [
            {"name": "web", "steps": [{"id": "web-back", "op": "rollback", "target": "web", "to": "previous"}]},
            {"name": "api", "steps": [{"id": "api-back", "op": "rollback", "target": "api", "to": "previous"}]},
        ],
    }
    cancel = rollback.Cancel()
    real_apply = web.apply

    def apply_then_cancel(change, key):
        real_apply(change, key)
        cancel.cancel()  # honoured at the next step boundary: api-back never starts

    web.apply = apply_then_cancel
    engine = rollback.Engine(tmp_path, targets=[web, api])
    result = {"report": engine.run(plan, cancel=cancel)}
    web.apply = real_apply
    report = result["report"]
    assert cancel.cancelled
    assert web.current_version == "v2" and api.current_version == "a2", str(report)
    assert "api-back" in report.not_started
    resumed = rollback.Engine(tmp_path, targets=[web, api]).resume(report.run)
    assert resumed.run == report.run
    assert resumed.succeeded, str(resumed)
    assert api.current_version == "a1"
    assert [e[:3] for e in web.effects] == [("apply", "v3", "v2")]  # exactly once


def test_approval_from_another_engine_history_annotate_and_undo(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    plan = rollback_plan()
    plan["stages"].insert(
        0, {"name": "gate", "steps": [{"id": "go", "op": "approval", "prompt": "roll web back?", "approvers": ["alice"]}]}
    )
    requested = threading.Event()

    def on_event(event):
        if event["event"] == "approval_requested":
            requested.set()

    engine = rollback.Engine(tmp_path, targets=[web], on_event=on_event, approval_poll=0.02)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("report", engine.run(plan, run_id="gated-1")))
    t.start()
    assert requested.wait(20)
    other = rollback.Engine(tmp_path)
    with pytest.raises(rollback.PermissionDeniedError) as denied:
        other.approve("gated-1", "go", by="mallory")
    assert denied.value.kind == "permission_denied"
    assert web.current_version == "v3"
    other.approve("gated-1", "go", by="alice")
    t.join(30)
    report = result["report"]
    assert report.succeeded and web.current_version == "v2", str(report)

    # A fresh engine, as a second process would have.
    rollback.Engine(tmp_path).annotate("gated-1", by="alice", root_cause="bad cache key", postmortem="https://wiki/pm/1")
    (record,) = engine.history(target="web")
    assert record["run"] == "gated-1" and record["root_cause"] == "bad cache key"
    assert record["changes"] == [{"target": "web", "from": {"id": "v3"}, "to": {"id": "v2"}}]

    undo = engine.plan_undo("gated-1")
    assert isinstance(undo, rollback.Plan) and undo.to_dict()["undoes"] == "gated-1"
    assert engine.run(undo).succeeded
    assert web.current_version == "v3"


def test_should_rollback_reads_the_runbook_thresholds():
    now = rollback.should_rollback({"error_rate": 0.07}, health_checks_failing=True)
    assert now.action == "rollback_now" and now and now.rollback
    assert any("error rate 7.0 %" in r for r in now.reasons)
    planned = rollback.should_rollback(error_rate=0.02, window="10m")
    assert planned.action == "consider"
    calm = rollback.should_rollback()
    assert calm.action == "monitor" and not calm
    softer = rollback.should_rollback(error_rate=0.07, policy="runbook_003")
    assert softer.action == "consider"
    with pytest.raises(rollback.InvalidInputError):
        rollback.should_rollback(error_rate="high")


def test_verifier_handles_from_specs(tmp_path):
    ok = rollback.Verifier({"kind": "command", "name": "true", "config": {"argv": ["true"]}})
    assert ok.check()["outcome"] == "pass"
    verdict = ok.probe({"interval": "10ms", "passes": 3})
    assert verdict["passed"] and len(verdict["checks"]) == 3
    bad = rollback.Verifier({"kind": "command", "name": "false", "config": {"argv": ["false"]}})
    verdict = bad.probe({"interval": "1ms", "passes": 1, "max_failures": 2})
    assert not verdict["passed"] and "failures" in verdict["reason"]
    py = rollback.Verifier(type("V", (), {"name": "py", "check": lambda self: ("fail", "nope")})())
    assert py.check()["outcome"] == "fail" and py.check()["detail"] == "nope"


def test_a_long_lived_second_engine_can_annotate_after_approving(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    plan = rollback_plan()
    plan["stages"].insert(0, {"name": "gate", "steps": [{"id": "go", "op": "approval", "prompt": "go?"}]})
    requested = threading.Event()
    engine = rollback.Engine(tmp_path, targets=[web], approval_poll=0.02,
                             on_event=lambda e: e["event"] == "approval_requested" and requested.set())
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("report", engine.run(plan, run_id="g")))
    t.start()
    assert requested.wait(20)
    other = rollback.Engine(tmp_path)
    other.approve("g", "go", by="alice")
    t.join(30)
    other.annotate("g", by="alice", root_cause="x")
    assert engine.report("g").succeeded


def test_a_relative_plan_run_again_is_refused_unless_again(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    engine = rollback.Engine(tmp_path, targets=[web])
    first = engine.run(rollback_plan())
    assert web.current_version == "v2"
    with pytest.raises(rollback.InvalidInputError) as refused:
        engine.run(rollback_plan())
    assert first.run in str(refused.value) and "again" in str(refused.value)
    assert web.current_version == "v2", "a refused run changes nothing"
    assert engine.run(rollback_plan(), again=True).succeeded
    assert web.current_version == "v1"


def test_no_wait_stops_at_the_gate(tmp_path):
    web = Releases("web", ["v1", "v2"])
    engine = rollback.Engine(tmp_path, targets=[web], approval_poll=0.02)
    plan = {
        "name": "gated",
        "stages": [
            {"name": "gate", "steps": [{"id": "go", "op": "approval", "prompt": "go?"}]},
            {"name": "app", "steps": [{"id": "web-back", "op": "rollback", "target": "web", "to": "previous"}]},
        ],
    }
    stopped = engine.run(plan, no_wait=True)
    assert stopped.state == "cancelled" and web.current_version == "v2", str(stopped)
    engine.approve(stopped.run, "go", by="alice")
    assert engine.resume(stopped.run).succeeded and web.current_version == "v1"


def test_python_target_kinds_receive_their_specs_secrets_never_shown(tmp_path, monkeypatch):
    token = "tok-7f3a9e-SECRET"
    monkeypatch.setenv("RBPY_DEPLOY_TOKEN", token)
    seen = []

    class Deployer(Releases):
        def __init__(self, name, config, secrets):
            super().__init__(name, config["versions"])
            seen.append((secrets["token"], "token" in secrets, secrets.keys(), repr(secrets), str(secrets)))

    plan = {
        "name": "deployer back",
        "targets": [{"kind": "deployer", "name": "api", "config": {"versions": ["a", "b"]},
                     "secrets": {"token": {"from": "env", "var": "RBPY_DEPLOY_TOKEN"}}}],
        "stages": [{"name": "app", "steps": [{"id": "api-back", "op": "rollback", "target": "api",
                                               "to": {"exact": "a"}}]}],
    }
    engine = rollback.Engine(tmp_path / "home", target_kinds={"deployer": Deployer})
    report = engine.run(plan)
    assert report.succeeded, str(report)
    value, present, names, shown, text = seen[0]
    assert value == token and present and names == ["token"]
    assert token not in shown and token not in text and "token" in shown
    journal = "".join(p.read_text(errors="replace") for p in (tmp_path / "home").rglob("*") if p.is_file())
    assert token not in journal and token not in str(report)
