"""Checks a Factory process makes before it starts, and that `factory doctor` makes: ports and keys.

Nothing here changes anything: a port is tested by binding it (and the socket is handed over or
closed), a key by one short, read-only authenticated call. A key's value is only ever sent to the
service it belongs to, and never appears in what these functions return.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Literal

import httpx

KEY_CHECK_TIMEOUT = 5.0


class PortBusy(OSError):
    """A port Factory is told to serve on is taken (or cannot be bound)."""

    def __init__(self, port: int, option: str, why: str):
        super().__init__(f"port {port} is {why}; choose another with {option}")
        self.port = port


def bind(host: str, port: int, option: str) -> socket.socket:
    """A listening-ready socket on host:port, or PortBusy naming the option that chooses another port.

    The API hands this very socket to its server, so nothing can take the port between the check and
    the serving; a port another program (the Temporal dev server) binds is closed again at once.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to serve on
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortBusy(port, option, "busy (another process listens there)") from None
        raise PortBusy(port, option, f"not usable on {host} ({exc.strerror or exc})") from None
    return sock


def check_free(host: str, port: int, option: str) -> None:
    bind(host, port, option).close()


Verdict = Literal["ok", "rejected", "unchecked"]


@dataclass(frozen=True)
class KeyCheck:
    verdict: Verdict
    detail: str  # what a person reads after the key's name; never the key


def _http_verdict(r: httpx.Response, ok_detail: str) -> KeyCheck:
    if r.status_code in (401, 403):
        return KeyCheck("rejected", f"rejected (HTTP {r.status_code})")
    if r.is_success:
        return KeyCheck("ok", ok_detail)
    return KeyCheck("unchecked", f"could not check (HTTP {r.status_code})")


def check_github_token(api_url: str, token: str, timeout: float = KEY_CHECK_TIMEOUT) -> KeyCheck:
    """`GET {api_url}/user` with the token: who it is and, for a classic token, its scopes."""
    try:
        r = httpx.get(
            f"{api_url.rstrip('/')}/user",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        return KeyCheck("unchecked", f"could not check ({type(exc).__name__})")
    login = ""
    if r.is_success:
        try:
            body = r.json()
            login = str(body.get("login", ""))[:100] if isinstance(body, dict) else ""
        except ValueError:
            pass
    scopes = r.headers.get("X-OAuth-Scopes")
    # a fine-grained token sends no scopes header: its permissions are per repository
    shown = f"scopes: {scopes[:200] or 'none'}" if scopes is not None else "fine-grained (no scopes header)"
    return _http_verdict(r, f"works as {login or 'unknown user'}, {shown}")


def check_model_key(
    base_url: str, api_key: str | None, auth_token: str | None, timeout: float = KEY_CHECK_TIMEOUT
) -> KeyCheck:
    """`GET {base_url}/v1/models`, the cheapest authenticated call of the Messages API (no tokens spent)."""
    headers = {"anthropic-version": "2023-06-01"}
    if api_key:
        headers["x-api-key"] = api_key
    elif auth_token:
        headers["Authorization"] = f"Bearer {auth_token}"
    try:
        r = httpx.get(f"{base_url.rstrip('/')}/v1/models", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return KeyCheck("unchecked", f"could not check ({type(exc).__name__})")
    return _http_verdict(r, "accepted by the model API")
