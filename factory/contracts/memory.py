"""Memory's wire forms: a record and a hit, the calls made to the memory owner, recall and remember inputs.

New fields always get defaults, so that the histories of running workflows stay readable
(docs/versioning.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Operation = Literal["add", "get", "recent", "search", "delete", "recall_section", "health"]


@dataclass
class MemoryRecord:
    """One memory: what a task (or a person, for a note) left for later tasks."""

    repo: str
    title: str
    summary: str = ""
    learnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    outcome: str | None = None
    task_id: int | None = None
    workflow_id: int | None = None
    agent_type: str | None = None
    pr_url: str | None = None
    kind: Literal["task", "note"] = "task"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def text(self) -> str:
        """The text that is indexed and embedded: title, summary and learnings."""
        return "\n".join([self.title, self.summary, *self.learnings])

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (`created_at` in ISO 8601)."""
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


@dataclass
class MemoryHit:
    """A memory found by `search`: the record, its id and how well it matched.

    `score` is the fused rank score (higher is better); `bm25` and `similarity` are the
    full-text score and the embedding cosine similarity where that retriever found it.
    """

    id: str
    record: MemoryRecord
    score: float = 0.0
    bm25: float | None = None
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The hit as JSON-ready data: id and scores beside the record's fields."""
        return {
            "id": self.id,
            "score": self.score,
            "bm25": self.bm25,
            "similarity": self.similarity,
            **self.record.to_dict(),
        }


@dataclass
class MemoryCall:
    """One call of a `MemoryStore` method, by name, with the arguments it takes."""

    op: Operation
    record: MemoryRecord | None = None
    memory_id: str = ""
    query: str = ""
    title: str = ""
    description: str = ""
    repo: str | None = None
    limit: int = 20
    top_k: int | None = None
    exclude_task_id: int | None = None


@dataclass
class MemoryReply:
    """What the call returned, and whether the owner's store was available after it."""

    available: bool
    memory_id: str | None = None
    record: MemoryRecord | None = None
    hits: list[MemoryHit] = field(default_factory=list)
    text: str = ""
    done: bool = False
    health: dict[str, str] = field(default_factory=dict)


@dataclass
class RememberTaskInput:
    repo: str
    task_id: int | None
    workflow_id: int | None
    agent_type: str
    title: str
    outcome: str
    summary: str
    learnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    pr_url: str | None = None


@dataclass
class RecallInput:
    title: str
    description: str
    repo: str
    task_id: int | None = None  # leaves out the task's own memories when it runs again
    top_k: int | None = None
