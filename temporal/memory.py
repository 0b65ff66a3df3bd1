"""Memory through the owner's task queue: a `MemoryStore` look-alike for the API and other workers.

Each call starts a `MemoryServiceWorkflow` on `<task_queue>/memory` and waits for its result.
Like `MemoryStore`, no method raises when memory is down: reads give nothing, writes give None,
and after a failed call the owner is left alone for a while so a missing owner costs one timeout,
not one per task.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from temporalio.client import Client

from factory.config import FactoryConfig
from factory.memory.records import MemoryHit, MemoryRecord
from factory.memory.service import MemoryCall, MemoryReply, memory_queue
from workflows.memory_service import MemoryServiceWorkflow

log = logging.getLogger("factory.memory")

CALL_TIMEOUT_SECONDS = 10.0
"""How long a call waits for the owner before memory counts as unavailable."""

RETRY_AFTER_SECONDS = 15.0
"""How long an unreachable owner is left alone before it is tried again."""

HEALTH_TTL_SECONDS = 10.0
"""How long the owner's health answer is reused: `/health` may be polled often, a call is a workflow."""


class RemoteMemory:
    """The memory store of another process, reached over Temporal."""

    def __init__(self, cfg: FactoryConfig, client: Client | None, timeout: float = CALL_TIMEOUT_SECONDS):
        self.cfg = cfg
        self.client = client
        self.enabled = cfg.memory.enabled
        self.queue = memory_queue(cfg.temporal.task_queue)
        self.timeout = timeout
        self.available = False
        self.error = "not called yet"
        self._quiet_until = 0.0
        self._health: tuple[float, dict[str, str]] | None = None

    async def _call(self, call: MemoryCall) -> MemoryReply | None:
        if not self.enabled or self.client is None:
            self.available = False
            return None
        if time.monotonic() < self._quiet_until:
            return None
        try:
            reply = await self.client.execute_workflow(
                MemoryServiceWorkflow.run,
                call,
                id=f"{self.cfg.temporal.id_prefix}memory-{uuid.uuid4().hex}",
                task_queue=self.queue,
                execution_timeout=timedelta(seconds=self.timeout),
            )
        except Exception as exc:  # no owner polling, or Temporal down: memory never fails a caller
            if self.available or self.error == "not called yet":
                log.warning("memory owner not reachable on %s: %s", self.queue, exc)
            self.available, self.error = False, f"no memory owner answered on {self.queue}"
            self._quiet_until = time.monotonic() + RETRY_AFTER_SECONDS
            return None
        self.available, self.error = reply.available, ""
        return reply

    async def health(self) -> dict[str, str]:
        """The owner's store health, or "degraded" when no owner answers."""
        if not self.enabled:
            return {"status": "disabled", "detail": "memory.enabled is false"}
        if self._health is not None and time.monotonic() - self._health[0] < HEALTH_TTL_SECONDS:
            return self._health[1]
        reply = await self._call(MemoryCall(op="health"))
        health = reply.health if reply is not None else {"status": "degraded", "detail": self.error}
        self._health = (time.monotonic(), health)
        return health

    async def add(self, record: MemoryRecord) -> str | None:
        reply = await self._call(MemoryCall(op="add", record=record))
        return reply.memory_id if reply else None

    async def get(self, memory_id: str) -> MemoryRecord | None:
        reply = await self._call(MemoryCall(op="get", memory_id=memory_id))
        return reply.record if reply else None

    async def recent(self, repo: str | None = None, limit: int = 20) -> list[MemoryHit]:
        reply = await self._call(MemoryCall(op="recent", repo=repo, limit=limit))
        return reply.hits if reply else []

    async def search(self, query: str, repo: str | None = None, limit: int = 5) -> list[MemoryHit]:
        reply = await self._call(MemoryCall(op="search", query=query, repo=repo, limit=limit))
        return reply.hits if reply else []

    async def delete(self, memory_id: str) -> bool:
        reply = await self._call(MemoryCall(op="delete", memory_id=memory_id))
        return bool(reply and reply.done)

    async def recall_section(
        self,
        title: str,
        description: str,
        repo: str | None,
        top_k: int | None = None,
        *,
        exclude_task_id: int | None = None,
    ) -> str:
        call = MemoryCall(
            op="recall_section", title=title, description=description, repo=repo, top_k=top_k,
            exclude_task_id=exclude_task_id,
        )  # fmt: skip
        reply = await self._call(call)
        return reply.text if reply else ""

    async def close(self) -> None:
        """Nothing to close: the client belongs to the process."""
