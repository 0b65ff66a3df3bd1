"""Start one environment for a task: check the agent's compose file, run Factory's version, wait.

The broker calls `start_environment` for an agent. The agent's file is read once, by
`<compose> config` with no environment of Factory's; the resolved config is checked, then
labelled, limited and written to a file of Factory's, and only that file is run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from factory.config import PreviewsConfig
from factory.environments import docker
from factory.environments.checks import UnsafeComposeError, check_compose_safety, check_file_references, is_within
from factory.environments.compose import (
    LABEL_SNAPSHOT,
    env_labels,
    finalize_config,
    pick_service,
    preview_host,
    preview_url,
    project_name,
)


class EnvironmentFailure(Exception):
    """Starting an environment failed; `kind` says how (the broker maps it to a status)."""

    def __init__(self, kind: str, message: str):
        self.kind = kind  # bad_request | limit | timeout | docker
        super().__init__(message)


@dataclass
class Started:
    """An environment Factory started: its URL and the (host, port) pairs an agent may reach."""

    project: str
    url: str
    targets: set[tuple[str, int]] = field(default_factory=set)


@dataclass(frozen=True)
class Request:
    """What an agent asked for (compose file inside the worktree; service and port optional)."""

    task_id: int
    kind: str
    worktree: str
    compose_file: str
    repo: str = ""
    service: str | None = None
    port: int | None = None
    timeout: float = 120
    snapshots: str = ""  # where previews' copies of their worktree go (`<workspace_root>/previews`)


_limit_lock = asyncio.Lock()


def resolve_compose_file(worktree: str, compose_file: str) -> str:
    """The compose file's real path; it must be a file inside the worktree."""
    p = Path(compose_file)
    p = p if p.is_absolute() else Path(worktree) / p
    if not is_within(str(p), worktree):
        raise EnvironmentFailure("bad_request", f"the compose file {compose_file} is outside the worktree {worktree}")
    if not p.is_file():
        raise EnvironmentFailure("bad_request", f"no compose file at {compose_file} in the worktree")
    return os.path.realpath(p)


async def _compose(cmd: tuple[str, ...], *args: str, cwd: str, timeout: float = 120) -> str:
    rc, out, err = await docker.run(*cmd, *args, cwd=cwd, timeout=timeout)
    if rc != 0:
        raise EnvironmentFailure(
            "docker", f"{' '.join(cmd)} {args[-1] if args else ''} failed ({rc}): {err.strip()[-2000:]}"
        )
    return out


async def load_config(cmd: tuple[str, ...], file: str, project: str) -> dict[str, Any]:
    """`<compose> config` of the agent's file, parsed (v1 speaks YAML, v2 JSON)."""
    args = ["-p", project, "-f", file, "config"]
    if not docker.is_compose_v1(cmd):
        args += ["--format", "json"]
    out = await _compose(cmd, *args, cwd=os.path.dirname(file))
    try:
        config = json.loads(out) if not docker.is_compose_v1(cmd) else yaml.safe_load(out)
    except (ValueError, yaml.YAMLError) as exc:
        raise EnvironmentFailure("docker", f"cannot parse the resolved compose config: {exc}") from exc
    if not isinstance(config, dict):
        raise EnvironmentFailure("bad_request", "the compose file resolves to no mapping")
    return config


def _probe(host: str, port: int) -> bool:
    """True when something answers: any bytes, or a connection held open.

    Docker's userland proxy accepts on a published port before the service listens and
    then closes at once, so a bare connect proves nothing.
    """
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.settimeout(2)
            s.sendall(b"GET / HTTP/1.0\r\nHost: " + host.encode() + b"\r\n\r\n")
            try:
                return bool(s.recv(64))
            except TimeoutError:
                return True  # listening, just not talking first (a database, say)
    except OSError:
        return False


def _host_port(c: dict[str, Any], port: int) -> tuple[str, int] | None:
    for b in ((c.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []:
        if b.get("HostPort"):
            return "127.0.0.1", int(b["HostPort"])
    return None


def _network_address(network: str, port: int) -> Callable[[dict[str, Any]], tuple[str, int] | None]:
    def address(c: dict[str, Any]) -> tuple[str, int] | None:
        ip = (((c.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}).get("IPAddress")
        return (ip, port) if ip else None

    return address


async def _logs(project: str) -> str:
    parts = []
    for c in await docker.project_containers(project):
        _rc, out, err = await docker.run("docker", "logs", "--tail", "30", str(c.get("Id", "")), timeout=30)
        parts.append(f"--- {str(c.get('Name', '')).lstrip('/')}\n{out}{err}")
    return "\n".join(parts)[-4000:]


async def _wait(project: str, service: str, address: Callable, timeout: float) -> tuple[str, int]:
    """Poll until the service answers at `address(container)`."""
    deadline = time.monotonic() + timeout
    last = "no container yet"
    while True:
        for c in await docker.project_containers(project, service):
            state = c.get("State") or {}
            if state.get("Status") in ("exited", "dead") and not state.get("Restarting"):
                logs = await _logs(project)
                raise EnvironmentFailure(
                    "docker", f"service {service!r} exited with code {state.get('ExitCode')}:\n{logs}"
                )
            hostport = address(c)
            if hostport and await asyncio.to_thread(_probe, *hostport):
                return hostport
            last = f"{service} not answering at {hostport}"
        if time.monotonic() > deadline:
            raise EnvironmentFailure(
                "timeout",
                f"{project}: {last} after {timeout:.0f}s; the environment is left up for debugging "
                f"(tear it down when done).\n{await _logs(project)}",
            )
        await asyncio.sleep(0.25)


async def targets_of(project: str, network: str) -> set[tuple[str, int]]:
    """(host, port) pairs of a running environment: its 127.0.0.1 ports and its addresses on `network`."""
    out: set[tuple[str, int]] = set()
    for c in await docker.project_containers(project):
        for key, binds in ((c.get("NetworkSettings") or {}).get("Ports") or {}).items():
            for b in binds or []:
                if b.get("HostPort") and key.endswith("/tcp"):
                    out.add(("127.0.0.1", int(b["HostPort"])))
        ip = (((c.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}).get("IPAddress")
        if ip:  # the routed port (Factory's own label) and whatever the image exposes
            labels = (c.get("Config") or {}).get("Labels") or {}
            ports = [v for k, v in labels.items() if k.endswith(".loadbalancer.server.port")]
            ports += [k.split("/")[0] for k in (c.get("Config") or {}).get("ExposedPorts") or {} if k.endswith("/tcp")]
            out |= {(ip, int(p)) for p in ports if str(p).isdigit()}
    return out


def _snapshot(req: Request, project: str, file: str) -> tuple[str, str]:
    """Copy the worktree for a preview; (the copy, the compose file in it).

    A preview outlives its task, whose worktree Factory removes when the task ends, so its
    bind mounts must not point into the worktree; and the agent cannot change the copy
    between the checks and `up`.
    """
    if not req.snapshots:
        raise EnvironmentFailure("bad_request", "previews need a snapshot directory (the broker sets it)")
    snap = Path(req.snapshots) / project
    shutil.rmtree(snap, ignore_errors=True)
    snap.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(req.worktree, snap, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    return str(snap), str(snap / os.path.relpath(file, os.path.realpath(req.worktree)))


async def start_environment(req: Request, pv: PreviewsConfig) -> Started:
    """Check, label, limit and start an environment, then wait until it answers.

    Raises:
        UnsafeComposeError: the file breaks a rule (each violation names it).
        EnvironmentFailure: bad request, host limit, timeout, or docker failing.
    """
    project = project_name(req.task_id, req.kind)
    file = resolve_compose_file(req.worktree, req.compose_file)
    worktree = req.worktree
    snapshot = ""
    if req.kind == "preview":
        snapshot, file = await asyncio.to_thread(_snapshot, req, project, file)
        worktree = snapshot
    try:
        violations = check_file_references(file, worktree)
    except ValueError as exc:
        raise EnvironmentFailure("bad_request", str(exc)) from exc
    if violations:
        raise UnsafeComposeError(violations)
    cmd = await docker.compose_command()
    config = await load_config(cmd, file, project)
    violations = check_compose_safety(config, worktree, project)
    if violations:
        raise UnsafeComposeError(violations)

    labels = env_labels(req.task_id, req.kind, req.repo, time.time())
    if snapshot:
        labels[LABEL_SNAPSHOT] = snapshot
    preview = publish = None
    try:
        service, port, published = pick_service(config, req.service, req.port)
    except ValueError as exc:
        if req.kind == "test" or req.service is None or req.port is None:
            raise EnvironmentFailure("bad_request", str(exc)) from exc
        service, port, published = req.service, req.port, False
    if req.kind == "test":
        publish = None if published else (service, port)
        url = ""
    else:
        url = preview_url(req.task_id, pv.domain, pv.scheme)
        preview = {
            "service": service, "port": int(port), "host": preview_host(req.task_id, pv.domain),
            "network": pv.network, "entrypoint": pv.entrypoint,
            "cert_resolver": pv.cert_resolver if pv.scheme == "https" else "", "domain": pv.domain, "url": url,
        }  # fmt: skip
        rc, _out, _err = await docker.run("docker", "network", "inspect", pv.network)
        if rc != 0:
            raise EnvironmentFailure(
                "docker",
                f"the previews network {pv.network!r} does not exist: is Traefik set up on this host? "
                "(see docs/infrastructure-setup.md)",
            )
    try:
        final = finalize_config(
            config, labels=labels, memory=pv.default_memory or None, cpus=pv.default_cpus or None,
            publish=publish, preview=preview,
        )  # fmt: skip
    except ValueError as exc:
        raise EnvironmentFailure("bad_request", str(exc)) from exc

    with tempfile.TemporaryDirectory(prefix=f"{project}-") as tmp:
        path = Path(tmp) / "docker-compose.factory.json"
        path.write_text(json.dumps(final, indent=2))
        args = ["-p", project, "--project-directory", os.path.dirname(file), "-f", str(path)]
        if docker.is_compose_v1(cmd):
            args.insert(0, "--compatibility")  # v1 honours deploy.resources.limits only so
        async with _limit_lock:
            others = await docker.running_environments() - {(str(req.task_id), req.kind)}
            if len(others) >= pv.max_running:
                raise EnvironmentFailure(
                    "limit",
                    f"this host already runs {len(others)} environments (previews.max_running={pv.max_running}); "
                    "tear one of yours down or try later",
                )
            await _compose(cmd, *args, "up", "-d", "--remove-orphans", cwd=os.path.dirname(file), timeout=600)
    if req.kind == "test":
        host, hport = await _wait(project, service, lambda c: _host_port(c, int(port)), req.timeout)
        url = f"http://{host}:{hport}"
    else:
        await _wait(project, service, _network_address(pv.network, int(port)), req.timeout)
    return Started(project=project, url=url, targets=await targets_of(project, pv.network))
