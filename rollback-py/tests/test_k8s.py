"""A Kubernetes Deployment undone from Python, on the API double (started as a
process; it emulates the deployment controller): checked through the API, not
through the library's report."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import rollback
from conftest import api_double


@pytest.fixture
def api():
    with api_double() as url:
        yield url


def call(url: str, method: str, path: str, body=None, content_type="application/json"):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def image(deployment) -> str:
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def rolled_out(url: str) -> dict:
    for _ in range(500):
        d = call(url, "GET", f"{DEPLOYMENTS}/web")
        status = d.get("status", {})
        if status.get("observedGeneration", 0) >= d["metadata"]["generation"] and status.get("updatedReplicas") == 2 \
                and status.get("availableReplicas") == 2 and status.get("replicas") == 2:
            return d
        time.sleep(0.02)
    raise AssertionError(f"never rolled out: {d.get('status')}")


def test_a_deployment_undo_from_a_spec_dict(api, tmp_path):
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "shop/web:1.4.2"}]}}},
    }
    call(api, "POST", DEPLOYMENTS, deployment)
    rolled_out(api)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "shop/web:1.5.0"}]}}}}
    call(api, "PATCH", f"{DEPLOYMENTS}/web", patch, "application/strategic-merge-patch+json")
    assert image(rolled_out(api)) == "shop/web:1.5.0"

    plan = {
        "name": "web back",
        "targets": [{"kind": "k8s-deployment", "name": "web",
                     "config": {"cluster": {"url": api}, "namespace": "default", "deployment": "web",
                                "poll_interval": "50ms", "timeout": "60s"}}],
        "stages": [{"name": "app", "steps": [{"id": "web-back", "op": "rollback", "target": "web",
                                               "to": "previous"}]}],
    }
    events = []
    engine = rollback.Engine(tmp_path, on_event=events.append)
    dry = engine.dry_run(plan)
    preview = dry.to_dict()["steps"][0]["change"]["preview"]
    assert "shop/web:1.5.0" in preview and "shop/web:1.4.2" in preview, preview
    report = engine.run(plan)
    assert report.succeeded, str(report)
    assert image(rolled_out(api)) == "shop/web:1.4.2", "the API shows the old template live"
    replicas = [e for e in events if e["event"] == "progress" and e["unit"] == "replicas"]
    assert replicas and replicas[-1]["total"] == 2, replicas


def test_the_async_example_undoes_a_deployment_and_waits_on_its_own_loop(api, tmp_path):
    """examples/k8s_undo_async.py end to end against the API double."""
    example = Path(__file__).resolve().parent.parent / "examples" / "k8s_undo_async.py"
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "shop/web:2.0.0"}]}}},
    }
    call(api, "POST", DEPLOYMENTS, deployment)
    rolled_out(api)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "shop/web:2.1.0"}]}}}}
    call(api, "PATCH", f"{DEPLOYMENTS}/web", patch, "application/strategic-merge-patch+json")
    assert image(rolled_out(api)) == "shop/web:2.1.0"
    done = subprocess.run([sys.executable, str(example), "--namespace", "default", "--deployment", "web",
                           "--cluster-url", api, "--home", str(tmp_path / "home")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "available" in done.stdout and "succeeded" in done.stdout, done.stdout
    assert image(rolled_out(api)) == "shop/web:2.0.0", "the API shows the previous template live"
