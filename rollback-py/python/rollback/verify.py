"""Benchmark verification loops and replay past ones.

- ``bench_latency(verifier, concurrency=, checks=)``: check latency p50/p90/p99/max
  and checks per second;
- ``bench_detection(verifier, lab=, switch_from=, switch_to=, after=, policy=, trials=)``:
  the time from a state change of the lab service to the verdict, and the checks a
  verdict costs;
- ``LabService``: the controllable service to measure against (healthy, unhealthy,
  ``slow:200ms``, ``flapping:0.3``, ``erroring:0.1``; ``/metrics`` for Prometheus),
  in this process; ``rollback verify serve`` runs it in another one (pass its URL
  as ``lab``);
- ``replay(checks, policy)`` and ``Engine.replay(run, policy)``: what another probe
  policy would have decided on journaled observations (``passed`` is ``None`` when
  the record cannot tell, never a guess);
- ``replay_signals(series, policy)`` and ``gather_signals_range(...)``: when each
  runbook threshold would have fired over a recorded series of signals, or over a
  past window of Prometheus range queries.

A verifier is a ``rollback.Verifier``, a spec dict (``{"kind": "http", ...}``) or a
Python object with ``name`` and ``check()``.

>>> import rollback.verify as rv
>>> lab = rv.LabService("0s=healthy")
>>> report = rv.bench_latency({"kind": "http", "name": "h", "config": {"url": lab.url + "/health"}}, checks=20)
>>> report["checks"], report["outcomes"]
(20, [20, 0, 0])
"""

from ._rollback import (
    LabService,
    bench_detection,
    bench_latency,
    gather_signals_range,
    replay,
    replay_signals,
)

__all__ = [
    "LabService",
    "bench_detection",
    "bench_latency",
    "gather_signals_range",
    "replay",
    "replay_signals",
]
