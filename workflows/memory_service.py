"""MemoryServiceWorkflow: one memory call, run by the process that owns the embedded store.

A workflow of one local activity on `<task_queue>/memory`, which only the owner polls: the
caller starts it and waits for its result. When no owner polls, its execution timeout ends it
and the caller counts memory as unavailable.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from factory.contracts import MemoryCall, MemoryReply
from factory.contracts import activities as acts


@workflow.defn
class MemoryServiceWorkflow:
    @workflow.run
    async def run(self, call: MemoryCall) -> MemoryReply:
        return await workflow.execute_local_activity(
            acts.serve_memory, call, start_to_close_timeout=timedelta(seconds=30), summary=call.op
        )
