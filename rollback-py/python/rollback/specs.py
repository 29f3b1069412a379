"""Typed builders for the specs of the kinds deploy scripts use most, so an editor
completes their fields and a type checker catches a wrong one before the plan is
loaded. Each returns the plain spec dict a plan's ``targets`` / ``verifiers`` list
takes (``rollback.kinds()`` lists every kind with its full schema; every field is
checked again, with the closest valid name, when the plan loads)::

    from rollback import specs

    plan = {
        "name": "web back",
        "targets": [specs.k8s_deployment("web", namespace="shop", deployment="web",
                                         cluster={"context": "prod"})],
        "verifiers": [specs.http("health", url="https://shop.example/health", statuses=[200])],
        "stages": [...],
    }

Secrets are references, never values: ``{"from": "env", "var": "NAME"}`` or
``{"from": "file", "path": "/run/secrets/name"}``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Mapping, Optional, TypedDict, Union


# Where a secret is read from: ``from`` is ``"env"`` (with ``var``) or ``"file"``
# (with ``path``). Functional form: ``from`` is a keyword.
SecretRef = TypedDict("SecretRef", {"from": Literal["env", "file"], "var": str, "path": str}, total=False)


Secret = Union[SecretRef, Mapping[str, str]]


class Cluster(TypedDict, total=False):
    """Where a Kubernetes cluster is (nothing set: ``KUBECONFIG``, ``~/.kube/config``,
    in-cluster)."""

    kubeconfig: str
    context: str
    url: str


Spec = Dict[str, Any]


def _spec(kind: str, name: str, config: Dict[str, Any], secrets: Optional[Dict[str, Optional[Secret]]] = None) -> Spec:
    spec: Spec = {"kind": kind, "name": name, "config": {k: v for k, v in config.items() if v is not None}}
    present = {k: dict(v) for k, v in (secrets or {}).items() if v is not None}
    if present:
        spec["secrets"] = present
    return spec


def k8s_deployment(
    name: str,
    *,
    namespace: str,
    deployment: str,
    cluster: Optional[Cluster] = None,
    timeout: Optional[str] = None,
    poll_interval: Optional[str] = None,
) -> Spec:
    """A Kubernetes Deployment (target kind ``k8s-deployment``): rolled back to an
    earlier ReplicaSet's pod template, waited for like ``kubectl rollout status``."""
    return _spec(
        "k8s-deployment",
        name,
        {"namespace": namespace, "deployment": deployment, "cluster": cluster, "timeout": timeout,
         "poll_interval": poll_interval},
    )


def s3_restore(
    name: str,
    *,
    bucket: str,
    prefix: Optional[str] = None,
    endpoint: Optional[str] = None,
    region: Optional[str] = None,
    concurrency: Optional[int] = None,
    access_key_id: Optional[Secret] = None,
    secret_access_key: Optional[Secret] = None,
) -> Spec:
    """A versioned bucket's prefix restored to a point in time (target kind
    ``s3-restore``); credentials from the references or the AWS chain."""
    client = {k: v for k, v in {"endpoint": endpoint, "region": region}.items() if v is not None}
    return _spec(
        "s3-restore",
        name,
        {"bucket": bucket, "prefix": prefix, "client": client or None, "concurrency": concurrency},
        {"access_key_id": access_key_id, "secret_access_key": secret_access_key},
    )


def redis_invalidate(
    name: str,
    *,
    mode: Literal["flush", "pattern"],
    pattern: Optional[str] = None,
    url: Optional[str] = None,
    url_secret: Optional[Secret] = None,
    db: Optional[int] = None,
    batch: Optional[int] = None,
) -> Spec:
    """A Redis cache invalidation (target kind ``redis-invalidate``): ``FLUSHDB
    ASYNC`` (``mode="flush"``) or ``SCAN`` + ``UNLINK`` of ``pattern``. ``url``
    without credentials, or ``url_secret`` for one with a password."""
    if mode == "pattern" and not pattern:
        raise ValueError("redis_invalidate(mode='pattern') needs pattern=")
    return _spec(
        "redis-invalidate",
        name,
        {"mode": mode, "pattern": pattern, "url": url, "db": db, "batch": batch},
        {"url": url_secret},
    )


def http(
    name: str,
    *,
    url: str,
    statuses: Optional[List[int]] = None,
    body_contains: Optional[str] = None,
    max_latency: Optional[str] = None,
    headers_from_env: Optional[Dict[str, str]] = None,
) -> Spec:
    """An HTTP health check (verifier kind ``http``): any 2xx unless ``statuses``;
    header values from environment variables, never in reports."""
    return _spec(
        "http",
        name,
        {"url": url, "statuses": statuses, "body_contains": body_contains, "max_latency": max_latency,
         "headers_from_env": headers_from_env},
    )


__all__ = ["Cluster", "Secret", "SecretRef", "Spec", "http", "k8s_deployment", "redis_invalidate", "s3_restore"]
