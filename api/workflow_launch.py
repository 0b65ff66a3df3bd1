"""Starting configured workflows: resolve config.yml into a WorkflowRunInput and start ConfiguredWorkflow.

Shared by the REST API and integrations (a Plane issue labelled `workflow:NAME`).
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from api.launch import LaunchError, agent_spec, resolve_checked
from factory.config import FactoryConfig, WorkflowConfig, WorkflowStep
from factory.contracts import RepoRef, WorkflowRunInput, WorkflowStepSpec
from factory.search_attributes import REPO, STAGE
from factory.store.tables import WorkflowRun, WorkflowStatus, session_scope, utcnow
from workflows.configured import ConfiguredWorkflow


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
                    prompt_template="prompts/coder_revision.md",
                ),  # fmt: skip
            ],
        )
    }


def workflow_definitions(cfg: FactoryConfig) -> dict[str, WorkflowConfig]:
    """Every workflow that can run: the built-in ones, overridden by config.yml's `workflows:`."""
    return {**builtin_workflows(cfg), **cfg.workflows}


def workflow_id(cfg: FactoryConfig, run_id: int) -> str:
    return f"{cfg.temporal.id_prefix}workflow-{run_id}"


def workflow_input(cfg: FactoryConfig, run: WorkflowRun, wf: WorkflowConfig, ref: RepoRef) -> WorkflowRunInput:
    """Resolve a workflow definition (agent templates, prompt template text) for one run."""
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
                agent=agent_spec(cfg, step.agent),
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
    )  # fmt: skip


async def start_workflow_run(
    cfg: FactoryConfig,
    client: Client,
    engine: Engine,
    name: str,
    title: str,
    description: str,
    repo: str,
    plane_issue_id: str | None = None,
) -> WorkflowRun:
    """Create the WorkflowRun row (pending) and start its ConfiguredWorkflow.

    Raises:
        LaunchError: an unknown workflow name, repo or agent type (-> 422).
    """
    wf = workflow_definitions(cfg).get(name)
    if wf is None:
        known = ", ".join(sorted(workflow_definitions(cfg)))
        raise LaunchError(f"unknown workflow {name!r} (configured: {known})")
    title = title.strip()
    if not title:
        raise LaunchError("title must not be empty")
    ref = await resolve_checked(cfg, repo)
    with session_scope(engine) as s:
        run = WorkflowRun(name=name, title=title, description=description, repo=ref.name, plane_issue_id=plane_issue_id)
        s.add(run)
        s.commit()
        s.refresh(run)
    try:
        inp = workflow_input(cfg, run, wf, ref)
        await client.start_workflow(
            ConfiguredWorkflow.run,
            inp,
            id=workflow_id(cfg, run.id),
            task_queue=cfg.temporal.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"{name}: {title}"[:200],
            static_details=f"workflow {name} #{run.id} on {ref.name}, {len(wf.steps)} steps, "
            f"at most {wf.max_iterations} iterations",
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(REPO, ref.name), SearchAttributePair(STAGE, WorkflowStatus.pending.value)]
            ),
        )
    except Exception as exc:
        with session_scope(engine) as s:
            row = s.get(WorkflowRun, run.id)
            if row is not None:
                row.status = WorkflowStatus.failed
                row.error = f"could not start: {exc}"
                row.finished_at = utcnow()
                s.add(row)
                s.commit()
        raise
    return run
