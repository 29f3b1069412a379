"""A container rolled back by image from Python, next to a Python target, against
the real Docker engine (images built locally from a static busybox)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

import rollback
from conftest import Flag, server_env

# The testkit's Dockerfile (no RUN step: the build needs no container networking).
DOCKERFILE = Path(__file__).resolve().parents[2] / "rollback-docker" / "testkit" / "Dockerfile"


def busybox_rootfs(ctx: Path) -> None:
    """rootfs/bin/busybox and a symlink per applet, as `busybox --install -s /bin` would make."""
    bin_dir = ctx / "rootfs" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy("/bin/busybox", bin_dir / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (bin_dir / applet).symlink_to("busybox")


def docker(host: str, *args: str) -> str:
    out = subprocess.run(["docker", *args], env={**os.environ, "DOCKER_HOST": host}, capture_output=True, text=True)
    assert out.returncode == 0, f"docker {' '.join(args)}: {out.stderr}"
    return out.stdout.strip()


@pytest.fixture
def images(tmp_path):
    host = server_env("ROLLBACK_TEST_DOCKER", "Docker")
    if not os.path.exists("/bin/busybox"):
        pytest.fail("/bin/busybox (Debian's busybox-static) is needed to build test images")
    repo = f"rbpy-{uuid.uuid4().hex[:8]}"
    ctx = tmp_path / "build"
    (ctx / "www").mkdir(parents=True)
    busybox_rootfs(ctx)
    shutil.copy(DOCKERFILE, ctx / "Dockerfile")
    (ctx / "www" / "health").write_text("ok")
    ids = []
    for tag in ["v1", "v2"]:
        (ctx / "www" / "version").write_text(tag)
        docker(host, "build", "-q", "-t", f"{repo}:{tag}", str(ctx))
        ids.append(docker(host, "image", "inspect", "--format", "{{.Id}}", f"{repo}:{tag}"))
    try:
        yield host, repo, ids
    finally:
        for tag in ["v1", "v2"]:
            subprocess.run(["docker", "rmi", "-f", f"{repo}:{tag}"], env={**os.environ, "DOCKER_HOST": host},
                           capture_output=True)


def test_container_and_flag_rolled_back_in_one_plan(images, tmp_path):
    host, repo, (v1, v2) = images
    name = f"{repo}-web"
    docker(host, "run", "-d", "--name", name, "--network", "host", "--stop-timeout", "1",
           "-e", f"PORT={18000 + int(uuid.uuid4().int % 1000)}", f"{repo}:v2")
    try:
        spec = {"kind": "docker-container", "name": "web", "config": {"container": name, "docker": {"host": host}}}
        web = rollback.Target(spec)
        assert web.current()["id"] == v2
        assert [h["version"]["id"] for h in web.history()][:2] == [v2, v1]
        flag = Flag("new-checkout")
        plan = {
            "name": "flag off, web back",
            "targets": [spec],
            "stages": [
                {"name": "flags", "steps": [{"id": "flag-off", "op": "action", "target": "new-checkout", "action": "off"}]},
                {"name": "app", "steps": [{"id": "web-back", "op": "rollback", "target": "web", "to": "previous"}]},
            ],
        }
        engine = rollback.Engine(tmp_path / "home", targets=[flag])
        dry = engine.dry_run(plan)
        assert dry.steps[1]["change"]["to"]["id"] == v1
        assert docker(host, "inspect", "--format", "{{.Image}}", name) == v2  # dry-run changed nothing
        report = engine.run(plan)
        assert report.succeeded, str(report)
        assert flag.enabled is False
        # what the engine shows: the container named `name` now runs v1, and is running
        assert docker(host, "inspect", "--format", "{{.Image}} {{.State.Running}}", name) == f"{v1} true"
        assert dry.identities["web"] == rollback.Target(spec).identity()
    finally:
        for c in docker(host, "ps", "-aq", "--filter", f"name={name}").split():
            subprocess.run(["docker", "rm", "-f", c], env={**os.environ, "DOCKER_HOST": host}, capture_output=True)
