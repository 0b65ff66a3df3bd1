"""An agent run that ends its task's session commits and pushes in the same activity.

The workflow used to run `finalize_changes` as its own step after every agent run that ended the session:
one more activity, one more workflow task and one more queue hop per task. Now the run does it on the
host that holds the worktree (the agent queue's host) when `AgentRequest.finalize` asks for it and the
reply ends the session (`factory.domain.review.ends_session`, the rule the workflow applies too).

Before the push the run's result is written to `<run dir>/task-<id>.pushing.json` (Factory's own
directory: agents never see it). An attempt that dies while pushing is retried on the same host (the
agent queue is the host's) straight to the push: the agent is not run again, nothing is spent twice.
A cancel that arrives while it pushes lets the push end (a git command killed halfway leaves locks)
and then wins. A push that fails (the git host down, a tampered clone) is left to the workflow's
finalize step, which waits an outage out for hours or fails the task with the reason, as it always
did: the run then returns without `changes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import TypeAdapter, ValidationError
from temporalio import activity

from factory.contracts import AgentRequest, AgentResult, ChangesResult, FinalizeInput
from factory.domain.review import ends_session

Finalize = Callable[[FinalizeInput], Awaitable[ChangesResult]]

_RESULT = TypeAdapter(AgentResult)


def _record(run_dir: Path, task_id: int) -> Path:
    return run_dir / f"task-{int(task_id)}.pushing.json"


def pushed_before(req: AgentRequest, run_dir: Path, attempt: int) -> AgentResult | None:
    """The result of an earlier attempt of this run that had ended the session and died pushing."""
    record = _record(run_dir, req.task_id)
    if attempt == 1 or req.finalize is None:  # a new run: what an earlier run left is not its result
        record.unlink(missing_ok=True)
        return None
    try:
        saved = json.loads(record.read_bytes())
        if not isinstance(saved, dict) or saved.get("run") != _this_run():
            return None  # another run's (one cancelled while it pushed): not this one's result
        return _RESULT.validate_python(saved.get("result"))
    except (OSError, ValueError, ValidationError):
        return None


def _this_run() -> str:
    """This activity across its attempts: the workflow run and the activity's id in it."""
    info = activity.info()
    return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"


def wants_push(req: AgentRequest, res: AgentResult) -> bool:
    return req.finalize is not None and ends_session(
        res.is_error, res.question is not None, res.budget_stop is not None, req.require_verdict, res.result_text
    )


async def push(req: AgentRequest, res: AgentResult, finalize: Finalize, run_dir: Path, interval: float) -> AgentResult:
    """Commit and push the run's work, heartbeating; `res` with its `changes` (None: the workflow's step pushes)."""
    assert req.finalize is not None
    record = _record(run_dir, req.task_id)
    staging = record.with_suffix(".new")
    staging.write_text(json.dumps({"run": _this_run(), "result": _RESULT.dump_python(res, mode="json")}))
    os.replace(staging, record)  # whole or absent

    async def beats() -> None:
        while True:  # the first after one interval (activities/_heartbeat.py)
            await asyncio.sleep(interval)
            activity.heartbeat({"session_id": res.session_id, "started": True})

    beating = asyncio.create_task(beats())
    work = asyncio.ensure_future(finalize(req.finalize))
    try:
        res.changes = await asyncio.shield(work)
    except asyncio.CancelledError:
        try:
            if not activity.is_worker_shutdown():
                await asyncio.wait([work])  # the push ends; then the cancel is what this attempt reports
        finally:
            work.cancel()  # a no-op when it has ended (a worker shutting down: the next attempt pushes)
            if work.done() and not work.cancelled():
                work.exception()
        raise
    except Exception as exc:  # the workflow's own finalize step does it again, under its outage policy
        activity.logger.warning("task %s: the run could not push (%s); the finalize step will", req.task_id, exc)
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        if work.done():
            record.unlink(missing_ok=True)
    return res
