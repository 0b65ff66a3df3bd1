"""The activity and child-workflow calls of a ConfiguredWorkflow run, each with its options.

One worktree serves every step of a run; each step is a child TaskWorkflow in it.
"""

from __future__ import annotations

from temporalio import workflow

from factory.contracts import (
    CleanupInput,
    HandoffInput,
    PrepareInput,
    PullRequestInput,
    PullRequestResult,
    StepOutput,
    StepTaskInput,
    TaskInput,
    TaskResult,
    WorkflowRunInput,
    WorkflowRunResult,
    WorkflowRunUpdate,
    WorkflowStepSpec,
    WorkspaceInfo,
)
from factory.contracts import activities as acts
from factory.domain.handoffs import REVIEW_INSTRUCTIONS, consumer_of, step_context
from factory.domain.pull_request import workflow_pr_body
from workflows import failover
from workflows.common import GIT, GITHUB, QUICK, noticing
from workflows.task import TaskWorkflow
from workflows.task_steps import best_effort


async def update(upd: WorkflowRunUpdate) -> None:
    """Write the run's row (a local activity: no server round trip)."""
    await workflow.execute_local_activity(acts.update_workflow_run, upd, summary="record workflow run", **QUICK)


async def create_step_task(
    inp: WorkflowRunInput, step: WorkflowStepSpec, iteration: int, title: str, source: StepOutput | None
) -> int:
    """The Task row of one step (its own logs and answerable questions); its id."""
    return await workflow.execute_activity(
        acts.create_step_task,
        StepTaskInput(
            run_id=inp.run_id, step=step.index, iteration=iteration, title=title, description=inp.description,
            repo=inp.repo.name, agent_type=step.agent.agent_type,
            input_handoff_id=source.handoff_id if source else None,
        ),
        summary=f"task for {step.agent.agent_type}, iteration {iteration}",
        **QUICK,
    )  # fmt: skip


async def prepare(inp: WorkflowRunInput, task_id: int) -> WorkspaceInfo:
    """The run's shared worktree; it (and its branch name) take the first step's task id."""
    return await workflow.execute_activity(
        acts.prepare_workspace,
        PrepareInput(task_id=task_id, title=inp.title, repo=inp.repo),
        summary="prepare the shared worktree",
        **noticing(GIT, inp.heartbeat_timeout_s),
    )


async def run_step_task(
    inp: WorkflowRunInput, step: WorkflowStepSpec, iteration: int, task_id: int, title: str, ws: WorkspaceInfo,
    source: StepOutput | None, review: StepOutput | None,
) -> TaskResult:  # fmt: skip
    """Run one step as a child TaskWorkflow in the shared worktree (no PR of its own)."""
    label = f"{step.agent.agent_type}, iteration {iteration}"
    is_review = step.agent.agent_type == "reviewer"
    return await workflow.execute_child_workflow(
        TaskWorkflow.run,
        TaskInput(
            task_id=task_id, title=title, description=inp.description, repo=inp.repo, agent=step.agent,
            heartbeat_timeout_s=inp.heartbeat_timeout_s, clarification_timeout_s=inp.clarification_timeout_s,
            context=step_context(inp, step, iteration, source, review), workspace=ws,
            workflow_run_id=inp.run_id, step_label=label, open_pr=False, memory=inp.memory,
            memory_outage_s=inp.memory_outage_s, require_verdict=is_review, failover_after_s=inp.failover_after_s,
            instructions=REVIEW_INSTRUCTIONS.replace("{base}", ws.base_branch) if is_review else "",
        ),
        id=f"{inp.id_prefix}task-{task_id}",
        static_summary=label,
        static_details=f"{inp.name} #{inp.run_id}, step {step.index + 1}: {title}",
    )  # fmt: skip


async def record_handoff(inp: WorkflowRunInput, step: WorkflowStepSpec, out: StepOutput) -> int:
    """Record what the step hands to the agent after it; the handoff's id."""
    return await workflow.execute_activity(
        acts.record_handoff,
        HandoffInput(
            run_id=inp.run_id, step=step.index, iteration=out.iteration, from_task_id=out.task_id,
            from_agent=out.agent_type, to_agent=consumer_of(inp.steps, step), output_key=step.output,
            summary=out.summary, issues=out.issues if out.verdict else None, verdict=out.verdict,
            changed_files=out.changed_files, diff_stat=out.diff_stat,
        ),
        summary=f"handoff from {out.agent_type}, iteration {out.iteration}",
        **QUICK,
    )  # fmt: skip


async def open_pr(inp: WorkflowRunInput, ws: WorkspaceInfo, result: WorkflowRunResult) -> PullRequestResult:
    """The run's one PR, opened (or found open) at the end."""
    return await workflow.execute_activity(
        acts.open_pull_request,
        PullRequestInput(
            task_id=None, repo=inp.repo, branch=ws.branch, base_branch=ws.base_branch,
            title=inp.title, body=workflow_pr_body(inp, result), workflow_run_id=inp.run_id,
        ),
        summary="open pull request",
        **noticing(GITHUB, inp.heartbeat_timeout_s),
    )  # fmt: skip


async def clean_up(inp: WorkflowRunInput, ws: WorkspaceInfo, task_id: int, status: str) -> None:
    """Push what the remote lacks and remove the shared worktree (never failing the run)."""
    wip = "" if status == "completed" else f"WIP: {inp.title} (workflow #{inp.run_id} {status})"
    await best_effort(
        "cleanup failed",
        workflow.execute_activity(
            acts.cleanup_workspace,
            CleanupInput(task_id=task_id, workspace=ws, repo=inp.repo, wip_message=wip),
            task_queue=ws.host_queue,
            schedule_to_start_timeout=failover.start_timeout(inp),  # a lost host's: given up, not waited for
            summary="clean up the shared worktree",
            **noticing(GIT, inp.heartbeat_timeout_s),
        ),
    )
