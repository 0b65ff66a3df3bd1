"""HTTP/1.1 on raw asyncio streams, as the egress proxy and the model gateway read it from an agent.

Strict on purpose: a header line two parsers could read differently (folding, space before the
colon), a body framed by anything but one Content-Length, or a URL with user information is refused,
so what Factory checks is what the other end receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

Header = tuple[str, str]


class LengthRequired(ValueError):
    pass


def parse_headers(lines: list[str]) -> list[Header]:
    out: list[Header] = []
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        # no folding, no space before the colon: a header two parsers read differently is refused
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise ValueError("malformed header line")
        # heads are split on CRLF: a bare LF or CR (or a NUL) left inside is a line break to a lenient
        # server, which then read a header of the agent's (a second Host) past the proxy's check
        if any(c in line for c in "\r\n\0"):
            raise ValueError("a control character in a header line")
        out.append((name, value.strip()))
    return out


def absolute_target(target: str) -> tuple[str, int, str]:
    url = urlsplit(target)
    if url.scheme.lower() != "http" or not url.hostname:
        raise ValueError("a proxy request needs an absolute http:// URL")
    if "@" in url.netloc:
        raise ValueError("a URL with user information is refused")
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    return url.hostname.lower().rstrip("."), url.port or 80, path


def body_length(headers: list[Header]) -> int:
    if any(n.lower() == "transfer-encoding" for n, _ in headers):
        raise LengthRequired("a request body must have a Content-Length")
    values = {v for n, v in headers if n.lower() == "content-length"}
    if not values:
        return 0
    (value, *more) = values
    if more or not value.isdigit():
        raise ValueError("a bad or repeated Content-Length")
    return int(value)


class Idle:
    """One connection's idle clock, shared by both directions: either one moving keeps it open."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = time.monotonic()

    async def read(self, reader: asyncio.StreamReader, n: int = 65536) -> bytes:
        """Up to `n` bytes; b"" at EOF or once neither direction has moved for `seconds`."""
        while True:
            try:
                data = await asyncio.wait_for(reader.read(n), self.seconds)
            except TimeoutError:
                if time.monotonic() - self.last >= self.seconds:
                    return b""
                continue
            self.last = time.monotonic()
            return data


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle: Idle) -> None:
    try:
        while data := await idle.read(reader):
            writer.write(data)
            await asyncio.wait_for(writer.drain(), idle.seconds)  # a client that never reads
            idle.last = time.monotonic()
    except (ConnectionError, OSError, TimeoutError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def copy_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int, idle: Idle) -> None:
    """Exactly `length` bytes of a request body (fewer if the client stops)."""
    while length > 0:
        data = await idle.read(reader, min(length, 65536))
        if not data:
            return
        length -= len(data)
        writer.write(data)
        await asyncio.wait_for(writer.drain(), idle.seconds)


_REASONS = {
    400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 411: "Length Required",
    431: "Request Header Fields Too Large", 502: "Bad Gateway", 503: "Service Unavailable",
}  # fmt: skip


async def answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = f"Factory sandbox: {text}\n".encode()
    writer.write(
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
