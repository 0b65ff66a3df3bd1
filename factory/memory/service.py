"""Memory as a service: the calls other processes make to the one process that owns the store.

An embedded SurrealDB (`surrealkv://`) can be opened by one process only. That process (`factory
up`, or `factory worker --memory-owner`) serves these calls on the Temporal task queue
`<task_queue>/memory`; the API and the other workers make them through Temporal
(`temporal.memory.RemoteMemory`). With `SURREALDB_URL` every process opens the server itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from factory.memory.records import MemoryHit, MemoryRecord
from factory.memory.store import MemoryStore

Operation = Literal["add", "get", "recent", "search", "delete", "recall_section", "health"]


def memory_queue(task_queue: str) -> str:
    """The task queue the memory owner serves on."""
    return f"{task_queue}/memory"


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


async def serve(store: MemoryStore, call: MemoryCall) -> MemoryReply:
    """Run one call on the owner's store."""
    reply = MemoryReply(available=False)
    if call.op == "add" and call.record is not None:
        reply.memory_id = await store.add(call.record)
    elif call.op == "get":
        reply.record = await store.get(call.memory_id)
    elif call.op == "recent":
        reply.hits = await store.recent(repo=call.repo, limit=call.limit)
    elif call.op == "search":
        reply.hits = await store.search(call.query, repo=call.repo, limit=call.limit)
    elif call.op == "delete":
        reply.done = await store.delete(call.memory_id)
    elif call.op == "recall_section":
        reply.text = await store.recall_section(
            call.title, call.description, call.repo, call.top_k, exclude_task_id=call.exclude_task_id
        )
    elif call.op == "health":
        reply.health = await store.health()
    reply.available = store.available
    return reply
