"""Alembic tooling against a real PostgreSQL and the real Alembic CLI: current,
history, SQL preview, downgrade; a plan rolling back a Python app target and the
schema together; the example deploy script end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import rollback
from alembic_project import create_database, drop_database, project, tables
from conftest import Releases, server_env
from rollback.alembic import Alembic

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "deploy_with_alembic.py"


@pytest.fixture
def pg():
    server = server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL")
    alembic = server_env("ROLLBACK_TEST_ALEMBIC", "Alembic")
    name, url = create_database(server)
    try:
        yield server, alembic, name, url
    finally:
        drop_database(server, name)


def test_current_history_preview_and_downgrade(pg, tmp_path):
    server, alembic, db, url = pg
    ini = project(alembic, tmp_path / "proj", url)
    schema = Alembic(ini, command=[alembic])
    assert schema.current() == "0003"
    assert [h["revision"] for h in schema.history()] == ["0003", "0002", "0001", "base"]
    assert schema.history()[0]["message"] == "create coupons"

    preview = schema.sql_preview("0001")
    assert "DROP TABLE coupons" in preview and "DROP TABLE orders" in preview
    assert "coupons" in tables(server, db)  # a preview executes nothing

    change = schema.downgrade()  # previous
    assert change["from"]["id"] == "0003" and change["to"]["id"] == "0002"
    assert change["reversibility"] == "needs_snapshot"
    assert tables(server, db) == ["alembic_version", "orders", "users", "@0002"]
    assert schema.target.observe(change, "k") == {"state": "done"}

    with pytest.raises(rollback.NotFoundError):
        schema.prepare("0009")


def test_plan_rolls_back_app_and_schema_together(pg, tmp_path):
    server, alembic, db, url = pg
    ini = project(alembic, tmp_path / "proj", url)
    schema = Alembic(ini, command=[alembic])
    app = Releases("app", ["r1", "r2"])
    plan = {
        "name": "app and schema",
        "targets": [schema.spec],
        "stages": [
            {"name": "app", "steps": [{"id": "app-back", "op": "rollback", "target": "app", "to": "previous"}]},
            {"name": "schema", "steps": [{"id": "schema-back", "op": "rollback", "target": "schema", "to": {"exact": "0001"}}]},
        ],
    }
    engine = rollback.Engine(tmp_path / "home", targets=[app])
    dry = engine.dry_run(plan)
    assert "DROP TABLE coupons" in dry.steps[1]["change"]["preview"]
    assert tables(server, db)[-1] == "@0003"
    report = engine.run(plan, reason="checkout 500s")
    assert report.succeeded, str(report)
    assert app.current_version == "r1"
    assert tables(server, db) == ["alembic_version", "users", "@0001"]
    # the journal says the same, and resume of a finished run changes nothing
    (record,) = engine.history(target="schema")
    assert {c["target"]: c["to"]["id"] for c in record["changes"]} == {"app": "r1", "schema": "0001"}
    assert engine.resume(report.run).state == "succeeded"
    assert tables(server, db)[-1] == "@0001"


def test_example_deploy_script_rolls_back_app_and_schema(pg, tmp_path):
    server, alembic, db, url = pg
    ini = project(alembic, tmp_path / "proj", url, upgrade_to="0002")
    root = tmp_path / "deploy"
    for release, health in [("v1", "ok"), ("v2", "fail")]:
        (root / "releases" / release).mkdir(parents=True)
        (root / "releases" / release / "HEALTH").write_text(health)
    (root / "current").symlink_to("releases/v1")
    home = tmp_path / "rollback-home"
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--deploy-root", str(root), "--release", "v2", "--alembic-ini", str(ini),
         "--alembic-command", alembic, "--home", str(home)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "deployed: release v2, schema 0003" in out.stdout
    assert "RollbackNow" in out.stdout and "succeeded" in out.stdout
    assert os.readlink(root / "current") == "releases/v1"
    assert tables(server, db) == ["alembic_version", "orders", "users", "@0002"]
    (run,) = rollback.Engine(home).runs()
    assert rollback.Engine(home).report(run["run"]).succeeded


def test_the_url_is_a_secret_given_to_the_variable_env_py_reads(pg, tmp_path, monkeypatch):
    server, alembic, db, url = pg
    ini = project(alembic, tmp_path / "proj", url)
    # From now on only DATABASE_URL works: the ini points nowhere, env.py reads the variable.
    ini.write_text(ini.read_text().replace(url, "postgresql://nobody@127.0.0.1:1/wrong"))
    env_py = tmp_path / "proj" / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace(
        "config = context.config\n",
        "config = context.config\nimport os\n"
        "config.set_main_option('sqlalchemy.url', os.environ['DATABASE_URL'].replace('%', '%%'))\n", 1))
    monkeypatch.setenv("RBPY_DB_URL", url)
    schema = Alembic(ini, command=[alembic], url={"from": "env", "var": "RBPY_DB_URL"}, url_env="DATABASE_URL")
    assert schema.current() == "0003"
    password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password, url

    plan = {"name": "schema back", "targets": [schema.spec],
            "stages": [{"name": "db", "steps": [{"id": "db", "op": "rollback", "target": "schema",
                                                  "to": {"exact": "0001"}}]}]}
    engine = rollback.Engine(tmp_path / "home")
    dry = engine.dry_run(plan)
    report = engine.run(plan)
    assert report.succeeded, str(report)
    assert tables(server, db) == ["alembic_version", "users", "@0001"], "the database shows the downgrade"

    monkeypatch.setenv("RBPY_DB_URL", url.rsplit("/", 1)[0] + "/rbpy_no_such_db")
    broken = Alembic(ini, command=[alembic], url={"from": "env", "var": "RBPY_DB_URL"}, url_env="DATABASE_URL")
    with pytest.raises(rollback.BackendError) as failed:
        broken.current()
    assert "OperationalError" in str(failed.value) and "does not exist" in str(failed.value), str(failed.value)

    journal = "".join(p.read_text(errors="replace") for p in (tmp_path / "home").rglob("*") if p.is_file())
    for text in [str(dry), str(report), str(report.to_dict()), str(failed.value), journal, repr(schema)]:
        assert password not in text and url not in text


def test_without_url_env_the_secret_is_the_ini_url_and_one_python_runs_the_step(pg, tmp_path, monkeypatch):
    server, alembic, db, url = pg
    ini = project(alembic, tmp_path / "proj", url)
    ini.write_text(ini.read_text().replace(url, "postgresql://nobody@127.0.0.1:1/wrong"))
    monkeypatch.setenv("RBPY_DB_URL", url)
    # The project's interpreter behind a wrapper that counts its starts.
    count = tmp_path / "pythons"
    python = tmp_path / "python"
    interpreter = Path(alembic).read_text().splitlines()[0][2:].split()[0]
    python.write_text(f"#!/bin/sh\necho started >> '{count}'\nexec '{interpreter}' \"$@\"\n")
    python.chmod(0o755)
    schema = Alembic(ini, command=[alembic], python=str(python), url={"from": "env", "var": "RBPY_DB_URL"})
    plan = {"name": "schema back", "targets": [schema.spec],
            "stages": [{"name": "db", "steps": [{"id": "db", "op": "rollback", "target": "schema",
                                                  "to": "previous"}]}]}
    report = rollback.Engine(tmp_path / "home").run(plan)
    assert report.succeeded, str(report)
    assert tables(server, db) == ["alembic_version", "orders", "users", "@0002"], "the database shows it"
    assert count.read_text().count("started") == 1, "prepare, apply and confirm shared one Python process"
    schema.upgrade("head")  # the URL through Alembic's API too, on stdin
    assert tables(server, db)[-1] == "@0003"
