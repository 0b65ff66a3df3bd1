"""Factory's side of the agents' Docker environments: find, remove, and sweep them.

Agents start environments with `docker_toolkit`; every container, network and volume
they get carries the labels `factory.task`, `factory.kind` (test | preview),
`factory.repo` and `factory.created`. This module finds environments by those labels
with the docker CLI, so it works whichever compose version started them and whether or
not the agent is still alive.

Docker being missing or its engine down is not a task's problem: every function here
logs a warning and returns an empty result instead of raising.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker_toolkit._compose import (
    LABEL_CREATED,
    LABEL_KIND,
    LABEL_REPO,
    LABEL_TASK,
    LABEL_URL,
    parse_project_name,
    preview_url,
    project_name,
)
from factory.config import FactoryConfig

log = logging.getLogger(__name__)

FINISHED_STATUSES = frozenset({"done", "failed", "cancelled"})
CLOSED_PR_STATES = frozenset({"merged", "closed"})

DOCKER_TIMEOUT_S = 30.0


class DockerUnavailable(Exception):
    """The docker CLI is missing, or its engine did not answer."""


@dataclass
class EnvironmentInfo:
    """One environment: a compose project whose resources carry Factory's labels."""

    name: str
    task_id: int
    kind: str
    repo: str = ""
    created: float | None = None
    containers: list[str] = field(default_factory=list)
    status: str = "unknown"  # running | partial | stopped | orphaned (no containers left)
    url: str | None = None
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)


TaskState = tuple[str, str | None]
"""(task status, pr_state) as the janitor's `task_lookup` returns it."""

TaskLookup = Callable[[int], "TaskState | None | Awaitable[TaskState | None]"]


async def _docker(*args: str, timeout: float = DOCKER_TIMEOUT_S) -> tuple[int, str, str]:
    """Run `docker ARGS`; (returncode, stdout, stderr). Raises DockerUnavailable."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "docker",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise DockerUnavailable("the docker CLI is not installed") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise DockerUnavailable(f"docker {args[0]} took longer than {timeout:.0f}s") from exc
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    stderr = err.decode(errors="replace")
    if proc.returncode != 0 and ("Cannot connect to the Docker daemon" in stderr or "error during connect" in stderr):
        raise DockerUnavailable(stderr.strip())
    return proc.returncode or 0, out.decode(errors="replace"), stderr


def _label_filters(task_id: int | None, kind: str | None) -> list[str]:
    out = ["--filter", f"label={LABEL_TASK}={task_id}" if task_id is not None else f"label={LABEL_TASK}"]
    if kind is not None:
        out += ["--filter", f"label={LABEL_KIND}={kind}"]
    return out


async def _inspect(kind_cmd: tuple[str, ...], filters: list[str]) -> list[dict[str, Any]]:
    """`docker <kind> ls -q FILTERS` then inspect them; a resource gone in between is skipped."""
    rc, out, err = await _docker(*kind_cmd, "ls", "-q", *(["-a"] if kind_cmd == ("container",) else []), *filters)
    if rc != 0:
        log.warning("docker %s ls failed: %s", kind_cmd[0], err.strip())
        return []
    ids = sorted(set(out.split()))
    if not ids:
        return []
    _rc, out, _err = await _docker(*kind_cmd, "inspect", *ids)
    try:
        data = json.loads(out or "[]")
    except json.JSONDecodeError:
        return []
    return [d for d in data if isinstance(d, dict)]


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("Config") or {}).get("Labels") or obj.get("Labels") or {}


async def _list(task_id: int | None, kind: str | None) -> list[EnvironmentInfo]:
    filters = _label_filters(task_id, kind)
    containers, networks, volumes = await asyncio.gather(
        _inspect(("container",), filters), _inspect(("network",), filters), _inspect(("volume",), filters)
    )
    envs: dict[str, EnvironmentInfo] = {}
    running: dict[str, list[bool]] = {}

    def env_for(obj: dict[str, Any]) -> EnvironmentInfo | None:
        labels = _labels(obj)
        task, k = labels.get(LABEL_TASK, ""), labels.get(LABEL_KIND, "")
        if not task.isdigit() or k not in ("test", "preview"):
            return None
        name = project_name(int(task), k)
        env = envs.get(name)
        if env is None:
            env = envs[name] = EnvironmentInfo(name=name, task_id=int(task), kind=k, repo=labels.get(LABEL_REPO, ""))
        created = labels.get(LABEL_CREATED, "")
        if created.isdigit():
            env.created = min(env.created or float(created), float(created))
        if labels.get(LABEL_URL) and not env.url:
            env.url = labels[LABEL_URL]
        return env

    for c in containers:
        env = env_for(c)
        if env is None:
            continue
        env.containers.append(str(c.get("Name", "")).lstrip("/") or str(c.get("Id", ""))[:12])
        running.setdefault(env.name, []).append(bool((c.get("State") or {}).get("Running")))
    for n in networks:
        env = env_for(n)
        if env is not None:
            env.networks.append(str(n.get("Name", "")))
    for v in volumes:
        env = env_for(v)
        if env is not None:
            env.volumes.append(str(v.get("Name", "")))
    for env in envs.values():
        states = running.get(env.name, [])
        env.status = (
            "orphaned" if not states else "running" if all(states) else "stopped" if not any(states) else "partial"
        )
    return sorted(envs.values(), key=lambda e: (e.task_id, e.kind))


async def list_environments(task_id: int | None = None, kind: str | None = None) -> list[EnvironmentInfo]:
    """Every labelled environment on this host, optionally of one task and/or kind.

    Returns [] (and logs a warning) when docker is missing or its engine is down.
    """
    try:
        return await _list(task_id, kind)
    except DockerUnavailable as exc:
        log.warning("cannot list environments: %s", exc)
        return []


async def _remove(task_id: int, kind: str) -> bool:
    filters = _label_filters(task_id, kind)
    found = False
    rc, out, err = await _docker("container", "ls", "-aq", *filters)
    if ids := out.split():
        found = True
        rc, _out, err = await _docker("rm", "-f", "-v", *ids, timeout=120)
        if rc != 0:
            log.warning("removing containers of %s: %s", project_name(task_id, kind), err.strip())
    for what in ("network", "volume"):
        rc, out, err = await _docker(what, "ls", "-q", *filters)
        if ids := out.split():
            found = True
            rc, _out, err = await _docker(what, "rm", *(["-f"] if what == "volume" else []), *ids)
            if rc != 0:
                log.warning("removing %ss of %s: %s", what, project_name(task_id, kind), err.strip())
    # images the environment built (the toolkit labels build output too)
    rc, out, err = await _docker("image", "ls", "-q", *filters)
    if ids := sorted(set(out.split())):
        await _docker("image", "rm", "-f", *ids, timeout=120)
    # the toolkit's generated override file, when the agent ran on this host
    shutil.rmtree(
        Path(tempfile.gettempdir()) / "factory-docker-toolkit" / project_name(task_id, kind), ignore_errors=True
    )
    return found


async def tear_down(name: str) -> bool:
    """Remove one environment (containers, networks, volumes, built images) by project name.

    Returns:
        True when something carrying its labels was found; False when nothing was,
        the name is not Factory's, or docker is unavailable.
    """
    parsed = parse_project_name(name)
    if parsed is None:
        return False
    try:
        return await _remove(*parsed)
    except DockerUnavailable as exc:
        log.warning("cannot tear down %s: %s", name, exc)
        return False


async def cleanup_task_environments(task_id: int, kinds: Iterable[str] = ("test",)) -> int:
    """Remove a task's environments of the given kinds; how many were removed."""
    removed = 0
    for kind in kinds:
        if await tear_down(project_name(task_id, kind)):
            removed += 1
    return removed


def preview_url_for(cfg: FactoryConfig, task_id: int) -> str:
    """The URL a task's preview has (or would have)."""
    return preview_url(task_id, cfg.previews.domain, cfg.previews.scheme)


class Janitor:
    """Removes environments nobody needs any more.

    - a test environment whose task is gone or finished (done, failed, cancelled);
    - a preview whose task is gone or whose pull request is merged or closed;
    - anything older than `previews.max_age_hours`.

    Args:
        cfg: Factory's config (`previews.max_age_hours`).
        task_lookup: `task_id -> (status, pr_state)`, or None when there is no such
            task; may be sync or async. When it raises, that environment is kept.
        now: the clock, for tests.
    """

    def __init__(self, cfg: FactoryConfig, task_lookup: TaskLookup, *, now: Callable[[], float] = time.time):
        self.cfg = cfg
        self.task_lookup = task_lookup
        self.now = now

    async def _lookup(self, task_id: int) -> TaskState | None:
        res = self.task_lookup(task_id)
        if inspect.isawaitable(res):
            res = await res
        return res  # type: ignore[return-value]

    def _too_old(self, env: EnvironmentInfo) -> str | None:
        max_age_s = self.cfg.previews.max_age_hours * 3600
        if env.created is not None and self.now() - env.created > max_age_s:
            return f"older than {self.cfg.previews.max_age_hours:g}h"
        return None

    def reason_to_remove(self, env: EnvironmentInfo, state: TaskState | None) -> str | None:
        """Why `env` should go, or None to keep it."""
        if reason := self._too_old(env):
            return reason
        if state is None:
            return "task is gone"
        status, pr_state = state
        if env.kind == "test" and str(status) in FINISHED_STATUSES:
            return f"task {status}"
        if env.kind == "preview" and str(pr_state or "") in CLOSED_PR_STATES:
            return f"pull request {pr_state}"
        return None

    async def run_once(self) -> list[str]:
        """One sweep; the names of the environments removed."""
        removed: list[str] = []
        for env in await list_environments():
            reason = self._too_old(env)
            if reason is None:
                try:
                    state = await self._lookup(env.task_id)
                except Exception:
                    log.warning("janitor: looking up task %s failed; keeping %s", env.task_id, env.name, exc_info=True)
                    continue
                reason = self.reason_to_remove(env, state)
            if reason and await tear_down(env.name):
                log.info("janitor: removed %s (%s)", env.name, reason)
                removed.append(env.name)
        return removed


async def janitor_loop(janitor: Janitor, interval_s: float) -> None:
    """Sweep at start and then every `interval_s` seconds, until cancelled."""
    while True:
        try:
            await janitor.run_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("janitor sweep failed")
        await asyncio.sleep(interval_s)


async def remove_previews_of_closed_pr(event: Any) -> None:
    """`factory.events.on_pr_closed` hook: a merged or closed PR's previews go at once."""
    for task_id in getattr(event, "task_ids", []):
        if await tear_down(project_name(task_id, "preview")):
            log.info("removed the preview of task %s: its pull request closed", task_id)


def install_pr_hook() -> None:
    from factory import events

    if remove_previews_of_closed_pr not in events.on_pr_closed:
        events.on_pr_closed.append(remove_previews_of_closed_pr)
