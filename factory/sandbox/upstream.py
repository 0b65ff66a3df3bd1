"""How the model gateway's per-run HTTP clients reach the model API (factory/sandbox/gateway.py)."""

from __future__ import annotations

import functools
from typing import Any

import httpx


@functools.cache
def client_options() -> dict[str, Any]:
    """Shared by every run's client: one TLS context (building one loads the CA bundle, ~25 ms of the
    worker loop's CPU per agent run), and idle connections that end before a server's keep-alive does
    (httpx's default 5 s equals uvicorn's: reusing a connection the server was closing failed a busy
    run's request with a ReadError). Read once per process, as httpx reads SSL_CERT_FILE/DIR."""
    return {"verify": httpx.create_ssl_context(), "limits": httpx.Limits(keepalive_expiry=2.0)}
