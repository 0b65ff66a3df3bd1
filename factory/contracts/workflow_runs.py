"""Configured workflows' wire forms: the run and its steps, what each step handed on, the run's row updates.

New fields always get defaults, so that the histories of running workflows stay readable
(docs/versioning.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from factory.contracts.tasks import AgentSpec, RepoRef


@dataclass
class WorkflowStepSpec:
    """One step of a configured workflow, resolved by the API (agent spec, template text)."""

    index: int
    agent: AgentSpec
    input: str | None = None
    output: str | None = None
    condition: str | None = None
    loop_to: str | None = None
    prompt_template: str = ""  # the template's text ({issues}, {summary}, ... filled in per run)
    prompt_template_file: str | None = None


@dataclass
class WorkflowRunInput:
    """Everything ConfiguredWorkflow needs; resolved from config.yml when the run starts."""

    run_id: int
    name: str
    title: str
    description: str
    repo: RepoRef
    steps: list[WorkflowStepSpec]
    max_iterations: int = 3
    id_prefix: str = ""
    heartbeat_timeout_s: float = 30
    clarification_timeout_s: float = 72 * 3600
    memory: bool = True
    memory_outage_s: float = 40  # memory.outage_seconds
    failover_after_s: float = 0  # see TaskInput.failover_after_s


@dataclass
class StepOutput:
    """What one step handed on: its summary, the review it made, the state of the branch."""

    step: int
    agent_type: str
    iteration: int
    task_id: int
    status: str
    output_key: str | None = None
    summary: str = ""
    verdict: str | None = None
    issues: list[dict[str, Any]] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    diff_stat: str = ""
    handoff_id: int | None = None
    error: str | None = None
    preview_url: str | None = None


@dataclass
class WorkflowRunResult:
    run_id: int
    status: str  # completed | failed | cancelled
    iterations: int = 0
    approved: bool | None = None
    branch: str | None = None
    pr_url: str | None = None
    note: str | None = None
    error: str | None = None
    steps: list[StepOutput] = field(default_factory=list)


@dataclass
class StepTaskInput:
    run_id: int
    step: int
    iteration: int
    title: str
    description: str
    repo: str
    agent_type: str
    input_handoff_id: int | None = None  # the handoff this step consumes (its to_task_id is set)


@dataclass
class HandoffInput:
    run_id: int
    step: int
    iteration: int
    from_task_id: int
    from_agent: str
    to_agent: str | None
    output_key: str | None
    summary: str
    issues: list[dict[str, Any]] | None = None
    verdict: str | None = None
    changed_files: list[str] = field(default_factory=list)
    diff_stat: str = ""


@dataclass
class WorkflowRunUpdate:
    run_id: int
    status: str | None = None
    current_step: int | None = None
    current_agent: str | None = None
    iteration: int | None = None
    branch: str | None = None
    pr_url: str | None = None
    pr_number: int | None = None
    approved: bool | None = None
    note: str | None = None
    error: str | None = None
    finished: bool = False
