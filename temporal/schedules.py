"""Factory's schedules as Temporal Schedules: they live in Temporal, so they survive restarts and show in its web UI.

`schedules:` in config.yml is applied at every worker start (created when missing, its spec and
action updated when present, its paused state left as people set it); `/api/schedules` lists,
creates, pauses, unpauses, deletes and triggers them. Each schedule starts a
`ScheduledWorkWorkflow`, which starts the task or workflow run; overlapping firings are skipped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.schedules import ScheduledWork
from factory.config import FactoryConfig
from factory.config_sections import ScheduleConfig
from factory.launcher import Conflict, NotFound
from workflows.scheduled import ScheduledWorkWorkflow

log = logging.getLogger("factory.schedules")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class ScheduleInfo:
    """What the API shows of a schedule."""

    name: str
    cron: str
    timezone: str
    repo: str
    title: str
    description: str
    agent_type: str | None
    workflow: str | None
    paused: bool
    next_runs: list[datetime]
    recent_runs: list[datetime]
    temporal_id: str


def schedule_id(cfg: FactoryConfig, name: str) -> str:
    """The Temporal schedule id of the named schedule."""
    return f"{cfg.temporal.id_prefix}schedule-{name}"


def _schedule(cfg: FactoryConfig, name: str, spec: ScheduleConfig) -> Schedule:
    work = ScheduledWork(
        schedule=name, repo=spec.repo, title=spec.title, description=spec.description,
        agent_type=spec.agent_type, workflow=spec.workflow, cron=spec.cron, timezone=spec.timezone,
    )  # fmt: skip
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ScheduledWorkWorkflow.run,
            work,
            id=f"{cfg.temporal.id_prefix}scheduled-{name}",
            task_queue=cfg.temporal.task_queue,
            static_summary=f"schedule {name}: {spec.title}",
        ),
        spec=ScheduleSpec(cron_expressions=[spec.cron], time_zone_name=spec.timezone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(paused=spec.paused, note="paused in config.yml" if spec.paused else None),
    )


async def create_schedule(client: Client, cfg: FactoryConfig, name: str, spec: ScheduleConfig) -> None:
    """Create a schedule.

    Raises:
        Conflict: one of this name exists.
    """
    try:
        await client.create_schedule(schedule_id(cfg, name), _schedule(cfg, name, spec))
    except ScheduleAlreadyRunningError as exc:
        raise Conflict(f"schedule {name!r} exists") from exc


async def sync_schedules(client: Client, cfg: FactoryConfig) -> None:
    """Create or update the schedules config.yml names (paused state as people left it)."""
    for name, spec in cfg.schedules.items():
        try:
            await client.create_schedule(schedule_id(cfg, name), _schedule(cfg, name, spec))
            log.info("schedule %s created (%s, %s)", name, spec.cron, spec.timezone)
        except ScheduleAlreadyRunningError:
            wanted = _schedule(cfg, name, spec)

            def update(inp: ScheduleUpdateInput, wanted: Schedule = wanted) -> ScheduleUpdate:
                wanted.state = inp.description.schedule.state  # a pause from the API outlives a restart
                return ScheduleUpdate(schedule=wanted)

            await client.get_schedule_handle(schedule_id(cfg, name)).update(update)


async def _handle(client: Client, cfg: FactoryConfig, name: str) -> ScheduleHandle:
    handle = client.get_schedule_handle(schedule_id(cfg, name))
    try:
        await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"schedule {name!r} not found") from exc
        raise
    return handle


async def describe_schedule(client: Client, cfg: FactoryConfig, name: str) -> ScheduleInfo:
    """The named schedule.

    Raises:
        NotFound: no such schedule.
    """
    handle = await _handle(client, cfg, name)
    desc = await handle.describe()
    sched = desc.schedule
    action = sched.action
    work = action.args[0] if isinstance(action, ScheduleActionStartWorkflow) and action.args else None
    if isinstance(work, Payload):  # a described schedule's arguments come back undecoded
        work = (await client.data_converter.decode([work], [ScheduledWork]))[0]
    work = work if isinstance(work, ScheduledWork) else None
    return ScheduleInfo(
        name=name, cron=work.cron if work else "", timezone=work.timezone if work else "UTC",
        repo=work.repo if work else "", title=work.title if work else "",
        description=work.description if work else "", agent_type=work.agent_type if work else None,
        workflow=work.workflow if work else None, paused=sched.state.paused,
        next_runs=list(desc.info.next_action_times[:5]),
        recent_runs=[a.scheduled_at for a in desc.info.recent_actions[-5:]],
        temporal_id=handle.id,
    )  # fmt: skip


async def list_schedules(client: Client, cfg: FactoryConfig) -> list[ScheduleInfo]:
    """Every Factory schedule of this deployment (its `temporal.id_prefix`), by name."""
    prefix = schedule_id(cfg, "")
    names = []
    async for entry in await client.list_schedules():
        if entry.id.startswith(prefix):
            names.append(entry.id.removeprefix(prefix))
    out = []
    for name in sorted(names):
        try:
            out.append(await describe_schedule(client, cfg, name))
        except NotFound:  # deleted between the listing and the look
            continue
    return out


async def pause_schedule(client: Client, cfg: FactoryConfig, name: str, paused: bool, note: str = "") -> None:
    """Pause or unpause the named schedule (NotFound when there is none)."""
    handle = await _handle(client, cfg, name)
    if paused:
        await handle.pause(note=note or "paused through the API")
    else:
        await handle.unpause(note=note or "unpaused through the API")


async def trigger_schedule(client: Client, cfg: FactoryConfig, name: str) -> None:
    """Fire the named schedule now (its overlap policy still applies)."""
    await (await _handle(client, cfg, name)).trigger(overlap=ScheduleOverlapPolicy.SKIP)


async def delete_schedule(client: Client, cfg: FactoryConfig, name: str) -> None:
    """Delete the named schedule (a config.yml one comes back at the next start unless removed there)."""
    await (await _handle(client, cfg, name)).delete()
