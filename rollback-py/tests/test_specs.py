"""The typed spec builders of `rollback.specs` stay in step with the kinds' schemas:
every field they write is one the kind declares, and plans built with them load."""

from __future__ import annotations

from typing import Any, Dict, Set

import rollback
from rollback import specs

SECRET = {"from": "env", "var": "RBPY_SECRET"}


def properties(schema: Dict[str, Any]) -> Set[str]:
    names = set(schema.get("properties", {}))
    for variant in schema.get("oneOf", []) + schema.get("anyOf", []):
        names |= set(variant.get("properties", {}))
    return names


def test_every_field_a_builder_writes_is_declared_by_its_kind():
    schemas = {(k["role"], k["kind"]): k["schema"] for k in rollback.kinds()}
    built = [
        ("target", specs.k8s_deployment("web", namespace="shop", deployment="web", cluster={"context": "prod"},
                                        timeout="5m", poll_interval="1s")),
        ("target", specs.s3_restore("site", bucket="b", prefix="site/", endpoint="http://127.0.0.1:9000",
                                    region="eu-west-1", concurrency=8, access_key_id=SECRET,
                                    secret_access_key=SECRET)),
        ("target", specs.redis_invalidate("cache", mode="pattern", pattern="session:*", url_secret=SECRET, db=2,
                                          batch=500)),
        ("verifier", specs.http("health", url="http://127.0.0.1/health", statuses=[200], body_contains="ok",
                                max_latency="500ms", headers_from_env={"Authorization": "TOKEN"})),
    ]
    for role, spec in built:
        schema = schemas[(role, spec["kind"])]
        unknown = set(spec["config"]) - properties(schema)
        assert not unknown, f"{spec['kind']} has no field(s) {unknown}"
        client = spec["config"].get("client")
        if client:
            assert set(client) <= set(schema["$defs"]["S3ClientConfig"]["properties"])


def test_a_plan_built_with_them_loads():
    plan = rollback.Plan({
        "name": "all of it back",
        "targets": [
            specs.k8s_deployment("web", namespace="shop", deployment="web"),
            specs.s3_restore("site", bucket="b", access_key_id=SECRET, secret_access_key=SECRET),
            specs.redis_invalidate("cache", mode="flush", url="redis://127.0.0.1:6379/0"),
        ],
        "verifiers": [specs.http("health", url="http://127.0.0.1/health")],
        "stages": [{"name": "all", "steps": [
            {"id": "web", "op": "rollback", "target": "web", "to": "previous"},
            {"id": "site", "op": "rollback", "target": "site", "to": {"before": "2026-01-01T00:00:00Z"}},
            {"id": "cache", "op": "action", "target": "cache", "action": "invalidate"},
            {"id": "health", "op": "verify", "verifier": "health"},
        ]}],
    })
    assert plan.to_dict()["name"] == "all of it back"


def test_a_pattern_invalidation_needs_its_pattern():
    try:
        specs.redis_invalidate("cache", mode="pattern")
    except ValueError as e:
        assert "pattern" in str(e)
    else:
        raise AssertionError("accepted a pattern invalidation without a pattern")
