"""The FastAPI app: a thin layer that validates, persists and hands work to the launcher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.deps import known_query, require_token
from api.errors import responses, status_handler, validation_error
from api.middleware import AuthGate, BodyLimit
from api.routes import (
    agents,
    analytics,
    costs,
    environments,
    events,
    evidence,
    followups,
    handoffs,
    messages,
    pages,
    schedules,
    settings,
    tasks,
    webhooks,
    workflows,
)
from api.routes import audit as audit_routes
from api.routes import auth as auth_routes
from api.routes import memory as memory_routes
from api.routes import users as user_routes
from api.schemas import HealthPublic
from factory.auth.status import in_force
from factory.config import FactoryConfig
from factory.integrations.telegram.notifier import TelegramNotifier
from factory.launcher import Conflict, Launcher, LaunchError, NotFound
from factory.memory.store import MemoryStore
from factory.sandbox import state as sandbox_state
from factory.store.board import Board
from factory.store.changes import Changes
from factory.store.tables import make_engine
from temporal.client import connect
from temporal.launcher import TemporalLauncher
from temporal.memory import RemoteMemory

log = logging.getLogger("factory.api")

_STATUS = {LaunchError: 422, NotFound: 404, Conflict: 409}


def create_app(
    cfg: FactoryConfig,
    client: Client | None = None,
    engine: Engine | None = None,
    memory: MemoryStore | None = None,
    connect_temporal: bool = True,
    board: Board | None = None,
    launcher: Launcher | None = None,
) -> FastAPI:
    """Build the app. Pass `client`/`engine`/`launcher` to share them (tests, `factory up`).

    Without a launcher, one is made from `client`, or in the lifespan from a new connection
    (the API still serves reads when Temporal is down; `/health` says why).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.launcher is None and connect_temporal:
            try:
                app.state.launcher = TemporalLauncher(cfg, await connect(cfg), app.state.engine)
            except Exception as exc:
                log.warning("Temporal is not reachable: %s", exc)
        own_memory = app.state.memory is None and cfg.memory.enabled and connect_temporal
        if own_memory and cfg.surrealdb_url:
            app.state.memory = await MemoryStore.open(cfg)
        elif own_memory:  # the embedded store is the memory owner's: ask it over Temporal
            launcher = app.state.launcher
            app.state.memory = RemoteMemory(cfg, launcher.client if isinstance(launcher, TemporalLauncher) else None)
        if not in_force(cfg):
            log.warning("no auth configured (FACTORY_AUTH_TOKEN, auth.*): /api is open to anyone who can reach this port")
        yield
        if own_memory:
            await app.state.memory.close()
        await app.state.http.aclose()

    app = FastAPI(title="Factory", version="0.1.0", lifespan=lifespan, dependencies=[Depends(known_query)])
    app.state.cfg = cfg
    app.state.engine = engine or make_engine(cfg.db_url)
    app.state.changes = Changes(app.state.engine)  # wakes the live streams on new rows (factory/store/changes.py)
    app.state.launcher = launcher or (TemporalLauncher(cfg, client, app.state.engine) if client else None)
    app.state.http = httpx.AsyncClient(timeout=30)  # webhooks' calls to Plane, GitHub, Telegram
    app.state.board = board or _standalone_board(cfg, app.state.engine, app.state.http)
    app.state.memory = memory

    # The token is checked by TokenGate before any body is read; the dependency declares the
    # bearer scheme in /openapi.json (only when a token is set: without one /api is open).
    auth = [Security(require_token)] if in_force(cfg) else []
    denied = responses(401, 403) if in_force(cfg) else {}
    for r in (
        tasks, agents, workflows, handoffs, messages, memory_routes, environments, analytics, settings, costs, schedules,
        events, followups, evidence,
    ):  # fmt: skip
        app.include_router(r.router, dependencies=auth, responses=denied)
    # people, tokens and the audit log; roles for every /api route are applied by AuthGate (factory/auth/roles.py)
    for people_router in (user_routes.router, audit_routes.router, auth_routes.api_router):
        app.include_router(people_router, dependencies=auth, responses=denied)
    app.include_router(auth_routes.router)  # sign-in: open, it is how one gets a session
    # webhooks prove themselves (signatures); pages hold no data
    app.include_router(webhooks.router, responses=responses(400, 403, 404, 413, 422, 503))
    app.include_router(pages.router)
    # added last = outermost: the token is checked first, then the size, then a route reads the body
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    app.add_middleware(AuthGate, cfg=cfg)

    for exc_type, code in _STATUS.items():
        app.add_exception_handler(exc_type, status_handler(code))
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.get("/health", tags=["health"], response_model=HealthPublic, responses={503: {"model": HealthPublic}})
    async def health(request: Request) -> JSONResponse:
        """Database, Temporal and memory status (open without auth)."""
        return await _health(request.app)

    return app


def _ping_database(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


async def _health(app: FastAPI) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        await asyncio.to_thread(_ping_database, app.state.engine)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    launcher: Launcher | None = app.state.launcher
    if launcher is None:
        checks["temporal"] = "not connected"
    else:
        try:
            await launcher.check_health()
            checks["temporal"] = "ok"
        except Exception as exc:
            checks["temporal"] = f"error: {type(exc).__name__}"
    mem = app.state.memory
    if mem is not None:
        try:
            checks["memory"] = (await mem.health()).get("status", "unknown")
        except Exception:
            checks["memory"] = "degraded"
    else:
        checks["memory"] = "disabled"
    checks["sandbox"] = sandbox_state(app.state.cfg)  # anything but "ok" is said loudly
    ok = checks["database"] == "ok" and checks["temporal"] == "ok"
    degraded = checks["memory"] == "degraded" or checks["sandbox"] != "ok"
    body = {"status": "ok" if ok and not degraded else ("degraded" if ok else "error"), **checks}
    return JSONResponse(body, status_code=200 if ok else 503)


def _standalone_board(cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient) -> Board:
    """The board of an API without a worker in its process: it forwards to Telegram itself."""
    board = Board(engine, cfg.message_board.enabled, cfg.secret_values())
    if cfg.telegram_token and cfg.message_board.telegram_forward:
        board.listeners.append(TelegramNotifier(cfg, engine, http).forward_board_message)
    return board
