"""The activities of the cluster's singleton workflows (workflows/singletons.py): work done once per cluster.

- `poll_telegram`: Telegram long polling for a while (Telegram answers a second concurrent
  `getUpdates` with 409, so exactly one poller may run); it heartbeats, so a dead worker's poll is
  taken over by another worker once its heartbeat timeout has passed, and never two at once.
- `poll_pull_requests`: one pass over open Factory PRs when no GitHub webhook tells of them.
- `prune_records`: retention of the shared database's old records (the rows are the same for
  every host, so one pass per cluster). Files on a host's disk are pruned per host (temporal/background.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

import httpx
from sqlalchemy.engine import Engine
from temporalio import activity

from activities._heartbeat import heartbeating
from factory.config import FactoryConfig
from factory.contracts import PollSpan  # noqa: F401 (the wire forms live in factory.contracts)
from factory.integrations.github.inbound import poll_pr_states
from factory.integrations.telegram.inbound import poll_updates
from factory.launcher import Launcher
from factory.store.retention import prune, prune_people

log = logging.getLogger("factory.singletons")


class SingletonActivities:
    def __init__(
        self, cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient, get_launcher: Callable[[], Launcher | None]
    ):
        self.cfg = cfg
        self.engine = engine
        self.http = http
        self.get_launcher = get_launcher

    @activity.defn
    async def poll_telegram(self, span: PollSpan) -> None:
        """Long-poll Telegram for `span` seconds, heartbeating; the offset is kept in the database after each update.

        Ending the span cancels a poll in flight; an update being handled then is fetched again by
        the next span, as after a worker's stop (the offset moves only past handled updates).
        """
        async with heartbeating():
            try:
                await asyncio.wait_for(poll_updates(self.cfg, self.engine, self.http, self.get_launcher), span.seconds)
            except TimeoutError:
                return

    @activity.defn
    async def poll_pull_requests(self) -> None:
        """One pass over the open Factory PRs: merged or closed ones are recorded and their previews removed."""
        async with heartbeating():
            await poll_pr_states(self.cfg, self.engine, self.http)

    @activity.defn
    async def prune_records(self) -> None:
        """Remove the records of work finished longer than `retention_days` ago (database rows only)."""
        audit_days = self.cfg.auth.audit_retention_days  # the audit log has its own period (0: keep it)
        old_audit = timedelta(days=audit_days) if audit_days > 0 else None
        people = await asyncio.to_thread(prune_people, self.engine, old_audit)
        if people:
            log.info("retention removed %s", people.counts)
        if self.cfg.retention_days <= 0:
            return
        async with heartbeating():
            pruned = await asyncio.to_thread(prune, self.engine, timedelta(days=self.cfg.retention_days))
        if pruned:
            log.info("retention (%g days) removed %s", self.cfg.retention_days, pruned.counts)
