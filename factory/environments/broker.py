"""The Docker broker: agents ask it, over a unix socket, to start and remove their environments.

Agents never hold the Docker socket. Each worker runs one `EnvironmentBroker`; the agent
activity grants a task a random capability token before it starts the agent and revokes
it when the agent ends. `docker_toolkit` sends its requests here with that token:

    POST   /v1/tasks/<id>/environments/<test|preview>   {"compose_file", "service", "port", "timeout"}
    DELETE /v1/tasks/<id>/environments/<test|preview>

401 for a missing, unknown or revoked token, 403 for another task's token, 422 with the
violations for an unsafe compose file, 400 for other bad input, 429 at the host's limit,
504 when the service never answered, 502 when docker failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h11

from factory.config import FactoryConfig
from factory.environments import docker
from factory.environments.checks import UnsafeComposeError
from factory.environments.compose import KINDS, namespace, project_name
from factory.environments.launch import EnvironmentFailure, Request, start_environment, targets_of
from factory.environments.marks import Marks

log = logging.getLogger(__name__)

_PATH_RE = re.compile(r"^/v1/tasks/(?P<task>[0-9]{1,18})/environments/(?P<kind>[a-z]+)$")
_MAX_BODY = 64 * 1024
_MAX_SUN_PATH = 100  # AF_UNIX paths are limited to 108 bytes
_STATUS = {"bad_request": 400, "limit": 429, "timeout": 504, "docker": 502}


@dataclass
class _Grant:
    task_id: int
    worktree: str
    repo: str


class _HttpError(Exception):
    def __init__(self, status: int, error: str, message: str, **extra: Any):
        self.status, self.body = status, {"error": error, "message": message, **extra}
        super().__init__(message)


def _digest(token: str) -> str:
    # grants are found by the token's hash: no comparison whose time depends on a secret
    return hashlib.sha256(token.encode()).hexdigest()


class EnvironmentBroker:
    """Starts and removes agents' Docker environments on their behalf, for tasks holding a grant.

    Args:
        cfg: Factory's config (`workspace_root` for the socket, `previews` for names and limits,
            `temporal.id_prefix` for the deployment's namespace: the broker names every environment).
    """

    def __init__(self, cfg: FactoryConfig):
        self.cfg = cfg
        self.ns = namespace(cfg.temporal.id_prefix)
        self._grants: dict[str, _Grant] = {}  # token digest -> grant
        self._targets: dict[tuple[int, str], set[tuple[str, int]]] = {}
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}
        self._server: asyncio.base_events.Server | None = None
        self.marks = Marks(cfg.workspace_path)  # which tasks ever had an environment here (marks.py)
        path = cfg.workspace_path.resolve() / "run" / "broker.sock"
        if len(str(path)) > _MAX_SUN_PATH:  # a deep workspace_root: a private directory in /tmp instead
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
            path = Path(tempfile.gettempdir()) / f"factory-broker-{digest}" / "broker.sock"
        self.socket_path = str(path)

    # --- grants ----------------------------------------------------------------------
    def grant(self, task_id: int, worktree: str, repo: str = "") -> str:
        """A fresh capability token for `task_id`'s environments, replacing any earlier one."""
        self.revoke(task_id)
        token = secrets.token_urlsafe(32)
        self._grants[_digest(token)] = _Grant(task_id, os.path.realpath(worktree), repo)
        return token

    def revoke(self, task_id: int) -> None:
        """Invalidate the task's token (its agent has ended); its environments stay up."""
        for digest in [d for d, g in self._grants.items() if g.task_id == task_id]:
            del self._grants[digest]

    async def end_run(self, task_id: int) -> None:
        """The task's agent has ended: revoke its token and remove its test environments.

        A test environment is the agent's tool; one left running would go on seeing (and,
        before Factory copied what it mounts, writing) the task's files while Factory
        finalizes them. Previews stay: they are for people, and run from Factory's copy.
        """
        self.revoke(task_id)
        if not self.marks.may_have(task_id, "test"):  # it never started one here: no docker call
            return
        async with self._locks.setdefault((task_id, "test"), asyncio.Lock()):
            await docker.tear_down(project_name(task_id, "test", self.ns), self.ns)
            self.forget(task_id, ("test",))

    def allowed_targets(self, task_id: int) -> set[tuple[str, int]]:
        """(host, port) pairs of the task's running environments, for the egress proxy."""
        out: set[tuple[str, int]] = set()
        for (tid, _kind), targets in self._targets.items():
            if tid == task_id:
                out |= targets
        return out

    async def refresh_targets(self, task_id: int) -> set[tuple[str, int]]:
        """Re-read the task's environments from Docker (after a worker restart, say)."""
        for kind in KINDS:
            targets = await targets_of(project_name(task_id, kind, self.ns), self.cfg.previews.network)
            if targets:
                self._targets[(task_id, kind)] = targets
            else:
                self._targets.pop((task_id, kind), None)
        return self.allowed_targets(task_id)

    def forget(self, task_id: int, kinds: list[str] | tuple[str, ...] = KINDS) -> None:
        """Drop the record of environments Factory removed without the broker."""
        for kind in kinds:
            self._targets.pop((task_id, kind), None)

    # --- server ----------------------------------------------------------------------
    async def start(self) -> None:
        """Listen on `socket_path` (owner-only), replacing a stale socket."""
        path = Path(self.socket_path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.unlink(missing_ok=True)
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(path))
        finally:
            os.umask(old)
        if not self.marks.ready:  # environments from before marks existed get theirs, once Docker answers
            try:
                self.marks.complete([(e.task_id, e.kind) for e in await docker.labelled_environments(self.ns)])
            except docker.DockerUnavailable as exc:
                log.info("environment marks not complete yet (docker: %s); teardowns ask Docker", exc)

    async def stop(self) -> None:
        """Stop listening and remove the socket."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        Path(self.socket_path).unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        try:
            request, body = await self._read(conn, reader)
            try:
                status, payload = await self._handle(request, body)
            except _HttpError as exc:
                status, payload = exc.status, exc.body
            data = json.dumps(payload).encode()
            headers = [
                ("content-type", "application/json"),
                ("content-length", str(len(data))),
                ("connection", "close"),
            ]
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
            writer.write(conn.send(h11.Data(data=data)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        except (_HttpError, h11.ProtocolError, ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("broker: dropped a connection: %s", exc)
        except Exception:
            log.exception("broker: request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read(self, conn: h11.Connection, reader: asyncio.StreamReader) -> tuple[h11.Request, bytes]:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(reader.read(16 * 1024), 30))
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    raise _HttpError(413, "too_large", "request body too large")
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return request, body
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("closed before a whole request")

    def _authorize(self, request: h11.Request, task_id: int) -> _Grant:
        auth = dict(request.headers).get(b"authorization", b"").decode(errors="replace")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        grant = self._grants.get(_digest(token)) if token else None
        if grant is None:
            raise _HttpError(401, "unauthorized", "no valid broker token: only a running Factory agent may ask")
        if grant.task_id != task_id:
            raise _HttpError(403, "forbidden", f"this token is not task {task_id}'s")
        return grant

    async def _handle(self, request: h11.Request, body: bytes) -> tuple[int, dict[str, Any]]:
        m = _PATH_RE.match(request.target.decode(errors="replace"))
        if m is None or m["kind"] not in KINDS:
            raise _HttpError(404, "not_found", "no such broker resource")
        task_id, kind = int(m["task"]), m["kind"]
        grant = self._authorize(request, task_id)
        method = request.method.decode()
        lock = self._locks.setdefault((task_id, kind), asyncio.Lock())
        if method == "DELETE":
            async with lock:
                removed = await docker.tear_down(project_name(task_id, kind, self.ns), self.ns)
                self.forget(task_id, (kind,))
            return 200, {"removed": removed}
        if method != "POST":
            raise _HttpError(405, "method_not_allowed", "use POST or DELETE")
        req = self._request(grant, kind, body)
        async with lock:
            self.marks.add(task_id, kind)  # before it starts: a crash after the start leaves the mark
            try:
                started = await start_environment(req, self.cfg.previews)
            except UnsafeComposeError as exc:
                violations = [asdict(v) for v in exc.violations]
                raise _HttpError(422, "unsafe_compose", str(exc), violations=violations) from exc
            except EnvironmentFailure as exc:
                raise _HttpError(_STATUS[exc.kind], exc.kind, str(exc)) from exc
            except docker.DockerUnavailable as exc:
                raise _HttpError(502, "docker", f"docker is unavailable: {exc}") from exc
            self._targets[(task_id, kind)] = started.targets
        log.info("broker: started %s for task %s at %s", started.project, task_id, started.url or "-")
        return 200, {"project": started.project, "url": started.url}

    def _request(self, grant: _Grant, kind: str, body: bytes) -> Request:
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise _HttpError(400, "bad_request", f"the body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise _HttpError(400, "bad_request", "the body must be a JSON object")
        compose_file, service, port, timeout = (
            data.get("compose_file", "docker-compose.yml"), data.get("service"), data.get("port"), data.get("timeout", 120)
        )  # fmt: skip
        if not isinstance(compose_file, str) or not 0 < len(compose_file) <= 4096 or "\0" in compose_file:
            raise _HttpError(400, "bad_request", "compose_file must be a path inside the worktree")
        if service is not None and (
            not isinstance(service, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", service)
        ):
            raise _HttpError(400, "bad_request", "service must be a compose service name")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise _HttpError(400, "bad_request", "port must be an integer from 1 to 65535")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 1800:
            raise _HttpError(400, "bad_request", "timeout must be a number of seconds from 0 to 1800")
        return Request(
            task_id=grant.task_id, kind=kind, worktree=grant.worktree, compose_file=compose_file,
            repo=grant.repo, service=service, port=port, timeout=float(timeout),
            workspace_root=str(self.cfg.workspace_path.resolve()), max_copy_mb=self.cfg.previews.max_copy_mb,
            ns=self.ns,
        )  # fmt: skip
