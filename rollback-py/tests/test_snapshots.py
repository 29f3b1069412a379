"""Snapshots written in Python: captured into the engine's artifact store, restored
during compensation from what the store gives back; as objects and as a kind built
from a plan's spec (with its secrets)."""

from __future__ import annotations

from pathlib import Path

import pytest

import rollback
from conftest import Releases


class ConfigFile:
    """Keeps a config file as evidence and puts it back on restore."""

    def __init__(self, name: str, config: dict, secrets=None) -> None:
        self.name = name
        self.path = Path(config["path"])
        self.secrets = secrets
        self.restores: list = []

    def capture(self, key: str) -> dict:
        return {"artifacts": {"app.conf": self.path.read_bytes()}, "description": f"{self.path} as it was",
                "metadata": {"path": str(self.path)}}

    def restore(self, snapshot: dict, artifacts: dict) -> None:
        self.restores.append(snapshot["metadata"])
        Path(snapshot["metadata"]["path"]).write_bytes(artifacts["app.conf"])


def plan(snapshots=None) -> dict:
    plan = {
        "name": "web back, config kept",
        "stages": [
            {"name": "keep", "steps": [{"id": "snap", "op": "snapshot", "snapshot": "conf"}]},
            {"name": "app", "steps": [{"id": "web-back", "op": "rollback", "target": "web", "to": "previous",
                                       "undo": {"restore_from": "snap"}}]},
            {"name": "check", "steps": [{"id": "health", "op": "verify", "verifier": "down",
                                         "on_failure": "compensate",
                                         "policy": {"interval": "0s", "passes": 1, "deadline": "1s",
                                                    "timeout": "1s"}}]},
        ],
    }
    if snapshots:
        plan["snapshots"] = snapshots
    return plan


class Down:
    name = "down"

    def check(self):
        return False


def test_a_python_snapshot_is_captured_into_the_store_and_restored_on_compensation(tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("workers = 4\n")
    snapshot = ConfigFile("conf", {"path": str(conf)})

    class Breaks(Releases):
        def apply(self, change, key):
            conf.write_text("workers = broken\n")  # the rollback's side effect to undo
            super().apply(change, key)

    web = Breaks("web", ["v1", "v2"])
    engine = rollback.Engine(tmp_path / "home", targets=[web], verifiers=[Down()], snapshots=[snapshot])
    report = engine.run(plan())
    assert not report.succeeded
    assert conf.read_text() == "workers = 4\n", "the file on disk is back as captured"
    assert snapshot.restores == [{"path": str(conf)}]
    stored = [p for p in (tmp_path / "home").rglob("app.conf") if p.is_file()]
    assert [p.read_text() for p in stored] == ["workers = 4\n"], "the artifact is in the engine's store"
    snap = next(s for s in report.to_dict()["steps"] if s["step"] == "snap")
    assert snap["detail"]["description"] == f"{conf} as it was", snap


def test_a_python_snapshot_kind_is_built_from_the_plan_with_its_secrets(tmp_path, monkeypatch):
    conf = tmp_path / "app.conf"
    conf.write_text("a\n")
    monkeypatch.setenv("RBPY_SNAP_TOKEN", "s3cr3t-token")
    built = []

    class Kind(ConfigFile):
        def __init__(self, name, config, secrets=None):
            super().__init__(name, config, secrets)
            built.append(self)

    spec = {"kind": "py-config-file", "name": "conf", "config": {"path": str(conf)},
            "secrets": {"token": {"from": "env", "var": "RBPY_SNAP_TOKEN"}}}
    web = Releases("web", ["v1", "v2"])
    engine = rollback.Engine(tmp_path / "home", targets=[web], verifiers=[Down()],
                             snapshot_kinds={"py-config-file": Kind})
    report = engine.run(plan([spec]))
    assert not report.succeeded and built, str(report)
    secrets = built[0].secrets
    assert secrets["token"] == "s3cr3t-token" and "s3cr3t-token" not in repr(secrets)


def test_a_capture_with_the_wrong_shape_fails_the_step_naming_it(tmp_path):
    class Bad:
        name = "conf"

        def capture(self, key):
            return {"artifacts": {"../escape": b"x"}}

    engine = rollback.Engine(tmp_path / "home", targets=[Releases("web", ["v1", "v2"])], verifiers=[Down()],
                             snapshots=[Bad()])
    report = engine.run(plan())
    snap = next(s for s in report.to_dict()["steps"] if s["step"] == "snap")
    assert snap["state"] == "failed" and "../escape" in str(snap["error"]), snap


def test_an_object_without_capture_is_refused(tmp_path):
    class NoCapture:
        name = "conf"

    with pytest.raises(rollback.InvalidInputError, match="capture"):
        rollback.Engine(tmp_path, snapshots=[NoCapture()])
