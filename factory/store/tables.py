"""What people read: the SQLModel tables written by activities and read by the API.

Temporal owns execution state; these tables are the human-facing record (tasks,
logs, questions, messages, handoffs, workflow runs). `database_url` defaults to a
SQLite file under the data dir (WAL mode, so the API and workers can share it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, event
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, create_engine

from factory.store.schema import sqlalchemy_url
from factory.store.schema import upgrade as upgrade_schema


def utcnow() -> datetime:
    return datetime.now(UTC)


class TaskStatus(StrEnum):
    queued = "queued"
    in_progress = "in_progress"
    awaiting_input = "awaiting_input"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


FINISHED = frozenset({TaskStatus.done, TaskStatus.failed, TaskStatus.cancelled})
"""The task statuses a task never leaves: the one definition."""


class WorkflowStatus(StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


RUN_FINISHED = frozenset({WorkflowStatus.completed, WorkflowStatus.failed, WorkflowStatus.cancelled})
"""The workflow-run statuses a run never leaves."""

MESSAGE_TYPES = ("info", "question", "handoff", "status", "error")
"""The kinds of message-board messages; anything else is stored as "info"."""


class TaskBase(SQLModel):
    title: str
    description: str = ""
    repo: str
    agent_type: str = "coder"


class Task(TaskBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default=TaskStatus.queued, index=True)
    branch: str | None = Field(default=None, index=True)  # every GitHub event looks its task up by branch
    base_branch: str | None = None
    base_sha: str | None = None  # the mirror's base tip the worktree was made from (the live diff's base)
    pr_url: str | None = None
    pr_number: int | None = None
    pr_state: str | None = None  # open | merged | closed
    error: str | None = None
    result: str | None = None
    note: str | None = None
    session_id: str | None = None
    cost_usd: float = 0.0
    num_turns: int = 0
    host: str | None = None
    workflow_run_id: int | None = Field(default=None, index=True)
    workflow_step: int | None = None
    iteration: int | None = None
    parent_task_id: int | None = None
    plane_issue_id: str | None = Field(default=None, index=True)
    preview_url: str | None = None
    backend: str | None = None  # the agent CLI this task asked for (None: its agent template's)
    changed_files: list[str] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class TaskLog(SQLModel, table=True):
    # a live page counts its round's tool calls by kind every period (factory/store/live.py, migration 0005)
    __table_args__ = (Index("ix_tasklog_task_id_kind", "task_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(index=True)
    attempt: int = 1
    kind: str  # assistant | tool_use | tool_result | result | system | stderr | event | memory
    content: str
    created_at: datetime = Field(default_factory=utcnow)


class Question(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(index=True)
    workflow_run_id: int | None = None
    text: str
    options: list[str] | None = Field(default=None, sa_column=Column(JSON))
    asked_at: datetime = Field(default_factory=utcnow)
    answer: str | None = None
    answered_by: str | None = None
    answered_at: datetime | None = None
    telegram_message_id: int | None = None
    status: str = "pending"  # pending | answered | expired | cancelled


class Message(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    task_id: int | None = Field(default=None, index=True)
    workflow_run_id: int | None = Field(default=None, index=True)
    sender: str
    recipient: str | None = None
    content: str
    message_type: str = Field(default="info", index=True)
    reply_to: int | None = Field(default=None, index=True)
    delivered_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)  # retention prunes by age


class Handoff(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    workflow_run_id: int | None = Field(default=None, index=True)
    from_task_id: int | None = None
    to_task_id: int | None = None
    from_agent: str
    to_agent: str | None = None
    step: int | None = None
    iteration: int | None = None
    output_key: str | None = None
    summary: str = ""
    issues: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    verdict: str | None = None
    changed_files: list[str] | None = Field(default=None, sa_column=Column(JSON))
    diff_stat: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class WorkflowRun(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    title: str
    description: str = ""
    repo: str
    status: str = Field(default=WorkflowStatus.pending, index=True)
    current_step: int | None = None
    current_agent: str | None = None
    iteration: int = 0
    branch: str | None = Field(default=None, index=True)  # looked up by branch per GitHub event
    pr_url: str | None = None
    pr_number: int | None = None
    pr_state: str | None = None
    approved: bool | None = None
    note: str | None = None
    error: str | None = None
    plane_issue_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class AgentRun(SQLModel, table=True):
    """A running (or finished) agent process, for `GET /api/agents`."""

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(index=True)
    agent_type: str
    host: str
    pid: int | None = None
    session_id: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    last_output_at: datetime | None = None
    last_output: str | None = None
    ended_at: datetime | None = Field(default=None, index=True)


class CostEntry(SQLModel, table=True):
    """The ledger: what one agent run spent on one model, from the CLI's own result (`factory.store.ledger`)."""

    __table_args__ = (UniqueConstraint("agent_run_id", "model"),)  # a run's result is recorded once

    id: int | None = Field(default=None, primary_key=True)
    agent_run_id: int | None = Field(default=None, index=True)
    task_id: int = Field(index=True)
    workflow_run_id: int | None = Field(default=None, index=True)
    repo: str = Field(index=True)
    agent_type: str
    session_id: str | None = None
    model: str = ""
    backend: str | None = Field(default="claude", index=True)  # the agent CLI (None: a row from before 0003)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    day: str = Field(index=True)  # YYYY-MM-DD in budgets.timezone: what the daily budgets count
    created_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """Delivery ids already handled, so a redelivered webhook does nothing twice."""

    id: str = Field(primary_key=True)  # "<source>:<delivery id>"
    received_at: datetime = Field(default_factory=utcnow, index=True)  # retention prunes by age


class KeyValue(SQLModel, table=True):
    """Small durable state (e.g. the Telegram update offset) and dedup marks (`factory.store.kv`)."""

    key: str = Field(primary_key=True)
    value: str
    # when the row was last written; retention prunes old dedup marks (NULL: written before the column)
    updated_at: datetime | None = Field(default_factory=utcnow, index=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before it is answered (NORMAL could lose an acknowledged task, answer or message
    # to a power cut); ~0.24 ms a commit here, in WAL mode
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    """Create the engine and bring the schema to the newest migration (`factory.store.schema`).

    `postgresql://` URLs, as users write them, use the psycopg driver.
    """
    url = sqlalchemy_url(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # connections kept for reuse: past the default 5, each request's session opened a new one (and ran
        # the pragmas) while live streams and log writes held the five (py-spy of the API under the load bench)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=12, max_overflow=20
        )
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    upgrade_schema(engine)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose objects stay readable after commit (they are handed to callers)."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


import factory.store.people  # noqa: E402,F401  (registers the people and audit tables on SQLModel.metadata)
