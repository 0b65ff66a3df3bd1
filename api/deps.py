"""Dependencies shared by the routes, as `Annotated` aliases."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.bodies import MAX_ID
from api.middleware import TOKEN_HELP
from api.reads import run_read
from factory.auth.people import Principal
from factory.config import FactoryConfig
from factory.domain.text import clip
from factory.launcher import Conflict, Launcher, LaunchError, NotFound
from factory.memory.store import MemoryStore
from factory.store.board import Board

T = TypeVar("T")


async def get_cfg(request: Request) -> FactoryConfig:
    """The app's configuration."""
    return request.app.state.cfg


async def get_engine(request: Request) -> Engine:
    """The database engine."""
    return request.app.state.engine


async def read_now(session: Session, read: Callable[..., T], *args: Any) -> T:
    """Run `read(session, *args)` for an `async def` route: on the event loop with SQLite (`api.reads`)."""
    return await run_read(session.get_bind(), read, session, *args)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A database session for one request (opening one does no I/O; routes that query it are plain `def`, or read
    through `read_now`)."""
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


def _query_params(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_params(sub)
    return names


async def known_query(request: Request) -> None:
    """422 for a query parameter the route does not take (a typo would be ignored), or one given twice."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known: set[str] | None = getattr(route, "_known_query", None)
    if known is None:  # walked once per route (it took most of a small request's time), then kept on it
        known = _query_params(route.dependant)
        route._known_query = known  # type: ignore[attr-defined]
    problems = []
    for name, times in Counter(k for k, _ in request.query_params.multi_items()).items():
        shown = clip(name, 60)
        if name not in known:
            problems.append(
                f"query.{shown}: unknown parameter (this route takes: {', '.join(sorted(known)) or 'none'})"
            )
        elif times > 1:
            problems.append(f"query.{shown}: given {times} times; give it once")
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "; ".join(problems))


_bearer = HTTPBearer(
    auto_error=False, description="`Authorization: Bearer <your API token>` (or the bootstrap FACTORY_AUTH_TOKEN)"
)


async def require_token(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Declares the bearer scheme in OpenAPI; `AuthGate` has already found the principal before the body was read.

    A route reached without one (the gate was bypassed, e.g. a router mounted outside /api) is a 401.
    """
    if getattr(request.state, "principal", None) is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, TOKEN_HELP, headers={"WWW-Authenticate": "Bearer"})


async def get_principal(request: Request) -> Principal:
    """Who this request acts as (set by `AuthGate`; with no auth configured, the open anonymous admin)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, TOKEN_HELP, headers={"WWW-Authenticate": "Bearer"})
    return principal


@asynccontextmanager
async def temporal_call(launcher: Launcher, kept: str = "") -> AsyncIterator[None]:
    """Turn a launcher call that failed because Temporal is down into a 503 naming Temporal.

    The launcher's own answers (bad input, not found, conflict) pass through; any other failure is
    taken for an outage when Temporal then fails its health check too. `kept` says what was saved.
    """
    try:
        yield
    except (LaunchError, NotFound, Conflict, HTTPException):
        raise
    except Exception as exc:
        try:
            await launcher.check_health()
        except Exception:
            detail = f"Temporal is unavailable ({type(exc).__name__}: {clip(str(exc), 200)})"
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{detail}{kept}") from exc
        raise


CfgDep = Annotated[FactoryConfig, Depends(get_cfg)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
LauncherDep = Annotated[Launcher, Depends(get_launcher)]
BoardDep = Annotated[Board, Depends(get_board)]
MemoryDep = Annotated[MemoryStore, Depends(get_memory)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]

IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a row id (1 to 2^63-1)")]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID, description="a row id (1 to 2^63-1)")]
