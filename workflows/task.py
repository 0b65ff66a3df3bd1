"""TaskWorkflow: one agent from worktree to pull request.

prepare the worktree → run the agent, pausing durably for its questions → commit and push →
open the PR (idempotent) → record the outcome → clean up. When a parent workflow owns the
worktree (`TaskInput.workspace`), the task only runs the agent and pushes.
"""

from __future__ import annotations

import asyncio
import dataclasses

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from factory.contracts import (
    AgentResult,
    AnswerInput,
    ChangesResult,
    PendingQuestion,
    PullRequestResult,
    TaskInput,
    TaskResult,
    TaskUpdate,
    WorkspaceInfo,
)
from factory.domain.pull_request import NO_CHANGES_NOTE
from factory.domain.text import clip
from workflows import budget_steps, failover, proof, task_steps
from workflows.agent_session import AgentFailed, AgentSession, Questions
from workflows.cancel import cancel_wins
from workflows.common import AGENT_TYPE, REPO, TASK_ID, error_text, set_stage
from workflows.events import Notifications, task_event


@workflow.defn
class TaskWorkflow:
    def __init__(self) -> None:
        self._questions = Questions()
        self._stage = "queued"
        self._notes = Notifications()
        self._moved_to: WorkspaceInfo | None = None  # the worktree on another host, once its host was lost
        self._lost_hosts: set[str] = set()
        self._verdict = ""  # proof of work's verdict line, for the completed event

    @workflow.query
    def pending_question(self) -> PendingQuestion | None:
        """The question the agent waits on, if any."""
        return self._questions.pending

    @workflow.query
    def stage(self) -> str:
        """Where the task stands: preparing, agent, awaiting_input, pushing, ..., done."""
        return self._stage

    @workflow.update
    async def answer(self, ans: AnswerInput) -> str:
        """Deliver a person's answer to the pending question."""
        self._questions.accept(ans)
        return "accepted"

    @answer.validator
    def _validate_answer(self, ans: AnswerInput) -> None:
        self._questions.check(ans)

    @workflow.run
    async def run(self, inp: TaskInput) -> TaskResult:
        workflow.upsert_search_attributes(
            [TASK_ID.value_set(inp.task_id), REPO.value_set(inp.repo.name), AGENT_TYPE.value_set(inp.agent.agent_type)]
        )
        ws = inp.workspace
        result = TaskResult(status="failed")
        try:
            announced = None
            if ws is None:
                if inp.budget_hold_s and workflow.patched("budget-hold"):  # a daily budget keeps it queued
                    await budget_steps.wait_for_budget(inp, self._stage_to)
                self._stage_to("preparing", "preparing the worktree")
                # the prepare step records the start and posts its event: the agent's run is scheduled in the
                # next workflow task without waiting on two local activities first (~10 ms of it)
                started = None
                if workflow.patched("started-in-prepare"):
                    started = task_event(inp, "started", agent_type=inp.agent.agent_type)
                ws = await task_steps.prepare(inp, started)
                announced = ws.announced if started is not None else None
            if announced is not None:
                self._notes.send(task_event(inp, "started", branch=ws.branch, agent_type=inp.agent.agent_type), announced)
            else:  # independent steps side by side: each activity round trip is latency a person waits for
                await asyncio.gather(
                    task_steps.record(
                        TaskUpdate(
                            task_id=inp.task_id,
                            branch=ws.branch,
                            base_branch=ws.base_branch,
                            host=ws.host,
                            base_sha=ws.base_sha or None,
                        )
                    ),
                    self._notes.emit(task_event(inp, "started", branch=ws.branch, agent_type=inp.agent.agent_type)),
                )
            agent, changes = await self._run_and_push(inp, ws)
            ws = self._moved_to or ws
            checked = None
            if proof.wanted(inp, changes):  # Factory's own checks, before the PR (workflows/proof.py)
                self._stage_to("checks", "Factory checks the work")
                agent, changes, checked = await proof.checked(inp, ws, agent, changes, self._run_and_push)
                self._verdict = checked.summary
            result.result_text, result.learnings = agent.result_text, agent.learnings
            result.changes, result.preview_url = changes, changes.preview_url
            pr = None
            if changes.commits_ahead > 0 and inp.workspace is None and inp.open_pr and inp.repo.github:
                self._stage_to("pull_request", "opening the pull request")
                draft = checked is not None and checked.verdict == "failed"  # the evidence says why
                pr = await cancel_wins(task_steps.open_pr(inp, ws, result, draft))
                result.pr_url = pr.url
                if checked is not None:
                    await proof.comment(inp, pr.number)
            await self._report_done(inp, ws, changes, pr, result)
        except (asyncio.CancelledError, ActivityError, AgentFailed) as exc:
            await self._report_stopped(inp, ws, exc, result)
        finally:
            result.workspace = self._moved_to
            await self._wind_down(inp, self._moved_to or ws, result)
        await workflow.wait_condition(workflow.all_handlers_finished)
        if result.status == "cancelled":
            raise asyncio.CancelledError()
        if result.status == "failed" and inp.workflow_run_id is None:
            raise ApplicationError(result.error or "task failed", type="TaskFailed", non_retryable=True)
        return result

    async def _report_done(
        self,
        inp: TaskInput,
        ws: WorkspaceInfo,
        changes: ChangesResult,
        pr: PullRequestResult | None,
        result: TaskResult,
    ) -> None:
        note = NO_CHANGES_NOTE if changes.commits_ahead == 0 else None
        result.status = "done"
        reports = [
            task_steps.record(
                TaskUpdate(
                    task_id=inp.task_id, status="done", result=result.result_text, pr_url=result.pr_url,
                    pr_number=pr.number if pr else None, note=note, changed_files=changes.changed_files,
                    preview_url=result.preview_url, finished=True,
                )
            ),
            self._notes.emit(
                task_event(
                    inp, "completed", branch=ws.branch, pr_url=result.pr_url,
                    summary="\n".join(x for x in (self._verdict, note or clip(result.result_text, 500)) if x),
                    no_changes=changes.commits_ahead == 0,
                    agent_type=inp.agent.agent_type,
                )
            ),
        ]  # fmt: skip
        if result.preview_url:
            reports.append(self._notes.emit(task_event(inp, "preview", url=result.preview_url)))
        await asyncio.gather(*reports)

    async def _report_stopped(
        self, inp: TaskInput, ws: WorkspaceInfo | None, exc: BaseException, result: TaskResult
    ) -> None:
        if is_cancelled_exception(exc):
            result.status = "cancelled"
            self._questions.pending = None
            await task_steps.record(TaskUpdate(task_id=inp.task_id, status="cancelled", finished=True))
            await self._notes.emit(task_event(inp, "cancelled"))
        else:
            result.status, result.error = "failed", error_text(exc)
            await task_steps.record(TaskUpdate(task_id=inp.task_id, status="failed", error=result.error, finished=True))
            await self._notes.emit(task_event(inp, "failed", error=result.error, branch=ws.branch if ws else None))

    async def _run_and_push(self, inp: TaskInput, ws: WorkspaceInfo) -> tuple[AgentResult, ChangesResult]:
        """Run the agent and push its work; when the host is lost before the push, prepare the task on
        another host from its pushed branch and run the agent there (workflows/failover.py)."""
        first = inp
        while True:
            try:
                agent = await AgentSession(inp, ws, self._questions, self._notes, self._stage_to).run()
                if agent.changes is not None:  # the agent's run committed and pushed its work itself
                    return agent, agent.changes
                self._stage_to("pushing", "committing and pushing")
                # a cancel during the push lets the push end (the work is kept) and then wins: no PR
                return agent, await cancel_wins(task_steps.finalize(first, ws))
            except failover.HostLost as lost:
                self._lost_hosts.add(lost.host)
                self._stage_to("preparing", f"{lost}: preparing the worktree on another host")
                moved = await failover.relocate(inp, ws)
                # the agent resumes its session where the session's files travelled with the host's
                # workspace (shared storage), else starts it afresh and is told what the branch holds
                inp = dataclasses.replace(
                    inp, resume_session_id=lost.session_id, context=inp.context + failover.moved_note(ws, moved)
                )
                ws = self._moved_to = moved
                await task_steps.record(
                    TaskUpdate(task_id=inp.task_id, host=ws.host, note=f"{lost}: the task moved to {ws.host}")
                )

    async def _wind_down(self, inp: TaskInput, ws: WorkspaceInfo | None, result: TaskResult) -> None:
        """Remove what the task made (never failing it), leave a memory, wait for notifications."""
        if ws is not None and ws.host not in self._lost_hosts:
            worktree = " and the worktree" if inp.workspace is None else ""
            self._stage_to("cleanup", "removing test environments" + worktree)
            await task_steps.clean_up(inp, ws, result.status)
        if inp.memory and result.status in ("done", "failed"):
            await task_steps.remember(inp, result)
        self._stage_to(result.status, result.status)
        await self._notes.drain()

    def _stage_to(self, stage: str, details: str) -> None:
        self._stage = stage
        set_stage(stage, details)
