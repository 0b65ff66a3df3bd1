"""Start one environment for a task from Factory's own copy of what its compose file names.

The broker calls `start_environment` for an agent. The agent's compose file is read once
(bounded, off the event loop) and everything it names is copied once into
`<workspace_root>/envs/<project>-<n>/` (see `copy`); the copy is parsed against an
allow-list (`spec`), labelled, limited and written as a file of Factory's, and compose runs
only that file, from that directory, with an empty `.env` and no environment of Factory's
beyond the engine's address. Nothing reads the worktree again.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.config import PreviewsConfig
from factory.environments import docker
from factory.environments.checks import UnsafeComposeError, check_compose_safety
from factory.environments.compose import (
    LABEL_SNAPSHOT,
    LABEL_URL,
    env_labels,
    finalize_config,
    pick_service,
    preview_host,
    preview_url,
    project_name,
)
from factory.environments.labels import image_labels_of, override
from factory.environments.prepare import PrepareError, envs_root, harden, prepare
from factory.environments.spec import escape_dollars


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
    workspace_root: str = ""  # copies go to `<workspace_root>/envs` (`envs_root`)
    max_copy_mb: int = 200
    ns: str = ""  # the deployment's namespace (`compose.namespace(temporal.id_prefix)`): Factory's, never the agent's


_limit_lock = asyncio.Lock()


async def _compose(cmd: tuple[str, ...], *args: str, cwd: str, timeout: float = 120) -> str:
    rc, out, err = await docker.run(*cmd, *args, cwd=cwd, timeout=timeout)
    if rc != 0:
        raise EnvironmentFailure(
            "docker", f"{' '.join(cmd)} {args[-1] if args else ''} failed ({rc}): {err.strip()[-2000:]}"
        )
    return out


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


def _own_address(preview_network: str, port: int) -> Callable[[dict[str, Any]], tuple[str, int] | None]:
    """The container's address on a network of its project (not Traefik's): test environments publish no port."""

    def address(c: dict[str, Any]) -> tuple[str, int] | None:
        nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
        ips = [n.get("IPAddress") for name, n in sorted(nets.items()) if name != preview_network and n]
        return next(((ip, port) for ip in ips if ip), None)

    return address


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
    """(host, port) pairs of a running environment: each container's addresses with the port Factory
    recorded (`factory.port`, Traefik's routed port) and the ports its image exposes."""
    del network  # every network of the project counts: none of them is published on the host
    out: set[tuple[str, int]] = set()
    for c in await docker.project_containers(project):
        labels = (c.get("Config") or {}).get("Labels") or {}
        ports = [v for k, v in labels.items() if k.endswith(".loadbalancer.server.port") or k == LABEL_PORT]
        ports += [k.split("/")[0] for k in (c.get("Config") or {}).get("ExposedPorts") or {} if k.endswith("/tcp")]
        for net in ((c.get("NetworkSettings") or {}).get("Networks") or {}).values():
            if ip := (net or {}).get("IPAddress"):
                out |= {(ip, int(p)) for p in ports if str(p).isdigit()}
    return out


LABEL_PORT = "factory.port"
"""Set by Factory on an environment's services: the port Factory reaches (empty on the others)."""


async def _image_labels(image: str, pull: bool) -> dict[str, str]:
    """An image's labels; pulled first (with Factory's registry config) when it is not here yet."""
    rc, out, _err = await docker.run("docker", "image", "inspect", image)
    if rc != 0 and pull:
        rc, _out, err = await docker.run("docker", "pull", image, timeout=600)
        if rc != 0:
            raise EnvironmentFailure("docker", f"cannot pull {image}: {err.strip()[-1000:]}")
        rc, out, _err = await docker.run("docker", "image", "inspect", image)
    if rc != 0:
        raise EnvironmentFailure("docker", f"no image {image} after building and pulling")
    return image_labels_of(json.loads(out or "[]"))


def _write(env_dir: str, final: dict[str, Any]) -> str:
    path = Path(env_dir) / "docker-compose.factory.json"
    path.write_text(json.dumps(escape_dollars(final), indent=2))
    return str(path)


async def start_environment(req: Request, pv: PreviewsConfig) -> Started:
    """Copy, check, label, limit and start an environment, then wait until it answers.

    Raises:
        UnsafeComposeError: the file breaks a rule (each violation names it).
        EnvironmentFailure: bad request, host limit, timeout, or docker failing.
    """
    project = project_name(req.task_id, req.kind, req.ns)
    if not req.workspace_root:
        raise EnvironmentFailure("bad_request", "environments need Factory's workspace_root (the broker sets it)")
    root = envs_root(req.workspace_root)
    try:
        env_dir, config = await asyncio.to_thread(
            prepare, req.worktree, req.compose_file, project, root, max(1, req.max_copy_mb) << 20
        )
    except PrepareError as exc:
        raise EnvironmentFailure("bad_request", str(exc)) from exc
    try:
        return await _start(req, pv, project, env_dir, config)
    except BaseException:
        # a refused or failed start leaves nothing of Factory's behind but what compose already runs
        if not await docker.project_containers(project):
            await asyncio.to_thread(shutil.rmtree, env_dir, True)
        raise


async def _start(req: Request, pv: PreviewsConfig, project: str, env_dir: str, config: dict[str, Any]) -> Started:
    labels = env_labels(req.task_id, req.kind, req.repo, time.time(), req.ns)
    labels[LABEL_SNAPSHOT] = env_dir
    preview = None
    try:
        service, port, _published = pick_service(config, req.service, req.port)
    except ValueError as exc:
        if req.service is None or req.port is None:
            raise EnvironmentFailure("bad_request", str(exc)) from exc
        service, port = req.service, req.port
    url = ""
    host = preview_host(req.task_id, pv.domain, req.ns)
    if req.kind == "preview":
        url = preview_url(req.task_id, pv.domain, pv.scheme, req.ns)
        preview = {
            "service": service, "port": int(port), "host": host,
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
            config, labels=labels, memory=pv.default_memory or None, cpus=pv.default_cpus or None, preview=preview
        )
    except ValueError as exc:
        raise EnvironmentFailure("bad_request", str(exc)) from exc
    final = harden(final, project, pv.network if preview else None)
    for name, svc in final["services"].items():
        svc["labels"][LABEL_PORT] = str(int(port)) if name == service else ""
    # the second wall: the file Factory wrote names nothing outside its own copy
    violations = check_compose_safety(
        {**final, "networks": {k: v for k, v in (final.get("networks") or {}).items() if k != pv.network}},
        env_dir, project,
    )  # fmt: skip
    if violations:
        raise UnsafeComposeError(violations)

    cmd = await docker.compose_command()
    Path(env_dir, ".env").write_text("")  # compose reads .env from the project directory: Factory's, empty
    file = _write(env_dir, final)
    args = ["-p", project, "--project-directory", env_dir, "--env-file", str(Path(env_dir, ".env")), "-f", file]
    if docker.is_compose_v1(cmd):
        args.insert(0, "--compatibility")  # v1 honours deploy.resources.limits only so
    async with _limit_lock:
        others = await docker.running_environments(req.ns) - {project}  # this deployment's, on this host
        if len(others) >= pv.max_running:
            raise EnvironmentFailure(
                "limit",
                f"this host already runs {len(others)} environments (previews.max_running={pv.max_running}); "
                "tear one of yours down or try later",
            )
        if any(s.get("build") is not None for s in final["services"].values()):
            await _compose(cmd, *args, "build", cwd=env_dir, timeout=900)
        for name, svc in final["services"].items():
            image_labels = await _image_labels(str(svc.get("image") or ""), svc.get("build") is None)
            svc["labels"] = override(
                svc["labels"], image_labels, routed=bool(preview) and name == service, url_label=LABEL_URL
            )
        _write(env_dir, final)
        await _compose(cmd, *args, "up", "-d", "--no-build", "--remove-orphans", cwd=env_dir, timeout=600)
    await _remove_older_copies(project, env_dir)
    if req.kind == "test":
        ip, iport = await _wait(project, service, _own_address(pv.network, int(port)), req.timeout)
        url = f"http://{ip}:{iport}"
    else:
        await _wait(project, service, _network_address(pv.network, int(port)), req.timeout)
    return Started(project=project, url=url, targets=await targets_of(project, pv.network))


async def _remove_older_copies(project: str, keep: str) -> None:
    """Earlier copies of this project's environment: its containers now run from `keep`."""
    root = Path(keep).parent
    for old in root.glob(f"{project}-*"):
        if str(old) != keep and old.name[len(project) + 1 :].isdigit():
            await asyncio.to_thread(shutil.rmtree, old, True)
