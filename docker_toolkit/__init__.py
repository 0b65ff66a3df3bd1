"""Docker test and preview environments for Factory's agents.

Agents import this from their Bash tool with whatever `python3` is on PATH (Factory
puts this package's parent directory on their PYTHONPATH), so it is standard library
only::

    from docker_toolkit import spin_up_test_env, tear_down_test_env
    url = spin_up_test_env("docker-compose.yml", service_port=3000)
    ...  # run tests against url
    tear_down_test_env()

Agents hold no Docker socket: the toolkit sends the request to Factory's broker over the
unix socket FACTORY_BROKER_SOCKET with the task's capability token FACTORY_BROKER_TOKEN.
Factory checks the compose file (the refusal names each rule broken), labels and limits
it, runs it, waits until it answers, and removes it when the task ends (test) or its pull
request closes (preview). FACTORY_TASK_ID and FACTORY_WORKTREE say whose and where.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from dataclasses import dataclass

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
    """Docker or compose failed, Factory refused the request, or the task context is missing."""


class EnvironmentLimitError(DockerToolkitError):
    """This host already runs its maximum of environments."""


class EnvironmentTimeoutError(DockerToolkitError):
    """The service did not answer before the timeout; the message carries its logs."""


@dataclass(frozen=True)
class Violation:
    """One rule a compose file breaks, for one service (or `volume:<name>`, ...): Factory's checks make these."""

    rule: str
    service: str
    detail: str

    @property
    def message(self) -> str:
        return f"[{self.rule}] service {self.service!r}: {self.detail}"


class UnsafeComposeError(DockerToolkitError):
    """Factory refused the compose file: `violations` lists every rule it breaks."""

    def __init__(self, violations: list[Violation], message: str = ""):
        self.violations = violations
        lines = "\n  - ".join(v.message for v in violations)
        super().__init__(message or f"refusing to start this compose file:\n  - {lines}")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the broker's unix socket."""

    def __init__(self, path: str, timeout: float):
        super().__init__("factory-broker", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def _context() -> tuple[int, str, str, str]:
    env = os.environ
    task = env.get("FACTORY_TASK_ID", "")
    if not task.isdigit():
        raise DockerToolkitError("FACTORY_TASK_ID is not set: docker_toolkit runs inside a Factory task")
    sock, token = env.get("FACTORY_BROKER_SOCKET", ""), env.get("FACTORY_BROKER_TOKEN", "")
    if not sock or not token:
        raise DockerToolkitError("FACTORY_BROKER_SOCKET/FACTORY_BROKER_TOKEN are not set: Factory runs Docker for you")
    return int(task), sock, token, os.path.realpath(env.get("FACTORY_WORKTREE") or os.getcwd())


def _request(method: str, kind: str, body: dict | None = None, timeout: float = 120) -> dict:
    task_id, sock, token, _wt = _context()
    # the broker may build images and wait for the service: allow for both beyond `timeout`
    conn = _UnixConnection(sock, timeout=timeout + 660)
    try:
        payload = json.dumps(body or {}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, f"/v1/tasks/{task_id}/environments/{kind}", body=payload, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    except OSError as exc:
        raise DockerToolkitError(f"cannot reach Factory's Docker broker at {sock}: {exc}") from exc
    finally:
        conn.close()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        data = {"message": raw.decode(errors="replace")}
    if resp.status == 200:
        return data
    message = str(data.get("message") or f"the broker answered {resp.status}")
    if resp.status == 422 and data.get("error") == "unsafe_compose":
        violations = [Violation(str(v["rule"]), str(v["service"]), str(v["detail"])) for v in data["violations"]]
        raise UnsafeComposeError(violations, message)
    if resp.status == 429:
        raise EnvironmentLimitError(message)
    if resp.status == 504:
        raise EnvironmentTimeoutError(message)
    raise DockerToolkitError(f"{resp.status}: {message}")


def _compose_path(compose_file: str) -> str:
    """The compose file as a path relative to the worktree, as Factory expects it."""
    _task, _sock, _token, worktree = _context()
    p = os.path.expanduser(compose_file)
    if not os.path.isabs(p):
        here = os.path.join(os.getcwd(), p)
        p = here if os.path.exists(here) else os.path.join(worktree, p)
    p = os.path.realpath(p)
    if p != worktree and not p.startswith(worktree.rstrip(os.sep) + os.sep):
        raise DockerToolkitError(f"the compose file {compose_file} is outside the worktree {worktree}")
    return os.path.relpath(p, worktree)


def spin_up_test_env(
    compose_file: str = "docker-compose.yml",
    service_port: int | None = None,
    service: str | None = None,
    timeout: float = 120,
) -> str:
    """Have Factory start the compose file as this task's test environment, and wait until it answers.

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
        DockerToolkitError: docker or compose failed, or Factory refused the request.
    """
    body = {"compose_file": _compose_path(compose_file), "service": service, "port": service_port, "timeout": timeout}
    return str(_request("POST", "test", body, timeout)["url"])


def spin_up_preview_env(
    compose_file: str = "docker-compose.yml",
    service: str | None = None,
    port: int | None = None,
    timeout: float = 120,
) -> str:
    """Have Factory start the compose file as this task's preview, routed by Traefik, and wait for it.

    The service joins the shared previews network and Factory routes
    ``Host(task-<id>.<domain>)`` to ``service:port``. A preview stays up until its pull
    request is merged or closed (or it grows too old); Factory announces its URL.

    Returns:
        The public URL, ``<scheme>://task-<id>.<domain>``.
    """
    body = {"compose_file": _compose_path(compose_file), "service": service, "port": port, "timeout": timeout}
    return str(_request("POST", "preview", body, timeout)["url"])


def tear_down_test_env() -> None:
    """Remove this task's test environment: containers, networks, volumes, built images."""
    _request("DELETE", "test")


def tear_down_preview_env() -> None:
    """Remove this task's preview environment."""
    _request("DELETE", "preview")
