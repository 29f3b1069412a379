"""One exception class per error kind, carrying the context; Python exceptions
raised inside targets come back in the report with their type."""

from __future__ import annotations

import threading

import pytest

import rollback
from conftest import Releases, rollback_plan

KINDS = {
    "invalid_input": rollback.InvalidInputError,
    "not_found": rollback.NotFoundError,
    "unsupported": rollback.UnsupportedError,
    "locked": rollback.LockedError,
    "conflict": rollback.ConflictError,
    "diverged": rollback.DivergedError,
    "timeout": rollback.RollbackTimeoutError,
    "backend": rollback.BackendError,
    "verification_failed": rollback.VerificationFailedError,
    "cancelled": rollback.RunCancelledError,
    "corrupt": rollback.CorruptError,
    "invalid_state": rollback.RunStateError,
    "permission_denied": rollback.PermissionDeniedError,
    "internal": rollback.InternalError,
    "already_done": rollback.AlreadyDoneError,
}


def test_exceptions_live_in_rollback_exceptions_and_shadow_nothing():
    import builtins
    import asyncio

    import rollback.exceptions as exceptions

    assert set(exceptions.__all__) == {cls.__name__ for cls in KINDS.values()} | {"RollbackError"}
    for name in exceptions.__all__:
        assert getattr(exceptions, name) is getattr(rollback, name)
        assert not hasattr(builtins, name) and not hasattr(asyncio, name), f"{name} shadows a built-in or asyncio name"
    assert not any(name.startswith("_bench") for name in dir(rollback._rollback)), "no bench helpers in the module"


def test_every_kind_has_its_class_under_rollback_error():
    for kind, cls in KINDS.items():
        assert issubclass(cls, rollback.RollbackError) and issubclass(cls, Exception)
        assert cls.kind == kind and cls.__module__ == "rollback"
    assert rollback.BackendError.retryable and rollback.RollbackTimeoutError.retryable
    assert not rollback.InvalidInputError.retryable


def test_bad_plan_is_invalid_input_naming_the_problem():
    with pytest.raises(rollback.InvalidInputError) as err:
        rollback.Plan({"name": "x", "stages": [], "colour": "red"})
    assert err.value.kind == "invalid_input" and "colour" in str(err.value)
    assert err.value.retryable is False
    with pytest.raises(rollback.InvalidInputError):
        rollback.Plan.from_toml("name = ")
    with pytest.raises(rollback.InvalidInputError):
        rollback.Plan(42)


def test_engine_errors_carry_operation_and_context(tmp_path):
    engine = rollback.Engine(tmp_path)
    with pytest.raises(rollback.InvalidInputError) as err:
        engine.run(rollback_plan())  # "web" is neither declared nor registered
    assert "web" in err.value.message
    with pytest.raises(rollback.InvalidInputError):
        engine.report("not a run id!")
    with pytest.raises(rollback.NotFoundError) as err:
        engine.report("no-such-run")
    assert isinstance(err.value.context, dict)


def test_selector_errors_keep_their_kind_and_context(tmp_path):
    web = rollback.Target(Releases("web", ["v1", "v2"]))
    with pytest.raises(rollback.NotFoundError) as err:
        web.prepare({"exact": "v7"})
    assert err.value.context == {"selector": "exact:v7"}
    with pytest.raises(rollback.NotFoundError):
        web.prepare({"back": 5})
    assert web.prepare()["to"]["id"] == "v1"


def test_locked_error_names_the_holder(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    web.apply_gate = threading.Event()
    applying = threading.Event()
    real_apply = web.apply
    web.apply = lambda change, key: (applying.set(), real_apply(change, key))
    first = rollback.Engine(tmp_path, targets=[web])
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("report", first.run(rollback_plan(), run_id="first")))
    t.start()
    try:
        assert applying.wait(20)  # the first run holds the lock, inside its effect
        second = rollback.Engine(tmp_path, targets=[web])
        with pytest.raises(rollback.LockedError) as err:
            second.run(rollback_plan(), run_id="second")
        assert err.value.kind == "locked" and err.value.operation == "acquire lock"
        assert err.value.context["resource"] == "test:web"
        assert "run first" in err.value.context["holder"]
    finally:
        web.apply_gate.set()
        t.join(30)
    assert result["report"].succeeded
    assert [e[:3] for e in web.effects] == [("apply", "v3", "v2")]


def test_python_exceptions_in_targets_become_step_errors(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    web.fail_apply = KeyError("DEPLOY_HOST")
    report = rollback.Engine(tmp_path, targets=[web]).run(rollback_plan())
    step = report.steps[0]
    assert step["state"] == "failed"
    assert step["error"]["kind"] == "backend" and step["error"]["retryable"] is False
    assert "KeyError" in step["error"]["message"]


def test_rollback_errors_raised_in_python_keep_their_kind(tmp_path):
    web = Releases("web", ["v1", "v2", "v3"])
    web.fail_apply = rollback.ConflictError("someone else is deploying")
    report = rollback.Engine(tmp_path, targets=[web]).run(rollback_plan())
    error = report.steps[0]["error"]
    assert error["kind"] == "conflict" and "someone else is deploying" in error["message"]


def test_malformed_python_components_are_rejected_up_front(tmp_path):
    class NoName:
        def apply(self, change, key): ...
        def observe(self, change, key): ...

    with pytest.raises(rollback.InvalidInputError, match="name"):
        rollback.Engine(tmp_path, targets=[NoName()])

    class NoObserve:
        name = "x"
        def current(self): return "a"
        def history(self): return ["a"]
        def apply(self, change, key): ...

    with pytest.raises(rollback.InvalidInputError, match="observe"):
        rollback.Engine(tmp_path, targets=[NoObserve()])

    class BadObserve(Releases):
        def observe(self, change, key):
            return 42

    report = rollback.Engine(tmp_path, targets=[BadObserve("web", ["v1", "v2"])]).run(rollback_plan())
    assert not report.succeeded and "observe() must return" in str(report.to_dict())
