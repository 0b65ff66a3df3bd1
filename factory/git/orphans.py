"""Checkouts whose cleanup never ran: a crash between a task's end and its cleanup, or a cleanup that failed.

`remove_orphaned_checkouts` (run by each worker's janitor) pushes what such a checkout holds that
the remote lacks, as the task's own cleanup would have, then deletes it. A checkout counts as
orphaned only when its task finished at least `grace` ago (a running task's cleanup gets its
chance first) or its task row is gone.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from factory.config import FactoryConfig
from factory.git.clones import TaskClone, UnsafeCloneError, mirror_path
from factory.git.commands import GitError
from factory.git.repos import RepoError, git_env, resolve_repo
from factory.store.tables import FINISHED, Task, session_scope, utcnow

log = logging.getLogger("factory.git.orphans")
_CHECKOUT = re.compile(r"task-(\d+)")


def _orphans(engine: Engine, root: Path, grace: timedelta) -> list[tuple[Path, Task | None]]:
    found = []
    cutoff = utcnow() - grace
    with session_scope(engine) as s:
        for path in sorted((root / "worktrees").glob("task-*")):
            hit = _CHECKOUT.fullmatch(path.name)
            if not hit:
                continue
            task = s.get(Task, int(hit[1]))
            if task is None:
                found.append((path, None))
                continue
            finished = task.finished_at
            if finished is not None and finished.tzinfo is None:
                finished = finished.replace(tzinfo=cutoff.tzinfo)
            if task.status in FINISHED and (finished is None or finished < cutoff):
                found.append((path, task))
    return found


async def remove_orphaned_checkouts(cfg: FactoryConfig, engine: Engine, grace: timedelta) -> int:
    """Push and remove the checkouts of tasks finished longer than `grace` ago; how many were removed.

    A checkout whose push fails (the remote is down) is kept for the next pass, unless it was
    tampered with (then nothing of it is pushed and it goes).
    """
    root = cfg.workspace_path
    removed = 0
    for path, task in await asyncio.to_thread(_orphans, engine, root, grace):
        if task is not None and task.branch:
            try:
                ref = resolve_repo(cfg, task.repo)
                clone = TaskClone(path, mirror_path(root, ref.name), ref.url, cfg.git_author_name, cfg.git_author_email)
                if clone.exists():
                    await clone.secure(task.branch)
                    if await clone.unpushed(task.branch, task.base_branch or "main") > 0:
                        await clone.push(task.branch, git_env(cfg, ref.url))
            except UnsafeCloneError as exc:
                log.warning("task %s: checkout tampered with, removed unpushed: %s", path.name, exc)
            except (GitError, RepoError) as exc:
                log.warning("task %s: could not push the orphaned checkout yet: %s", path.name, exc)
                continue
        TaskClone(path, path, "", "", "").remove()
        removed += 1
    return removed
