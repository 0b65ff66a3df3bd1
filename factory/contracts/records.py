"""Record-keeping, budget-hold, environment, schedule and singleton activities' wire forms.

New fields always get defaults, so that the histories of running workflows stay readable
(docs/versioning.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from factory.contracts.tasks import TaskEvent


@dataclass
class QuestionInput:
    task_id: int
    text: str
    options: list[str] | None = None
    workflow_run_id: int | None = None


@dataclass
class AnswerRecord:
    question_id: int
    answer: str
    answered_by: str


@dataclass
class NotifyInput:
    channel: str
    event: TaskEvent


@dataclass
class HoldCheck:
    task_id: int
    repo: str
    agent_type: str = "coder"


@dataclass
class HoldState:
    held: bool
    reason: str = ""


@dataclass
class CleanupEnvInput:
    task_id: int
    kinds: list[str] = field(default_factory=lambda: ["test"])


@dataclass
class ScheduledWork:
    """A schedule's action: one task (of `agent_type`, or the repo's default) or one configured workflow run."""

    schedule: str
    repo: str
    title: str
    description: str = ""
    agent_type: str | None = None
    workflow: str | None = None
    cron: str = ""  # as written (Temporal keeps the spec only in its own parsed form)
    timezone: str = "UTC"


@dataclass
class ScheduledWorkResult:
    task_id: int | None = None
    workflow_run_id: int | None = None
    skipped: str | None = None  # why nothing started


@dataclass
class PollSpan:
    """How long one `poll_telegram` activity polls before it returns (the workflow then starts the next)."""

    seconds: float
