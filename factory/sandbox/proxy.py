"""Factory's egress proxy: the only way out of a sandbox with its own network namespace.

One asyncio server per agent run listens on a unix socket (bound into that run's sandbox and
bridged to a loopback port there by socat), so every connection arriving on it belongs to one
known task. It speaks the two forms HTTP clients use through a proxy: `CONNECT host:port` (TLS
and anything else, then piped both ways) and a plain request with an absolute URL (forwarded
with `Connection: close`, so a second request on the same connection cannot reach another host).
A destination is allowed only when it is on the run's allow-list (`Destination`s: an exact
host and port, or a `*.suffix` pattern) or in the extra set a callable gives for the task (its
test and preview environments); everything else is answered 403 and reported once per
connection to `on_refused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger("factory.sandbox.proxy")

_MAX_REFUSALS_REPORTED = 50  # per run: an agent looping on a refused host must not flood the task's log
_HOP_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}

RefusedHook = Callable[[int, str, int, str], Awaitable[None] | None]
ExtraHosts = Callable[[int], Iterable[tuple[str, int]]]


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


def _is_literal(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _internal(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast


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
    ) -> None:
        """Args:
        on_refused: called with (task id, host, port, reason) for each refused connection.
        extra_hosts: task id -> host/port pairs it may also reach (its Docker environments).
        connect_timeout: seconds to reach an allowed destination before answering 502.
        workspace: the worker's `workspace_root`; its sockets then live in a directory named for it,
            which the next start clears (a worker killed with SIGKILL leaves nothing that grows).
        """
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

    async def open(self, task_id: int, allowed: Iterable[Destination]) -> Channel:
        """Listen on a fresh socket for one run of `task_id`; bind `channel.path` into its sandbox."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # a /tmp cleaner may have taken it
        ch = Channel(task_id, self.dir / f"t{task_id}-{uuid.uuid4().hex[:8]}.sock", frozenset(allowed))
        ch.server = await asyncio.start_unix_server(lambda r, w: self._serve(ch, r, w), path=str(ch.path))
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
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                return await _answer(writer, 431, "request head too large")
            except asyncio.IncompleteReadError:
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                return await _answer(writer, 400, "bad request line")
            method, target, version = parts
            try:
                if method.upper() == "CONNECT":
                    host, port = split_host_port(target)
                    rest = b""
                else:
                    url = urlsplit(target)
                    if url.scheme != "http" or not url.hostname:
                        return await _answer(writer, 400, "a proxy request needs an absolute http:// URL")
                    host, port = url.hostname.lower(), url.port or 80
                    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                    headers = [h for h in lines[1:] if h and h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS]
                    rest = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""]).encode(
                        "latin-1"
                    )
            except ValueError as exc:
                return await _answer(writer, 400, str(exc))
            if not self.allows(ch, host, port):
                await self._refuse(ch, host, port, "not on the sandbox's allow-list")
                return await _answer(writer, 403, f"{host}:{port} is not on this sandbox's allow-list")
            try:
                up_reader, upstream = await self._connect(host, port)
            except PermissionError as exc:
                await self._refuse(ch, host, port, str(exc))
                return await _answer(writer, 403, f"{host}:{port}: {exc}")
            except (OSError, TimeoutError) as exc:
                return await _answer(writer, 502, f"cannot reach {host}:{port}: {exc}")
            if method.upper() == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                upstream.write(rest)
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # this is the connection's own top-level task, cancelled only by close_channel; asyncio's
            # stream callback would log a cancelled task's exception as an error
            pass
        finally:
            for w in (upstream, writer):
                if w is not None:
                    w.close()

    async def _connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addrs = [i[4][0] for i in infos]
        # a name on the allow-list must not lead to the host's own services (DNS pointing at
        # 127.0.0.1 or a metadata address); only a literal loopback entry reaches loopback
        if not _is_literal(host) and any(_internal(a) for a in addrs):
            raise PermissionError("resolves to an internal address")
        return await asyncio.wait_for(asyncio.open_connection(addrs[0], port), self.connect_timeout)

    async def _refuse(self, ch: Channel, host: str, port: int, reason: str) -> None:
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


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    reasons = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large", 502: "Bad Gateway"}
    body = f"Factory sandbox: {text}\n".encode()
    writer.write(
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
