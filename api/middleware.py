"""Gates every request passes before a route reads its body: who is calling and may they, then the size cap.

They are plain ASGI middleware rather than route dependencies because FastAPI reads and parses
a JSON body before it runs any dependency: a stranger's bad JSON would get a 422 (and a huge
body would be read whole) before the token was looked at.

`AuthGate` is the one place where a request gets its principal and its required role
(`factory.auth.roles.rule_for`, by method and path, so a new route cannot forget it), where a
cookie-authenticated write must prove it is same-site (an Origin or Referer of this site, and the
session's CSRF token in `X-CSRF-Token`; bearer requests are not CSRF-able), and where every write
is appended to the audit log with its outcome once the route has answered.
"""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from anyio import to_thread
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.reads import run_read
from factory.auth.people import Principal, session_principal, token_principal
from factory.auth.roles import WRITES, rank, rule_for, target_of
from factory.auth.secrets import same
from factory.auth.status import in_force
from factory.config import FactoryConfig
from factory.domain.signing import same_secret
from factory.store import audit

TOKEN_HELP = "missing or wrong bearer token (set Authorization: Bearer <FACTORY_AUTH_TOKEN>)"
SIGN_IN_HELP = "sign in (a session cookie) or send Authorization: Bearer <your API token>"
PROTECTED_PREFIX = "/api"
SESSION_COOKIE = "factory_session"
CSRF_HEADER = b"x-csrf-token"
OPEN = Principal("anonymous", "admin", via="open")  # no auth configured: as open as before people existed


def token_problem(cfg: FactoryConfig, authorization: str | None) -> str | None:
    """Why an `Authorization` header is not the bootstrap token (None when it is, or when no token is set)."""
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


def own_origin(cfg: FactoryConfig, scope: Scope) -> str:
    """This site's origin: `auth.public_url`, else the scheme and Host of the request."""
    if cfg.auth.public_url:
        u = urlsplit(cfg.auth.public_url)
        return f"{u.scheme}://{u.netloc}".lower()
    return f"{scope.get('scheme', 'http')}://{_header(scope, b'host') or ''}".lower()


def cross_site(cfg: FactoryConfig, scope: Scope) -> str | None:
    """Why a cookie-authenticated write is not same-site (None when its Origin, else its Referer, is ours).

    A browser sends `Origin: null` for same-site writes under `Referrer-Policy: no-referrer`, so a
    null or absent Origin is let through to the CSRF-token check, which no other site can pass.
    """
    origin = _header(scope, b"origin")
    if origin is None or origin == "null":
        referer = _header(scope, b"referer")
        if not referer:
            return None
        u = urlsplit(referer)
        origin = f"{u.scheme}://{u.netloc}"
    if origin.lower() != own_origin(cfg, scope):
        return f"cross-site request refused (Origin {origin[:100]} is not this site)"
    return None


def _session_cookie(scope: Scope) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    try:
        jar = SimpleCookie(raw)
    except Exception:  # a malformed Cookie header is no session
        return None
    morsel = jar.get(SESSION_COOKIE)
    return morsel.value if morsel else None


class AuthGate:
    """401/403 for a request to /api that does not prove a principal allowed its route; audits every write.

    Trusted: the bootstrap token (FACTORY_AUTH_TOKEN), a personal token or a session cookie that
    `factory.auth.people` finds by its hash; nothing in the request body or query names anyone.
    """

    def __init__(self, app: ASGIApp, cfg: FactoryConfig):
        self.app = app
        self.cfg = cfg

    async def _principal(self, scope: Scope) -> tuple[Principal | None, str]:
        authorization = _header(scope, b"authorization")
        engine = scope["app"].state.engine
        if authorization is not None:
            if self.cfg.factory_auth_token is not None and token_problem(self.cfg, authorization) is None:
                return Principal("token:bootstrap", "admin", via="bootstrap"), ""
            scheme, _, given = authorization.partition(" ")
            found = None
            if scheme.lower() == "bearer" and given.strip():
                found = await run_read(engine, token_principal, engine, given.strip())
            return found, "" if found else TOKEN_HELP
        cookie = _session_cookie(scope)
        if cookie:
            found = await run_read(engine, session_principal, engine, cookie)
            return found, "" if found else "the session has ended: sign in again"
        return None, SIGN_IN_HELP if self.cfg.auth.oidc or self.cfg.auth.github or self.cfg.auth.local else TOKEN_HELP

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        rule = rule_for(method, path)
        source = (scope.get("client") or ("", 0))[0]
        target, task_id = target_of(path)

        async def refuse(code: int, detail: str, actor: str) -> None:
            if method in WRITES:
                await to_thread.run_sync(
                    lambda: audit.record(
                        scope["app"].state.engine, actor, rule.action, target, outcome="denied", source=source,
                        task_id=task_id,
                    )
                )  # fmt: skip
            headers = {"WWW-Authenticate": "Bearer"} if code == 401 else {}
            await JSONResponse({"detail": detail}, code, headers=headers)(scope, receive, send)

        if not in_force(self.cfg):
            principal: Principal | None = OPEN
        else:
            principal, problem = await self._principal(scope)
            if principal is None:
                await refuse(401, problem, "anonymous")
                return
            if principal.via == "cookie" and method in WRITES:
                why = cross_site(self.cfg, scope)
                given = _header(scope, CSRF_HEADER) or ""
                if why is None and not (principal.csrf and given and same(given, principal.csrf)):
                    why = "missing or wrong X-CSRF-Token (GET /api/me gives this session's token)"
                if why:
                    await refuse(403, why, principal.actor)
                    return
        if rank(principal.role) < rank(rule.role):
            await refuse(403, f"{principal.actor} is {principal.role}; this needs {rule.role}", principal.actor)
            return
        scope.setdefault("state", {})["principal"] = principal
        if method not in WRITES:
            await self.app(scope, receive, send)
            return
        await self._audited(scope, receive, send, principal, rule.action, target, task_id, source)

    async def _audited(
        self, scope: Scope, receive: Receive, send: Send, who: Principal, action: str, target: str,
        task_id: int | None, source: str,
    ) -> None:  # fmt: skip
        """Run the write, then append its audit entry: ok below 400, denied for 401/403, error otherwise."""
        status, head = 500, bytearray()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status in (200, 201) and len(head) < 65536:
                head.extend(message.get("body", b""))  # only the created row's id is read from it
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if action.endswith(".create") and status in (200, 201):
                try:
                    made = json.loads(bytes(head)).get("id")
                except (ValueError, AttributeError):
                    made = None
                if isinstance(made, int):
                    target = f"{action.split('.')[0]}:{made}"
                    task_id = made if action == "task.create" else task_id
            outcome = "ok" if status < 400 else ("denied" if status in (401, 403) else "error")
            engine = scope["app"].state.engine
            actor = who.actor
            await to_thread.run_sync(
                lambda: audit.record(engine, actor, action, target, outcome=outcome, source=source, task_id=task_id)
            )


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
