"""Short database reads from the API's event loop: on the loop itself with SQLite, in a worker thread otherwise.

A SQLite read is local and CPU-bound and holds the GIL for most of it in SQLAlchemy's Python either way, so
the two thread hops a plain `def` route (or `to_thread`) pays cost more than they let run beside it: a third of
a log poll's CPU under the load bench (bench/LOAD.md, "Twelfth session"). PostgreSQL's reads wait on the
network: those keep the thread. Only reads come here: a write may wait on SQLite's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool, QueuePool
from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


async def run_read(engine: Engine, read: Callable[..., T], *args: Any) -> T:
    """`read(*args)` on the loop when `engine` is SQLite and its pool has a connection free, else in a thread."""
    if engine.dialect.name == "sqlite" and _free_connection(engine.pool):
        return read(*args)
    return await run_in_threadpool(read, *args)


def _free_connection(pool: Pool) -> bool:
    """Whether the pool hands out a connection without waiting: the loop must never wait on it, for a plain `def`
    route gives its connection back only when the loop closes its session (a few spare for the threads' races)."""
    if not isinstance(pool, QueuePool):
        return True
    return pool.checkedin() > 2 or pool.overflow() < getattr(pool, "_max_overflow", 0) - 2
