"""Memory as a service: the calls other processes make to the one process that owns the store.

An embedded SurrealDB (`surrealkv://`) can be opened by one process only. That process (`factory
up`, or `factory worker --memory-owner`) serves these calls on the Temporal task queue
`<task_queue>/memory`; the API and the other workers make them through Temporal
(`temporal.memory.RemoteMemory`). With `SURREALDB_URL` every process opens the server itself.
"""

from __future__ import annotations

from typing import Literal

from factory.contracts import MemoryCall, MemoryReply  # noqa: F401 (the wire forms live in factory.contracts)
from factory.memory.store import MemoryStore

Operation = Literal["add", "get", "recent", "search", "delete", "recall_section", "health"]


def memory_queue(task_queue: str) -> str:
    """The task queue the memory owner serves on."""
    return f"{task_queue}/memory"


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
