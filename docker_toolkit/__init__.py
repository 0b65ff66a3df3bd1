"""Docker test and preview environments for Factory's agents.

Agents import this from their Bash tool with whatever `python3` is on PATH (Factory
puts this package's parent directory on their PYTHONPATH), so it is standard library
only::

    from docker_toolkit import spin_up_test_env, tear_down_test_env
    url = spin_up_test_env("docker-compose.yml", service_port=3000)
    ...  # run tests against url
    tear_down_test_env()

The task context comes from environment variables Factory sets for the agent:
FACTORY_TASK_ID, FACTORY_REPO, FACTORY_WORKTREE, FACTORY_PREVIEW_DOMAIN,
FACTORY_PREVIEW_SCHEME, FACTORY_PREVIEW_NETWORK, FACTORY_PREVIEW_ENTRYPOINT,
FACTORY_PREVIEW_CERT_RESOLVER, FACTORY_ENV_MAX_RUNNING, FACTORY_ENV_DEFAULT_MEMORY,
FACTORY_ENV_DEFAULT_CPUS.

Every container, network and volume gets the labels `factory.task`, `factory.kind`,
`factory.repo` and `factory.created`, so Factory finds and removes them when the task
ends (test) or its pull request closes (preview), whatever happens to the agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._compose import (
    LABEL_KIND,
    LABEL_PROJECT,
    LABEL_SERVICE,
    LABEL_TASK,
    UnsafeComposeError,
    Violation,
    build_override,
    check_compose_safety,
    choose_compose_command,
    env_labels,
    is_compose_v1,
    pick_service,
    preview_host,
    preview_url,
    project_name,
)

__all__ = [
    "DockerToolkitError",
    "EnvironmentLimitError",
    "EnvironmentTimeoutError",
    "UnsafeComposeError",
    "Violation",
    "spin_up_preview_env",
    "spin_up_test_env",
    "tear_down_preview_env",
    "tear_down_test_env",
]


class DockerToolkitError(RuntimeError):
    """Docker or compose failed, or the task context is missing."""


class EnvironmentLimitError(DockerToolkitError):
    """This host already runs FACTORY_ENV_MAX_RUNNING environments."""


class EnvironmentTimeoutError(DockerToolkitError):
    """The service did not answer before the timeout; the message carries its logs."""


@dataclass(frozen=True)
class _Context:
    task_id: int
    repo: str
    worktree: str
    domain: str
    scheme: str
    network: str
    entrypoint: str
    cert_resolver: str
    max_running: int
    memory: str
    cpus: float


def _context() -> _Context:
    env = os.environ
    task = env.get("FACTORY_TASK_ID", "")
    if not task.isdigit():
        raise DockerToolkitError("FACTORY_TASK_ID is not set: docker_toolkit runs inside a Factory task")
    worktree = env.get("FACTORY_WORKTREE") or os.getcwd()
    return _Context(
        task_id=int(task),
        repo=env.get("FACTORY_REPO", ""),
        worktree=os.path.realpath(worktree),
        domain=env.get("FACTORY_PREVIEW_DOMAIN", "preview.localhost"),
        scheme=env.get("FACTORY_PREVIEW_SCHEME", "https"),
        network=env.get("FACTORY_PREVIEW_NETWORK", "factory-previews"),
        entrypoint=env.get("FACTORY_PREVIEW_ENTRYPOINT", "websecure"),
        cert_resolver=env.get("FACTORY_PREVIEW_CERT_RESOLVER", ""),
        max_running=int(env.get("FACTORY_ENV_MAX_RUNNING") or 10),
        memory=env.get("FACTORY_ENV_DEFAULT_MEMORY", "512m"),
        cpus=float(env.get("FACTORY_ENV_DEFAULT_CPUS") or 1.0),
    )


# --- processes ---------------------------------------------------------------------------------


def _run(args: list[str], *, timeout: float = 60, cwd: str | None = None, check: bool = True) -> str:
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise DockerToolkitError(f"{args[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise DockerToolkitError(f"{' '.join(args[:3])} ... took longer than {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        raise DockerToolkitError(f"{' '.join(args[:4])} ... failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _works(args: tuple[str, ...]) -> bool:
    try:
        return subprocess.run(list(args), capture_output=True, timeout=30, stdin=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


_compose_cmd: tuple[str, ...] | None = None


def _compose_works(args: tuple[str, ...]) -> bool:
    if args[0] == "docker-compose":
        # v1 is a Python program: running it costs a second, and finding it is enough
        return shutil.which("docker-compose") is not None
    return _works(args)


def _compose() -> tuple[str, ...]:
    global _compose_cmd
    if _compose_cmd is None:
        _compose_cmd = choose_compose_command(_compose_works)
        if _compose_cmd is None:
            raise DockerToolkitError("neither `docker compose` nor `docker-compose` works on this host")
    return _compose_cmd


def _parse_yaml(text: str) -> Any:
    """Parse compose v1's YAML `config` output without a YAML library of our own."""
    try:
        import yaml  # type: ignore[import-untyped]

        return yaml.safe_load(text)
    except ImportError:
        pass
    # docker-compose v1 is a Python program that imports PyYAML: its interpreter has it
    exe = shutil.which("docker-compose")
    interp = None
    if exe:
        with contextlib.suppress(OSError), open(exe, "rb") as f:
            first = f.readline().decode(errors="replace")
        if first.startswith("#!"):
            interp = first[2:].strip().split()
    if not interp:
        raise DockerToolkitError("cannot parse `docker-compose config` output: install the docker compose v2 plugin")
    code = "import json,sys,yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    try:
        proc = subprocess.run([*interp, "-c", code], input=text, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DockerToolkitError(f"cannot parse `docker-compose config` output: {exc}") from exc
    if proc.returncode != 0:
        raise DockerToolkitError(f"cannot parse `docker-compose config` output: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def _load_config(compose: tuple[str, ...], files: list[str], cwd: str, project: str) -> dict[str, Any]:
    # with the project name, so the names v2 resolves (networks, volumes) are the ones `up` uses
    args = [*compose, "-p", project]
    for f in files:
        args += ["-f", f]
    if is_compose_v1(compose):
        config = _parse_yaml(_run([*args, "config"], cwd=cwd))
    else:
        config = json.loads(_run([*args, "config", "--format", "json"], cwd=cwd))
    if not isinstance(config, dict):
        raise DockerToolkitError("`compose config` gave no mapping")
    return config


# --- environments ------------------------------------------------------------------------------


def _state_dir(project: str) -> Path:
    d = Path(tempfile.gettempdir()) / "factory-docker-toolkit" / project
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def _host_lock():
    """Serialise count-then-start across agents on this host, so the limit holds."""
    path = Path(tempfile.gettempdir()) / "factory-docker-toolkit.lock"
    try:
        import fcntl

        f = open(path, "a+")  # noqa: SIM115
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
    finally:
        f.close()


def _running_projects() -> set[tuple[str, str]]:
    out = _run(
        [
            "docker",
            "ps",
            "--filter",
            f"label={LABEL_KIND}",
            "--format",
            '{{.Label "factory.task"}} {{.Label "factory.kind"}}',
        ]
    )
    return {tuple(line.split()) for line in out.splitlines() if len(line.split()) == 2}  # type: ignore[misc]


def _resolve_compose_file(compose_file: str, ctx: _Context) -> str:
    p = Path(compose_file).expanduser()
    if not p.is_absolute():
        candidates = [Path.cwd() / p, Path(ctx.worktree) / p]
        p = next((c for c in candidates if c.exists()), candidates[0])
    if not p.exists():
        raise DockerToolkitError(f"no compose file at {p}")
    return str(p.resolve())


def _up(
    kind: str,
    compose_file: str,
    service: str | None,
    port: int | None,
) -> tuple[_Context, str, str, int, list[str], tuple[str, ...]]:
    """Check, label, limit and start an environment; returns what the callers wait on."""
    ctx = _context()
    compose = _compose()
    file = _resolve_compose_file(compose_file, ctx)
    cwd = os.path.dirname(file)
    project = project_name(ctx.task_id, kind)
    config = _load_config(compose, [file], cwd, project)
    violations = check_compose_safety(config, ctx.worktree)
    if violations:
        raise UnsafeComposeError(violations)

    labels = env_labels(ctx.task_id, kind, ctx.repo, time.time())
    preview = None
    publish = None
    if kind == "test":
        service, port, published = pick_service(config, service, port)
        if not published:
            publish = (service, port)
    else:
        if service is None or port is None:
            service, port, _ = pick_service(config, service, port)
        url = preview_url(ctx.task_id, ctx.domain, ctx.scheme)
        preview = {
            "service": service,
            "port": int(port),
            "host": preview_host(ctx.task_id, ctx.domain),
            "network": ctx.network,
            "entrypoint": ctx.entrypoint,
            "cert_resolver": ctx.cert_resolver if ctx.scheme == "https" else "",
            "domain": ctx.domain,
            "url": url,
        }
        if not _works(("docker", "network", "inspect", ctx.network)):
            raise DockerToolkitError(
                f"the previews network {ctx.network!r} does not exist: is Traefik set up on this host? "
                "(see docs/infrastructure-setup.md)"
            )
    override = build_override(
        config, labels=labels, memory=ctx.memory or None, cpus=ctx.cpus or None, publish=publish, preview=preview
    )
    override_file = _state_dir(project) / "docker-compose.factory.json"
    override_file.write_text(json.dumps(override, indent=2))
    files = [file, str(override_file)]
    args = [*compose, "-p", project, "-f", file, "-f", str(override_file)]
    if is_compose_v1(compose):
        args.append("--compatibility")  # v1 honours deploy.resources.limits only so
    with _host_lock():
        others = _running_projects() - {(str(ctx.task_id), kind)}
        if len(others) >= ctx.max_running:
            raise EnvironmentLimitError(
                f"this host already runs {len(others)} environments (FACTORY_ENV_MAX_RUNNING={ctx.max_running}); "
                "tear one of yours down or try later"
            )
        _run([*args, "up", "-d", "--remove-orphans"], cwd=cwd, timeout=600)
    assert service is not None and port is not None
    return ctx, project, service, int(port), files, compose


def _containers(project: str, service: str) -> list[dict[str, Any]]:
    ids = _run(
        [
            "docker",
            "ps",
            "-aq",
            "--filter",
            f"label={LABEL_PROJECT}={project}",
            "--filter",
            f"label={LABEL_SERVICE}={service}",
        ]
    ).split()
    if not ids:
        return []
    return json.loads(_run(["docker", "inspect", *ids], check=False) or "[]")


def _probe(host: str, port: int) -> bool:
    """True when something answers: an HTTP status line, any bytes, or a held-open connection.

    Docker's userland proxy accepts on a published port before the service listens and
    then closes at once, so a bare connect proves nothing.
    """
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.settimeout(2)
            s.sendall(b"GET / HTTP/1.0\r\nHost: " + host.encode() + b"\r\n\r\n")
            try:
                data = s.recv(64)
            except socket.timeout:  # noqa: UP041 - agents may have a python3 older than 3.10
                return True  # listening, just not talking first (a database, say)
            return bool(data)
    except OSError:
        return False


def _logs(compose: tuple[str, ...], project: str, files: list[str]) -> str:
    args = [*compose, "-p", project]
    for f in files:
        args += ["-f", f]
    try:
        return _run([*args, "logs", "--no-color", "--tail", "50"], check=False, timeout=30)[-4000:]
    except DockerToolkitError as exc:
        return str(exc)


def _wait(
    compose: tuple[str, ...], project: str, files: list[str], service: str, address: Any, timeout: float
) -> tuple[str, int]:
    """Poll until the service answers; `address(container)` gives the (host, port) to try."""
    deadline = time.monotonic() + timeout
    last = "no container yet"
    while True:
        containers = _containers(project, service)
        for c in containers:
            state = c.get("State") or {}
            if state.get("Status") in ("exited", "dead") and not state.get("Restarting"):
                raise DockerToolkitError(
                    f"service {service!r} exited with code {state.get('ExitCode')}:\n{_logs(compose, project, files)}"
                )
            hostport = address(c)
            if hostport and _probe(*hostport):
                return hostport
            last = f"{service} not answering at {hostport}"
        if time.monotonic() > deadline:
            raise EnvironmentTimeoutError(
                f"{project}: {last} after {timeout:.0f}s; the environment is left up for debugging "
                f"(tear it down when done).\n{_logs(compose, project, files)}"
            )
        time.sleep(0.25)


def spin_up_test_env(
    compose_file: str = "docker-compose.yml",
    service_port: int | None = None,
    service: str | None = None,
    timeout: float = 120,
) -> str:
    """Start the compose file as this task's test environment and wait until it answers.

    Args:
        compose_file: path, relative to the current directory or the worktree.
        service_port: the container port to reach; the first published one when None.
        service: the service with that port; found from the ports when None.
        timeout: seconds to wait for the service to answer.

    Returns:
        The URL on this host, e.g. ``http://127.0.0.1:49153``.

    Raises:
        UnsafeComposeError: the file breaks a safety rule (the message names it).
        EnvironmentLimitError: the host already runs its maximum of environments.
        EnvironmentTimeoutError: no answer before the timeout.
        DockerToolkitError: docker or compose failed.
    """
    _ctx, project, service, port, files, compose = _up("test", compose_file, service, service_port)

    def address(c: dict[str, Any]) -> tuple[str, int] | None:
        bindings = ((c.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []
        for b in bindings:
            if b.get("HostPort"):
                ip = b.get("HostIp") or "127.0.0.1"
                return ("127.0.0.1" if ip in ("0.0.0.0", "::", "") else ip), int(b["HostPort"])
        return None

    host, hport = _wait(compose, project, files, service, address, timeout)
    return f"http://{host}:{hport}"


def spin_up_preview_env(
    compose_file: str = "docker-compose.yml",
    service: str | None = None,
    port: int | None = None,
    timeout: float = 120,
) -> str:
    """Start the compose file as this task's preview, routed by Traefik, and wait for it.

    The service joins the shared previews network and gets Traefik labels routing
    ``Host(task-<id>.<domain>)`` to ``service:port``. A preview stays up until its pull
    request is merged or closed (or it grows too old); Factory announces its URL.

    Returns:
        The public URL, ``<scheme>://task-<id>.<domain>``.
    """
    ctx, project, service, port, files, compose = _up("preview", compose_file, service, port)

    def address(c: dict[str, Any]) -> tuple[str, int] | None:
        nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
        ip = (nets.get(ctx.network) or {}).get("IPAddress")
        return (ip, port) if ip else None

    _wait(compose, project, files, service, address, timeout)
    url = preview_url(ctx.task_id, ctx.domain, ctx.scheme)
    marker = _preview_marker(ctx.task_id)
    if marker:  # Factory announces the URL from here when the agent's turn ends
        with open(marker, "w") as f:
            f.write(url)
    return url


def _preview_marker(task_id: int) -> str | None:
    run_dir = os.environ.get("FACTORY_RUN_DIR")
    return os.path.join(run_dir, f"task-{task_id}.preview") if run_dir else None


def _tear_down(kind: str) -> None:
    ctx = _context()
    filters = ["--filter", f"label={LABEL_TASK}={ctx.task_id}", "--filter", f"label={LABEL_KIND}={kind}"]
    ids = _run(["docker", "ps", "-aq", *filters]).split()
    if ids:
        _run(["docker", "rm", "-f", "-v", *ids], timeout=120)
    nets = _run(["docker", "network", "ls", "-q", *filters]).split()
    if nets:
        _run(["docker", "network", "rm", *nets], check=False)
    vols = _run(["docker", "volume", "ls", "-q", *filters]).split()
    if vols:
        _run(["docker", "volume", "rm", "-f", *vols], check=False)
    images = _run(["docker", "image", "ls", "-q", *filters], check=False).split()
    if images:
        _run(["docker", "image", "rm", "-f", *sorted(set(images))], check=False)
    shutil.rmtree(_state_dir(project_name(ctx.task_id, kind)), ignore_errors=True)


def tear_down_test_env() -> None:
    """Remove this task's test environment: containers, networks, volumes, built images."""
    _tear_down("test")


def tear_down_preview_env() -> None:
    """Remove this task's preview environment."""
    _tear_down("preview")
    marker = _preview_marker(_context().task_id)
    if marker and os.path.exists(marker):
        os.remove(marker)
