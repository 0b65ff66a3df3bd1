"""Claims on inbound events, kept only for work that was done.

A webhook or update is claimed (by delivery id, and by what happened: a comment id, a review id, a
state change) before it is acted on, so that two deliveries arriving together do one thing. When
the work then fails (Temporal briefly down, Plane unreachable), the claim is released, so the
sender's retry is processed instead of being answered "duplicate". In the same spirit, a task row
made for an event whose workflow then could not start is removed, so the retry makes the one task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import Engine

from factory.launcher import Launcher, TaskStart
from factory.store.kv import claim_delivery, release_delivery
from factory.store.tables import Task, TaskStatus, session_scope


@asynccontextmanager
async def claimed(
    engine: Engine, source: str, key: str | None, keep_on: tuple[type[BaseException], ...] = ()
) -> AsyncIterator[bool]:
    """Claim `source:key` for the block: yields False when it was done (or is in hand) already.

    The claim is released when the block raises, unless the exception is one of `keep_on` (an
    outcome, such as a refusal the sender was told about, rather than a failure). Without a key
    nothing is claimed and the block runs (yields True).
    """
    if not key:
        yield True
        return
    won = await asyncio.to_thread(claim_delivery, engine, source, key)
    try:
        yield won
    except keep_on:
        raise
    except BaseException:
        if won:
            # shielded: a cancelled request must not leave the claim behind
            await asyncio.shield(asyncio.to_thread(release_delivery, engine, source, key))
        raise


async def start_or_forget(launcher: Launcher, engine: Engine, task: Task, start: TaskStart | None = None) -> None:
    """Start a queued task row's workflow; when that fails, delete the row (nothing ran) and re-raise."""
    try:
        await launcher.start_task(task, start)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(_forget_task, engine, task.id))
        raise


def _forget_task(engine: Engine, task_id: int) -> None:
    with session_scope(engine) as s:
        row = s.get(Task, task_id)
        if row is not None and row.status == TaskStatus.queued:
            s.delete(row)
            s.commit()
