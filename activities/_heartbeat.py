"""Heartbeats for activities that do one long await (git, GitHub): a dead worker shows in seconds.

Without a heartbeat, Temporal notices a dead worker only when the step's start-to-close
timeout runs out (20 minutes for a git step). With one every few seconds and a
`heartbeat_timeout` of at most 30 s at the call site, the step is retried on another attempt
within seconds.

The first beat goes out one interval after the step starts, not at once. The server times a
heartbeat from the step's start, so a dead worker is noticed as soon as before; but a step that
ends within the interval (most: a prepare, a push) sends no heartbeat at all. Each one is a
round trip to the server and a write of the workflow's state there: the SDK sends the first
immediately and throttles the rest, so beating at once cost three of the ~16 state writes of
every task (bench/PIPELINE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ParamSpec, TypeVar

from temporalio import activity

P = ParamSpec("P")
T = TypeVar("T")

INTERVAL_S = 5.0  # well inside the callers' heartbeat timeouts (30 s); the SDK throttles the rest


@contextlib.asynccontextmanager
async def heartbeating(interval: float = INTERVAL_S) -> AsyncIterator[None]:
    """Heartbeat every `interval` seconds while the body runs (a no-op outside an activity)."""
    if not activity.in_activity() or activity.info().is_local:  # a local activity has no heartbeat to send
        yield
        return

    timeout = activity.info().heartbeat_timeout
    if timeout:  # a caller with a short heartbeat timeout (a few seconds) gets beats well inside it
        interval = min(interval, timeout.total_seconds() / 3)

    async def beat() -> None:
        while True:  # the first after one interval: a step that ends sooner sends none (the docstring says why)
            await asyncio.sleep(interval)
            activity.heartbeat()

    beats = asyncio.create_task(beat())
    try:
        yield
    finally:
        beats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beats


def heartbeats(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Make an async activity heartbeat while it runs, and finish its work when cancelled.

    Heartbeats are also how a cancel reaches an activity. A git command killed halfway leaves
    lock files (`index.lock`) that fail every later git step in the worktree, so on a cancel
    from the server the step runs to its end and then reports the cancel. A worker shutting
    down still stops it at once: the next attempt, elsewhere, redoes the (idempotent) step.
    Put it under `@activity.defn`.
    """

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        async with heartbeating():
            work = asyncio.ensure_future(fn(*args, **kwargs))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                try:
                    if activity.in_activity() and not activity.is_worker_shutdown():
                        await asyncio.wait([work])
                finally:
                    work.cancel()  # a no-op when the work has finished
                    if work.done() and not work.cancelled():
                        work.exception()  # retrieved: the cancel is what this attempt reports
                raise

    return run
