"""From config.yml to the wire: agent specs, workflow inputs and workflow ids (config + contracts only)."""

from __future__ import annotations

import asyncio
import dataclasses

from factory.config import FactoryConfig
from factory.config_sections import WorkflowConfig, WorkflowStep
from factory.contracts import AgentSpec, RepoRef, TaskInput, WorkflowRunInput, WorkflowStepSpec
from factory.git.repos import RepoError, check_reachable, resolve_repo
from factory.launcher import LaunchError, TaskStart
from factory.store.tables import Task, WorkflowRun


def task_workflow_id(cfg: FactoryConfig, task_id: int) -> str:
    """The id of a task's TaskWorkflow."""
    return f"{cfg.temporal.id_prefix}task-{task_id}"


def run_workflow_id(cfg: FactoryConfig, run_id: int) -> str:
    """The id of a configured workflow run's workflow."""
    return f"{cfg.temporal.id_prefix}workflow-{run_id}"


def agent_spec(cfg: FactoryConfig, agent_type: str) -> AgentSpec:
    """The agent template `agent_type` as the agent activity needs it.

    Raises:
        LaunchError: no template of that name is configured.
    """
    tpl = cfg.agent_templates.get(agent_type)
    if tpl is None:
        known = ", ".join(sorted(cfg.agent_templates))
        raise LaunchError(f"unknown agent_type {agent_type!r} (configured: {known})")
    total = cfg.agent_timeout_minutes
    if tpl.timeout_minutes:
        total = min(total, tpl.timeout_minutes)
    return AgentSpec(
        agent_type=agent_type,
        system_prompt_file=str(cfg.prompt_path(tpl.system_prompt_file)),
        tools=list(tpl.allowed_tools),
        total_timeout_s=total * 60,
        idle_timeout_s=cfg.agent_activity_timeout_minutes * 60,
        model=tpl.model,
        max_turns=tpl.max_turns,
        extra_args=list(tpl.extra_args),
        max_budget_usd=tpl.max_budget_usd,
        backend=tpl.backend,
    )


def with_backend(spec: AgentSpec, backend: str | None) -> AgentSpec:
    """`spec` run by `backend` (a task's or a workflow step's override), or as its template says."""
    return dataclasses.replace(spec, backend=backend) if backend else spec


def budget_hold_s(cfg: FactoryConfig) -> float:
    """How often a task held by a daily budget re-checks it; 0 when no daily budget is set."""
    b = cfg.budgets
    return b.hold_check_seconds if (b.daily_usd or b.per_repo_daily_usd) else 0


def default_agent(cfg: FactoryConfig, repo: str) -> str:
    """The agent type a task of `repo` gets when none is asked for."""
    rc = cfg.repos.get(repo)
    return rc.default_agent if rc else "coder"


async def resolve_checked(cfg: FactoryConfig, repo: str) -> RepoRef:
    """Resolve a repo name, and `git ls-remote` it (in a thread) when it is not configured.

    Raises:
        LaunchError: the repo is unknown, not allowed or unreachable.
    """
    try:
        ref = resolve_repo(cfg, repo)
        await asyncio.to_thread(check_reachable, cfg, ref)
    except RepoError as exc:
        raise LaunchError(str(exc)) from exc
    return ref


def task_input(cfg: FactoryConfig, task: Task, ref: RepoRef, start: TaskStart | None = None) -> TaskInput:
    """The TaskWorkflow input of a task row."""
    start = start or TaskStart()
    return TaskInput(
        task_id=task.id,
        title=task.title,
        description=task.description,
        repo=ref,
        agent=with_backend(agent_spec(cfg, task.agent_type), task.backend),
        heartbeat_timeout_s=cfg.temporal.heartbeat_timeout_seconds,
        clarification_timeout_s=cfg.clarification_timeout_hours * 3600,
        branch=start.branch,
        context=start.context,
        memory=cfg.memory.enabled,
        memory_outage_s=cfg.memory.outage_seconds,
        resume_session_id=start.resume_session,
        resume_from_task=start.resume_from_task,
        budget_hold_s=budget_hold_s(cfg),
        failover_after_s=cfg.workers.failover_after_seconds,
    )


def builtin_workflows(cfg: FactoryConfig) -> dict[str, WorkflowConfig]:
    """Workflows that exist without config: the seed's code_review loop."""
    reviser = "coder_revision" if "coder_revision" in cfg.agent_templates else "coder"
    return {
        "code_review": WorkflowConfig(
            description="coder, then reviewer; the coder revises until the review approves",
            max_iterations=3,
            steps=[
                WorkflowStep(agent="coder", output="initial_code"),
                WorkflowStep(agent="reviewer", input="initial_code", output="review"),
                WorkflowStep(
                    agent=reviser,
                    input="review",
                    output="revision",
                    condition="has_issues",
                    loop_to="review",
                    prompt_template="prompts/templates/review_to_address.md",
                ),  # fmt: skip
            ],
        )
    }


def workflow_definitions(cfg: FactoryConfig) -> dict[str, WorkflowConfig]:
    """Every workflow that can run: the built-in ones, overridden by config.yml's `workflows:`."""
    return {**builtin_workflows(cfg), **cfg.workflows}


def workflow_definition(cfg: FactoryConfig, name: str) -> WorkflowConfig:
    """The workflow called `name`.

    Raises:
        LaunchError: no such workflow.
    """
    definitions = workflow_definitions(cfg)
    wf = definitions.get(name)
    if wf is None:
        raise LaunchError(f"unknown workflow {name!r} (configured: {', '.join(sorted(definitions))})")
    return wf


def workflow_input(cfg: FactoryConfig, run: WorkflowRun, wf: WorkflowConfig, ref: RepoRef) -> WorkflowRunInput:
    """Resolve a workflow definition (agent templates, prompt template text) for one run.

    Raises:
        LaunchError: a step names an unknown agent type or an unreadable prompt template.
    """
    steps = []
    for i, step in enumerate(wf.steps):
        text, file = "", None
        if step.prompt_template:
            path = cfg.prompt_path(step.prompt_template)
            try:
                text = path.read_text()
            except OSError as exc:
                raise LaunchError(
                    f"workflows.{run.name}.steps[{i}].prompt_template: cannot read {path}: {exc}"
                ) from exc
            file = str(path)
        steps.append(
            WorkflowStepSpec(
                index=i,
                agent=with_backend(agent_spec(cfg, step.agent), step.backend),
                input=step.input,
                output=step.output,
                condition=step.condition,
                loop_to=step.loop_to,
                prompt_template=text,
                prompt_template_file=file,
            )  # fmt: skip
        )
    return WorkflowRunInput(
        run_id=run.id, name=run.name, title=run.title, description=run.description, repo=ref, steps=steps,
        max_iterations=wf.max_iterations, id_prefix=cfg.temporal.id_prefix,
        heartbeat_timeout_s=cfg.temporal.heartbeat_timeout_seconds,
        clarification_timeout_s=cfg.clarification_timeout_hours * 3600, memory=cfg.memory.enabled,
        memory_outage_s=cfg.memory.outage_seconds,
        failover_after_s=cfg.workers.failover_after_seconds,
    )  # fmt: skip
