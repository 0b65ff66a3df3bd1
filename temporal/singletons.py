"""Start the cluster's singleton workflows (workflows/singletons.py) if they are not running.

Each job has a fixed workflow id (`<id_prefix>singleton-<job>`); a worker's start asks for it with
`USE_EXISTING` as the conflict policy, so a second worker (or a restart) adopts the running one
instead of starting another. A job config.yml has turned off is cancelled.

Which jobs are singletons, and which stay per host (temporal/background.py):
- once per cluster: Telegram polling, the PR poll, retention of database rows — they act on shared
  state (one bot, GitHub, the one database);
- per host: the Docker-environment janitor, the orphaned-checkout janitor, pruning of per-task
  files and closing this host's agent runs left open — they act on this host's disk, Docker engine
  and processes, which no other host can see.
"""

from __future__ import annotations

import logging

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from factory.config import FactoryConfig
from workflows.singletons import Singleton, SingletonWorkflow

log = logging.getLogger("factory.singletons")
RETENTION_EVERY_S = 3600.0
JOBS = ("telegram", "pull_requests", "retention")


def singleton_id(cfg: FactoryConfig, job: str) -> str:
    return f"{cfg.temporal.id_prefix}singleton-{job}"


def wanted(cfg: FactoryConfig) -> list[Singleton]:
    """The singleton jobs config.yml turns on."""
    beat = cfg.temporal.heartbeat_timeout_seconds  # how soon a dead worker's pass moves to another
    jobs = []
    # without a webhook secret Telegram is polled (with one, updates arrive at POST /webhooks/telegram)
    if cfg.telegram_token and cfg.telegram.polling and not cfg.telegram.webhook_secret:
        jobs.append(Singleton("telegram", heartbeat_s=beat))
    if not cfg.github.webhook_secret and cfg.github.pr_poll_minutes > 0:
        jobs.append(Singleton("pull_requests", every_s=max(cfg.github.pr_poll_minutes * 60, 0.2), heartbeat_s=beat))
    if cfg.retention_days > 0:
        jobs.append(Singleton("retention", every_s=RETENTION_EVERY_S, heartbeat_s=beat))
    return jobs


async def ensure_singletons(client: Client, cfg: FactoryConfig) -> None:
    """Start each wanted job's workflow unless it runs already; cancel the running ones no longer wanted."""
    jobs = wanted(cfg)
    for job in jobs:
        await client.start_workflow(
            SingletonWorkflow.run,
            job,
            id=singleton_id(cfg, job.job),
            task_queue=cfg.temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,  # a running one is adopted, not doubled
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,  # one that ended (cancelled, failed) starts again
            static_summary=f"singleton: {job.job}",
        )
    for name in set(JOBS) - {j.job for j in jobs}:
        try:
            await client.get_workflow_handle(singleton_id(cfg, name)).cancel()
            log.info("singleton %s is turned off in config.yml: cancelled", name)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
