"""Budget and stop steps of a task: wait out a daily budget, save the work in progress when an agent stops.

A task that a daily budget holds stays `queued` (the reason on its note) and checks again every
`budgets.hold_check_seconds` until the day rolls over. An agent stopped by a budget or a timeout
has its work committed and pushed before anything else happens, so nothing it did is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from factory.contracts import FinalizeInput, HoldCheck, TaskInput, WorkspaceInfo
from factory.contracts import activities as acts
from workflows.common import GIT, QUICK, error_text, noticing


async def wait_for_budget(inp: TaskInput, stage_to: Callable[[str, str], None]) -> None:
    """Return once no daily budget holds the task (at once when none is reached)."""
    while True:
        state = await workflow.execute_local_activity(
            acts.check_budget_hold,
            HoldCheck(task_id=inp.task_id, repo=inp.repo.name, agent_type=inp.agent.agent_type),
            summary="daily budget",
            **QUICK,
        )
        if not state.held:
            return
        stage_to("queued", state.reason)
        await workflow.sleep(timedelta(seconds=inp.budget_hold_s))


async def push_wip(inp: TaskInput, ws: WorkspaceInfo, why: str) -> str:
    """Commit what the agent left and push the branch; a sentence saying what was pushed (never raises)."""
    try:
        changes = await workflow.execute_activity(
            acts.finalize_changes,
            FinalizeInput(
                task_id=inp.task_id, workspace=ws, repo=inp.repo,
                message=f"WIP: {inp.title} (task #{inp.task_id}, {why})",
            ),
            task_queue=ws.host_queue,
            summary="push work in progress",
            **noticing(GIT, inp.heartbeat_timeout_s),
        )  # fmt: skip
    except ActivityError as exc:
        return f"the work in progress could not be pushed: {error_text(exc)}"
    if changes.commits_ahead == 0:
        return "no work to push"
    files = len(changes.changed_files)
    return (
        f"work pushed to {ws.branch} ({changes.commits_ahead} commit{'s' if changes.commits_ahead != 1 else ''}, "
        f"{files} file{'s' if files != 1 else ''} changed, head {changes.head_sha[:10]})"
    )


def timed_out(exc: BaseException) -> bool:
    """Whether an activity error is the agent's watchdog timeout (`AgentTimeout`)."""
    cause = exc.cause if isinstance(exc, ActivityError) else None
    return isinstance(cause, ApplicationError) and cause.type == "AgentTimeout"
