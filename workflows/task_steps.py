"""The activity calls of a TaskWorkflow, each with its options and its queue.

Git steps run on the queue of the host that holds the worktree; cleanup and memory never fail
the task (`best_effort`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError, is_cancelled_exception

from factory.contracts import (
    ChangesResult,
    CleanupEnvInput,
    CleanupInput,
    FinalizeInput,
    PrepareInput,
    PullRequestInput,
    PullRequestResult,
    RememberTaskInput,
    TaskEvent,
    TaskInput,
    TaskResult,
    TaskUpdate,
    WorkspaceInfo,
)
from factory.contracts import activities as acts
from factory.domain.pull_request import commit_message, pr_body
from workflows import failover
from workflows.common import ENVIRONMENTS, GIT, GITHUB, GITHUB_LOCAL, HERE, QUICK, error_text, memory_step, noticing


async def prepare(inp: TaskInput, started: TaskEvent | None = None) -> WorkspaceInfo:
    """Fetch the repo and make the task's worktree (on any host; the answer names the host).

    `started`: the step also records the task's start and posts this event (`WorkspaceInfo.announced`).
    """
    return await workflow.execute_activity(
        acts.prepare_workspace,
        PrepareInput(task_id=inp.task_id, title=inp.title, repo=inp.repo, branch=inp.branch, started=started),
        summary="prepare worktree",
        **noticing(GIT, inp.heartbeat_timeout_s),
    )


async def finalize(inp: TaskInput, ws: WorkspaceInfo) -> ChangesResult:
    """Commit what the agent left and push the branch (`failover.HostLost` when its host is gone)."""
    while True:
        try:
            return await workflow.execute_activity(
                acts.finalize_changes,
                FinalizeInput(task_id=inp.task_id, workspace=ws, repo=inp.repo, message=commit_message(inp)),
                task_queue=ws.host_queue,
                schedule_to_start_timeout=failover.start_timeout(inp),
                summary="commit and push",
                **noticing(GIT, inp.heartbeat_timeout_s),
            )
        except ActivityError as exc:
            if not failover.not_started(exc):
                raise
            if not await failover.host_alive(inp, ws):
                raise failover.HostLost(ws.host) from exc


async def open_pr(inp: TaskInput, ws: WorkspaceInfo, result: TaskResult, draft: bool = False) -> PullRequestResult:
    """Open the task's PR (a draft while Factory's checks fail), or find the one already open for its branch.

    A local activity (the lookup before the create makes a repeated attempt safe): the workflow's next
    records and the cleanup go out in the same workflow task (histories from before: as they were)."""
    pr = PullRequestInput(
        task_id=inp.task_id, repo=inp.repo, branch=ws.branch, base_branch=ws.base_branch, title=inp.title,
        body=pr_body(inp.task_id, inp.description, result.result_text, result.preview_url),
        workflow_run_id=inp.workflow_run_id, draft=draft,
    )  # fmt: skip
    if workflow.patched("pr-local"):
        return await workflow.execute_local_activity(
            acts.open_pull_request, pr, summary="open pull request", **GITHUB_LOCAL
        )
    return await workflow.execute_activity(
        acts.open_pull_request, pr, summary="open pull request", **noticing(GITHUB, inp.heartbeat_timeout_s)
    )


async def record(upd: TaskUpdate) -> None:
    """Write the task's row (a local activity: no server round trip)."""
    await workflow.execute_local_activity(acts.update_task, upd, summary="record", **QUICK)


async def clean_up(inp: TaskInput, ws: WorkspaceInfo, status: str) -> None:
    """Remove the task's test environments and, when the task owns it, its worktree."""
    wip = "" if status == "done" else f"WIP: {inp.title} (task #{inp.task_id} {status})"
    # the environments and the worktree in one step (patch one-cleanup); a done task's finalize pushed its work
    one = CleanupInput(task_id=inp.task_id, workspace=ws, repo=inp.repo, wip_message=wip,
                       pushed=status == "done", environments=["test"])  # fmt: skip
    if inp.workspace is None and status == "done" and workflow.patched("clean-up-here"):
        # a done task's cleanup is quick (nothing to push, no docker when it started no environment): done in
        # this workflow task when its worker is the worktree's host, which it answers; else the host's step below
        try:
            if await workflow.execute_local_activity(acts.clean_up_here, one, summary="clean up worktree", **HERE):
                return
        except FailureError as exc:  # a local activity's failure comes unwrapped: its error, or a timeout
            if is_cancelled_exception(exc):
                raise
            workflow.logger.warning("cleanup here failed (the host's step does it): %s", error_text(exc))
    if inp.workspace is None and workflow.patched("one-cleanup"):
        # one activity on the worktree's host: the environments, then the worktree; a done task's finalize
        # pushed its work, so nothing is pushed again (one round trip and ~5 git processes fewer per task)
        await best_effort(
            "cleanup failed",
            workflow.execute_activity(
                acts.cleanup_workspace,
                one,
                task_queue=ws.host_queue,
                schedule_to_start_timeout=failover.start_timeout(inp),
                summary="clean up worktree and test environments",
                **noticing(GIT, inp.heartbeat_timeout_s),
            ),
        )  # fmt: skip
        return
    steps = [
        best_effort(
            "could not remove test environments",
            workflow.execute_activity(
                acts.cleanup_task_environments,
                CleanupEnvInput(task_id=inp.task_id, kinds=["test"]),
                task_queue=ws.host_queue,
                schedule_to_start_timeout=failover.start_timeout(inp),  # a lost host's: given up, not waited for
                summary="remove test environments",
                **noticing(ENVIRONMENTS, inp.heartbeat_timeout_s),
            ),
        )
    ]
    if inp.workspace is None:
        steps.append(
            best_effort(
                "cleanup failed",
                workflow.execute_activity(
                    acts.cleanup_workspace,
                    CleanupInput(task_id=inp.task_id, workspace=ws, repo=inp.repo, wip_message=wip),
                    task_queue=ws.host_queue,
                    schedule_to_start_timeout=failover.start_timeout(inp),
                    summary="clean up worktree",
                    **noticing(GIT, inp.heartbeat_timeout_s),
                ),
            )
        )
    await asyncio.gather(*steps)


async def remember(inp: TaskInput, result: TaskResult) -> None:
    """Leave a memory of what the task did and learned (memory never fails a task)."""
    await best_effort(
        "could not store the task's memory",
        workflow.execute_activity(
            acts.remember_task,
            RememberTaskInput(
                repo=inp.repo.name, task_id=inp.task_id, workflow_id=inp.workflow_run_id,
                agent_type=inp.agent.agent_type, title=inp.title, outcome=result.status,
                summary=result.result_text or result.error or "", learnings=result.learnings,
                files=result.changes.changed_files if result.changes else [], pr_url=result.pr_url,
            ),
            summary="remember",
            **memory_step(inp.memory_outage_s),
        ),
    )  # fmt: skip


async def best_effort(what: str, step: Awaitable[Any]) -> None:
    """Await a step that must never fail the task; log why it did not work."""
    try:
        await step
    except ActivityError as exc:
        workflow.logger.warning("%s: %s", what, error_text(exc))
