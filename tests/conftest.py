"""Shared fixtures: one real Temporal dev server per session, the real `claude` CLI against the
scripted model server, a stand-in GitHub, local bare git remotes, and a Factory harness per test
(its own task queue, database and workspace)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from factory.config import FactoryConfig, load_config
from factory.search_attributes import SEARCH_ATTRIBUTES
from factory.specs import task_workflow_id
from factory.store.tables import make_engine
from temporal.client import data_converter as pydantic_data_converter
from temporal.devserver import temporal_binary
from tests.fakes.anthropic import FAKE_API_KEY, ScriptedModel, cli_env
from tests.fakes.github import FakeGitHub

pytest_plugins = ["tests.docker_fixtures", "tests.pg", "tests.service_fixtures"]

ROOT = Path(__file__).resolve().parent.parent

DOCKER_FIXTURES = frozenset({"docker_engine", "busybox_image"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of the one Docker engine run on one worker under `--dist loadgroup` (scripts/test.sh): they
    build the same images and count, list and reap the engine's objects as a whole."""
    for item in items:
        if item.get_closest_marker("docker") or DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("docker"))


def pytest_configure(config: pytest.Config) -> None:
    """Once per run, in the process that owns it (xdist's controller, or pytest alone), never per worker: a
    worker that finished first would take back what the others still use."""
    if not hasattr(config, "workerinput"):
        from tests.adversarial.reach import open_project_to_other_users

        config._factory_reach = open_project_to_other_users()  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    restore = getattr(config, "_factory_reach", None)
    if restore is not None:
        restore()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The scripted model server; the session's environment points the CLI at it."""
    m = ScriptedModel()
    m.start()
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    os.environ.update(cli_env(m.base_url, str(home)))
    os.environ["ANTHROPIC_API_KEY"] = FAKE_API_KEY
    subprocess.run(["git", "config", "--global", "init.defaultBranch", "main"], check=True)
    yield m
    os.environ.clear()
    os.environ.update(saved)
    m.stop()


@pytest.fixture(scope="session")
def _github_server() -> Any:
    gh = FakeGitHub()
    gh.start()
    yield gh
    gh.stop()


@pytest.fixture
def github(_github_server: Any) -> Any:
    """The stand-in GitHub, empty for each test: every test's task 1 has the same branch name, and a PR
    another test left for it would be adopted as this task's."""
    _github_server.reset()
    return _github_server


def make_remote(path: Path, files: dict[str, str] | None = None) -> Path:
    """A bare repository with one commit on main."""
    work = path.with_name(path.name + "-seed")
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    for name, content in (files or {"README.md": "# demo\n"}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "initial"], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(path)], check=True)
    shutil.rmtree(work)
    return path


def remote_file(remote: Path, branch: str, name: str) -> str | None:
    r = subprocess.run(["git", "-C", str(remote), "show", f"{branch}:{name}"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def write_config(tmp: Path, remote: Path, github_url: str, **overrides: Any) -> Path:
    uid = uuid.uuid4().hex[:10]
    data: dict[str, Any] = {
        "max_concurrent_agents": 3,
        "agent_timeout_minutes": 5,
        "agent_activity_timeout_minutes": 2,
        "claude_command": "claude",
        "workspace_root": str(tmp / "ws"),
        "data_dir": str(tmp / "data"),
        "repos": {"demo": {"url": f"file://{remote}", "github": "acme/demo"}},
        "github": {"api_url": github_url},
        "temporal": {
            "task_queue": f"tq-{uid}",
            "worker_id": f"w-{uid}",
            "id_prefix": f"{uid}-",
            "heartbeat_timeout_seconds": 5,
        },
        "memory": {"enabled": False},
        "previews": {"janitor_interval_minutes": 0},  # a janitor would reap other tests' environments
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    tpl_root = ROOT / "prompts"
    data.setdefault(
        "agent_templates",
        {
            "coder": {
                "system_prompt_file": str(tpl_root / "coder.md"),
                "allowed_tools": ["Read", "Edit", "Write", "Bash", "Glob", "Grep"],
            },
            "coder_revision": {
                "system_prompt_file": str(tpl_root / "coder_revision.md"),
                "allowed_tools": ["Read", "Edit", "Write", "Bash", "Glob", "Grep"],
            },
            "reviewer": {
                "system_prompt_file": str(tpl_root / "reviewer.md"),
                "allowed_tools": ["Read", "Glob", "Grep"],
            },
            "researcher": {
                "system_prompt_file": str(tpl_root / "researcher.md"),
                "allowed_tools": ["WebSearch", "WebFetch", "Read"],
            },
            "devops": {"system_prompt_file": str(tpl_root / "devops.md"), "allowed_tools": ["Bash", "Read", "Edit"]},
        },
    )
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class Harness:
    cfg: FactoryConfig
    api: httpx.AsyncClient
    client: Client
    model: ScriptedModel
    github: FakeGitHub
    remote: Path
    tmp: Path
    app: Any = None
    runtime: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def create(self, title: str, scenario: str, run: bool = True, **fields: Any) -> dict[str, Any]:
        body = {
            "title": title,
            "description": f"[[scenario:{scenario}]] {fields.pop('description', '')}",
            "repo": "demo",
        }
        body.update(fields)
        r = await self.api.post("/api/tasks", params={"auto_run": str(run).lower()}, json=body)
        assert r.status_code == 201, r.text
        return r.json()

    async def task(self, task_id: int) -> dict[str, Any]:
        r = await self.api.get(f"/api/tasks/{task_id}")
        assert r.status_code == 200, r.text
        return r.json()

    async def wait_for(self, task_id: int, statuses: set[str] | str, timeout: float = 90) -> dict[str, Any]:
        statuses = {statuses} if isinstance(statuses, str) else statuses
        deadline = time.monotonic() + timeout
        while True:
            t = await self.task(task_id)
            if t["status"] in statuses:
                return t
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} stayed {t['status']} (wanted {statuses}): {t}")
            await asyncio.sleep(0.1)

    async def settled(self, task_id: int, timeout: float = 60) -> Any:
        """Wait until the task's workflow has closed (cleanup included); its result or error."""
        handle = self.client.get_workflow_handle(task_workflow_id(self.cfg, task_id))
        try:
            return await asyncio.wait_for(handle.result(), timeout)
        except TimeoutError:
            raise
        except Exception as exc:  # failed or cancelled workflows
            return exc

    async def until(self, predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def run_factory(
    cfg: FactoryConfig, client: Client, model: Any, github: FakeGitHub, remote: Path, tmp: Path, worker: bool = True
) -> AsyncIterator[Harness]:
    from api.main import create_app
    from temporal.worker import Runtime, run_worker

    rt = await Runtime.create(cfg, make_engine(cfg.db_url))
    app = create_app(cfg, client=client, engine=rt.engine, memory=rt.memory, board=rt.board)
    stop = asyncio.Event()
    wtask = asyncio.create_task(run_worker(cfg, client, stop, rt)) if worker else None
    transport = httpx.ASGITransport(app=app)
    headers = {}
    if cfg.factory_auth_token:
        headers["Authorization"] = f"Bearer {cfg.factory_auth_token.get_secret_value()}"
    async with httpx.AsyncClient(transport=transport, base_url="http://factory", headers=headers, timeout=60) as api:
        h = Harness(
            cfg=cfg, api=api, client=client, model=model, github=github, remote=remote, tmp=tmp, app=app, runtime=rt
        )
        try:
            yield h
        finally:
            stop.set()
            if wtask:
                await asyncio.wait_for(wtask, 60)
            await rt.close()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path / "remote.git")


@pytest.fixture
def factory_config(tmp_path: Path, remote: Path, github: FakeGitHub, model: Any) -> Callable[..., FactoryConfig]:
    def make(**overrides: Any) -> FactoryConfig:
        return load_config(write_config(tmp_path, remote, github.url, **overrides))

    return make


@pytest.fixture
def start_factory(
    temporal_env: WorkflowEnvironment, model: Any, github: FakeGitHub, remote: Path, tmp_path: Path, factory_config: Any
) -> Callable[..., Any]:
    """`async with start_factory(**config_overrides) as h:` runs a worker and the API for one test."""

    def start(worker: bool = True, **overrides: Any) -> Any:
        return run_factory(factory_config(**overrides), temporal_env.client, model, github, remote, tmp_path, worker)

    return start
