"""The activity a schedule's workflow runs: start the schedule's task or workflow run through the launcher."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from factory.contracts import ScheduledWork, ScheduledWorkResult  # noqa: F401 (the wire forms live in factory.contracts)
from factory.launcher import Launcher, LaunchError, NewTask
from factory.store.kv import kv_get, kv_set
from factory.store.tables import FINISHED, Task, WorkflowRun, session_scope


class ScheduleActivities:
    """Starts scheduled work; `get_launcher` is the worker's launcher (set once it is connected)."""

    def __init__(self, engine: Engine, get_launcher: Callable[[], Launcher | None]):
        self.engine = engine
        self.get_launcher = get_launcher

    @activity.defn
    async def start_scheduled_work(self, work: ScheduledWork) -> ScheduledWorkResult:
        """Start the work unless the schedule's last work is still running; once per workflow execution."""
        info = activity.info()
        done_key = f"schedule:fired:{info.workflow_id}:{info.workflow_run_id}"
        if (made := await asyncio.to_thread(kv_get, self.engine, done_key)) is not None:
            kind, _, ident = made.partition(":")
            return ScheduledWorkResult(**{"task_id" if kind == "task" else "workflow_run_id": int(ident)})
        busy = await asyncio.to_thread(self._still_running, work.schedule)
        if busy:
            return ScheduledWorkResult(skipped=f"{busy} of this schedule is still running")
        launcher = self.get_launcher()
        if launcher is None:
            raise ApplicationError("the worker's launcher is not ready yet", type="NotReady")
        try:
            if work.workflow:
                run = await launcher.start_workflow_run(work.workflow, work.title, work.description, work.repo)
                made = f"run:{run.id}"
            else:
                new = NewTask(
                    title=work.title, description=work.description, repo=work.repo, agent_type=work.agent_type
                )
                made = f"task:{(await launcher.create_task(new)).id}"
        except LaunchError as exc:
            raise ApplicationError(str(exc), type="LaunchError", non_retryable=True) from None
        await asyncio.to_thread(kv_set, self.engine, done_key, made)
        await asyncio.to_thread(kv_set, self.engine, f"schedule:last:{work.schedule}", made)
        kind, _, ident = made.partition(":")
        return ScheduledWorkResult(**{"task_id" if kind == "task" else "workflow_run_id": int(ident)})

    def _still_running(self, schedule: str) -> str | None:
        last = kv_get(self.engine, f"schedule:last:{schedule}")
        if not last:
            return None
        kind, _, ident = last.partition(":")
        with session_scope(self.engine) as s:
            if kind == "task":
                task = s.get(Task, int(ident))
                return f"task #{ident}" if task is not None and task.status not in FINISHED else None
            run = s.get(WorkflowRun, int(ident))
            return f"workflow run #{ident}" if run is not None and run.status in ("pending", "running") else None
