"""Worker set-up: the shared queue, this host's queue, and this host's agent queue.

- `<task_queue>`: workflows and host-independent activities (records, GitHub, notifications).
- `<task_queue>@<worker_id>`: git steps on the worktrees this host holds.
- `<task_queue>@<worker_id>/agents`: agent runs, at most `max_concurrent_agents` at once,
  so waiting tasks stay queued in Temporal and git/API steps never wait behind agents.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from activities._agent_process import refusal_logger
from activities.agent import AgentActivities
from activities.agent_stop import AgentStopper
from activities.budgets import BudgetActivities
from activities.checks import CheckActivities
from activities.environments import EnvironmentActivities
from activities.github import GithubActivities
from activities.memory import MemoryActivities
from activities.records import Notifier, RecordActivities
from activities.schedules import ScheduleActivities
from activities.singletons import SingletonActivities
from activities.workflow_runs import WorkflowRunActivities
from activities.workspace import WorkspaceActivities
from factory.config import FactoryConfig
from factory.environments.broker import EnvironmentBroker
from factory.integrations.setup import build_integrations
from factory.launcher import Launcher
from factory.memory.service import memory_queue
from factory.sandbox.proxy import EgressProxy, Limits
from factory.search_attributes import SEARCH_ATTRIBUTES
from factory.store.board import Board
from factory.store.tables import make_engine
from temporal.background import host_loops
from temporal.drain import HostWork
from temporal.drain import drain as drain_host
from temporal.launcher import TemporalLauncher
from temporal.memory import RemoteMemory
from temporal.schedules import sync_schedules
from temporal.singletons import ensure_singletons
from temporal.workflow_sandbox import workflow_runner
from workflows.memory_service import MemoryServiceWorkflow
from workflows.registry import WORKFLOWS

log = logging.getLogger("factory.worker")


def queues(cfg: FactoryConfig) -> tuple[str, str, str, str]:
    host = cfg.temporal.worker_id or socket.gethostname()
    tq = cfg.temporal.task_queue
    return host, tq, f"{tq}@{host}", f"{tq}@{host}/agents"


@dataclass
class Runtime:
    """The long-lived pieces a worker's activities share."""

    cfg: FactoryConfig
    engine: Engine
    board: Board
    http: httpx.AsyncClient
    memory: Any = None
    notifiers: list[Notifier] = field(default_factory=list)
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    client: Any = None  # the worker's Temporal client (set by run_worker)
    launcher: Launcher | None = None  # set by run_worker: Telegram answers go through it
    proxy: EgressProxy | None = None  # the sandboxes' way out (sandbox.network: allowlist)
    broker: EnvironmentBroker | None = None  # runs agents' Docker environments for them
    serves_memory: bool = False  # this process owns the embedded memory store and serves the others

    @classmethod
    async def create(cls, cfg: FactoryConfig, engine: Engine | None = None, memory_owner: bool = True) -> Runtime:
        """Open what a worker shares.

        `memory_owner`: open the embedded memory store here and serve it to other processes;
        otherwise memory is reached through the owner (`run_worker` sets it up). With
        `SURREALDB_URL` every process opens the server itself.
        """
        engine = engine or make_engine(cfg.db_url)
        board = Board(engine, cfg.message_board.enabled, cfg.secret_values())
        rt = cls(cfg=cfg, engine=engine, board=board, http=httpx.AsyncClient(timeout=30))
        rt.broker = EnvironmentBroker(cfg)
        await rt.broker.start()
        if cfg.sandbox.enabled and cfg.sandbox.network == "allowlist":
            rt.proxy = EgressProxy(
                on_refused=refusal_logger(engine), extra_hosts=rt.broker.allowed_targets, workspace=cfg.workspace_path,
                limits=Limits.of(cfg.sandbox),
            )
        if cfg.memory.enabled and (memory_owner or cfg.surrealdb_url):
            from factory.memory.store import MemoryStore

            rt.memory = await MemoryStore.open(cfg)  # never raises: an unreachable store is "degraded"
            rt.serves_memory = not cfg.surrealdb_url
        found = build_integrations(cfg, engine, rt.http)
        rt.notifiers.extend(found.notifiers)
        board.listeners.extend(found.board_listeners)
        # per host: what acts on this host's disk and Docker; the shared work runs once per cluster
        # as singleton workflows (temporal/singletons.py, started by run_worker)
        rt.background.extend(host_loops(cfg, engine, queues(cfg)[0]))
        return rt

    async def close(self) -> None:
        for t in self.background:
            t.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.memory is not None and hasattr(self.memory, "close"):
            try:
                await self.memory.close()
            except Exception:  # closing never matters more than shutting down
                pass
        await self.http.aclose()
        if self.proxy is not None:
            await self.proxy.close()
        if self.broker is not None:
            await self.broker.stop()


def workflows() -> Sequence[type]:
    return WORKFLOWS


def beats(cfg: FactoryConfig) -> dict[str, timedelta]:
    """How often a heartbeat reaches the server: a quarter of `temporal.heartbeat_timeout_seconds` (at most 30).

    The SDK otherwise sends one every 0.8 x the timeout, so a loop held up for a fifth of it (a busy host, a
    long write) made a live activity time out and run again; now it takes three quarters of it.
    """
    every = timedelta(seconds=max(0.5, min(cfg.temporal.heartbeat_timeout_seconds, 30) / 4))
    return {"max_heartbeat_throttle_interval": every, "default_heartbeat_throttle_interval": every}


def build_workers(client: Client, rt: Runtime, work: HostWork | None = None) -> list[Worker]:
    """This host's workers (`work`: what is running here, recorded for draining)."""
    cfg = rt.cfg
    tracked = [work.interceptor()] if work is not None else []
    host, tq, host_queue, agent_queue = queues(cfg)
    rec = RecordActivities(rt.engine, rt.board, rt.notifiers)
    ws = WorkspaceActivities(
        cfg, host=host, host_queue=host_queue, agent_queue=agent_queue, broker=rt.broker, announce=rec.announce
    )
    agent = AgentActivities(
        cfg, rt.engine, rt.board, host=host, memory=rt.memory, proxy=rt.proxy, broker=rt.broker, finalize=ws.finalize
    )
    gh = GithubActivities(cfg, rt.http)
    runs = WorkflowRunActivities(rt.engine, rt.board)
    budget = BudgetActivities(cfg, rt.engine)
    shared_acts: list[Any] = [
        budget.check_budget_hold,
        ws.prepare_workspace,
        ws.clean_up_here,  # a local activity: a done task's worktree removed by the host holding its workflow task
        gh.open_pull_request,
        rec.update_task,
        rec.update_workflow_run,
        rec.record_question,
        rec.record_answer,
        rec.close_question,
        rec.publish_event,
        rec.send_notification,
        runs.create_step_task,
        runs.record_handoff,
        ScheduleActivities(rt.engine, lambda: rt.launcher).start_scheduled_work,
    ]
    single = SingletonActivities(cfg, rt.engine, rt.http, lambda: rt.launcher)
    shared_acts += [single.poll_telegram, single.poll_pull_requests, single.prune_records]
    envs = EnvironmentActivities(cfg, rt.broker)
    checks = CheckActivities(cfg, rt.engine, rt.http)  # proof of work: runs on the host with the checkout
    shared_acts.append(checks.post_evidence_comment)
    if rt.memory is not None:
        shared_acts.append(MemoryActivities(rt.memory).remember_task)
    host_acts: list[Any] = [
        ws.finalize_changes,
        ws.cleanup_workspace,
        ws.ping_host,
        envs.cleanup_task_environments,
        checks.run_checks,
        AgentStopper(cfg).stop_agent,  # a cancel's direct kill path (activities/agent_stop.py)
    ]
    executor = ThreadPoolExecutor(max_workers=8)
    served: list[Worker] = []
    if rt.serves_memory:
        served.append(
            Worker(
                client,
                task_queue=memory_queue(tq),
                workflows=[MemoryServiceWorkflow],
                activities=[MemoryActivities(rt.memory).serve_memory],
                workflow_runner=workflow_runner(),
            )
        )
    return served + [
        Worker(
            client,
            task_queue=tq,
            workflows=list(workflows()),
            activities=shared_acts,
            activity_executor=executor,
            interceptors=tracked,
            # only factory.contracts passes through the sandbox; see temporal/workflow_sandbox.py
            workflow_runner=workflow_runner(),
            **beats(cfg),
        ),
        Worker(
            client, task_queue=host_queue, activities=host_acts, activity_executor=executor, interceptors=tracked,
            **beats(cfg),
        ),  # fmt: skip
        Worker(
            client,
            task_queue=agent_queue,
            activities=[agent.run_agent],
            max_concurrent_activities=cfg.max_concurrent_agents,
            interceptors=tracked,
            **beats(cfg),
            # a drain lets runs go on this long; a plain stop cancels them itself (run_worker)
            graceful_shutdown_timeout=timedelta(seconds=cfg.workers.drain_timeout_seconds + 30),
        ),
    ]


async def ensure_search_attributes(client: Client) -> None:
    """Register Factory's search attributes where the server allows it (dev server, self-hosted)."""
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    # the SDK's indexed value types carry the server's enum numbers
    wanted = {k.name: int(k.indexed_value_type) for k in SEARCH_ATTRIBUTES}
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=wanted)
        )
    except Exception as exc:  # already there, or not allowed (Temporal Cloud: add them in the UI)
        log.debug("search attributes not added: %s", exc)


async def run_worker(
    cfg: FactoryConfig,
    client: Client,
    stop: asyncio.Event,
    rt: Runtime | None = None,
    memory_owner: bool = True,
    drain: asyncio.Event | None = None,
) -> None:
    """Run this host's workers until `stop` is set, or until `drain` is set and the running work is done.

    `memory_owner`: see `Runtime.create`. Draining: see `temporal.drain`.
    """
    own = rt is None
    rt = rt or await Runtime.create(cfg, memory_owner=memory_owner)
    rt.client = rt.client or client
    if rt.memory is None and cfg.memory.enabled:
        rt.memory = RemoteMemory(cfg, client)
    rt.launcher = rt.launcher or TemporalLauncher(cfg, client, rt.engine)
    work = HostWork()
    workers = build_workers(client, rt, work)
    drain = drain or asyncio.Event()
    try:
        async with _all(workers):
            await sync_schedules(client, cfg)  # config.yml's schedules, created or updated in Temporal
            await ensure_singletons(client, cfg)  # Telegram, PR poll, retention: started unless running
            log.info("worker %s polling %s", queues(cfg)[0], [w.task_queue for w in workers])
            await _first(stop, drain)
            if drain.is_set() and not stop.is_set():
                agents = next(w for w in workers if w.task_queue == queues(cfg)[3])
                await drain_host(cfg, work, agents, stop)
                log.info("worker %s drained", queues(cfg)[0])
            else:  # a plain stop: runs ending within seconds end; the others are cancelled and retried later
                await work.wait(lambda: not work.running, asyncio.get_running_loop().time() + 5, asyncio.Event())
                work.cancel_runs()
    finally:
        if own:
            await rt.close()


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()


class _all:
    def __init__(self, workers: list[Worker]):
        self.workers = workers
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> None:
        self.tasks = [asyncio.create_task(w.run()) for w in self.workers]

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers), return_exceptions=True)
        await asyncio.gather(*self.tasks, return_exceptions=True)
