"""Dependencies shared by the routes, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.engine import Engine
from sqlmodel import Session

from factory.config import FactoryConfig
from factory.domain.signing import same_secret
from factory.launcher import Launcher
from factory.memory.store import MemoryStore
from factory.store.board import Board


async def get_cfg(request: Request) -> FactoryConfig:
    """The app's configuration."""
    return request.app.state.cfg


async def get_engine(request: Request) -> Engine:
    """The database engine."""
    return request.app.state.engine


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A database session for one request (opening one does no I/O; routes that query it are plain `def`)."""
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


async def get_launcher(request: Request) -> Launcher:
    """The launcher made in the app's lifespan; 503 while Temporal is not connected."""
    launcher = request.app.state.launcher
    if launcher is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Temporal is not connected")
    return launcher


async def get_board(request: Request) -> Board:
    """The message board."""
    return request.app.state.board


async def get_memory(request: Request) -> MemoryStore:
    """Agent memory; 503 when it is disabled."""
    store = getattr(request.app.state, "memory", None)
    if store is None or not store.enabled:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "agent memory is disabled")
    return store


async def require_token(request: Request) -> None:
    """Bearer-token auth for /api when FACTORY_AUTH_TOKEN is set (constant-time compare)."""
    cfg: FactoryConfig = request.app.state.cfg
    if cfg.factory_auth_token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not same_secret(given.strip(), cfg.factory_auth_token.get_secret_value()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong bearer token (set Authorization: Bearer <FACTORY_AUTH_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


CfgDep = Annotated[FactoryConfig, Depends(get_cfg)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
LauncherDep = Annotated[Launcher, Depends(get_launcher)]
BoardDep = Annotated[Board, Depends(get_board)]
MemoryDep = Annotated[MemoryStore, Depends(get_memory)]
