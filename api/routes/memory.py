"""Agent memory: search, read, add notes by hand, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field, field_validator

from factory.memory.store import MemoryRecord, MemoryStore

router = APIRouter(prefix="/api/memory", tags=["memory"])


def get_memory(request: Request) -> MemoryStore:
    store = getattr(request.app.state, "memory", None)
    if store is None or not store.enabled:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "agent memory is disabled")
    return store


MemoryDep = Annotated[MemoryStore, Depends(get_memory)]


class NoteCreate(BaseModel):
    repo: str = Field(min_length=1)
    title: str | None = None
    content: str
    learnings: list[str] = Field(default_factory=list)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


def _unavailable(store: MemoryStore) -> HTTPException | None:
    if not store.available:
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "agent memory is unavailable")
    return None


@router.get("")
async def search_memory(
    store: MemoryDep,
    q: str | None = None,
    repo: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[dict[str, Any]]:
    """Memories matching `q` with their scores (the task's repo first), or the newest without `q`."""
    if q and q.strip():
        hits = await store.search(q, repo=repo, limit=limit)
    else:
        hits = await store.recent(repo=repo, limit=limit)
    if error := _unavailable(store):
        raise error
    return [h.to_dict() for h in hits]


@router.get("/{memory_id}")
async def get_memory_item(memory_id: str, store: MemoryDep) -> dict[str, Any]:
    """One memory by id."""
    record = await store.get(memory_id)
    if record is None:
        raise _unavailable(store) or HTTPException(status.HTTP_404_NOT_FOUND, f"no memory {memory_id}")
    return {"id": memory_id, **record.to_dict()}


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_memory(note: NoteCreate, store: MemoryDep) -> dict[str, Any]:
    """Add a note by hand; it is recalled like a task's memory."""
    content = note.content.strip()
    title = (note.title or "").strip() or content.splitlines()[0][:80]
    record = MemoryRecord(
        repo=note.repo, title=title, summary=content, learnings=[x for x in note.learnings if x.strip()], kind="note"
    )
    memory_id = await store.add(record)
    if memory_id is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "agent memory is unavailable")
    stored = await store.get(memory_id)
    return {"id": memory_id, **(stored or record).to_dict()}


@router.delete("/{memory_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_memory(memory_id: str, store: MemoryDep) -> None:
    """Delete a memory."""
    if not await store.delete(memory_id):
        raise _unavailable(store) or HTTPException(status.HTTP_404_NOT_FOUND, f"no memory {memory_id}")
