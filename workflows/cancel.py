"""A cancel wins over a result that arrives after it.

The SDK delivers a workflow's cancel once, to the step the workflow is awaiting; with
`WAIT_CANCELLATION_COMPLETED` it passes the cancel on to the activity and keeps waiting, and
when that activity then ends with a result (it finished before its next heartbeat told it of the
cancel) the result is returned and the cancel is gone: the task went on to push, open its PR and
move its Plane issue. `cancel_wins` awaits the step in its own task instead: the cancel still
reaches the step, which ends as it must (a push is not cut in half), and then the cancel is
raised whatever the step returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import workflow

T = TypeVar("T")


async def cancel_wins(step: Awaitable[T], on_cancel: Callable[[asyncio.Future[T]], Awaitable[Any]] | None = None) -> T:
    """`step`'s result; on a cancel of the workflow, the step is cancelled, `on_cancel` runs beside it
    (a faster way to stop it than the step's next heartbeat), and CancelledError is raised once it ended."""
    run = asyncio.ensure_future(step)
    try:
        await workflow.wait([run])
    except asyncio.CancelledError:
        run.cancel()
        if on_cancel is not None:
            await on_cancel(run)
        await workflow.wait([run])
        if not run.cancelled():
            run.exception()  # retrieved: the cancel is what the workflow reports, not the step's outcome
        raise
    return run.result()
