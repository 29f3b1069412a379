"""The GIL is released while Rust works: other Python threads make progress
during a long verification, and a Python HTTP server in this very process can
answer the Rust HTTP verifier probing it."""

from __future__ import annotations

import http.server
import threading
import time

import rollback


class Counter(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.count = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.count += 1


def test_other_threads_run_during_a_long_probe():
    verifier = rollback.Verifier({"kind": "command", "name": "slow", "config": {"argv": ["sleep", "0.2"]}})
    counter = Counter()
    counter.start()
    time.sleep(0.05)
    before = counter.count
    started = time.monotonic()
    verdict = verifier.probe({"interval": "10ms", "passes": 3, "deadline": "30s"})
    elapsed = time.monotonic() - started
    during = counter.count - before
    counter.stop.set()
    counter.join()
    assert verdict["passed"] and elapsed >= 0.6
    # With the GIL held for 0.6 s the counter would stand still (it only gets the GIL
    # at the start); released, it counts freely (hundreds of thousands here).
    assert during > 10_000, during


def test_a_python_http_server_answers_the_rust_verifier_in_the_same_process():
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/health"
        verifier = rollback.Verifier({"kind": "http", "name": "health", "config": {"url": url, "body_contains": "ok"}})
        verdict = verifier.probe({"interval": "20ms", "passes": 5, "timeout": "2s", "deadline": "20s"})
        assert verdict["passed"], verdict["reason"]
        assert [c["outcome"] for c in verdict["checks"]] == ["pass"] * 5
    finally:
        server.shutdown()


def test_engine_run_releases_the_gil_while_a_python_target_runs_in_another_thread(tmp_path):
    # The Python target's apply is itself Python: it must get the GIL from the
    # engine's thread while the caller waits in run() (no deadlock).
    from conftest import Releases, rollback_plan

    web = Releases("web", ["v1", "v2"])
    calls = []
    real = web.apply
    web.apply = lambda change, key: (calls.append(threading.get_ident()), real(change, key))
    report = rollback.Engine(tmp_path, targets=[web]).run(rollback_plan())
    assert report.succeeded and web.current_version == "v1"
    assert calls and calls[0] != threading.get_ident()
