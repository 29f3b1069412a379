"""Ctrl-C (SIGINT) in a real subprocess: a blocking run stops at its next step
boundary, journaled cancelled, raises KeyboardInterrupt, and resumes; any other
blocking call raises KeyboardInterrupt at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import rollback

CHILD = textwrap.dedent(
    """
    import signal, sys, time
    import rollback

    # Python's own Ctrl-C handler, whatever the parent left: a shell running the suite
    # in the background starts its children with SIGINT ignored, and Python then
    # keeps it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    class Slow:
        name = "slow"

        def check(self):
            print("checking", flush=True)
            time.sleep(1.0)
            return True

    what, home = sys.argv[1], sys.argv[2]
    if what == "run":
        steps = [{"id": f"v{i}", "op": "verify", "verifier": "slow", "policy": {"interval": "0s", "passes": 1}}
                 for i in range(3)]
        plan = {"name": "three checks", "stages": [{"name": "v", "steps": steps}]}
        rollback.Engine(home, verifiers=[Slow()]).run(plan, run_id="interrupted")
    else:
        print("checking", flush=True)
        rollback.Verifier({"kind": "command", "name": "sleepy", "config": {"argv": ["sleep", "30"]}}).check()
    print("finished", flush=True)
    """
)


def interrupt(what: str, home) -> "tuple[subprocess.CompletedProcess, float]":
    child = subprocess.Popen([sys.executable, "-c", CHILD, what, str(home)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "checking"
    time.sleep(0.2)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=20)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err), time.monotonic() - sent


def test_ctrl_c_stops_a_blocking_run_at_the_step_boundary_and_resume_finishes_it(tmp_path):
    done, took = interrupt("run", tmp_path)
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr, done.stderr
    assert "finished" not in done.stdout
    assert took < 3, f"the run stopped {took:.1f} s after Ctrl-C (the step in flight takes 1 s)"

    class Quick:
        name = "slow"

        def check(self):
            return True

    engine = rollback.Engine(tmp_path, verifiers=[Quick()])
    report = engine.report("interrupted").to_dict()
    assert report["state"] == "cancelled", report
    steps = report["steps"]
    assert [s["state"] for s in steps][:1] == ["done"], steps
    assert engine.resume("interrupted").succeeded


def test_ctrl_c_interrupts_any_other_blocking_call_at_once(tmp_path):
    done, took = interrupt("check", tmp_path)
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr, done.stderr
    assert took < 1.5, f"KeyboardInterrupt came {took:.1f} s after Ctrl-C"
