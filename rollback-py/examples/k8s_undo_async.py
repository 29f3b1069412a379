#!/usr/bin/env python3
"""An asyncio deploy script's rollback of a Kubernetes Deployment: undo to the
previous ReplicaSet's template, then wait until the Deployment reports every
replica updated and available, checked by an ``async def`` verifier that runs on
this script's own event loop.

    python examples/k8s_undo_async.py --namespace shop --deployment web [--context prod]
    python examples/k8s_undo_async.py --cluster-url http://127.0.0.1:8001 ...   # kubectl proxy

Prints the report; exit 0 when the rollback succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import rollback
from rollback import specs


class Available:
    """Passes when the Deployment's status shows every replica updated and available
    (read through the API URL, as ``kubectl rollout status`` does)."""

    name = "web-available"

    def __init__(self, api: str, namespace: str, deployment: str) -> None:
        self.url = f"{api}/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}"

    def _read(self) -> Tuple[str, str]:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            d = json.loads(response.read())
        want, status = d["spec"].get("replicas", 1), d.get("status", {})
        ready = status.get("updatedReplicas") == want and status.get("availableReplicas") == want
        return ("pass" if ready else "fail", f"{status.get('availableReplicas', 0)}/{want} available")

    async def check(self) -> Tuple[str, str]:
        # On the caller's loop (AsyncEngine); the blocking read goes to a thread.
        return await asyncio.to_thread(self._read)


async def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--deployment", required=True)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--context", help="kubeconfig context")
    where.add_argument("--cluster-url", help="an API URL without credentials (kubectl proxy)")
    parser.add_argument("--home", type=Path, default=Path(".rollback"), help="journal, lock and artifacts")
    args = parser.parse_args(argv)

    cluster: specs.Cluster = {"url": args.cluster_url} if args.cluster_url else {}
    if args.context:
        cluster["context"] = args.context
    stages: List[Dict[str, Any]] = [
        {"name": "undo", "steps": [{"id": "app-back", "op": "rollback", "target": "app", "to": "previous"}]},
    ]
    verifiers = []
    if args.cluster_url:  # else the target's own rollout wait is the check
        verifiers.append(Available(args.cluster_url, args.namespace, args.deployment))
        stages.append({"name": "verify", "steps": [{"id": "available", "op": "verify", "verifier": "web-available",
                                                    "policy": {"interval": "200ms", "passes": 2, "deadline": "2m"}}]})
    plan = {
        "name": f"{args.deployment} back",
        "targets": [specs.k8s_deployment("app", namespace=args.namespace, deployment=args.deployment,
                                         cluster=cluster, poll_interval="100ms")],
        "stages": stages,
    }
    engine = rollback.AsyncEngine(args.home, verifiers=verifiers)
    dry = await engine.dry_run(plan)
    print(dry)
    report = await engine.run(plan, reason="deploy script: health check failed")
    print(report)
    return 0 if report.succeeded else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
