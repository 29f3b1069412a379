"""The PostgreSQL journal from Python: two "hosts" (engines with their own homes and
host ids) share one database — B lists A's runs, reads their reports, and approves
a gate that A is waiting on; the URL is a secret reference and never shown."""

from __future__ import annotations

import threading
import uuid
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

import rollback
from conftest import Releases, rollback_plan, server_env


@pytest.fixture
def journal_url(monkeypatch) -> Iterator[str]:
    """A private database for the journal; its URL in $RB_TEST_JOURNAL_URL."""
    import psycopg2

    base = server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL")
    name = f"rb_py_journal_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(base)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    parts = urlsplit(base)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    monkeypatch.setenv("RB_TEST_JOURNAL_URL", url)
    try:
        yield url
    finally:
        admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


SHARED = {"kind": "postgres", "url": {"from": "env", "var": "RB_TEST_JOURNAL_URL"}}


def test_two_hosts_share_runs_reports_and_approvals(tmp_path, journal_url) -> None:
    web = Releases("web", ["v1", "v2", "v3"])
    plan = rollback_plan()
    plan["stages"].insert(0, {"name": "gate", "steps": [{"id": "go", "op": "approval", "prompt": "roll web back?"}]})
    requested = threading.Event()
    a = rollback.Engine(
        tmp_path / "a",
        journal=SHARED,
        host="host-a",
        targets=[web],
        approval_poll=5,
        on_event=lambda e: e["event"] == "approval_requested" and requested.set(),
    )
    b = rollback.Engine(tmp_path / "b", journal=SHARED, host="host-b")
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("report", a.run(plan, run_id="shared-1")))
    thread.start()
    assert requested.wait(20), "A reached the gate"
    assert [r["run"] for r in b.runs()] == ["shared-1"]
    assert web.current_version == "v3"
    # Approved on B; A wakes by NOTIFY, well before its 5 s poll.
    b.approve("shared-1", "go", by="alice")
    thread.join(4)
    assert not thread.is_alive(), "A woke within the poll interval: NOTIFY reached it"
    assert result["report"].succeeded and web.current_version == "v2", str(result["report"])
    report = b.report("shared-1")
    assert report.succeeded and report.run == "shared-1"
    (record,) = b.history(target="web")
    assert record["changes"] == [{"target": "web", "from": {"id": "v3"}, "to": {"id": "v2"}}]
    # Again, with A's listening connection dropped under it first: the approval, made
    # while A's listener is away (NOTIFY is not replayed), still wakes A before its
    # poll — the listener's reconnect makes every waiter read the journal again.
    import psycopg2

    requested.clear()
    thread = threading.Thread(target=lambda: result.__setitem__("again", a.run(plan, run_id="shared-2", again=True)))
    thread.start()
    assert requested.wait(20)
    admin = psycopg2.connect(journal_url)
    admin.autocommit = True
    cursor = admin.cursor()
    cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%' AND datname = current_database()")
    assert cursor.fetchall(), "A's listener was found and dropped"
    b.approve("shared-2", "go", by="alice")
    thread.join(4.5)
    admin.close()
    assert not thread.is_alive(), "A woke after the dropped connection, before its 5 s poll"
    assert result["again"].succeeded, str(result["again"])

    # Nothing shows the URL's password.
    password = urlsplit(journal_url).password or "rollback-test"
    assert password not in repr(a) and password not in str(report) and password not in str(b.runs())


def test_a_cancel_from_another_host_stops_the_waiting_run(tmp_path, journal_url) -> None:
    web = Releases("web", ["v1", "v2", "v3"])
    plan = rollback_plan()
    plan["stages"].insert(0, {"name": "gate", "steps": [{"id": "go", "op": "approval", "prompt": "roll web back?"}]})
    requested = threading.Event()
    a = rollback.Engine(
        tmp_path / "a",
        journal=SHARED,
        host="host-a",
        targets=[web],
        approval_poll=5,
        on_event=lambda e: e["event"] == "approval_requested" and requested.set(),
    )
    b = rollback.Engine(tmp_path / "b", journal=SHARED, host="host-b", targets=[web])
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("report", a.run(plan, run_id="cancel-1")))
    thread.start()
    assert requested.wait(20), "A reached the gate"
    b.request_cancel("cancel-1", by="bob")
    thread.join(4)
    assert not thread.is_alive(), "A stopped within its poll interval: the request reached it by NOTIFY"
    stopped = result["report"]
    assert stopped.state == "cancelled" and "bob" in (stopped.state_reason or ""), str(stopped)
    assert web.current_version == "v3", "nothing past the gate ran"
    b.approve("cancel-1", "go", by="alice")
    assert b.resume("cancel-1").succeeded and web.current_version == "v2"
    with pytest.raises(rollback.RunStateError, match="nothing to cancel"):
        b.request_cancel("cancel-1", by="bob")


def test_the_url_is_a_secret_reference_and_errors_never_show_it(tmp_path, journal_url, monkeypatch) -> None:
    with pytest.raises(rollback.InvalidInputError, match="secret reference") as text:
        rollback.Engine(tmp_path, journal=journal_url)
    assert journal_url not in str(text.value)
    with pytest.raises(rollback.InvalidInputError, match="secret reference") as text:
        rollback.Engine(tmp_path, journal={"kind": "postgres", "url": journal_url})
    assert journal_url not in str(text.value) and "rollback-test" not in str(text.value)
    with pytest.raises(rollback.InvalidInputError, match="own lease lock"):
        rollback.Engine(tmp_path, journal=SHARED, lock={"kind": "postgres", "url": SHARED["url"]})
    with pytest.raises(rollback.InvalidInputError, match="kind"):
        rollback.Engine(tmp_path, journal={"kind": "postgress", "url": SHARED["url"]})
    parts = urlsplit(journal_url)
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username}:Sup3r-s3cret@{parts.hostname}:{parts.port}"))
    monkeypatch.setenv("RB_TEST_JOURNAL_URL", wrong)
    with pytest.raises(rollback.RollbackError) as failed:
        rollback.Engine(tmp_path, journal=SHARED)
    assert "Sup3r-s3cret" not in str(failed.value) and "Sup3r-s3cret" not in repr(failed.value)
