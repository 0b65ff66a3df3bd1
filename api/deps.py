"""Dependencies shared by the routes, as `Annotated` aliases."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client

from factory.config import FactoryConfig
from factory.store.writes import Board


async def get_cfg(request: Request) -> FactoryConfig:
    return request.app.state.cfg


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_session(request: Request) -> AsyncIterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


async def get_client(request: Request) -> Client:
    client = request.app.state.temporal
    if client is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Temporal is not connected")
    return client


async def get_board(request: Request) -> Board:
    return request.app.state.board


async def require_token(request: Request) -> None:
    """Bearer-token auth for /api when FACTORY_AUTH_TOKEN is set (constant-time compare)."""
    cfg: FactoryConfig = request.app.state.cfg
    if cfg.factory_auth_token is None:
        return
    expected = cfg.factory_auth_token.get_secret_value().encode()
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong bearer token (set Authorization: Bearer <FACTORY_AUTH_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


CfgDep = Annotated[FactoryConfig, Depends(get_cfg)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
TemporalClientDep = Annotated[Client, Depends(get_client)]
BoardDep = Annotated[Board, Depends(get_board)]
