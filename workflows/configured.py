"""ConfiguredWorkflow: one interpreter for every workflow under `workflows:` in config.yml.

Temporal's DSL pattern: the API resolves the config into `WorkflowRunInput` (steps with
agent specs and template text), and this workflow walks the steps. One worktree and
branch serve every step; each step is a child TaskWorkflow (its own Task row, logs and
answerable questions) running in that worktree. A step's `condition` is tested against
the latest review; `loop_to` jumps back to the step whose output it names. A loop step
runs only while `iteration < max_iterations`, so the last code on the branch is always
the code the last review saw. One PR at the end; the worktree is removed in any case.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.github import GithubActivities
    from activities.records import RecordActivities, WorkflowRunUpdate
    from activities.workflow_runs import HandoffInput, StepTaskInput, WorkflowRunActivities
    from activities.workspace import CleanupInput, PrepareInput, WorkspaceActivities
    from factory.contracts import (
        ChangesResult,
        PullRequestInput,
        StepOutput,
        TaskEvent,
        TaskInput,
        TaskResult,
        WorkflowRunInput,
        WorkflowRunResult,
        WorkflowStepSpec,
        WorkspaceInfo,
    )
    from factory.domain.handoffs import REVIEW_INSTRUCTIONS, step_context, workflow_pr_body
    from factory.domain.review import condition_met, parse_verdict
    from workflows.common import AGENT_TYPE, GIT, QUICK, REPO, STAGE, Notifications, error_text
    from workflows.task import TaskWorkflow


class StepFailed(Exception):
    pass


@workflow.defn
class ConfiguredWorkflow:
    def __init__(self) -> None:
        self._notes = Notifications()
        self._ws: WorkspaceInfo | None = None
        self._ws_task_id: int | None = None
        self._changes: ChangesResult | None = None
        self._progress: dict[str, Any] = {"status": "pending", "step": None, "agent": None, "iteration": 0}

    @workflow.query
    def progress(self) -> dict[str, Any]:
        """Status, current step, agent and iteration."""
        return dict(self._progress)

    @workflow.run
    async def run(self, inp: WorkflowRunInput) -> WorkflowRunResult:
        workflow.upsert_search_attributes([REPO.value_set(inp.repo.name), STAGE.value_set("running")])
        result = WorkflowRunResult(run_id=inp.run_id, status="failed")
        cancelled = False
        try:
            self._progress["status"] = "running"
            await self._update(WorkflowRunUpdate(run_id=inp.run_id, status="running"))
            await self._interpret(inp, result)
            await self._finish(inp, result)
        except (asyncio.CancelledError, ActivityError, ChildWorkflowError, StepFailed) as exc:
            if is_cancelled_exception(exc):
                cancelled = True
                result.status = "cancelled"
                await self._update(WorkflowRunUpdate(run_id=inp.run_id, status="cancelled", finished=True))
                await self._event(inp, "cancelled", result)
            else:
                result.status = "failed"
                result.error = error_text(exc)
                await self._update(
                    WorkflowRunUpdate(run_id=inp.run_id, status="failed", error=result.error, finished=True)
                )
                await self._event(inp, "failed", result)
        finally:
            self._progress["status"] = result.status
            await self._cleanup(inp, result)
            workflow.upsert_search_attributes([STAGE.value_set(result.status)])
            workflow.set_current_details(f"{inp.name}: {result.status}")
            await self._notes.drain()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if cancelled:
            raise asyncio.CancelledError()
        if result.status == "failed":
            raise ApplicationError(result.error or "workflow failed", type="WorkflowFailed", non_retryable=True)
        return result

    async def _interpret(self, inp: WorkflowRunInput, result: WorkflowRunResult) -> None:
        steps = inp.steps
        by_output = {s.output: s.index for s in steps if s.output}
        outputs: dict[str, StepOutput] = {}
        review: StepOutput | None = None  # the latest review: what conditions test
        carry: StepOutput | None = None  # what a loop-back hands to the step it jumps to
        iteration, i, hit_max = 1, 0, False
        while i < len(steps):
            step = steps[i]
            if step.loop_to and iteration >= inp.max_iterations:
                hit_max = hit_max or condition_met(step.condition, *_review_of(review))
                i += 1
                continue
            if not condition_met(step.condition, *_review_of(review)):
                i += 1
                continue
            source = carry if carry is not None else (outputs.get(step.input) if step.input else None)
            carry = None
            out = await self._run_step(inp, step, iteration, source, review)
            result.steps.append(out)
            if out.verdict is not None:
                review = out
            if step.output:
                outputs[step.output] = out
            if step.loop_to:
                iteration += 1
                carry = out
                i = by_output[step.loop_to]
                await self._notes.emit(
                    TaskEvent(
                        kind="workflow_iteration", workflow_run_id=inp.run_id, title=inp.title, iteration=iteration,
                        agent_type=step.agent.agent_type,
                        summary=f"{inp.name}: iteration {iteration} of at most {inp.max_iterations}",
                    )
                )  # fmt: skip
                continue
            i += 1
        result.iterations = iteration
        if review is not None:
            result.approved = review.verdict == "approved"
            if not result.approved:
                why = (
                    f"max_iterations ({inp.max_iterations}) was reached"
                    if hit_max
                    else f"the last review's verdict was {review.verdict}"
                )
                result.note = f"The review did not approve this change: {why}."

    async def _run_step(
        self, inp: WorkflowRunInput, step: WorkflowStepSpec, iteration: int, source: StepOutput | None,
        review: StepOutput | None,
    ) -> StepOutput:  # fmt: skip
        agent = step.agent.agent_type
        label = f"{agent}, iteration {iteration}"
        self._progress.update(step=step.index, agent=agent, iteration=iteration)
        workflow.set_current_details(f"{inp.name}: step {step.index + 1}/{len(inp.steps)}, {label}")
        workflow.upsert_search_attributes([AGENT_TYPE.value_set(agent), STAGE.value_set(f"step {step.index + 1}")])
        await self._update(
            WorkflowRunUpdate(run_id=inp.run_id, current_step=step.index, current_agent=agent, iteration=iteration)
        )
        title = f"{inp.title} [{label}]"
        task_id = await workflow.execute_activity_method(
            WorkflowRunActivities.create_step_task,
            StepTaskInput(
                run_id=inp.run_id, step=step.index, iteration=iteration, title=title, description=inp.description,
                repo=inp.repo.name, agent_type=agent, input_handoff_id=source.handoff_id if source else None,
            ),
            summary=f"task for {label}",
            **QUICK,
        )  # fmt: skip
        ws = await self._workspace(inp, task_id)
        is_review = agent == "reviewer"
        res: TaskResult = await workflow.execute_child_workflow(
            TaskWorkflow.run,
            TaskInput(
                task_id=task_id, title=title, description=inp.description, repo=inp.repo, agent=step.agent,
                heartbeat_timeout_s=inp.heartbeat_timeout_s, clarification_timeout_s=inp.clarification_timeout_s,
                context=step_context(inp, step, iteration, source, review), workspace=ws,
                workflow_run_id=inp.run_id, step_label=label, open_pr=False, memory=inp.memory,
                require_verdict=is_review,
                instructions=REVIEW_INSTRUCTIONS.replace("{base}", ws.base_branch) if is_review else "",
            ),
            id=f"{inp.id_prefix}task-{task_id}",
            static_summary=label,
            static_details=f"{inp.name} #{inp.run_id}, step {step.index + 1}: {title}",
        )  # fmt: skip
        out = StepOutput(
            step=step.index, agent_type=agent, iteration=iteration, task_id=task_id, status=res.status,
            output_key=step.output, summary=res.result_text, error=res.error, preview_url=res.preview_url,
        )  # fmt: skip
        if res.status != "done":
            raise StepFailed(f"step {step.index + 1} ({label}), task #{task_id}, failed: {res.error}")
        if res.changes is not None:
            self._changes = res.changes
            out.changed_files, out.diff_stat = res.changes.changed_files, res.changes.diff_stat
        if is_review:
            verdict = parse_verdict(res.result_text)
            if verdict is not None:
                out.verdict, out.issues = verdict.verdict, verdict.issues
        out.handoff_id = await workflow.execute_activity_method(
            WorkflowRunActivities.record_handoff,
            HandoffInput(
                run_id=inp.run_id, step=step.index, iteration=iteration, from_task_id=task_id, from_agent=agent,
                to_agent=_consumer(inp.steps, step), output_key=step.output, summary=res.result_text,
                issues=out.issues if out.verdict else None, verdict=out.verdict,
                changed_files=out.changed_files, diff_stat=out.diff_stat,
            ),
            summary=f"handoff from {label}",
            **QUICK,
        )  # fmt: skip
        return out

    async def _workspace(self, inp: WorkflowRunInput, task_id: int) -> WorkspaceInfo:
        if self._ws is None:
            # the worktree (and branch name) take the first step's task id
            self._ws = await workflow.execute_activity_method(
                WorkspaceActivities.prepare_workspace,
                PrepareInput(task_id=task_id, title=inp.title, repo=inp.repo),
                summary="prepare the shared worktree",
                **GIT,
            )
            self._ws_task_id = task_id
            await self._update(WorkflowRunUpdate(run_id=inp.run_id, branch=self._ws.branch))
        return self._ws

    async def _finish(self, inp: WorkflowRunInput, result: WorkflowRunResult) -> None:
        result.status = "completed"
        result.branch = self._ws.branch if self._ws else None
        pr_number = None
        if self._ws is not None and self._changes is not None and self._changes.commits_ahead > 0 and inp.repo.github:
            workflow.set_current_details(f"{inp.name}: opening the pull request")
            pr = await workflow.execute_activity_method(
                GithubActivities.open_pull_request,
                PullRequestInput(
                    task_id=None, repo=inp.repo, branch=self._ws.branch, base_branch=self._ws.base_branch,
                    title=inp.title, body=workflow_pr_body(inp, result), workflow_run_id=inp.run_id,
                ),
                summary="open pull request",
                **GIT,
            )  # fmt: skip
            result.pr_url, pr_number = pr.url, pr.number
        elif self._changes is None or self._changes.commits_ahead == 0:
            result.note = ((result.note or "") + "\nThe agents made no changes, so no pull request was opened.").strip()
        await self._update(
            WorkflowRunUpdate(
                run_id=inp.run_id, status="completed", pr_url=result.pr_url, pr_number=pr_number,
                approved=result.approved, note=result.note, iteration=result.iterations, finished=True,
            )
        )  # fmt: skip
        await self._event(inp, "completed", result)

    async def _cleanup(self, inp: WorkflowRunInput, result: WorkflowRunResult) -> None:
        if self._ws is None or self._ws_task_id is None:
            return
        wip = "" if result.status == "completed" else f"WIP: {inp.title} (workflow #{inp.run_id} {result.status})"
        try:
            await workflow.execute_activity_method(
                WorkspaceActivities.cleanup_workspace,
                CleanupInput(task_id=self._ws_task_id, workspace=self._ws, repo=inp.repo, wip_message=wip),
                task_queue=self._ws.host_queue,
                summary="clean up the shared worktree",
                **GIT,
            )
        except ActivityError as exc:
            workflow.logger.warning("cleanup failed: %s", error_text(exc))

    async def _update(self, upd: WorkflowRunUpdate) -> None:
        await workflow.execute_local_activity_method(
            RecordActivities.update_workflow_run, upd, summary="record workflow run", **QUICK
        )

    async def _event(self, inp: WorkflowRunInput, kind: str, result: WorkflowRunResult) -> None:
        summary = result.note or ("the review approved" if result.approved else None)
        await self._notes.emit(
            TaskEvent(
                kind=kind, workflow_run_id=inp.run_id, title=f"{inp.name}: {inp.title}", branch=result.branch,
                pr_url=result.pr_url, error=result.error, summary=summary, iteration=result.iterations or None,
            )
        )  # fmt: skip


def _review_of(review: StepOutput | None) -> tuple[str | None, list[dict[str, Any]] | None]:
    return (review.verdict, review.issues) if review is not None else (None, None)


def _consumer(steps: list[WorkflowStepSpec], step: WorkflowStepSpec) -> str | None:
    """The agent that gets this step's output: the loop target, or the first later step naming it."""
    if step.loop_to:
        target = next(s for s in steps if s.output == step.loop_to)
        return target.agent.agent_type
    if step.output:
        for s in steps[step.index + 1 :]:
            if s.input == step.output:
                return s.agent.agent_type
    return None
