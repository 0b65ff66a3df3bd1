"""The docker CLI calls behind the agents' environments: run compose, find, inspect, remove.

Only Factory runs docker (agents ask the broker). Every container, network and volume of
an environment carries the labels `factory.deployment` (the deployment's namespace, `ns`),
`factory.task`, `factory.kind` (test | preview), `factory.repo` and `factory.created`; this
module finds environments by those labels, so it works whichever compose version started
them and whatever became of the agent. Every function takes the deployment's `ns` and only
ever sees that namespace's objects: deployments sharing one engine all number tasks from 1.
The default namespace "" is also what environments from before the label carry (none).

Docker being missing or its engine down is not a task's problem: every function here
logs a warning and returns an empty result instead of raising.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from factory.environments.compose import (
    LABEL_CREATED,
    LABEL_DEPLOYMENT,
    LABEL_KIND,
    LABEL_PROJECT,
    LABEL_REPO,
    LABEL_SERVICE,
    LABEL_SNAPSHOT,
    LABEL_TASK,
    LABEL_URL,
    parse_project_name,
    preview_host,
    project_name,
)
from factory.processes import absolute_path, kill_and_collect

log = logging.getLogger(__name__)

DOCKER_TIMEOUT_S = 30.0

# compose interpolates ${VAR} from its environment: it gets none of Factory's, so an agent's
# file cannot copy a secret of the worker into a container it then reads
_COMPOSE_ENV_KEYS = ("PATH", "LANG", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH",
                     "DOCKER_TLS_VERIFY")  # fmt: skip


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


def compose_environment() -> dict[str, str]:
    """The environment docker and compose run with: the engine's address and nothing of Factory's."""
    env = {k: os.environ[k] for k in _COMPOSE_ENV_KEYS if k in os.environ}
    env["PATH"] = absolute_path(env.get("PATH"))  # it runs in an environment's directory: no relative entries
    # named, so nothing else (compose v1 reads DOCKER_HOST from a project's .env) picks the engine
    env.setdefault("DOCKER_HOST", "unix:///var/run/docker.sock")
    return env


async def run(*args: str, timeout: float = DOCKER_TIMEOUT_S, cwd: str | None = None) -> tuple[int, str, str]:
    """Run ARGS (docker or compose); (returncode, stdout, stderr). Raises DockerUnavailable."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=cwd,
            env=compose_environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise DockerUnavailable(f"{args[0]} is not installed") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        await kill_and_collect(proc)
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise DockerUnavailable(f"{' '.join(args[:3])} took longer than {timeout:.0f}s") from exc
    stderr = err.decode(errors="replace")
    if proc.returncode != 0 and ("Cannot connect to the Docker daemon" in stderr or "error during connect" in stderr):
        raise DockerUnavailable(stderr.strip())
    return proc.returncode or 0, out.decode(errors="replace"), stderr


async def _docker(*args: str, timeout: float = DOCKER_TIMEOUT_S) -> tuple[int, str, str]:
    return await run("docker", *args, timeout=timeout)


_compose_cmd: tuple[str, ...] | None = None


async def compose_command() -> tuple[str, ...]:
    """`docker compose` (the v2 plugin) when it works, else `docker-compose` (v1). Raises DockerUnavailable."""
    global _compose_cmd
    if _compose_cmd is None:
        try:
            rc, _out, _err = await run("docker", "compose", "version")
        except DockerUnavailable:
            rc = 1
        if rc == 0:
            _compose_cmd = ("docker", "compose")
        elif shutil.which("docker-compose", path=compose_environment()["PATH"]):
            _compose_cmd = ("docker-compose",)
        else:
            raise DockerUnavailable("neither `docker compose` nor `docker-compose` works on this host")
    return _compose_cmd


def is_compose_v1(cmd: Iterable[str]) -> bool:
    """Whether `cmd` is the Python docker-compose (v1), whose `config` speaks YAML only."""
    return tuple(cmd) == ("docker-compose",)


async def project_containers(project: str, service: str | None = None) -> list[dict[str, Any]]:
    """`docker inspect` of a compose project's containers (of one service when given)."""
    filters = ["--filter", f"label={LABEL_PROJECT}={project}"]
    if service is not None:
        filters += ["--filter", f"label={LABEL_SERVICE}={service}"]
    return await _inspect(("container",), filters)


async def running_environments(ns: str = "") -> set[str]:
    """Project names of namespace `ns`'s environments with a running container on this engine."""
    fmt = "|".join(f'{{{{.Label "{k}"}}}}' for k in (LABEL_TASK, LABEL_KIND, LABEL_PROJECT, LABEL_DEPLOYMENT))
    rc, out, err = await _docker("ps", *_label_filters(None, None, ns), "--format", fmt)
    if rc != 0:
        raise DockerUnavailable(err.strip())
    rows = [row.split("|") for row in out.splitlines()]
    return {r[2] for r in rows if len(r) == 4 and r[3] == ns and r[2] == _name(r[0], r[1], ns)}


def _label_filters(task_id: int | None, kind: str | None, ns: str) -> list[str]:
    out = ["--filter", f"label={LABEL_TASK}={task_id}" if task_id is not None else f"label={LABEL_TASK}"]
    if kind is not None:
        out += ["--filter", f"label={LABEL_KIND}={kind}"]
    if ns:  # the default namespace's objects carry an empty label, or (from before it) none: checked by _ours
        out += ["--filter", f"label={LABEL_DEPLOYMENT}={ns}"]
    return out


def _ours(labels: dict[str, str], ns: str) -> bool:
    """Whether an object is namespace `ns`'s: Docker cannot filter on a label's absence."""
    return (labels.get(LABEL_DEPLOYMENT) or "") == ns


def _name(task: str, kind: str, ns: str) -> str | None:
    return project_name(int(task), kind, ns) if task.isdigit() and kind in ("test", "preview") else None


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


async def _list(task_id: int | None, kind: str | None, ns: str = "") -> list[EnvironmentInfo]:
    filters = _label_filters(task_id, kind, ns)
    containers, networks, volumes = await asyncio.gather(
        _inspect(("container",), filters), _inspect(("network",), filters), _inspect(("volume",), filters)
    )
    envs: dict[str, EnvironmentInfo] = {}
    running: dict[str, list[bool]] = {}

    def env_for(obj: dict[str, Any]) -> EnvironmentInfo | None:
        labels = _labels(obj)
        task, k = labels.get(LABEL_TASK, ""), labels.get(LABEL_KIND, "")
        name = _name(task, k, ns)
        if name is None or not _ours(labels, ns):
            return None
        env = envs.get(name)
        if env is None:
            env = envs[name] = EnvironmentInfo(name=name, task_id=int(task), kind=k, repo=labels.get(LABEL_REPO, ""))
        created = labels.get(LABEL_CREATED, "")
        if created.isdigit():
            env.created = min(env.created or float(created), float(created))
        # Factory writes factory.url over every container's (labels.override); and a URL must name
        # this task's own host (of this deployment), whatever a label says
        url, own = labels.get(LABEL_URL, ""), re.escape(preview_host(env.task_id, "", ns))
        if url and not env.url and re.match(rf"^https?://{own}[A-Za-z0-9.-]+(:[0-9]+)?/?$", url):
            env.url = url
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


async def labelled_environments(ns: str = "") -> list[EnvironmentInfo]:
    """Every labelled environment of namespace `ns` on this host; raises DockerUnavailable when Docker cannot say."""
    rc, _out, err = await _docker("version", "--format", "{{.Server.Version}}")  # the engine answers
    if rc != 0:
        raise DockerUnavailable(err.strip() or "the Docker engine did not answer")
    return await _list(None, None, ns)


async def list_environments(task_id: int | None = None, kind: str | None = None, ns: str = "") -> list[EnvironmentInfo]:
    """Every labelled environment of namespace `ns` on this host, optionally of one task and/or kind.

    Returns [] (and logs a warning) when docker is missing or its engine is down.
    """
    try:
        return await _list(task_id, kind, ns)
    except DockerUnavailable as exc:
        log.warning("cannot list environments: %s", exc)
        return []


def _remove_snapshots(containers: list[dict[str, Any]], project: str) -> None:
    """Delete the copy of the worktree a preview ran from (named by Factory's own label)."""
    for c in containers:
        snap = _labels(c).get(LABEL_SNAPSHOT, "")
        # only ever a `<...>/envs/<this project>-<n>` directory of Factory's, whatever a label says
        name, parent = os.path.basename(snap), os.path.basename(os.path.dirname(snap))
        if snap and parent == "envs" and name.startswith(project + "-") and name[len(project) + 1 :].isdigit():
            shutil.rmtree(snap, ignore_errors=True)


async def _own(what: str, filters: list[str], ns: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Namespace `ns`'s objects of one kind matching `filters`, and their ids."""
    objs = [o for o in await _inspect((what,), filters) if _ours(_labels(o), ns)]
    return objs, sorted({str(o.get("Name") if what == "volume" else o.get("Id")) for o in objs})


async def _remove(task_id: int, kind: str, ns: str = "") -> bool:
    filters, project = _label_filters(task_id, kind, ns), project_name(task_id, kind, ns)
    found = False
    containers, ids = await _own("container", filters, ns)
    if ids:
        found = True
        _remove_snapshots(containers, project)
        rc, _out, err = await _docker("rm", "-f", "-v", *ids, timeout=120)
        if rc != 0:
            log.warning("removing containers of %s: %s", project, err.strip())
    for what in ("network", "volume"):
        _objs, ids = await _own(what, filters, ns)
        if ids:
            found = True
            rc, _out, err = await _docker(what, "rm", *(["-f"] if what == "volume" else []), *ids)
            if rc != 0:
                log.warning("removing %ss of %s: %s", what, project, err.strip())
    # images the environment built (the toolkit labels build output too)
    _objs, ids = await _own("image", filters, ns)
    if ids:
        await _docker("image", "rm", "-f", *ids, timeout=120)
    return found


async def tear_down(name: str, ns: str = "") -> bool:
    """Remove one environment (containers, networks, volumes, built images) by project name.

    Returns:
        True when something carrying its labels was found; False when nothing was,
        the name is not of namespace `ns` (another deployment's, or not Factory's), or docker is unavailable.
    """
    parsed = parse_project_name(name, ns)
    if parsed is None:
        return False
    try:
        return await _remove(*parsed, ns)
    except DockerUnavailable as exc:
        log.warning("cannot tear down %s: %s", name, exc)
        return False


async def preview_url_of(task_id: int, ns: str = "") -> str | None:
    """The URL of the task's running preview, from the label Factory put on it; None when none runs.

    Agents hold no Docker socket and their own `factory.*` labels are dropped, so this is
    Factory's record of what it started, never something an agent wrote.
    """
    envs = await list_environments(task_id=task_id, kind="preview", ns=ns)
    return next((e.url for e in envs if e.url and e.status in ("running", "partial")), None)


async def cleanup_task_environments(task_id: int, kinds: Iterable[str] = ("test",), ns: str = "") -> int:
    """Remove a task's environments (of namespace `ns`) of the given kinds; how many were removed."""
    removed = 0
    for kind in kinds:
        if await tear_down(project_name(task_id, kind, ns), ns):
            removed += 1
    return removed
