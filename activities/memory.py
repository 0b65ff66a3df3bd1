"""Memory activities: recall related past work before a task, remember the task after it.

Both run on the shared queue and never fail a task: when memory is down, recall gives
"" and remember gives None (the store logs one warning per outage).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from factory.contracts import RecallInput, RememberTaskInput  # noqa: F401 (the wire forms live in factory.contracts)
from factory.memory.records import MemoryRecord
from factory.memory.service import MemoryCall, MemoryReply, serve
from factory.memory.store import MemoryStore


class MemoryActivities:
    """Memory activities, bound to one MemoryStore (register the bound methods on the worker)."""

    def __init__(self, store: MemoryStore):
        self.store = store

    @activity.defn
    async def remember_task(self, inp: RememberTaskInput) -> str | None:
        """Store what a finished task did and learned; returns the memory id.

        Idempotent: a task's memory has a stable id, so a retry overwrites it. When the store does
        not take it (down, or its owning process not answering), the attempt fails so Temporal tries
        again within the step's window (workflows/common.py MEMORY) rather than the memory being lost.
        """
        record = MemoryRecord(
            repo=inp.repo,
            title=inp.title,
            summary=inp.summary,
            learnings=list(inp.learnings),
            files=list(inp.files),
            outcome=inp.outcome,
            task_id=inp.task_id,
            workflow_id=inp.workflow_id,
            agent_type=inp.agent_type,
            pr_url=inp.pr_url,
            kind="task",
        )
        memory_id = await self.store.add(record)
        if memory_id is None:
            raise ApplicationError("memory is unavailable; the task's memory is tried again", type="MemoryUnavailable")
        return memory_id

    @activity.defn
    async def recall_memories(self, inp: RecallInput) -> str:
        """The "## Relevant past work" prompt section for a task, or "" when nothing relates."""
        return await self.store.recall_section(
            inp.title, inp.description, inp.repo, inp.top_k, exclude_task_id=inp.task_id
        )

    @activity.defn
    async def serve_memory(self, call: MemoryCall) -> MemoryReply:
        """Run another process's memory call on this process's store (the memory owner's queue)."""
        return await serve(self.store, call)
