"""What a memory is: the record a task (or a person) leaves, and a search hit on one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal


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
