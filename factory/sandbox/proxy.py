"""Factory's egress proxy: the only way out of a sandbox with its own network namespace.

One asyncio server per agent run listens on a unix socket (bound into that run's sandbox and
bridged to a loopback port there by socat), so every connection arriving on it belongs to one
known task. It speaks the two forms HTTP clients use through a proxy: `CONNECT host:port` (TLS
and anything else, then piped both ways) and a plain request with an absolute URL (exactly one
request is forwarded per connection, its body by Content-Length, with `Connection: close` and the
Host header set to the checked target: a second request or another vhost never reaches anyone).
A destination is allowed only when it is on the run's allow-list (`Destination`s: an exact
host and port, or a `*.suffix` pattern) or in the extra set a callable gives for the task (its
test and preview environments); everything else is answered 403 and reported once per
connection to `on_refused`. A run's virtual hosts (the model gateway, `factory.sandbox.gateway`)
are served in the worker itself and never resolved.

What it trusts: nothing the client sends. Hosts are checked in their one canonical spelling
(`factory.sandbox.addresses`), a name is resolved once and the checked address is the one
connected to, and every connection has a head timeout, an idle and a total timeout, and a place
under the run's cap on open connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.sandbox.addresses import internal, literal
from factory.sandbox.wire import (
    Header,
    Idle,
    LengthRequired,
    absolute_target,
    answer,
    body_length,
    copy_body,
    parse_headers,
    pipe,
)

log = logging.getLogger("factory.sandbox.proxy")

_MAX_REFUSALS_REPORTED = 50  # per run: an agent looping on a refused host must not flood the task's log
_HOP_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive", "host", "te", "upgrade"}
MAX_HEAD = 64 * 1024  # request line and headers; more is answered 431
_METHOD = re.compile(r"[A-Za-z]{1,20}")

RefusedHook = Callable[[int, str, int, str], Awaitable[None] | None]
ExtraHosts = Callable[[int], Iterable[tuple[str, int]]]
# a run's virtual host: (method, path and query, headers, body length, client reader, client writer)
VirtualHost = Callable[[str, str, list[Header], int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """Per-connection and per-run limits (`sandbox.proxy_*`, `sandbox.max_connections`)."""

    head_seconds: float = 10
    idle_seconds: float = 300
    total_seconds: float = 3600
    max_connections: int = 64

    @classmethod
    def of(cls, sandbox: Any) -> Limits:
        """From the `sandbox` section of the config."""
        return cls(
            sandbox.proxy_head_seconds, sandbox.proxy_idle_seconds, sandbox.proxy_total_seconds, sandbox.max_connections
        )


@dataclass(frozen=True)
class Destination:
    """One allow-list entry: `host` (or `*.suffix`) and a port."""

    host: str
    port: int

    def matches(self, host: str, port: int) -> bool:
        if port != self.port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host


def split_host_port(value: str, default_port: int | None = None) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `host` (with `default_port`) as a lower-case host and a port.

    Raises:
        ValueError: no port and no default, or a port that is not a number in 1..65535.
    """
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_s = value.partition(":")
    else:
        host, port_s = value, ""
    if not port_s:
        if default_port is None:
            raise ValueError(f"{value!r} has no port")
        return host.lower().rstrip("."), default_port
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"{value!r}: bad port")
    return host.lower().rstrip("."), int(port_s)


@dataclass(eq=False)
class Channel:
    """One run's listening socket and what it may reach."""

    task_id: int
    path: Path
    allowed: frozenset[Destination]
    vhosts: dict[tuple[str, int], VirtualHost] = field(default_factory=dict)
    server: asyncio.AbstractServer | None = None
    refused: int = 0
    conns: set[asyncio.Task[None]] = field(default_factory=set)


class EgressProxy:
    """Per-run unix-socket HTTP/CONNECT proxies sharing one event loop."""

    def __init__(
        self,
        on_refused: RefusedHook | None = None,
        extra_hosts: ExtraHosts | None = None,
        connect_timeout: float = 20,
        workspace: Path | None = None,
        limits: Limits | None = None,
    ) -> None:
        """Args:
        on_refused: called with (task id, host, port, reason) for each refused connection.
        extra_hosts: task id -> host/port pairs it may also reach (its Docker environments).
        connect_timeout: seconds to reach an allowed destination before answering 502.
        workspace: the worker's `workspace_root`; its sockets then live in a directory named for it,
            which the next start clears (a worker killed with SIGKILL leaves nothing that grows).
        limits: timeouts and the per-run connection cap.
        """
        self.limits = limits or Limits()
        self.on_refused = on_refused
        self.extra_hosts = extra_hosts
        self.connect_timeout = connect_timeout
        # unix socket paths are limited to ~108 bytes, so they live in a short private dir, not
        # under workspace_root; 0700 keeps other users of the host off it
        if workspace is None:
            self.dir = Path(tempfile.mkdtemp(prefix="factory-egress-"))
        else:
            digest = hashlib.sha256(str(workspace.resolve()).encode()).hexdigest()[:16]
            self.dir = Path(tempfile.gettempdir()) / f"factory-egress-{digest}"
            shutil.rmtree(self.dir, ignore_errors=True)  # sockets of a worker that died
            self.dir.mkdir(mode=0o700)
        self._channels: set[Channel] = set()

    async def open(
        self, task_id: int, allowed: Iterable[Destination], vhosts: dict[tuple[str, int], VirtualHost] | None = None
    ) -> Channel:
        """Listen on a fresh socket for one run of `task_id`; bind `channel.path` into its sandbox.

        `vhosts`: (host, port) -> handler for plain-HTTP requests this run's proxy answers itself.
        """
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # a /tmp cleaner may have taken it
        path = self.dir / f"t{task_id}-{uuid.uuid4().hex[:8]}.sock"
        ch = Channel(task_id, path, frozenset(allowed), dict(vhosts or {}))
        ch.server = await asyncio.start_unix_server(
            lambda r, w: self._serve(ch, r, w), path=str(ch.path), limit=MAX_HEAD
        )
        os.chmod(ch.path, 0o600)
        self._channels.add(ch)
        return ch

    async def close_channel(self, ch: Channel) -> None:
        """Stop listening and drop the run's open connections."""
        self._channels.discard(ch)
        if ch.server is not None:
            ch.server.close()
        for t in list(ch.conns):
            t.cancel()
        await asyncio.gather(*ch.conns, return_exceptions=True)
        if ch.server is not None:
            with contextlib.suppress(Exception):
                await ch.server.wait_closed()
        ch.path.unlink(missing_ok=True)

    async def close(self) -> None:
        """Close every channel and remove the socket directory."""
        for ch in list(self._channels):
            await self.close_channel(ch)
        shutil.rmtree(self.dir, ignore_errors=True)

    def allows(self, ch: Channel, host: str, port: int) -> bool:
        """Whether `host:port` is on the run's allow-list or among the task's environments."""
        if any(d.matches(host, port) for d in ch.allowed):
            return True
        if self.extra_hosts is not None:
            try:
                extra = {(h.lower(), p) for h, p in self.extra_hosts(ch.task_id)}
            except Exception as exc:  # the broker's view failing must not open anything
                log.warning("task %s: environment hosts unavailable: %s", ch.task_id, exc)
                return False
            return (host, port) in extra
        return False

    # --- one connection ----------------------------------------------------------------
    async def _serve(self, ch: Channel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            ch.conns.add(task)
            task.add_done_callback(ch.conns.discard)
        opened: list[asyncio.StreamWriter] = []
        try:
            if len(ch.conns) > self.limits.max_connections:
                # an agent opening connections without end must not exhaust the worker's descriptors;
                # its head is read (bounded) first so the answer is not lost to a reset
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.limits.head_seconds)
                cap = self.limits.max_connections
                return await answer(writer, 503, f"more than {cap} open connections in this run")
            async with asyncio.timeout(self.limits.total_seconds):
                await self._handle(ch, reader, writer, opened)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # this is the connection's own top-level task, cancelled only by close_channel; asyncio's
            # stream callback would log a cancelled task's exception as an error
            pass
        finally:
            for w in (*opened, writer):
                w.close()

    async def _handle(
        self,
        ch: Channel,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        opened: list[asyncio.StreamWriter],
    ) -> None:
        try:  # slowloris: a head that never ends holds nothing for long
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.limits.head_seconds)
        except (asyncio.LimitOverrunError, ValueError):
            return await answer(writer, 431, "request head too large")
        except asyncio.IncompleteReadError:
            return
        except TimeoutError:
            return await answer(writer, 408, "request head not sent in time")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return await answer(writer, 400, "bad request line")
        method, target, version = parts
        # forwarded as written: a token only (a bare LF in it was a header line at the server)
        if not _METHOD.fullmatch(method):
            return await answer(writer, 400, "bad request method")
        connect = method.upper() == "CONNECT"
        try:
            headers = parse_headers(lines[1:])
            if connect:
                host, port, path = *split_host_port(target), ""
            else:
                host, port, path = absolute_target(target)
            ip = literal(host)
            length = 0 if connect else body_length(headers)
        except PermissionError as exc:
            await self._refuse(ch, host, port, str(exc))
            return await answer(writer, 403, f"{host}:{port}: {exc}")
        except LengthRequired as exc:
            return await answer(writer, 411, str(exc))
        except ValueError as exc:
            return await answer(writer, 400, str(exc))
        vhost = None if connect else ch.vhosts.get((host, port))
        if vhost is not None:  # served here, never resolved or connected to
            return await vhost(method, path, headers, length, reader, writer)
        if not self.allows(ch, host, port):
            await self._refuse(ch, host, port, "not on the sandbox's allow-list")
            return await answer(writer, 403, f"{host}:{port} is not on this sandbox's allow-list")
        try:
            addr = await self._resolve(host, port, ip)
            up_reader, upstream = await asyncio.wait_for(asyncio.open_connection(addr, port), self.connect_timeout)
        except PermissionError as exc:
            await self._refuse(ch, host, port, str(exc))
            return await answer(writer, 403, f"{host}:{port}: {exc}")
        except (OSError, TimeoutError) as exc:
            return await answer(writer, 502, f"cannot reach {host}:{port}: {exc}")
        opened.append(upstream)
        idle = Idle(self.limits.idle_seconds)
        if connect:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(pipe(reader, upstream, idle), pipe(up_reader, writer, idle))
            return
        # one request only: its head with the Host the allow-list checked, its body by length; whatever
        # the client sends after that (a second, smuggled request) is never read
        name = f"[{host}]" if ":" in host else host
        kept = [f"{n}:{v}" for n, v in headers if n.lower() not in _HOP_HEADERS and not n.lower().startswith("proxy-")]
        head_out = [f"{method} {path} {version}", f"Host: {name}" + ("" if port == 80 else f":{port}"), *kept]
        upstream.write("\r\n".join([*head_out, "Connection: close", "", ""]).encode("latin-1"))
        await copy_body(reader, upstream, length, idle)
        await pipe(up_reader, writer, idle)

    async def _resolve(self, host: str, port: int, ip: Any) -> str:
        """The address to connect to: a literal as it was allowed, or a name's address, checked once."""
        if ip is not None:  # the allow-list names this very address (only a literal entry matches it)
            return str(ip)
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), self.connect_timeout)
        addrs = [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]
        # a name on the allow-list must not lead to the host's own services or a private network (DNS
        # pointing at 127.0.0.1, 10.0.0.1 or the metadata address); the address checked is the one used
        if not addrs or any(internal(a) for a in addrs):
            raise PermissionError("resolves to an internal address")
        return str(addrs[0])

    async def _refuse(self, ch: Channel, host: str, port: int, reason: str) -> None:
        host = host[:100]  # the agent wrote it: the task's log gets a bounded copy
        ch.refused += 1
        if self.on_refused is None or ch.refused > _MAX_REFUSALS_REPORTED + 1:
            return
        if ch.refused == _MAX_REFUSALS_REPORTED + 1:
            reason = f"{reason}; further refusals in this run are not logged"
        try:
            result = self.on_refused(ch.task_id, host, port, reason)
            if asyncio.iscoroutine(result):
                await result
        except Exception as exc:  # reporting never breaks the proxy
            log.warning("task %s: could not record a refused connection: %s", ch.task_id, exc)
