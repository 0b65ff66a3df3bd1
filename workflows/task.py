"""TaskWorkflow: one agent from worktree to pull request.

prepare workspace → run agent (pausing durably for questions) → commit and push →
open the PR (idempotent) → record the result → clean up. When a parent workflow owns
the worktree (`TaskInput.workspace`), the task only runs the agent and pushes.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.agent import AgentActivities
    from activities.environments import CleanupEnvInput, EnvironmentActivities
    from activities.github import GithubActivities
    from activities.memory import MemoryActivities, RememberTaskInput
    from activities.records import AnswerRecord, QuestionInput, RecordActivities
    from activities.workspace import CleanupInput, FinalizeInput, PrepareInput, WorkspaceActivities
    from factory.contracts import (
        AgentRequest,
        AgentResult,
        AnswerInput,
        ChangesResult,
        PendingQuestion,
        PullRequestInput,
        PullRequestResult,
        TaskEvent,
        TaskInput,
        TaskResult,
        TaskUpdate,
        WorkspaceInfo,
    )
    from factory.domain.review import VERDICT_REMINDER, parse_verdict
    from workflows.common import AGENT_TYPE, GIT, QUICK, REPO, TASK_ID, Notifications, error_text, set_stage


class AgentFailed(Exception):
    pass


def task_prompt(inp: TaskInput) -> str:
    parts = [f"# Task #{inp.task_id}: {inp.title}"]
    if inp.description.strip():
        parts.append(inp.description.strip())
    if inp.context.strip():
        parts.append(inp.context.strip())
    parts.append(
        inp.instructions
        or f"You are working in a git worktree of {inp.repo.name} on branch `{{branch}}`. "
        "Make the change, run what checks you can, and end with a short summary of what you did."
    )
    return "\n\n".join(parts)


@workflow.defn
class TaskWorkflow:
    def __init__(self) -> None:
        self._pending: PendingQuestion | None = None
        self._answer: AnswerInput | None = None
        self._stage = "queued"
        self._notes = Notifications()
        self._preview_url: str | None = None

    @workflow.query
    def pending_question(self) -> PendingQuestion | None:
        return self._pending

    @workflow.query
    def stage(self) -> str:
        return self._stage

    @workflow.update
    async def answer(self, ans: AnswerInput) -> str:
        """Deliver a person's answer to the pending question."""
        self._answer = ans
        self._pending = None
        return "accepted"

    @answer.validator
    def _validate_answer(self, ans: AnswerInput) -> None:
        if self._pending is None:
            raise ApplicationError("this task has no pending question", type="NoPendingQuestion")
        if ans.question_id is not None and ans.question_id != self._pending.id:
            raise ApplicationError(
                f"question #{ans.question_id} is not the pending question (#{self._pending.id})", type="StaleAnswer"
            )
        if not ans.answer.strip():
            raise ApplicationError("the answer is empty", type="EmptyAnswer")

    def _stage_to(self, stage: str, details: str) -> None:
        self._stage = stage
        set_stage(stage, details)

    @workflow.run
    async def run(self, inp: TaskInput) -> TaskResult:
        workflow.upsert_search_attributes(
            [TASK_ID.value_set(inp.task_id), REPO.value_set(inp.repo.name), AGENT_TYPE.value_set(inp.agent.agent_type)]
        )
        label = inp.step_label or inp.agent.agent_type
        owns_ws = inp.workspace is None
        ws: WorkspaceInfo | None = inp.workspace
        result = TaskResult(task_id=inp.task_id, status="failed")
        changes: ChangesResult | None = None
        cancelled = False
        try:
            if ws is None:
                self._stage_to("preparing", "preparing the worktree")
                ws = await workflow.execute_activity_method(
                    WorkspaceActivities.prepare_workspace,
                    PrepareInput(task_id=inp.task_id, title=inp.title, repo=inp.repo, branch=inp.branch),
                    summary="prepare worktree",
                    **GIT,
                )
            # independent steps run side by side: each activity round trip is latency a person waits for
            await asyncio.gather(
                self._record(TaskUpdate(task_id=inp.task_id, branch=ws.branch, base_branch=ws.base_branch, host=ws.host)),
                self._notes.emit(
                    TaskEvent(
                        kind="started", task_id=inp.task_id, workflow_run_id=inp.workflow_run_id,
                        title=inp.title, branch=ws.branch, agent_type=inp.agent.agent_type,
                    )
                ),
            )  # fmt: skip
            agent = await self._run_agent(inp, ws, label)
            result.session_id = agent.session_id
            result.result_text = agent.result_text
            result.learnings = agent.learnings
            self._stage_to("pushing", "committing and pushing")
            changes = await workflow.execute_activity_method(
                WorkspaceActivities.finalize_changes,
                FinalizeInput(task_id=inp.task_id, workspace=ws, repo=inp.repo, message=_commit_message(inp)),
                task_queue=ws.host_queue,
                summary="commit and push",
                **GIT,
            )
            result.changes = changes
            announce = changes.preview_url and changes.preview_url != self._preview_url
            self._preview_url = changes.preview_url or self._preview_url
            note = None
            pr = None
            if changes.commits_ahead == 0:
                note = "The agent made no changes, so no pull request was opened."
            elif owns_ws and inp.open_pr:
                pr = await self._open_pr(inp, ws, agent)
                result.pr_url = pr.url if pr else None
            result.status = "done"
            steps = [
                self._record(
                    TaskUpdate(
                        task_id=inp.task_id, status="done", result=agent.result_text, pr_url=result.pr_url,
                        pr_number=pr.number if pr else None, note=note, changed_files=changes.changed_files,
                        preview_url=self._preview_url if announce else None, finished=True,
                    )
                ),
                self._notes.emit(
                    TaskEvent(
                        kind="completed", task_id=inp.task_id, workflow_run_id=inp.workflow_run_id, title=inp.title,
                        branch=ws.branch, pr_url=result.pr_url, summary=note or agent.result_text[:500],
                        no_changes=changes.commits_ahead == 0, agent_type=inp.agent.agent_type,
                    )
                ),
            ]  # fmt: skip
            if announce:
                steps.append(
                    self._notes.emit(
                        TaskEvent(
                            kind="preview", task_id=inp.task_id, workflow_run_id=inp.workflow_run_id,
                            title=inp.title, url=self._preview_url,
                        )
                    )
                )  # fmt: skip
            await asyncio.gather(*steps)
        except (asyncio.CancelledError, ActivityError, AgentFailed) as exc:
            if is_cancelled_exception(exc):
                cancelled = True
                result.status = "cancelled"
                self._pending = None
                await self._record(TaskUpdate(task_id=inp.task_id, status="cancelled", finished=True))
                await self._notes.emit(
                    TaskEvent(
                        kind="cancelled", task_id=inp.task_id, workflow_run_id=inp.workflow_run_id, title=inp.title
                    )
                )
            else:
                result.status = "failed"
                result.error = error_text(exc)
                await self._record(TaskUpdate(task_id=inp.task_id, status="failed", error=result.error, finished=True))
                await self._notes.emit(
                    TaskEvent(
                        kind="failed", task_id=inp.task_id, workflow_run_id=inp.workflow_run_id,
                        title=inp.title, error=result.error, branch=ws.branch if ws else None,
                    )
                )  # fmt: skip
        finally:
            if ws is not None:
                self._stage_to("cleanup", "removing test environments" + (" and the worktree" if owns_ws else ""))
                cleanups = [self._cleanup_test_environments(inp, ws)]
                if owns_ws:
                    cleanups.append(self._cleanup_workspace(inp, ws, result.status))
                await asyncio.gather(*cleanups)
            result.preview_url = self._preview_url
            if inp.memory and result.status in ("done", "failed"):
                await self._remember(inp, result)
            self._stage_to(result.status, f"{result.status}")
            await self._notes.drain()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if cancelled:
            raise asyncio.CancelledError()
        if result.status == "failed" and inp.workflow_run_id is None:
            raise ApplicationError(result.error or "task failed", type="TaskFailed", non_retryable=True)
        return result

    async def _remember(self, inp: TaskInput, result: TaskResult) -> None:
        """Leave a memory of what the task did and learned (memory never fails a task)."""
        try:
            await workflow.execute_activity_method(
                MemoryActivities.remember_task,
                RememberTaskInput(
                    repo=inp.repo.name, task_id=inp.task_id, workflow_id=inp.workflow_run_id,
                    agent_type=inp.agent.agent_type, title=inp.title, outcome=result.status,
                    summary=result.result_text or result.error or "", learnings=result.learnings,
                    files=result.changes.changed_files if result.changes else [], pr_url=result.pr_url,
                ),
                summary="remember",
                **QUICK,
            )  # fmt: skip
        except ActivityError as exc:
            workflow.logger.warning("could not store the task's memory: %s", error_text(exc))

    async def _cleanup_workspace(self, inp: TaskInput, ws: WorkspaceInfo, status: str) -> None:
        try:
            await workflow.execute_activity_method(
                WorkspaceActivities.cleanup_workspace,
                CleanupInput(
                    task_id=inp.task_id, workspace=ws, repo=inp.repo,
                    wip_message="" if status == "done" else f"WIP: {inp.title} (task #{inp.task_id} {status})",
                ),
                task_queue=ws.host_queue,
                summary="clean up worktree",
                **GIT,
            )  # fmt: skip
        except ActivityError as exc:
            workflow.logger.warning("cleanup failed: %s", error_text(exc))

    async def _cleanup_test_environments(self, inp: TaskInput, ws: WorkspaceInfo) -> None:
        try:
            await workflow.execute_activity_method(
                EnvironmentActivities.cleanup_task_environments,
                CleanupEnvInput(task_id=inp.task_id, kinds=["test"]),
                task_queue=ws.host_queue,
                summary="remove test environments",
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(minutes=2),
            )
        except ActivityError as exc:
            workflow.logger.warning("could not remove test environments: %s", error_text(exc))

    async def _record(self, upd: TaskUpdate) -> None:
        await workflow.execute_local_activity_method(RecordActivities.update_task, upd, summary="record", **QUICK)

    async def _run_agent(self, inp: TaskInput, ws: WorkspaceInfo, label: str) -> AgentResult:
        session_id = str(workflow.uuid4())
        prompt = task_prompt(inp).replace("{branch}", ws.branch)
        resume = False
        reminded = False
        total = AgentResult(session_id=session_id)
        while True:
            self._stage_to("agent", f"{label} running" + (" (resumed with an answer)" if resume else ""))
            res = await workflow.execute_activity_method(
                AgentActivities.run_agent,
                AgentRequest(
                    task_id=inp.task_id, agent=inp.agent, cwd=ws.path, prompt=prompt, session_id=session_id,
                    resume=resume, workflow_run_id=inp.workflow_run_id, repo_name=inp.repo.name,
                    title=inp.title, description=inp.description, branch=ws.branch,
                    with_context=inp.memory,
                ),
                task_queue=ws.agent_queue,
                start_to_close_timeout=timedelta(seconds=inp.agent.total_timeout_s + 120),
                heartbeat_timeout=timedelta(seconds=inp.heartbeat_timeout_s),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=label,
            )  # fmt: skip
            session_id = res.session_id or session_id
            total.session_id = session_id
            total.result_text = res.result_text
            total.learnings += res.learnings
            total.cost_usd += res.cost_usd
            total.num_turns += res.num_turns
            if res.is_error:
                raise AgentFailed(f"agent failed ({res.subtype}): {res.result_text or 'no error text'}")
            if res.question is None:
                if inp.require_verdict and parse_verdict(res.result_text) is None:
                    if reminded:
                        raise AgentFailed(
                            f"{label}: the reviewer ended twice without a parsable verdict (a JSON object like "
                            '{"verdict": "approved" | "changes_requested", "issues": [...]}); '
                            f"its last reply: {res.result_text[:300]!r}"
                        )
                    reminded = True  # once, in the same session, then the step fails
                    prompt = VERDICT_REMINDER
                    resume = True
                    continue
                return total
            await self._ask(inp, res)
            ans = self._answer
            assert ans is not None
            self._answer = None
            prompt = ans.answer
            resume = True

    async def _ask(self, inp: TaskInput, res: AgentResult) -> None:
        assert res.question is not None
        pq = await workflow.execute_activity_method(
            RecordActivities.record_question,
            QuestionInput(
                task_id=inp.task_id, text=res.question.text, options=res.question.options,
                workflow_run_id=inp.workflow_run_id,
            ),
            summary="record question",
            **QUICK,
        )  # fmt: skip
        self._pending = pq
        self._stage_to("awaiting_input", f"waiting for an answer to: {pq.text[:200]}")
        await self._notes.emit(
            TaskEvent(
                kind="question", task_id=inp.task_id, workflow_run_id=inp.workflow_run_id, title=inp.title,
                question_id=pq.id, question=pq.text, options=pq.options, agent_type=inp.agent.agent_type,
            )
        )  # fmt: skip
        try:
            await workflow.wait_condition(
                lambda: self._answer is not None, timeout=timedelta(seconds=inp.clarification_timeout_s)
            )
        except TimeoutError:
            self._pending = None
            await workflow.execute_activity_method(
                RecordActivities.close_question, AnswerRecord(pq.id, "expired", ""), **QUICK
            )
            hours = inp.clarification_timeout_s / 3600
            raise AgentFailed(
                f"no answer came to the agent's question within {hours:g} hours (clarification_timeout_hours)"
            ) from None
        except asyncio.CancelledError:
            await workflow.execute_activity_method(
                RecordActivities.close_question, AnswerRecord(pq.id, "cancelled", ""), **QUICK
            )
            raise
        ans = self._answer
        assert ans is not None
        await workflow.execute_activity_method(
            RecordActivities.record_answer, AnswerRecord(pq.id, ans.answer, ans.answered_by), **QUICK
        )

    async def _open_pr(self, inp: TaskInput, ws: WorkspaceInfo, agent: AgentResult) -> PullRequestResult | None:
        if not inp.repo.github:
            return None
        self._stage_to("pull_request", "opening the pull request")
        pr = await workflow.execute_activity_method(
            GithubActivities.open_pull_request,
            PullRequestInput(
                task_id=inp.task_id, repo=inp.repo, branch=ws.branch, base_branch=ws.base_branch,
                title=inp.title,
                body=pr_body(inp.task_id, inp.description, agent.result_text, inp.pr_body_note, self._preview_url),
                workflow_run_id=inp.workflow_run_id,
            ),
            summary="open pull request",
            **GIT,
        )  # fmt: skip
        return pr


def _commit_message(inp: TaskInput) -> str:
    return f"{inp.title}\n\nFactory task #{inp.task_id} ({inp.agent.agent_type})"


def pr_body(task_id: int | None, description: str, summary: str, note: str = "", preview_url: str | None = None) -> str:
    parts = []
    if note:
        parts.append(f"> [!WARNING]\n> {note}")
    if preview_url:
        parts.append(f"**Preview:** {preview_url}")
    if description.strip():
        parts.append("## Task\n" + description.strip())
    if summary.strip():
        parts.append("## What the agent did\n" + summary.strip()[:6000])
    if task_id is not None:
        parts.append(f"---\nOpened by Factory for task #{task_id}.")
    return "\n\n".join(parts)
