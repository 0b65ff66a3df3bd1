"""Background work that runs on every host, because it acts on what only that host can see.

- the Docker-environment janitor: the environments on this host's Docker engine;
- the orphaned-checkout janitor: checkouts on this host's disk whose cleanup never ran;
- host retention: the per-task stderr files and CLI homes on this host's disk, and the agent runs
  this host left open when its last worker died (only this host knows when it started again).
Work on shared state (Telegram, the PR poll, database retention) runs once per cluster instead:
temporal/singletons.py.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from factory.config import FactoryConfig
from factory.git.orphans import remove_orphaned_checkouts
from factory.store.retention import close_orphaned_runs, prune_files
from factory.store.tables import Task, session_scope, utcnow

# a finished task's own cleanup retries for hours (workflows/common.py): only after that is a checkout orphaned
ORPHAN_GRACE = timedelta(hours=12)
log = logging.getLogger("factory.worker")


def host_loops(cfg: FactoryConfig, engine: Engine, host: str) -> list[asyncio.Task[Any]]:
    """Start this host's loops; the caller cancels them on close."""
    loops = [
        asyncio.create_task(_host_retention(cfg, engine, host), name="host-retention"),
        asyncio.create_task(_checkout_janitor(cfg, engine), name="orphaned-checkouts"),
    ]
    if cfg.previews.janitor_interval_minutes > 0:
        loops.append(asyncio.create_task(_environment_janitor(cfg, engine), name="environment-janitor"))
    return loops


async def _environment_janitor(cfg: FactoryConfig, engine: Engine) -> None:
    """Remove Docker environments whose task is gone or finished, whose PR closed, or that are too old."""
    from factory.environments.janitor import Janitor, janitor_loop

    def lookup(task_id: int) -> tuple[str, str | None] | None:
        with session_scope(engine) as s:
            task = s.get(Task, task_id)
            return (task.status, task.pr_state) if task else None

    await janitor_loop(Janitor(cfg, lookup), cfg.previews.janitor_interval_minutes * 60)


async def _checkout_janitor(cfg: FactoryConfig, engine: Engine, interval: float = 3600.0) -> None:
    """Push and remove checkouts whose task ended long ago but whose cleanup never ran (now, then hourly)."""
    while True:
        try:
            removed = await remove_orphaned_checkouts(cfg, engine, ORPHAN_GRACE)
            if removed:
                log.info("removed %d orphaned checkouts (their work pushed first)", removed)
        except Exception as exc:  # the next pass tries again
            log.warning("orphaned-checkout pass failed: %s", exc)
        await asyncio.sleep(interval)


async def _host_retention(cfg: FactoryConfig, engine: Engine, host: str, interval: float = 3600.0) -> None:
    """Prune this host's old per-task files and close the agent runs it left open (now, then hourly)."""
    started = utcnow()
    longest = timedelta(minutes=cfg.agent_timeout_minutes)
    while True:
        try:
            if cfg.retention_days > 0:
                older = timedelta(days=cfg.retention_days)
                homes = cfg.workspace_path / "homes"
                pruned = await asyncio.to_thread(prune_files, engine, older, cfg.workspace_path / "run", homes)
                if pruned:
                    log.info("retention (%g days) removed %s", cfg.retention_days, pruned.counts)
            closed = await asyncio.to_thread(close_orphaned_runs, engine, host, started, longest)
            if closed:
                log.info("closed %d agent runs left open by a dead worker", closed)
        except Exception as exc:  # a failed pass (database busy) is tried again next time
            log.warning("host retention pass failed: %s", exc)
        await asyncio.sleep(interval)
