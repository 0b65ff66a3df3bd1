"""Agent memory: search, read, add notes by hand, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from api.bodies import NoteCreate
from api.deps import MemoryDep
from api.errors import JSONRoute, responses
from api.schemas import MemoryHitPublic, MemoryPublic
from factory.memory.records import MemoryRecord
from factory.memory.store import MemoryStore

router = APIRouter(prefix="/api/memory", tags=["memory"], route_class=JSONRoute)

MemoryId = Annotated[str, Path(min_length=1, max_length=200, description="a memory's id")]


def _unavailable(store: MemoryStore) -> HTTPException | None:
    if not store.available:
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "agent memory is unavailable")
    return None


@router.get("", response_model=list[MemoryHitPublic], responses=responses(422, 503))
async def search_memory(
    store: MemoryDep,
    q: Annotated[str | None, Query(max_length=2_000)] = None,
    repo: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[MemoryHitPublic]:
    """Memories matching `q` with their scores (the task's repo first), or the newest without `q`."""
    if q and q.strip():
        hits = await store.search(q, repo=repo, limit=limit)
    else:
        hits = await store.recent(repo=repo, limit=limit)
    if error := _unavailable(store):
        raise error
    return [MemoryHitPublic.of_hit(h) for h in hits]


@router.get("/{memory_id}", response_model=MemoryPublic, responses=responses(404, 422, 503))
async def read_memory(memory_id: MemoryId, store: MemoryDep) -> MemoryPublic:
    """One memory by id."""
    record = await store.get(memory_id)
    if record is None:
        raise _unavailable(store) or HTTPException(status.HTTP_404_NOT_FOUND, f"no memory {memory_id}")
    return MemoryPublic.of(memory_id, record)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=MemoryPublic, responses=responses(413, 422, 503))
async def create_memory(note: NoteCreate, store: MemoryDep) -> MemoryPublic:
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
    return MemoryPublic.of(memory_id, stored or record)


@router.delete("/{memory_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(404, 422, 503))
async def delete_memory(memory_id: MemoryId, store: MemoryDep) -> None:
    """Delete a memory."""
    if not await store.delete(memory_id):
        raise _unavailable(store) or HTTPException(status.HTTP_404_NOT_FOUND, f"no memory {memory_id}")
