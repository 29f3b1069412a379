"""rollback.verify: the benchmark harness, the lab service (here and in another
process), live probes with each check reported, and replays of journaled runs and
of signals — a real Prometheus for the range-query replay."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Iterator

import pytest

import rollback
import rollback.verify as rv


def http(url: str) -> dict:
    return {"kind": "http", "name": "health", "config": {"url": url + "/health"}}


FAST = {"interval": "20ms", "passes": 3, "deadline": "10s", "timeout": "1s"}


def test_latency_of_a_spec_verifier_against_the_lab() -> None:
    lab = rv.LabService("0s=healthy")
    report = rv.bench_latency(http(lab.url), concurrency=4, checks=40)
    assert report["checks"] == 40 and report["concurrency"] == 4
    assert report["outcomes"] == [40, 0, 0], report
    assert report["checks_per_sec"] > 0
    assert lab.requests >= 40
    lab.set("unhealthy")
    assert rv.bench_latency(http(lab.url), checks=10)["outcomes"] == [0, 10, 0]


@contextlib.contextmanager
def lab_process(schedule: str) -> Iterator[str]:
    """A LabService in a separate Python process; yields its URL."""
    code = (
        "import sys, time, rollback.verify as rv\n"
        f"lab = rv.LabService({schedule!r})\n"
        "print(lab.url, flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        child.kill()
        child.wait()


def test_detection_delay_against_a_lab_in_another_process_is_after_the_switch_and_bounded() -> None:
    with lab_process("0s=healthy") as url:
        report = rv.bench_detection(
            http(url), lab=url, switch_from="unhealthy", switch_to="healthy", after=0.2, policy=FAST, trials=3
        )
    assert report["early"] == 0, report
    assert len(report["trials"]) == 3 and all(t["passed"] for t in report["trials"]), report
    # No verdict before the switch; after it, at least the pauses between the passes and
    # at most passes × (interval + timeout) + window.
    for trial in report["trials"]:
        delay = parse_ms(trial["delay"])
        assert 40 <= delay <= 3 * (20 + 1000), trial
    assert report["checks_per_verdict"] >= 5


def test_detection_with_the_in_process_lab_and_a_python_verifier_sees_what_it_can() -> None:
    lab = rv.LabService()

    class PortOpen:
        """Passes whenever the port answers: blind to an unhealthy service."""

        name = "port"

        def check(self) -> str:
            with socket.create_connection(tuple(lab.url.removeprefix("http://").split(":"))):  # type: ignore[arg-type]
                return "pass"

    report = rv.bench_detection(PortOpen(), lab=lab, after="300ms", policy=FAST, trials=1)
    assert report["early"] == 1, "a port check passes before the service is healthy"
    # The verdict came first: the switch to healthy never happened.
    assert lab.switches()[-1]["mode"] == "unhealthy", lab.switches()
    with pytest.raises(rollback.InvalidInputError, match="lab"):
        rv.bench_detection(PortOpen(), lab=42, trials=1)
    with pytest.raises(rollback.InvalidInputError):
        rv.bench_detection(PortOpen(), lab=lab, switch_to="sideways", trials=1)


def parse_ms(text: str) -> float:
    """humantime ("143ms 212us 5ns") to milliseconds."""
    units = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6, "m": 60000.0}
    total = 0.0
    for part in text.split():
        number = "".join(c for c in part if c.isdigit() or c == ".")
        total += float(number) * units[part[len(number):]]
    return total


def test_probe_reports_each_check_and_a_raising_callback_ends_it() -> None:
    lab = rv.LabService("0s=unhealthy,300ms=healthy")
    seen: list = []
    verdict = rollback.Verifier(http(lab.url)).probe(FAST, on_check=seen.append)
    assert verdict["passed"], verdict
    assert len(seen) == len(verdict["checks"]) and seen[0]["outcome"] == "fail" and seen[-1]["outcome"] == "pass"

    def boom(check: dict) -> None:
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        rollback.Verifier(http(lab.url)).probe(FAST, on_check=boom)


def verify_plan(url: str) -> dict:
    return {
        "name": "verify only",
        "verifiers": [{"kind": "http", "name": "health", "config": {"url": url + "/health"}}],
        "stages": [
            {
                "name": "verify",
                "steps": [
                    {
                        "id": "verify",
                        "op": "verify",
                        "verifier": "health",
                        "policy": {"interval": "50ms", "passes": 3, "deadline": "10s"},
                    }
                ],
            }
        ],
    }


def test_replay_of_a_journaled_run_reproduces_it_and_a_stricter_policy_costs_more(tmp_path) -> None:
    lab = rv.LabService("0s=unhealthy,400ms=healthy")
    engine = rollback.Engine(tmp_path / "home")
    report = engine.run(verify_plan(lab.url))
    assert report.succeeded, report
    same = engine.replay(report.run)
    assert len(same) == 1 and same[0]["step"] == "verify", same
    assert same[0]["replayed"]["passed"] is True
    assert same[0]["replayed"]["checks"] == same[0]["recorded"]["checks"], same
    assert same[0]["change"].startswith("same verdict, as many checks"), same
    # Two failures allowed: the recorded outage (400 ms at 50 ms) fails it — a false alarm.
    alarm = engine.replay(report.run, {"interval": "50ms", "passes": 3, "max_failures": 2, "deadline": "10s"})
    assert alarm[0]["replayed"]["passed"] is False and "would have FAILED" in alarm[0]["change"], alarm
    # Ten passes need more than the record holds: undetermined, never a guess.
    long = engine.replay(report.run, {"interval": "50ms", "passes": 10, "deadline": "10s"})
    assert long[0]["replayed"]["passed"] is None, long
    assert engine.replay(report.run, {"interval": "50ms", "passes": 10}, assume_last_holds=True)[0]["replayed"]["passed"]
    # The same checks replayed directly.
    checks = engine.report(report.run).steps[0]["detail"]["checks"]
    assert rv.replay(checks, {"interval": "50ms", "passes": 3, "deadline": "10s"})["passed"] is True
    with pytest.raises(rollback.NotFoundError):
        engine.replay("0" * 26)


def test_replay_signals_says_when_a_runbook_threshold_fired() -> None:
    series = [
        {"at": "2025-10-16T18:00:00Z", "signals": {"error_rate": 0.001}},
        {"at": "2025-10-16T18:05:00Z", "signals": {"error_rate": 0.08}},
        {"at": dt.datetime(2025, 10, 16, 18, 10, tzinfo=dt.timezone.utc), "signals": {"error_rate": 0.002}},
    ]
    changes = rv.replay_signals(series)
    assert [c["decision"]["action"] for c in changes] == ["monitor", "rollback_now", "monitor"], changes
    assert changes[1]["at"].startswith("2025-10-16T18:05:00") and changes[1]["fired"], changes
    assert all(c["decision"]["action"] != "rollback_now" for c in rv.replay_signals(series, {"error_rate_high": 0.1}))
    with pytest.raises(rollback.InvalidInputError, match="eror_rate"):
        rv.replay_signals([{"at": "2025-10-16T18:00:00Z", "signals": {"eror_rate": 0.1}}])


@contextlib.contextmanager
def prometheus(target: str) -> Iterator[str]:
    """A private Prometheus scraping `target` every second; yields its URL."""
    binary = os.environ.get("ROLLBACK_TEST_PROMETHEUS") or shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.path.exists(binary):
        from conftest import server_env

        server_env("ROLLBACK_TEST_PROMETHEUS", "Prometheus")
    with tempfile.TemporaryDirectory(prefix="rollback-py-prom-") as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                f"scrape_configs:\n  - job_name: lab\n    static_configs:\n      - targets: ['{target}']\n"
            )
        log = open(os.path.join(tmp, "prometheus.log"), "w")
        child = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log,
            stderr=log,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            child.kill()
            child.wait()
            log.close()


def test_signals_over_a_past_window_from_a_real_prometheus() -> None:
    lab = rv.LabService("0s=erroring:0.5")
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                urllib.request.urlopen(lab.url + "/health", timeout=1).read()
            except Exception:
                pass
            time.sleep(0.01)

    threading.Thread(target=traffic, daemon=True).start()
    addr = lab.url.removeprefix("http://")
    rate = (
        f'sum(rate(rollback_lab_requests_total{{code=~"5..",instance="{addr}"}}[1m]))'
        f' / sum(rate(rollback_lab_requests_total{{instance="{addr}"}}[1m]))'
    )
    try:
        with prometheus(addr) as url:
            start = dt.datetime.now(dt.timezone.utc)
            deadline = time.monotonic() + 30
            while True:
                signals = rollback.gather_signals(url, {"error_rate": rate}) if ready(url) else {}
                if signals.get("error_rate"):
                    break
                assert time.monotonic() < deadline, f"no error rate after 30 s: {signals}"
                time.sleep(0.3)
            time.sleep(3)  # a few points of the range past the first with a rate
            end = dt.datetime.now(dt.timezone.utc)
            series = rv.gather_signals_range(url, {"error_rate": rate}, start=start, end=end, step="1s")
            assert series and all(s["signals"]["error_rate"] > 0.1 for s in series[-1:]), series
            changes = rv.replay_signals(series)
            assert changes[-1]["decision"]["action"] == "rollback_now", changes
            with pytest.raises(rollback.BackendError, match="rate\\("):
                rv.gather_signals_range(url, {"error_rate": "rate("}, start=start, end=end, step=1)
    finally:
        stop.set()


def ready(url: str) -> bool:
    try:
        return urllib.request.urlopen(url + "/-/ready", timeout=1).status == 200
    except Exception:
        return False
