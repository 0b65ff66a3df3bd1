"""Internal events that later features hook into: a plain registry of callbacks.

Usage::

    from factory import events

    async def tear_down_preview(e: events.PrClosed) -> None: ...

    events.on_pr_closed.append(tear_down_preview)

Hooks run in the background once the PR's state is recorded (the webhook does not wait for
them); a failing hook is logged and never stops the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("factory.events")


@dataclass
class PrClosed:
    """A Factory pull request was merged or closed (from the GitHub webhook or the PR poll)."""

    repo: str  # owner/name
    number: int
    branch: str
    merged: bool
    url: str | None = None
    task_ids: list[int] = field(default_factory=list)
    workflow_run_ids: list[int] = field(default_factory=list)


PrClosedHook = Callable[[PrClosed], Awaitable[None] | None]

on_pr_closed: list[PrClosedHook] = []
"""Callbacks run (in order) after a Factory PR closes; sync or async."""


_running: set[asyncio.Task[None]] = set()


def fire_pr_closed(event: PrClosed) -> asyncio.Task[None]:
    """Run the hooks in the background (a webhook answers at once; a slow teardown does not hold it)."""
    task = asyncio.get_running_loop().create_task(emit_pr_closed(event))
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


async def emit_pr_closed(event: PrClosed) -> None:
    """Run every `on_pr_closed` hook; exceptions are logged, not raised."""
    for hook in list(on_pr_closed):
        try:
            result = hook(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("on_pr_closed hook %r failed for PR #%s", hook, event.number)
