"""The artifact store: bytes by sha256 under `data_dir/evidence`, and one evidence record per task.

Everything here is written by Factory. Names on disk come from Factory's own values (a sha256 it
computed, a task id it owns), never from anything an agent wrote; a sha256 asked for over the API is
checked to be 64 hex digits before it becomes a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

SHA256 = re.compile(r"^[0-9a-f]{64}$")
CONTENT_TYPES = {
    "png": "image/png",
    "zip": "application/zip",
    "txt": "text/plain; charset=utf-8",
    "xml": "application/xml",
    "json": "application/json",
}


def _atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactStore:
    """`root/blobs/<sha256>.<kind>` and `root/tasks/task-<id>.json` (the task's evidence record)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes, kind: str) -> str:
        """Store `data` (kind: one of CONTENT_TYPES' keys); its sha256. The same bytes are stored once."""
        if kind not in CONTENT_TYPES:
            raise ValueError(f"unknown artifact kind {kind!r}")
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / "blobs" / f"{digest}.{kind}"
        if not path.exists():
            _atomic(path, data)
        else:
            os.utime(path)  # retention counts from the last time a record used it
        return digest

    def find(self, digest: str) -> tuple[Path, str] | None:
        """The stored file and its content type, or None (also for anything that is not a sha256)."""
        if not SHA256.fullmatch(digest):
            return None
        for kind, ctype in CONTENT_TYPES.items():
            path = self.root / "blobs" / f"{digest}.{kind}"
            if path.is_file():
                return path, ctype
        return None

    def _record_path(self, task_id: int) -> Path:
        return self.root / "tasks" / f"task-{int(task_id)}.json"

    def save_record(self, task_id: int, record: dict[str, Any]) -> None:
        _atomic(self._record_path(task_id), json.dumps(record, indent=1).encode())

    def record(self, task_id: int) -> dict[str, Any] | None:
        try:
            return json.loads(self._record_path(task_id).read_text())
        except FileNotFoundError:
            return None

    def prune(self, retention_days: float, now: float | None = None) -> int:
        """Remove blobs and records older than `retention_days` (by modification time); how many."""
        cutoff = (now or time.time()) - retention_days * 86400
        removed = 0
        for sub in ("blobs", "tasks"):
            folder = self.root / sub
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed


def artifact_store(data_path: Path) -> ArtifactStore:
    return ArtifactStore(data_path / "evidence")
