"""Proof of work's evidence: a task's record (GET /api/tasks/{id}/evidence) and the stored artifacts.

Both sit behind the API's auth like every /api route. An artifact is asked for by its sha256, checked
to be 64 hex digits before it names a file (factory/evidence/store.py); anything else is a 404.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import FileResponse

from api.deps import CfgDep
from api.errors import JSONRoute, responses
from factory.evidence.store import artifact_store

router = APIRouter(tags=["evidence"], route_class=JSONRoute)

_EMPTY: dict[str, Any] = {
    "verdict": "none", "commit": None, "tests": None, "scenarios": [], "cost_usd": None, "tokens": None, "turns": None,
}  # fmt: skip


def _public(record: dict[str, Any]) -> dict[str, Any]:
    out = {**_EMPTY, **{k: v for k, v in record.items() if k in _EMPTY or k in ("round", "rounds", "checked_at", "seconds")}}
    out["scenarios"] = [
        {k: s.get(k) for k in ("name", "ok", "error", "screenshots", "console_errors", "failed_requests", "seconds",
                               "preview_seconds", "trace")}
        for s in record.get("scenarios") or []
    ]  # fmt: skip
    tests = record.get("tests")
    if tests:
        out["tests"] = {k: tests.get(k) for k in ("passed", "failed", "skipped", "failures", "exit_code", "seconds")}
        if tests.get("output_sha256"):
            out["tests"]["output_url"] = f"/api/artifacts/{tests['output_sha256']}"
    return out


@router.get("/api/tasks/{task_id}/evidence", responses=responses(422))
async def task_evidence(cfg: CfgDep, task_id: int = Path(ge=1, le=2**63 - 1)) -> dict[str, Any]:
    """What Factory's own checks found on the task's last checked commit ("none" before any check)."""
    record = await asyncio.to_thread(artifact_store(cfg.data_path).record, task_id)
    return _public(record) if record else dict(_EMPTY)


@router.get("/api/artifacts/{sha256}", responses=responses(404, 422))
async def artifact(cfg: CfgDep, sha256: str = Path(max_length=64)) -> FileResponse:
    """The bytes of one artifact (a screenshot, a trace, an output tail) with its content type."""
    found = artifact_store(cfg.data_path).find(sha256)
    if found is None:
        raise HTTPException(404, "no such artifact")
    path, ctype = found
    return FileResponse(path, media_type=ctype, headers={"Cache-Control": "private, max-age=86400"})
