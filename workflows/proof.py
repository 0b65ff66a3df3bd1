"""Proof of work in a TaskWorkflow: Factory checks the pushed commit before the PR (docs/proof-of-work.md).

After the agent's last turn and the push, `run_checks` runs the repo's checks on Factory's own copy of
the commit. A failing check sends the agent one more round in its session with what failed (the
failing tests, the first error, console errors, the screenshot's address), and the new commit is
checked again, up to `checks.max_rounds` extra rounds; then the PR opens (a draft when still failing)
and the evidence comment goes on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from factory.contracts import AgentResult, ChangesResult, TaskInput, WorkspaceInfo
from factory.contracts import activities as acts
from factory.contracts.checks import ChecksInput, ChecksResult, EvidenceCommentInput
from workflows.common import GITHUB, HEARTBEAT, noticing
from workflows.failover import start_timeout
from workflows.task_steps import best_effort

PATCH = "proof-of-work"
CHECKS = {
    "start_to_close_timeout": timedelta(minutes=40),
    "heartbeat_timeout": HEARTBEAT,
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3),
}

RunAndPush = Callable[[TaskInput, WorkspaceInfo], Awaitable[tuple[AgentResult, ChangesResult]]]


def wanted(inp: TaskInput, changes: ChangesResult) -> bool:
    """Checks run for a task that owns its worktree, on a repo with `checks`, when there is work to check.

    The patch is asked last, so that histories of tasks on repos without checks gain no marker."""
    return inp.repo.checks and inp.workspace is None and changes.commits_ahead > 0 and workflow.patched(PATCH)


async def check(inp: TaskInput, ws: WorkspaceInfo, commit: str, round_no: int) -> ChecksResult:
    return await workflow.execute_activity(
        acts.run_checks,
        ChecksInput(task_id=inp.task_id, repo=inp.repo, workspace=ws, commit=commit, round=round_no),
        task_queue=ws.host_queue,  # the checkout (and so the commit) is on this host
        schedule_to_start_timeout=start_timeout(inp),
        summary=f"checks, round {round_no}",
        **noticing(CHECKS, inp.heartbeat_timeout_s),
    )


async def checked(
    inp: TaskInput, ws: WorkspaceInfo, agent: AgentResult, changes: ChangesResult, run_and_push: RunAndPush
) -> tuple[AgentResult, ChangesResult, ChecksResult]:
    """Check, and while it fails and rounds are left, let the agent fix it and check again."""
    result = await check(inp, ws, changes.head_sha, 1)
    rounds = 0
    while result.verdict == "failed" and rounds < inp.repo.checks_rounds:
        rounds += 1
        again = dataclasses.replace(
            inp, resume_session_id=agent.session_id or inp.resume_session_id, context=result.feedback
        )
        agent, changes = await run_and_push(again, ws)
        result = await check(inp, ws, changes.head_sha, rounds + 1)
    return agent, changes, result


async def comment(inp: TaskInput, pr_number: int) -> None:
    """The evidence comment on the PR (never fails the task)."""
    await best_effort(
        "could not put the evidence on the PR",
        workflow.execute_activity(
            acts.post_evidence_comment,
            EvidenceCommentInput(task_id=inp.task_id, repo=inp.repo, pr_number=pr_number),
            summary="evidence comment",
            **noticing(GITHUB, inp.heartbeat_timeout_s),
        ),
    )
