"""ConfiguredWorkflow: the step interpreter that runs every workflow under `workflows:` in config.yml.

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

from factory.contracts import (
    ChangesResult,
    StepOutput,
    WorkflowRunInput,
    WorkflowRunResult,
    WorkflowRunUpdate,
    WorkflowStepSpec,
    WorkspaceInfo,
)
from factory.domain.review import condition_met, parse_verdict
from workflows import run_steps
from workflows.common import AGENT_TYPE, REPO, STAGE, error_text
from workflows.events import Notifications, iteration_event, run_event


class StepFailed(Exception):
    """A step's task did not end done, so the run cannot go on."""


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
        try:
            self._progress["status"] = "running"
            await run_steps.update(WorkflowRunUpdate(run_id=inp.run_id, status="running"))
            await self._interpret(inp, result)
            await self._finish(inp, result)
        except (asyncio.CancelledError, ActivityError, ChildWorkflowError, StepFailed) as exc:
            if is_cancelled_exception(exc):
                result.status = "cancelled"
                await run_steps.update(WorkflowRunUpdate(run_id=inp.run_id, status="cancelled", finished=True))
            else:
                result.status, result.error = "failed", error_text(exc)
                await run_steps.update(
                    WorkflowRunUpdate(run_id=inp.run_id, status="failed", error=result.error, finished=True)
                )
            await self._notes.emit(run_event(inp, result.status, result))
        finally:
            self._progress["status"] = result.status
            if self._ws is not None and self._ws_task_id is not None:
                await run_steps.clean_up(inp, self._ws, self._ws_task_id, result.status)
            workflow.upsert_search_attributes([STAGE.value_set(result.status)])
            workflow.set_current_details(f"{inp.name}: {result.status}")
            await self._notes.drain()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if result.status == "cancelled":
            raise asyncio.CancelledError()
        if result.status == "failed":
            raise ApplicationError(result.error or "workflow failed", type="WorkflowFailed", non_retryable=True)
        return result

    async def _interpret(self, inp: WorkflowRunInput, result: WorkflowRunResult) -> None:
        """Walk the steps: test each condition, run the step, follow a loop-back while iterations last."""
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
                await self._notes.emit(iteration_event(inp, iteration, step.agent.agent_type))
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
        await run_steps.update(
            WorkflowRunUpdate(run_id=inp.run_id, current_step=step.index, current_agent=agent, iteration=iteration)
        )
        title = f"{inp.title} [{label}]"
        task_id = await run_steps.create_step_task(inp, step, iteration, title, source)
        ws = await self._workspace(inp, task_id)
        res = await run_steps.run_step_task(inp, step, iteration, task_id, title, ws, source, review)
        if res.workspace is not None:  # its host was lost: the step moved the worktree to another host
            self._ws = res.workspace
        out = StepOutput(
            step=step.index, agent_type=agent, iteration=iteration, task_id=task_id, status=res.status,
            output_key=step.output, summary=res.result_text, error=res.error, preview_url=res.preview_url,
        )  # fmt: skip
        if res.status != "done":
            raise StepFailed(f"step {step.index + 1} ({label}), task #{task_id}, failed: {res.error}")
        if res.changes is not None:
            self._changes = res.changes
            out.changed_files, out.diff_stat = res.changes.changed_files, res.changes.diff_stat
        if agent == "reviewer":
            verdict = parse_verdict(res.result_text)
            if verdict is not None:
                out.verdict, out.issues = verdict.verdict, verdict.issues
        out.handoff_id = await run_steps.record_handoff(inp, step, out)
        return out

    async def _workspace(self, inp: WorkflowRunInput, task_id: int) -> WorkspaceInfo:
        if self._ws is None:
            self._ws = await run_steps.prepare(inp, task_id)
            self._ws_task_id = task_id
            await run_steps.update(WorkflowRunUpdate(run_id=inp.run_id, branch=self._ws.branch))
        return self._ws

    async def _finish(self, inp: WorkflowRunInput, result: WorkflowRunResult) -> None:
        """Open the run's one PR (when the agents changed something) and record how it ended."""
        result.status = "completed"
        result.branch = self._ws.branch if self._ws else None
        pr_number = None
        if self._ws is not None and self._changes is not None and self._changes.commits_ahead > 0 and inp.repo.github:
            workflow.set_current_details(f"{inp.name}: opening the pull request")
            pr = await run_steps.open_pr(inp, self._ws, result)
            result.pr_url, pr_number = pr.url, pr.number
        elif self._changes is None or self._changes.commits_ahead == 0:
            result.note = ((result.note or "") + "\nThe agents made no changes, so no pull request was opened.").strip()
        await run_steps.update(
            WorkflowRunUpdate(
                run_id=inp.run_id, status="completed", pr_url=result.pr_url, pr_number=pr_number,
                approved=result.approved, note=result.note, iteration=result.iterations, finished=True,
            )
        )  # fmt: skip
        await self._notes.emit(run_event(inp, "completed", result))


def _review_of(review: StepOutput | None) -> tuple[str | None, list[dict[str, Any]] | None]:
    return (review.verdict, review.issues) if review is not None else (None, None)
