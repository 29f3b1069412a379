"""The storage backend from Python, on real servers: a Redis invalidation (checked
with redis-cli) and an S3 point-in-time restore on moto (checked with boto3), both
from spec dicts with their credentials by reference; and the wheel's kind list."""

from __future__ import annotations

import datetime
import subprocess
import time
import uuid

import boto3  # scripts/test.sh installs it into the venv with moto

import rollback
from conftest import server_env


def test_the_wheel_has_every_backend_and_lists_its_kinds():
    assert set(rollback.BACKENDS) >= {"core", "db", "docker", "k8s", "storage"}, rollback.BACKENDS
    kinds = {(k["role"], k["kind"]) for k in rollback.kinds()}
    for expected in [
        ("target", "release-dir"),
        ("target", "alembic"),
        ("target", "docker-container"),
        ("target", "k8s-deployment"),
        ("snapshot", "k8s-deployment"),
        ("target", "s3-restore"),
        ("target", "redis-invalidate"),
        ("verifier", "http"),
    ]:
        assert expected in kinds, f"{expected} missing from rollback.kinds()"
    # Kinds on the Kind contract carry their config schema and a doc line; only ones
    # registered at run time (the package's `noop` verifier) have none.
    typed = [k for k in rollback.kinds() if k["schema"] is not None]
    assert len(typed) >= 35 and all(k["about"] and isinstance(k["schema"], dict) for k in typed)
    assert [k["kind"] for k in rollback.kinds() if k["schema"] is None] == ["noop"]


def redis_cli(url: str, *args: str, stdin: str | None = None) -> str:
    port = url.rstrip("/").rsplit(":", 1)[1]
    out = subprocess.run(["redis-cli", "-p", port, *args], input=stdin, capture_output=True, text=True, check=True)
    return out.stdout


def test_redis_invalidation_from_a_spec_dict(tmp_path, monkeypatch):
    url = server_env("ROLLBACK_TEST_REDIS_URL", "Redis")
    prefix = f"rbpy{uuid.uuid4().hex[:8]}"
    redis_cli(url, "-n", "9", "--pipe", stdin="".join(f"SET {prefix}:{i} x\r\n" for i in range(2_000)))
    redis_cli(url, "-n", "9", "SET", f"keep{prefix}", "x")
    monkeypatch.setenv("RBPY_REDIS_URL", url)
    plan = {
        "name": "flush sessions",
        "targets": [
            {
                "kind": "redis-invalidate",
                "name": "sessions",
                "config": {"db": 9, "mode": "pattern", "pattern": f"{prefix}:*", "batch": 100},
                "secrets": {"url": {"from": "env", "var": "RBPY_REDIS_URL"}},
            }
        ],
        "stages": [{"name": "flush", "steps": [{"id": "flush", "op": "action", "target": "sessions",
                                                 "action": "invalidate"}]}],
    }
    events = []
    engine = rollback.Engine(tmp_path, on_event=events.append)
    dry = engine.dry_run(plan)
    assert "2000 keys" in str(dry), str(dry)
    report = engine.run(plan)
    assert report.succeeded, str(report)
    left = redis_cli(url, "-n", "9", "--scan", "--pattern", f"{prefix}:*").split()
    assert left == [], f"{len(left)} keys left"
    assert redis_cli(url, "-n", "9", "EXISTS", f"keep{prefix}").strip() == "1", "other keys stay"
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 2_000, progress
    redis_cli(url, "-n", "9", "DEL", f"keep{prefix}")


def test_s3_point_in_time_restore_checked_by_boto3(tmp_path, monkeypatch):
    endpoint = server_env("ROLLBACK_TEST_S3_ENDPOINT", "an S3 server (moto)")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    bucket = f"rbpy-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for key in ["a", "b", "c"]:
        s3.put_object(Bucket=bucket, Key=f"site/{key}", Body=f"good {key}".encode())
    time.sleep(1.1)
    good_until = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(1.1)
    s3.put_object(Bucket=bucket, Key="site/a", Body=b"broken a")
    s3.delete_object(Bucket=bucket, Key="site/b")
    s3.put_object(Bucket=bucket, Key="site/new", Body=b"written later")

    monkeypatch.setenv("RBPY_S3_KEY", "test")
    monkeypatch.setenv("RBPY_S3_SECRET", "test")
    plan = {
        "name": "site back to before the bad publish",
        "targets": [
            {
                "kind": "s3-restore",
                "name": "site",
                "config": {"bucket": bucket, "prefix": "site/", "client": {"endpoint": endpoint}},
                "secrets": {
                    "access_key_id": {"from": "env", "var": "RBPY_S3_KEY"},
                    "secret_access_key": {"from": "env", "var": "RBPY_S3_SECRET"},
                },
            }
        ],
        "stages": [{"name": "restore", "steps": [{"id": "site-back", "op": "rollback", "target": "site",
                                                   "to": {"before": good_until.isoformat()}}]}],
    }
    engine = rollback.Engine(tmp_path)
    report = engine.run(plan)
    assert report.succeeded, str(report)

    def body(key):
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    assert body("site/a") == b"good a" and body("site/b") == b"good b" and body("site/c") == b"good c"
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="site/").get("Contents", [])]
    assert sorted(listed) == ["site/a", "site/b", "site/c"], listed
    versions = s3.list_object_versions(Bucket=bucket, Prefix="site/a")["Versions"]
    assert any(v["Key"] == "site/a" and not v["IsLatest"] for v in versions), "the broken a stays as a noncurrent version"

    again = engine.run(plan)
    assert again.succeeded and again.nothing_to_do, str(again)
    assert "nothing to restore" in again.already_done[0], again.already_done
