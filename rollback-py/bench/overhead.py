#!/usr/bin/env python3
"""Per-call overhead of the Python binding vs the same work looped in Rust.

    cd rollback-py && maturin develop --release && python bench/overhead.py [--quick]

Rows: an awaited Rust call that really suspends (`_bench_suspend`: yields to the
runtime once), sequential and gathered, against one pure-asyncio suspension
(`asyncio.sleep(0)`, the floor) and the same future through pyo3-async-runtimes;
a no-op verification (one `Verifier.check()` per call, GIL released, result
converted to a dict) vs `_bench_rust_checks` (the same check awaited in a Rust
loop); a 1,000-step plan of no-op verify steps on the memory journal, run from
Python (`Engine.run`: plan conversion, GIL release, report object) vs from Rust
(`_bench_rust_runs`: the same engine, plan and journal); the same plan with a
Python verifier, which prices one Rust→Python call per step.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import sys
import tempfile
import time

import rollback
from rollback import _rollback


def plan(steps: int, verifier: dict) -> rollback.Plan:
    return rollback.Plan.from_dict(
        {
            "name": f"{steps} verify steps",
            "verifiers": [verifier] if verifier.get("kind") else [],
            "stages": [
                {
                    "name": "verify",
                    "steps": [
                        {"id": f"v{i}", "op": "verify", "verifier": verifier["name"],
                         "policy": {"interval": "0s", "passes": 1}}
                        for i in range(steps)
                    ],
                }
            ],
        }
    )


def best(samples):
    return min(samples), statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    args = parser.parse_args()
    calls, runs, repeats = (2_000, 2, 2) if args.quick else (200_000, 10, 5)
    home = tempfile.mkdtemp(prefix="rollback-bench-")
    rows = []
    awaits = []

    # 1. no-op verification, per call
    v = rollback.Verifier.noop()
    py, rs = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            v.check()
        py.append((time.perf_counter() - t) / calls * 1e6)
        rs.append(_rollback._bench_rust_checks(calls) / calls * 1e6)
    rows.append(("no-op check()", "per call", best(rs), best(py)))

    async def many():
        t = time.perf_counter()
        await asyncio.gather(*(v.check_async() for _ in range(calls // 10)))
        return (time.perf_counter() - t) / (calls // 10) * 1e6

    a = [asyncio.run(many()) for _ in range(repeats)]
    rows.append(("no-op check_async() ×N gathered", "per call", best(rs), best(a)))

    # 1b. an awaited Rust call that really suspends (yields to the runtime once), vs
    # one suspension in pure asyncio (`await asyncio.sleep(0)`), sequential and gathered;
    # the completion queue against pyo3-async-runtimes' future_into_py, same future.
    awaited = calls // 20

    async def sequential(make):
        t = time.perf_counter()
        for _ in range(awaited):
            await make()
        return (time.perf_counter() - t) / awaited * 1e6

    async def gathered(make):
        t = time.perf_counter()
        await asyncio.gather(*(make() for _ in range(awaited)))
        return (time.perf_counter() - t) / awaited * 1e6

    def sleep0():
        return asyncio.sleep(0)

    # asyncio's own way to await work on another thread: one thread round trip.
    pool = concurrent.futures.ThreadPoolExecutor(1)

    def in_thread():
        return asyncio.get_running_loop().run_in_executor(pool, int)

    routes = (
        ("polled on the loop (check_async, probe_async)", _rollback._bench_suspend),
        ("spawned on the runtime (AsyncEngine)", _rollback._bench_suspend_spawned),
    )
    for label, run in (("sequential await", sequential), ("gathered", gathered)):
        floor = best([asyncio.run(run(sleep0)) for _ in range(repeats)])
        thread = best([asyncio.run(run(in_thread)) for _ in range(repeats)])
        old = best([asyncio.run(run(_rollback._bench_suspend_pyo3_async_runtimes)) for _ in range(repeats)])
        for route, make in routes:
            ours = best([asyncio.run(run(make)) for _ in range(repeats)])
            awaits.append((f"{label}, {route}", floor, thread, ours, old))

    # 2. a 1,000-step plan, per run
    noop_plan = plan(1000, {"kind": "noop", "name": "noop"})
    engine = rollback.Engine(home, journal="memory")
    py, rs = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(runs):
            report = engine.run(noop_plan)
        assert report.succeeded
        py.append((time.perf_counter() - t) / runs * 1e6)
        rs.append(_rollback._bench_rust_runs(noop_plan, runs, home) / runs * 1e6)
    rows.append(("1,000-step plan, Rust no-op verifier", "per run", best(rs), best(py)))

    # 3. the same plan with a Python verifier: one Rust→Python call per step
    class Ok:
        name = "py-ok"

        def check(self):
            return True

    py_engine = rollback.Engine(home, journal="memory", verifiers=[Ok()])
    py_plan = plan(1000, {"name": "py-ok"})
    py = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(runs):
            assert py_engine.run(py_plan).succeeded
        py.append((time.perf_counter() - t) / runs * 1e6)
    rows.append(("1,000-step plan, Python verifier", "per run", best(rs), best(py)))

    print(f"rollback {rollback.__version__}, Python {sys.version.split()[0]}; best (median) of {repeats} repeats")
    print()
    print("| what | unit | Rust µs | Python µs | overhead µs per call | per step |")
    print("|---|---|---:|---:|---:|---:|")
    for what, unit, (r_best, r_med), (p_best, p_med) in rows:
        per_step = f"{(p_best - r_best) / 1000:.2f}" if "1,000" in what else "–"
        print(f"| {what} | {unit} | {r_best:,.1f} ({r_med:,.1f}) | {p_best:,.1f} ({p_med:,.1f}) | "
              f"{p_best - r_best:,.1f} | {per_step} |")
    for what, unit, (r_best, _), (p_best, _) in rows:
        overhead = p_best - r_best
        # A 1,000-step plan's run makes 1,000 verifier calls: judge the cost per call.
        per_call = overhead / 1000 if "1,000" in what else overhead
        verdict = "met" if per_call < 10 else "NOT met"
        target = f"< 10 µs per call: {verdict}" if "Python verifier" not in what else "reported (Python code per step)"
        # One line for benches/all.sh's table (a negative overhead is noise between runs).
        print(f"SUMMARY\tpython\t{what} from Python vs Rust\t{p_best:,.1f} µs\t{r_best:,.1f} µs\t"
              f"{overhead:+,.1f} µs {unit}\t{target}")
    print()
    print("Awaiting a Rust call that suspends once, per call (µs), vs one pure-asyncio suspension")
    print()
    print("| how | asyncio.sleep(0) | asyncio run_in_executor | rollback | overhead vs sleep(0) "
          "| pyo3-async-runtimes | ours / theirs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, (f_best, _), (t_best, _), (o_best, o_med), (p_best, _) in awaits:
        print(f"| {label} | {f_best:.1f} | {t_best:.1f} | {o_best:.1f} ({o_med:.1f}) | {o_best - f_best:.1f} | "
              f"{p_best:.1f} | {o_best / p_best:.2f}× |")
    for label, (f_best, _), (t_best, _), (o_best, _), (p_best, _) in awaits:
        limit = 30 if label.startswith("sequential") else 5
        overhead = o_best - f_best
        print(f"SUMMARY\tpython\tawaited Rust call, {label} vs asyncio.sleep(0)\t"
              f"{o_best:.1f} µs\t{f_best:.1f} µs\t{overhead:+.1f} µs per call "
              f"({o_best / p_best:.2f}× pyo3-async-runtimes' {p_best:.1f} µs; a thread round trip "
              f"by run_in_executor {t_best:.1f} µs)\t"
              f"≤ {limit} µs overhead: {'met' if overhead <= limit else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Last run (2 vCPU VM, load average ~60 from parallel builds; release wheel from
# `pip install ./rollback-py`), best (median) of 5:
#
# | what | unit | Rust µs | Python µs | overhead µs per call | per step |
# |---|---|---:|---:|---:|---:|
# | no-op check() | per call | 0.1 (0.1) | 2.4 (2.7) | 2.3 | – |
# | no-op check_async() ×N gathered | per call | 0.1 (0.1) | 137.6 (157.2) | 137.5 | – |
# | 1,000-step plan, Rust no-op verifier | per run | 9,423.9 (29,291.4) | 9,484.9 (27,203.8) | 61.0 | 0.06 |
# | 1,000-step plan, Python verifier | per run | 9,423.9 (29,291.4) | 112,090.6 (202,202.0) | 102,666.7 | 102.67 |
