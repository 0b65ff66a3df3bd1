"""Gates every request passes before a route reads its body: the bearer token, then the size cap.

They are plain ASGI middleware rather than route dependencies because FastAPI reads and parses
a JSON body before it runs any dependency: a stranger's bad JSON would get a 422 (and a huge
body would be read whole) before the token was looked at.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from factory.config import FactoryConfig
from factory.domain.signing import same_secret

TOKEN_HELP = "missing or wrong bearer token (set Authorization: Bearer <FACTORY_AUTH_TOKEN>)"
PROTECTED_PREFIX = "/api"


def token_problem(cfg: FactoryConfig, authorization: str | None) -> str | None:
    """Why an `Authorization` header does not open /api (None when it does, or when no token is set)."""
    if cfg.factory_auth_token is None:
        return None
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not same_secret(given.strip(), cfg.factory_auth_token.get_secret_value()):
        return TOKEN_HELP
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


class TokenGate:
    """401 for a request to /api without the bearer token, before anything of its body is read."""

    def __init__(self, app: ASGIApp, cfg: FactoryConfig):
        self.app = app
        self.cfg = cfg

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _protected(scope["path"]):
            problem = token_problem(self.cfg, _header(scope, b"authorization"))
            if problem:
                response = JSONResponse({"detail": problem}, 401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a body above `max_bytes`: by its Content-Length up front, or as soon as a chunked one passes it."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes (max_body_bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            declared = declared.strip()
            problem, code = None, 413
            if not declared.isascii() or not declared.isdigit():
                problem, code = "Content-Length is not a number of bytes", 400
            elif int(declared) > self.max_bytes:
                problem = self._too_large()
            if problem:
                await JSONResponse({"detail": problem}, code, headers={"Connection": "close"})(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # raised inside the route's body read: FastAPI passes an HTTPException on to its
                    # handler, so the client gets a 413 and the rest of the body is never read
                    raise HTTPException(413, self._too_large(), headers={"Connection": "close"})
            return message

        await self.app(scope, limited, send)
