"""A task's wire forms: what TaskWorkflow starts with, what it ends with, its row updates, events and answers.

New fields always get defaults, so that the histories of running workflows stay readable
(docs/versioning.md)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RepoRef:
    """A resolved repository: where to clone it and where its PRs go."""

    name: str
    url: str
    github: str | None = None  # owner/name for the REST API, None when not on GitHub
    configured: bool = False
    default_branch: str | None = None
    checks: bool = False  # repos.<name>.checks is set: Factory checks the work before the PR
    checks_rounds: int = 0  # extra agent rounds a failing check may ask for


@dataclass
class AgentSpec:
    """Everything about how one agent type runs, resolved from agent_templates."""

    agent_type: str
    system_prompt_file: str
    tools: list[str]
    total_timeout_s: float
    idle_timeout_s: float
    model: str | None = None
    max_turns: int | None = None
    extra_args: list[str] = field(default_factory=list)
    max_budget_usd: float | None = None  # the template's cap on one run
    backend: str = "claude"  # the CLI that runs it (factory/backends/): claude, codex, opencode


@dataclass
class WorkspaceInfo:
    """A task's worktree and the worker queues of the host that holds it."""

    path: str
    branch: str
    base_branch: str
    host: str
    host_queue: str
    agent_queue: str
    base_sha: str = ""
    # The mirror's objects directory, which the task's clone borrows (objects/info/alternates):
    # the one path outside `path` a sandboxed agent needs, and only read-only.
    shared_objects: str = ""
    # when the task was moved here from a lost host: the commits its branch already held (git log)
    carried: str = ""
    # `PrepareInput.started` was announced: the notification channels that want the event (None: not announced)
    announced: list[str] | None = None


@dataclass
class TaskInput:
    """Everything TaskWorkflow needs: the task, its repo and agent, and how a parent runs it."""

    task_id: int
    title: str
    description: str
    repo: RepoRef
    agent: AgentSpec
    heartbeat_timeout_s: float = 30
    clarification_timeout_s: float = 72 * 3600
    branch: str | None = None  # an existing branch to continue (handoffs, PR revisions)
    context: str = ""  # handoff / review context put into the prompt
    workspace: WorkspaceInfo | None = None  # given when a parent workflow owns the worktree
    workflow_run_id: int | None = None
    step_label: str = ""
    open_pr: bool = True
    memory: bool = True
    memory_outage_s: float = 40  # memory.outage_seconds
    require_verdict: bool = False  # a reviewer step: remind once, then fail, without a JSON verdict
    instructions: str = ""  # replaces the closing instruction of the prompt (e.g. for a reviewer)
    resume_session_id: str | None = None  # a retried task resumes its agent's CLI session
    resume_from_task: int | None = None  # a follow-up round: the task whose home holds that session
    budget_hold_s: float = 0  # > 0: a daily budget is set; re-check a held start this often (seconds)
    failover_after_s: float = 0  # > 0: prepare the task again elsewhere when its host is gone this long


@dataclass
class TaskUpdate:
    """A partial update of a Task row (None fields are left alone)."""

    task_id: int
    status: str | None = None
    branch: str | None = None
    base_branch: str | None = None
    host: str | None = None
    base_sha: str | None = None
    error: str | None = None
    note: str | None = None
    result: str | None = None
    pr_url: str | None = None
    pr_number: int | None = None
    session_id: str | None = None
    add_cost_usd: float = 0.0
    add_turns: int = 0
    changed_files: list[str] | None = None
    preview_url: str | None = None
    finished: bool = False


@dataclass
class TaskEvent:
    """Something people hear about: board, Telegram, Plane."""

    kind: str  # started | completed | failed | cancelled | question | answered | workflow_iteration | preview
    task_id: int | None = None
    workflow_run_id: int | None = None
    title: str = ""
    branch: str | None = None
    pr_url: str | None = None
    error: str | None = None
    summary: str | None = None
    cost_usd: float | None = None
    question_id: int | None = None
    question: str | None = None
    options: list[str] | None = None
    iteration: int | None = None
    url: str | None = None
    agent_type: str | None = None
    no_changes: bool = False


@dataclass
class AnswerInput:
    answer: str
    question_id: int | None = None
    answered_by: str = "user"


@dataclass
class PendingQuestion:
    id: int
    text: str
    options: list[str] | None
    asked_at: str


@dataclass
class ChangesResult:
    committed: bool = False
    pushed: bool = False
    commits_ahead: int = 0
    changed_files: list[str] = field(default_factory=list)
    diff_stat: str = ""
    head_sha: str = ""
    preview_url: str | None = None  # a preview the agent started (docker_toolkit)


@dataclass
class TaskResult:
    """What a TaskWorkflow ends with (a parent workflow reads it for its handoffs and PR)."""

    status: str
    result_text: str = ""
    error: str | None = None
    pr_url: str | None = None
    changes: ChangesResult | None = None
    learnings: list[str] = field(default_factory=list)
    preview_url: str | None = None
    workspace: WorkspaceInfo | None = None  # set when the task moved to another host: the parent's worktree now
