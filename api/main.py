"""The FastAPI app: a thin layer that validates, persists and talks to workflows."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.deps import require_token
from api.routes import agents, tasks
from factory.config import FactoryConfig
from factory.store.tables import make_engine
from factory.store.writes import Board
from temporal.client import connect

log = logging.getLogger("factory.api")


def create_app(
    cfg: FactoryConfig,
    client: Client | None = None,
    engine: Engine | None = None,
    memory: Any = None,
    connect_temporal: bool = True,
    board: Board | None = None,
) -> FastAPI:
    """Build the app. Pass `client`/`engine` to share them (tests, `factory up`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.temporal is None and connect_temporal:
            try:
                app.state.temporal = await connect(cfg)
            except Exception as exc:  # the API still serves reads; /health says why
                log.warning("Temporal is not reachable: %s", exc)
        own_memory = False
        if app.state.memory is None and cfg.memory.enabled and connect_temporal:
            from factory.memory.store import MemoryStore

            app.state.memory = await MemoryStore.open(cfg)
            own_memory = True
        if cfg.factory_auth_token is None:
            log.warning("FACTORY_AUTH_TOKEN is not set: /api is open to anyone who can reach this port")
        yield
        if own_memory:
            await app.state.memory.close()

    from factory.environments.docker import install_pr_hook

    install_pr_hook()  # a closed PR's preview is removed as soon as the webhook says so
    app = FastAPI(title="Factory", version="0.1.0", lifespan=lifespan)
    app.state.cfg = cfg
    app.state.engine = engine or make_engine(cfg.db_url)
    app.state.temporal = client
    app.state.board = board or _standalone_board(cfg, app.state.engine)
    app.state.memory = memory

    auth = [Depends(require_token)]
    for r in (tasks.router, agents.router):
        app.include_router(r, dependencies=auth)
    for mod in _optional_routers():
        app.include_router(mod.router, dependencies=auth if mod.router.prefix.startswith("/api") else [])

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e["loc"] if x != "body")
            problems.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}")
        return JSONResponse({"detail": "; ".join(problems), "errors": jsonable(exc.errors())}, status_code=422)

    @app.get("/health", tags=["health"])
    async def health(request: Request) -> JSONResponse:
        """Database, Temporal and memory status (open without auth)."""
        checks: dict[str, Any] = {}
        try:
            with request.app.state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        client = request.app.state.temporal
        if client is None:
            checks["temporal"] = "not connected"
        else:
            try:
                await client.service_client.check_health()
                checks["temporal"] = "ok"
            except Exception as exc:
                checks["temporal"] = f"error: {type(exc).__name__}"
        mem = request.app.state.memory
        if mem is not None:
            try:
                checks["memory"] = (await mem.health()).get("status", "unknown")
            except Exception:
                checks["memory"] = "degraded"
        else:
            checks["memory"] = "disabled"
        ok = checks["database"] == "ok" and checks["temporal"] == "ok"
        degraded = checks["memory"] == "degraded"
        body = {"status": "ok" if ok and not degraded else ("degraded" if ok else "error"), **checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    return app


def _standalone_board(cfg: FactoryConfig, engine: Engine) -> Board:
    """The board of an API without a worker in its process: it forwards to Telegram itself."""
    board = Board(engine, cfg.message_board.enabled, cfg.secret_values())
    if cfg.telegram_token and cfg.message_board.telegram_forward:
        import httpx

        from factory.integrations.telegram.client import TelegramNotifier

        board.listeners.append(TelegramNotifier(cfg, engine, httpx.AsyncClient(timeout=30)).forward_board_message)
    return board


def jsonable(errors: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(errors, custom_encoder={Exception: str})


def _optional_routers() -> list[Any]:
    """Feature routers, included when their module is present."""
    import importlib

    mods = []
    for name in ("workflows", "handoffs", "messages", "memory", "environments", "webhooks", "pages"):
        try:
            mods.append(importlib.import_module(f"api.routes.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"api.routes.{name}":
                raise
    return mods
