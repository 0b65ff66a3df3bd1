"""Sign-in and sign-out: OpenID Connect, GitHub OAuth and local passwords; each ends in a session cookie.

The /auth routes are open (they are how one gets a session) and hidden from /openapi.json (they
answer with redirects to providers). What they trust is said in factory/auth/oidc.py and
factory/auth/github.py: a provider's verified answer for a sign-in this browser started (the
`state` must match both the one kept here and the short-lived cookie set at the start).
The session cookie is HttpOnly, SameSite=Lax, Secure on https, and holds only a random id whose
sha256 is the database's key.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from api.deps import CfgDep, EngineDep, PrincipalDep
from api.errors import JSONRoute, responses
from api.middleware import SESSION_COOKIE, cross_site, own_origin
from api.people_schemas import AuthMethods, LocalSignIn, MePublic
from factory.auth import github as gh
from factory.auth import oidc, people
from factory.auth.secrets import new_secret, same
from factory.config import FactoryConfig
from factory.store import audit

log = logging.getLogger("factory.api.auth")

router = APIRouter(prefix="/auth", tags=["auth"], include_in_schema=False)
api_router = APIRouter(prefix="/api/auth", tags=["auth"], route_class=JSONRoute)

STATE_COOKIE = "factory_signin"
PENDING_SECONDS = 600
SIGNIN_PAGE = "/static/signin.html"


@dataclass
class _Started:
    kind: str
    pending: oidc.Pending | None
    at: float


def _pending(request: Request) -> dict[str, _Started]:
    if not hasattr(request.app.state, "signins"):
        request.app.state.signins = {}
    now = time.monotonic()
    table = request.app.state.signins
    for key in [k for k, v in table.items() if now - v.at > PENDING_SECONDS]:
        del table[key]
    return table


def _secure(cfg: FactoryConfig, request: Request) -> bool:
    return own_origin(cfg, request.scope).startswith("https://")


def _source(request: Request) -> str:
    return request.client.host if request.client else ""


def _signed_in(request: Request, cfg: FactoryConfig, user_id: int, response: Response) -> None:
    cookie, _ = people.create_session(request.app.state.engine, user_id, cfg.auth.session_hours)
    response.set_cookie(
        SESSION_COOKIE, cookie, max_age=int(cfg.auth.session_hours * 3600), httponly=True, samesite="lax",
        secure=_secure(cfg, request), path="/",
    )  # fmt: skip
    response.delete_cookie(STATE_COOKIE, path="/auth")


async def _failed(request: Request, who: str, why: str) -> RedirectResponse:
    engine, source = request.app.state.engine, _source(request)
    await run_in_threadpool(audit.record, engine, who, "auth.signin_failed", outcome="denied", source=source)
    log.info("sign-in failed for %s: %s", who, why)
    return RedirectResponse(f"{SIGNIN_PAGE}?error={quote(why[:200])}", status.HTTP_303_SEE_OTHER)


def _begin(request: Request, cfg: FactoryConfig, state: str, kind: str, pending: oidc.Pending | None, url: str):
    _pending(request)[state] = _Started(kind, pending, time.monotonic())
    response = RedirectResponse(url, status.HTTP_302_FOUND)
    response.set_cookie(
        STATE_COOKIE, state, max_age=PENDING_SECONDS, httponly=True, samesite="lax", secure=_secure(cfg, request),
        path="/auth",
    )  # fmt: skip
    return response


def _claim(request: Request, kind: str, state: str) -> _Started | None:
    """The sign-in this browser started with this state (once), or None."""
    cookie = request.cookies.get(STATE_COOKIE, "")
    started = _pending(request).pop(state, None) if state else None
    if started is None or started.kind != kind or not cookie or not same(cookie, state):
        return None
    return started


@router.get("/methods", response_model=AuthMethods)
def methods(cfg: CfgDep) -> AuthMethods:
    """Which ways to sign in this Factory offers (for the sign-in page)."""
    a = cfg.auth
    return AuthMethods(
        oidc=a.oidc is not None, github=a.github is not None, local=a.local, token=bool(cfg.factory_auth_token)
    )


@router.get("/oidc/start")
async def oidc_start(request: Request, cfg: CfgDep) -> RedirectResponse:
    if cfg.auth.oidc is None:
        raise HTTPException(404, "OpenID Connect sign-in is not configured (auth.oidc)")
    o = cfg.auth.oidc
    redirect = own_origin(cfg, request.scope) + "/auth/oidc/callback"
    pending = await oidc.start(request.app.state.http, o.issuer, o.client_id, redirect, o.scopes)
    return _begin(request, cfg, pending.state, "oidc", pending, pending.url)


@router.get("/oidc/callback")
async def oidc_callback(request: Request, cfg: CfgDep, code: str = "", state: str = "") -> RedirectResponse:
    if cfg.auth.oidc is None:
        raise HTTPException(404, "OpenID Connect sign-in is not configured (auth.oidc)")
    o = cfg.auth.oidc
    started = _claim(request, "oidc", state)
    if started is None or started.pending is None or not code:
        return await _failed(request, "oidc:unknown", "this sign-in was not started here or has expired")
    secret = cfg.oidc_client_secret.get_secret_value() if cfg.oidc_client_secret else ""
    redirect = own_origin(cfg, request.scope) + "/auth/oidc/callback"
    try:
        claims = await oidc.finish(
            request.app.state.http, o.issuer, o.client_id, secret, redirect, code, started.pending
        )
    except oidc.SignInError as exc:
        return await _failed(request, "oidc:unknown", str(exc))
    login = claims.get(o.login_claim) or claims.get("sub")
    if not isinstance(login, str) or not login:
        return await _failed(request, "oidc:unknown", f"the id_token has no {o.login_claim}")
    return await _finish(request, cfg, "oidc", login)


async def _finish(request: Request, cfg: FactoryConfig, service: str, login: str) -> RedirectResponse:
    engine = request.app.state.engine
    try:
        user = await run_in_threadpool(people.signed_in, engine, cfg.auth, service, login)
    except (people.Taken, people.Missing) as exc:
        return await _failed(request, f"{service}:{login}", f"{exc}; an admin can link this sign-in to a user")
    response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    await run_in_threadpool(_signed_in, request, cfg, user.id, response)
    await run_in_threadpool(audit.record, engine, user.login, "auth.signin", f"user:{user.id}", source=service)
    return response


@router.get("/github/start")
def github_start(request: Request, cfg: CfgDep) -> RedirectResponse:
    if cfg.auth.github is None:
        raise HTTPException(404, "GitHub sign-in is not configured (auth.github)")
    g = cfg.auth.github
    state = new_secret()
    redirect = own_origin(cfg, request.scope) + "/auth/github/callback"
    url = gh.authorize_url(g.web_url or cfg.github.web_url, g.client_id, redirect, state)
    return _begin(request, cfg, state, "github", None, url)


@router.get("/github/callback")
async def github_callback(request: Request, cfg: CfgDep, code: str = "", state: str = "") -> RedirectResponse:
    if cfg.auth.github is None:
        raise HTTPException(404, "GitHub sign-in is not configured (auth.github)")
    g = cfg.auth.github
    if _claim(request, "github", state) is None or not code:
        return await _failed(request, "github:unknown", "this sign-in was not started here or has expired")
    secret = cfg.github_oauth_client_secret.get_secret_value() if cfg.github_oauth_client_secret else ""
    redirect = own_origin(cfg, request.scope) + "/auth/github/callback"
    try:
        login = await gh.login_for(
            request.app.state.http, g.web_url or cfg.github.web_url, g.api_url or cfg.github.api_url, g.client_id,
            secret, code, redirect,
        )  # fmt: skip
    except (oidc.SignInError, ValueError) as exc:
        return await _failed(request, "github:unknown", str(exc))
    return await _finish(request, cfg, "github", login)


@router.post("/local", response_model=MePublic)
async def local_signin(body: LocalSignIn, request: Request, response: Response, cfg: CfgDep, engine: EngineDep):
    """Sign in with a password an admin set (`auth.local: true`); refused from another site (login CSRF)."""
    if not cfg.auth.local:
        raise HTTPException(404, "local sign-in is not configured (auth.local)")
    why = cross_site(cfg, request.scope)
    if why:
        raise HTTPException(403, why)
    user = await run_in_threadpool(people.password_signin, engine, body.login, body.password)
    if user is None:
        await run_in_threadpool(
            audit.record, engine, f"local:{body.login[:100]}", "auth.signin_failed", outcome="denied",
            source=_source(request),
        )  # fmt: skip
        raise HTTPException(401, "wrong login or password")
    await run_in_threadpool(_signed_in, request, cfg, user.id, response)
    await run_in_threadpool(audit.record, engine, user.login, "auth.signin", f"user:{user.id}", source=_source(request))
    return MePublic(actor=user.login, role=user.role, user_id=user.id, via="cookie", csrf=None)


@api_router.post("/signout", response_model=MePublic, responses=responses(401, 403))
async def signout(request: Request, response: Response, principal: PrincipalDep, engine: EngineDep) -> MePublic:
    """End this browser's session (its cookie stops working at once, here and on every host)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await run_in_threadpool(people.end_session, engine, cookie)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return MePublic(actor=principal.actor, role=principal.role, user_id=principal.user_id, via=principal.via, csrf=None)
