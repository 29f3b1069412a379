#!/usr/bin/env python3
"""A deploy script that upgrades the app and the schema, detects the failure, and
rolls both back together with one journaled, verified rollback plan.

    python examples/deploy_with_alembic.py --deploy-root /srv/app --release v2 \\
        --alembic-ini /srv/app/alembic.ini [--home .rollback]

The app is a Capistrano-style release directory (``releases/<name>/``, ``current``
symlink; kind ``release-dir``); each release has a ``HEALTH`` file standing in for
its health endpoint. The schema is the project's Alembic config (kind ``alembic``).

1. remember what runs now (release and Alembic revision);
2. deploy: switch ``current`` to the new release, ``alembic upgrade head``;
3. verify with a probe; read the signals with ``rollback.should_rollback``;
4. on "roll back": dry-run, then run the plan — app back to the exact release, verify,
   schema down to the exact revision — and print the report. Exit 0 when the
   deploy is healthy or the rollback succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import rollback
from rollback.alembic import Alembic


class ReleaseHealth:
    """Stands in for GET /health of the release ``current`` points to."""

    name = "app-health"

    def __init__(self, root: Path) -> None:
        self.root = root

    def check(self) -> Tuple[str, str]:
        health = (self.root / "current" / "HEALTH").read_text().strip()
        return ("pass" if health == "ok" else "fail", f"{os.readlink(self.root / 'current')}: {health}")


def switch(root: Path, release: str) -> None:
    """The deploy tool's own switch: a new symlink renamed over ``current``."""
    tmp = root / ".current.deploy"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(f"releases/{release}")
    os.replace(tmp, root / "current")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy-root", required=True, type=Path)
    parser.add_argument("--release", required=True, help="the release directory to deploy")
    parser.add_argument("--alembic-ini", required=True, type=Path)
    parser.add_argument("--alembic-command", nargs="+", help="argv prefix for alembic (default: this python -m alembic)")
    parser.add_argument("--home", type=Path, default=Path(".rollback"), help="journal, lock and artifacts")
    args = parser.parse_args(argv)
    root = args.deploy_root.resolve()

    schema = Alembic(args.alembic_ini, name="schema", command=args.alembic_command)
    app_spec = {"kind": "release-dir", "name": "app", "config": {"root": str(root)}}
    before_release = os.readlink(root / "current").split("/")[-1]
    before_revision = schema.current()
    print(f"running: release {before_release}, schema {before_revision}")

    # --- deploy -----------------------------------------------------------------
    switch(root, args.release)
    schema.upgrade("head")
    print(f"deployed: release {args.release}, schema {schema.current()}")

    # --- detect -----------------------------------------------------------------
    health = rollback.Verifier(ReleaseHealth(root))
    verdict = health.probe({"interval": "50ms", "passes": 2, "max_failures": 3, "deadline": "5s"})
    decision = rollback.should_rollback(health_checks_failing=not verdict["passed"])
    print(f"verification: {verdict['reason']}; decision: {decision}")
    if not decision.rollback:
        print("healthy: keeping the deploy")
        return 0

    # --- roll back app and schema together ------------------------------------------
    plan = rollback.Plan.from_dict(
        {
            "name": f"back from {args.release}",
            "budget": "15m",
            "targets": [app_spec, schema.spec],
            "stages": [
                {"name": "app", "steps": [{"id": "app-back", "op": "rollback", "target": "app",
                                           "to": {"exact": before_release}}]},
                {"name": "verify app", "steps": [{"id": "app-healthy", "op": "verify", "verifier": "app-health",
                                                  "policy": {"interval": "50ms", "passes": 2, "deadline": "30s"}}]},
                {"name": "schema", "steps": [{"id": "schema-down", "op": "rollback", "target": "schema",
                                              "to": {"exact": before_revision}}]},
            ],
        }
    )
    engine = rollback.Engine(args.home, verifiers=[ReleaseHealth(root)], on_event=lambda e: print("  event:", e["event"]))
    print(engine.dry_run(plan))
    report = engine.run(plan, reason="; ".join(decision.reasons))
    print(report)
    print(f"now: release {os.readlink(root / 'current').split('/')[-1]}, schema {schema.current()}")
    return 0 if report.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
