"""Two Factory deployments on one Docker engine: each sees, routes and removes only its own environments.

Every deployment numbers its tasks from 1, so names and labels carry the deployment's namespace
(`temporal.id_prefix`, sanitized); the default namespace "" keeps the names environments started
before namespaces carry. Real engine, real Traefik; helpers and fixtures from tests/test_environments.py.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes.environments import router as environments_router
from factory.config import FactoryConfig
from factory.environments import docker as environments
from factory.environments.compose import namespace
from factory.environments.janitor import Janitor
from tests.test_environments import (  # noqa: F401  (fixtures)
    DOMAIN,
    Broker,
    _new_task_id,
    _poll_status,
    _toolkit,
    _write_app,
    other_networks,
    previews_network,
    traefik,
)

pytestmark = pytest.mark.docker

TEST = "from docker_toolkit import spin_up_test_env; print(spin_up_test_env(service_port=8080))"
PREVIEW = (
    "from docker_toolkit import spin_up_preview_env; print(spin_up_preview_env('docker-compose.yml', 'web', 8080))"
)


def _cfg(tmp: Path, id_prefix: str, network: str = "factory-previews") -> FactoryConfig:
    return FactoryConfig(
        workspace_root=str(tmp),
        temporal={"id_prefix": id_prefix},
        previews={"domain": DOMAIN, "scheme": "http", "entrypoint": "web", "max_running": 50, "network": network},
    )


def _project(name: str) -> list[tuple[str, bool]]:
    """(container id, running) of a compose project, straight from Docker."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={name}", "--format", "{{.ID}} {{.State}}"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    return [(p[0], p[1] == "running") for p in (line.split() for line in out.splitlines()) if len(p) == 2]


def _running(name: str) -> bool:
    states = _project(name)
    return bool(states) and all(r for _id, r in states)


@pytest.fixture
def deployments(docker_engine, tmp_path, previews_network) -> Iterator[tuple[Broker, Broker]]:  # noqa: F811
    """Deployments A and B (test configs' `<10 hex>-` id prefixes), each with its own broker and workspace."""
    a = Broker(_cfg(tmp_path / "ws-a", f"{uuid.uuid4().hex[:10]}-", previews_network))
    b = Broker(_cfg(tmp_path / "ws-b", f"{uuid.uuid4().hex[:10]}-", previews_network))
    yield a, b
    for d in (a, b):
        d.call(environments.cleanup_task_environments(1, ("test", "preview"), d.broker.ns))
        d.close()


async def test_another_deployments_task_1_leaves_this_ones_environments_alone(
    deployments,
    busybox_image,
    tmp_path,
    traefik,  # noqa: F811
):
    a, b = deployments
    na, nb = a.broker.ns, b.broker.ns
    assert na == namespace(a.broker.cfg.temporal.id_prefix) and na != nb and "" not in (na, nb)
    urls = {}
    for d, who in ((a, "A"), (b, "B")):  # both deployments' task 1: a test environment and a preview
        wt = tmp_path / f"wt-{who}"
        _write_app(wt, busybox_image, f"deployment {who}")
        env = d.env(1, wt)
        assert _toolkit(TEST, env, wt).stdout.strip().startswith("http://")
        urls[who] = _toolkit(PREVIEW, env, wt).stdout.strip()
    assert urls == {"A": f"http://{na}-task-1.{DOMAIN}", "B": f"http://{nb}-task-1.{DOMAIN}"}
    # one Traefik, one previews domain: each deployment's task 1 answers at its own host
    for who, url in urls.items():
        assert _poll_status(traefik, url.split("//")[1], 200).text == f"deployment {who}"
    assert _running(f"factory-{na}-task-1-test") and _running(f"factory-{nb}-task-1-test")

    # B's task 1 ends: only B's test environment goes
    b.call(b.broker.end_run(1))
    assert _project(f"factory-{nb}-task-1-test") == []
    assert _running(f"factory-{na}-task-1-test") and _running(f"factory-{na}-task-1-preview")

    # B's janitor: its database has no task 1, so B's own preview is "gone"; A's are not B's to judge
    removed = await Janitor(b.broker.cfg, lambda _tid: None).run_once()
    assert removed == [f"factory-{nb}-task-1-preview"]
    assert _running(f"factory-{na}-task-1-test") and _running(f"factory-{na}-task-1-preview")
    assert _poll_status(traefik, urls["A"].split("//")[1], 200).text == "deployment A"
    _poll_status(traefik, urls["B"].split("//")[1], 404)
    assert await environments.preview_url_of(1, na) == urls["A"]
    assert await environments.preview_url_of(1, nb) is None
    assert [e.name for e in await environments.list_environments(ns=nb)] == []
    assert [e.name for e in await environments.list_environments(ns=na)] == [
        f"factory-{na}-task-1-preview", f"factory-{na}-task-1-test",
    ]  # fmt: skip

    # B's API neither lists A's environments nor removes them by name
    app = FastAPI()
    app.include_router(environments_router)
    app.state.cfg = b.broker.cfg
    with TestClient(app) as client:
        assert client.get("/api/environments", params={"task_id": 1}).json() == []
        for name in (f"factory-{na}-task-1-test", "factory-task-1-test"):
            assert client.delete(f"/api/environments/{name}").status_code == 404
    assert await environments.tear_down(f"factory-{na}-task-1-test", nb) is False
    assert _running(f"factory-{na}-task-1-test")

    # A's own task 1 ending still removes A's test environment; its preview stays for people
    a.call(a.broker.end_run(1))
    assert _project(f"factory-{na}-task-1-test") == []
    assert _running(f"factory-{na}-task-1-preview")
    # the copies under each deployment's envs/ are its own: B's sweep never touches A's
    assert await Janitor(b.broker.cfg, lambda _tid: None).sweep_copies(min_age_s=0) == []
    assert list((a.broker.cfg.workspace_path / "envs").glob(f"factory-{na}-task-1-preview-*"))


OLD_COMPOSE = """services:
  web:
    image: {image}
    command: ["/bin/busybox", "sleep", "600"]
    labels: &labels {{factory.task: "{tid}", factory.kind: test, factory.repo: acme/widgets, factory.created: "{now}"}}
    volumes: ["data:/data"]
networks:
  default: {{labels: *labels}}
volumes:
  data: {{labels: *labels}}
"""


async def test_the_default_namespace_still_removes_an_environment_started_the_old_way(
    docker_engine,
    busybox_image,
    tmp_path,
    previews_network,  # noqa: F811
):
    """`factory-task-<id>-test` with no `factory.deployment` label (a Factory before namespaces started it)."""
    tid = _new_task_id()  # the default namespace is every default deployment's: a task id of this test's own
    name = f"factory-task-{tid}-test"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "docker-compose.yml").write_text(OLD_COMPOSE.format(image=busybox_image, tid=tid, now=0))
    up = [*await environments.compose_command(), "-p", name, "-f", str(tmp_path / "old" / "docker-compose.yml")]
    subprocess.run(
        [*up, "up", "-d"], check=True, capture_output=True, timeout=300, env=environments.compose_environment()
    )
    # and a namespaced deployment's environment of the same task id beside it
    other = Broker(_cfg(tmp_path / "ws-other", f"{uuid.uuid4().hex[:10]}-", previews_network))
    old = Broker(_cfg(tmp_path / "ws-old", "", previews_network))
    try:
        wt = tmp_path / "wt"
        _write_app(wt, busybox_image, "namespaced")
        _toolkit(TEST, other.env(tid, wt), wt)
        mine = f"factory-{other.broker.ns}-task-{tid}-test"
        assert _running(name) and _running(mine)
        [env] = await environments.list_environments(task_id=tid)
        assert (env.name, env.kind, env.status) == (name, "test", "running")
        assert [e.name for e in await environments.list_environments(task_id=tid, ns=other.broker.ns)] == [mine]

        other.call(other.broker.end_run(tid))  # the namespaced deployment's task ends: the old one stays
        assert _project(mine) == [] and _running(name)
        _toolkit(TEST, other.env(tid, wt), wt)

        old.call(old.broker.end_run(tid))  # the default deployment's task ends: its old environment goes, all of it
        assert _project(name) == [] and _running(mine)
        for what in ("network", "volume"):
            ls = ["docker", what, "ls", "-q", "--filter", f"label=com.docker.compose.project={name}"]
            assert subprocess.run(ls, capture_output=True, text=True, timeout=30).stdout.split() == []
    finally:
        old.close()
        other.call(environments.cleanup_task_environments(tid, ("test",), other.broker.ns))
        other.close()
        await environments.cleanup_task_environments(tid, ("test",))
