"""What the API returns: the `...Public` response models (request bodies are in `api/bodies.py`).

The response models describe the JSON exactly as the API has always sent it, so `/openapi.json`
tells the truth. Timestamps are ISO 8601 strings as `datetime.isoformat()` writes them (board
messages always with an offset).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from factory.memory.records import MemoryHit, MemoryRecord
from factory.store.tables import AgentRun, Handoff, Message, Question, Task, WorkflowRun
from factory.store.views import SUMMARY_CHARS, RunDetail

_DATE_TIME = WithJsonSchema({"type": "string", "format": "date-time"})
IsoTime = Annotated[datetime, PlainSerializer(lambda d: d.isoformat(), return_type=str, when_used="json"), _DATE_TIME]
"""A timestamp as stored (naive ones stay naive)."""


def _aware(d: datetime) -> str:
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).isoformat()


AwareTime = Annotated[datetime, PlainSerializer(_aware, return_type=str, when_used="json"), _DATE_TIME]
"""A timestamp with its UTC offset (stored naive values are UTC)."""


class _FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- tasks ----------------------------------------------------------------------------------------


class PendingQuestion(_FromRow):
    id: int
    text: str
    options: list[str] | None
    asked_at: IsoTime


class TaskPublic(_FromRow):
    title: str
    description: str
    repo: str
    agent_type: str
    id: int
    status: str
    branch: str | None
    base_branch: str | None
    pr_url: str | None
    pr_number: int | None
    pr_state: str | None
    error: str | None
    result: str | None
    note: str | None
    session_id: str | None
    cost_usd: float
    num_turns: int
    host: str | None
    workflow_run_id: int | None
    workflow_step: int | None
    iteration: int | None
    parent_task_id: int | None
    plane_issue_id: str | None
    preview_url: str | None
    changed_files: list[str] | None
    created_at: IsoTime
    started_at: IsoTime | None
    finished_at: IsoTime | None
    pending_question: PendingQuestion | None = None

    @classmethod
    def of(cls, task: Task, question: Question | None) -> TaskPublic:
        """A task row with the question it waits on."""
        out = cls.model_validate(task)
        out.pending_question = PendingQuestion.model_validate(question) if question else None
        return out


class TaskStage(BaseModel):
    stage: str | None = Field(description="the workflow's Stage; null before it started")


class DiffFilePublic(BaseModel):
    path: str
    additions: int | None = Field(description="lines added; null for a binary file")
    deletions: int | None = Field(description="lines deleted; null for a binary file")


class DiffPublic(BaseModel):
    """What a task's branch changed since it left its base: pushed (`git diff base...branch` in the mirror),
    or live while its agent works (its worktree's files against the base, `live: true`)."""

    branch: str
    base: str
    files: list[DiffFilePublic]
    additions: int
    deletions: int
    patch: str
    truncated: bool = Field(
        description="the patch was cut at its size limit (the file list is whole), or a live walk stopped at a cap"
    )
    live: bool = Field(False, description="the agent's unpushed work, read from its worktree as it is now")
    as_of: str | None = Field(None, description="when a live diff was read (ISO 8601, UTC)")
    skipped: list[str] = Field(
        default_factory=list, description="what a live diff left out and why (the first 50): links are shown as their "
        "target text, FIFOs and devices, files over the size caps, dependency and cache folders the base does not track",
    )  # fmt: skip
    skipped_count: int = 0
    note: str = Field("", description="why this is the answer: a live walk cut short, or no worktree on this host")


class AnswerAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    task: TaskPublic


class LogPublic(_FromRow):
    id: int
    task_id: int
    attempt: int
    kind: str
    content: str
    created_at: IsoTime


class QuestionPublic(_FromRow):
    id: int
    task_id: int
    workflow_run_id: int | None
    text: str
    options: list[str] | None
    asked_at: IsoTime
    answer: str | None
    answered_by: str | None
    answered_at: IsoTime | None
    telegram_message_id: int | None
    status: str


class HandoffPublic(_FromRow):
    id: int
    workflow_run_id: int | None
    from_task_id: int | None
    to_task_id: int | None
    from_agent: str
    to_agent: str | None
    step: int | None
    iteration: int | None
    output_key: str | None
    summary: str
    issues: list[dict[str, Any]] | None
    verdict: str | None
    changed_files: list[str] | None
    diff_stat: str | None
    created_at: IsoTime


class HandoffCreated(HandoffPublic):
    task: TaskPublic

    @classmethod
    def of(cls, handoff: Handoff, task: Task) -> HandoffCreated:
        """A new handoff with the task it started (which asks nothing yet)."""
        return cls.model_validate({**HandoffPublic.model_validate(handoff).__dict__, "task": TaskPublic.of(task, None)})


class AgentRunPublic(BaseModel):
    task_id: int
    title: str | None
    agent_type: str
    host: str
    pid: int | None
    started_at: IsoTime
    last_output_at: IsoTime | None
    last_output: str | None

    @classmethod
    def of(cls, run: AgentRun, task: Task | None) -> AgentRunPublic:
        """A running agent with its task's title."""
        return cls(
            task_id=run.task_id, title=task.title if task else None, agent_type=run.agent_type, host=run.host,
            pid=run.pid, started_at=run.started_at, last_output_at=run.last_output_at, last_output=run.last_output,
        )  # fmt: skip


# --- workflow runs --------------------------------------------------------------------------------


class RunSummary(_FromRow):
    id: int
    name: str
    title: str
    description: str
    repo: str
    status: str
    current_step: int | None
    current_agent: str | None
    iteration: int
    branch: str | None
    pr_url: str | None
    pr_number: int | None
    pr_state: str | None
    approved: bool | None
    note: str | None
    error: str | None
    plane_issue_id: str | None
    created_at: IsoTime
    started_at: IsoTime | None
    finished_at: IsoTime | None
    workflow_id: str = Field(description="the run's Temporal workflow id")

    @classmethod
    def of(cls, run: WorkflowRun, workflow_id: str) -> RunSummary:
        """A run row as the list shows it."""
        return cls.model_validate({**run.model_dump(), "workflow_id": workflow_id})


class RunStepPublic(BaseModel):
    step: int | None
    iteration: int | None
    agent_type: str
    task_id: int
    status: str
    output_key: str | None
    handoff_id: int | None
    verdict: str | None
    issues: list[dict[str, Any]] | None
    summary: str
    error: str | None


class RunQuestion(PendingQuestion):
    task_id: int


class RunPublic(RunSummary):
    steps: list[RunStepPublic]
    pending_question: RunQuestion | None
    cost_usd: float = Field(default=0.0, description="what all the run's agent runs cost (the ledger's sum)")

    @classmethod
    def of(cls, run: WorkflowRun, workflow_id: str, detail: RunDetail) -> RunPublic:
        """A run with its steps so far and the question one of them waits on."""
        steps = [
            RunStepPublic(
                step=s.task.workflow_step,
                iteration=s.task.iteration,
                agent_type=s.task.agent_type,
                task_id=s.task.id,
                status=s.task.status,
                output_key=s.handoff.output_key if s.handoff else None,
                handoff_id=s.handoff.id if s.handoff else None,
                verdict=s.handoff.verdict if s.handoff else None,
                issues=s.handoff.issues if s.handoff else None,
                summary=(s.task.result or "")[:SUMMARY_CHARS],
                error=s.task.error,
            )  # fmt: skip
            for s in detail.steps
        ]
        question = RunQuestion.model_validate(detail.question) if detail.question else None
        base = RunSummary.of(run, workflow_id).__dict__
        cost = round(sum(s.task.cost_usd or 0.0 for s in detail.steps), 6)
        return cls.model_validate({**base, "steps": steps, "pending_question": question, "cost_usd": cost})


# --- the message board ----------------------------------------------------------------------------


class MessagePublic(BaseModel):
    """A board message as the API shows it (the seed's names: `to`, `workflow_id`)."""

    id: int
    sender: str
    to: str | None
    content: str
    message_type: str
    task_id: int | None
    workflow_id: int | None
    reply_to: int | None
    created_at: AwareTime | None
    delivered_at: AwareTime | None

    @classmethod
    def of(cls, m: Message) -> MessagePublic:
        """A message row under the API's field names."""
        return cls(
            id=m.id, sender=m.sender, to=m.recipient, content=m.content, message_type=m.message_type,
            task_id=m.task_id, workflow_id=m.workflow_run_id, reply_to=m.reply_to, created_at=m.created_at,
            delivered_at=m.delivered_at,
        )  # fmt: skip


# --- memory ---------------------------------------------------------------------------------------


class MemoryPublic(BaseModel):
    id: str
    repo: str
    title: str
    summary: str
    learnings: list[str]
    files: list[str]
    outcome: str | None
    task_id: int | None
    workflow_id: int | None
    agent_type: str | None
    pr_url: str | None
    kind: Literal["task", "note"]
    created_at: str = Field(json_schema_extra={"format": "date-time"})

    @classmethod
    def of(cls, memory_id: str, record: MemoryRecord) -> MemoryPublic:
        """A stored memory with its id."""
        return cls.model_validate({"id": memory_id, **record.to_dict()})


class MemoryHitPublic(MemoryPublic):
    score: float
    bm25: float | None
    similarity: float | None

    @classmethod
    def of_hit(cls, hit: MemoryHit) -> MemoryHitPublic:
        """A search hit: the memory and how well it matched."""
        return cls.model_validate(hit.to_dict())


# --- service --------------------------------------------------------------------------------------


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded", "error"]
    database: str
    temporal: str
    memory: str
    sandbox: str = "ok"


WebhookOutcome = dict[str, Any]
"""What a webhook did: `status` (started, answered, recorded, ignored, duplicate, ...) and its details."""
