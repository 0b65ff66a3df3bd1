"""Failover: a task whose worktree host is gone is prepared again on another host and goes on.

The host holding a task's worktree always polls its own queue, busy or not, so a ping there (an
activity with a schedule-to-start timeout of `workers.failover_after_seconds`, i.e.
`TaskInput.failover_after_s`) tells a lost host from a busy one. While an agent run waits for a slot
or goes on, the workflow pings every `failover_after_s` (`watch_host`); the push after the run
carries that schedule-to-start timeout itself, confirmed by a ping when it runs out. No answer: the
task is prepared on whichever host takes the shared queue's prepare step, from its branch as last
pushed (Factory pushes at every step boundary), and its agent resumes its session where the
session's files travelled (shared storage), else starts it afresh, told what the branch holds.
"""

from __future__ import annotations

import asyncio
import builtins
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType

from factory.contracts import PrepareInput, TaskInput, WorkflowRunInput, WorkspaceInfo
from factory.contracts import activities as acts
from workflows.common import GIT, noticing


class HostLost(Exception):
    """The host holding the task's worktree polled nothing for `failover_after_s`."""

    def __init__(self, host: str):
        super().__init__(f"host {host} is gone")
        self.host = host
        self.session_id: str | None = None  # the agent's CLI session when the host was lost


def start_timeout(inp: TaskInput | WorkflowRunInput) -> timedelta | None:
    """The schedule-to-start timeout of the task's host-bound activities (None: failover is off)."""
    return timedelta(seconds=inp.failover_after_s) if inp.failover_after_s > 0 else None


def not_started(exc: BaseException) -> bool:
    """Whether an activity failed because no worker took it in time (schedule-to-start timeout)."""
    cause = exc.cause if isinstance(exc, ActivityError) else None
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START


async def host_alive(inp: TaskInput, ws: WorkspaceInfo) -> bool:
    """Whether the host holding `ws` still takes work: its own queue answers a ping in time."""
    try:
        await workflow.execute_activity(
            acts.ping_host,
            task_queue=ws.host_queue,
            schedule_to_start_timeout=start_timeout(inp),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=1),
            summary=f"is {ws.host} alive?",
        )
    except ActivityError as exc:  # any answer, even an error (an older worker without the ping), is life
        return not not_started(exc)
    return True


async def watch_host(run: asyncio.Future[Any], inp: TaskInput, ws: WorkspaceInfo) -> None:
    """Wait for an agent run on the host holding `ws`, pinging that host every `failover_after_s`.

    The run itself carries no schedule-to-start timeout: waiting for a busy host's free slot keeps its
    place in the queue. When a ping goes unanswered the run is cancelled (at once if it waits in the
    queue, within its heartbeat timeout if it was running there) and `HostLost` is raised.
    """
    period = start_timeout(inp)
    while period is not None and not run.done():
        try:
            await workflow.wait_condition(run.done, timeout=period)
        except builtins.TimeoutError:
            if not await host_alive(inp, ws):
                run.cancel()
                await workflow.wait([run])  # its outcome no longer matters; a cancel of the task itself does
                raise HostLost(ws.host) from None


async def relocate(inp: TaskInput, lost: WorkspaceInfo) -> WorkspaceInfo:
    """Prepare the task's worktree on another host from its branch as last pushed."""
    return await workflow.execute_activity(
        acts.prepare_workspace,
        PrepareInput(task_id=inp.task_id, title=inp.title, repo=inp.repo, branch=lost.branch, moved=True),
        summary=f"prepare the worktree again ({lost.host} is gone)",
        **noticing(GIT, inp.heartbeat_timeout_s),
    )


def moved_note(lost: WorkspaceInfo, ws: WorkspaceInfo) -> str:
    """What the agent is told when its task moved: the session did not travel, the pushed commits did."""
    carried = (
        f"The branch already holds these commits:\n{ws.carried}"
        if ws.carried
        else "Nothing had been pushed yet, so the branch starts again from the base branch."
    )
    return (
        f"\n\n## This task moved to another host\nIt was started on host {lost.host}, which was lost while the "
        f"agent worked; only what was pushed came along. {carried}\nCheck the working tree and `git log` "
        "first, then finish the task from where the branch stands."
    )
