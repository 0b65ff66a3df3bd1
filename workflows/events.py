"""What people hear about a run: event building, and notifications that never hold a run back."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

from factory.contracts import NotifyInput, TaskEvent, TaskInput, WorkflowRunInput, WorkflowRunResult
from factory.contracts import activities as acts
from workflows.common import NOTIFY, QUICK, error_text


def task_event(inp: TaskInput, kind: str, **fields: Any) -> TaskEvent:
    """An event about this task (and the workflow run it is a step of, if any)."""
    return TaskEvent(kind=kind, task_id=inp.task_id, workflow_run_id=inp.workflow_run_id, title=inp.title, **fields)


def run_event(inp: WorkflowRunInput, kind: str, result: WorkflowRunResult) -> TaskEvent:
    """An event about a workflow run as a whole: how it ended, its branch, PR and review."""
    summary = result.note or ("the review approved" if result.approved else None)
    return TaskEvent(
        kind=kind, workflow_run_id=inp.run_id, title=f"{inp.name}: {inp.title}", branch=result.branch,
        pr_url=result.pr_url, error=result.error, summary=summary, iteration=result.iterations or None,
    )  # fmt: skip


def iteration_event(inp: WorkflowRunInput, iteration: int, agent_type: str) -> TaskEvent:
    """A workflow run looped back for another iteration."""
    return TaskEvent(
        kind="workflow_iteration", workflow_run_id=inp.run_id, title=inp.title, iteration=iteration,
        agent_type=agent_type, summary=f"{inp.name}: iteration {iteration} of at most {inp.max_iterations}",
    )  # fmt: skip


class Notifications:
    """Fire-and-collect notifications: board post first, each channel in its own retried activity."""

    def __init__(self) -> None:
        self._pending: list[Any] = []

    async def emit(self, event: TaskEvent) -> None:
        """Post the event to the board and start one send per channel that wants it."""
        try:
            channels = await workflow.execute_local_activity(
                acts.publish_event, event, summary=f"event: {event.kind}", **QUICK
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise  # a cancel of the workflow landed here: it must not be swallowed
            workflow.logger.warning("could not post %s event", event.kind)
            return
        self.send(event, channels)

    def send(self, event: TaskEvent, channels: list[str]) -> None:
        """Start one send per channel for an event already on the board."""
        for channel in channels:
            self._pending.append(
                workflow.start_activity(
                    acts.send_notification,
                    NotifyInput(channel=channel, event=event),
                    summary=f"{channel}: {event.kind}",
                    **NOTIFY,
                )
            )

    async def drain(self) -> None:
        """Wait for notifications still retrying (after the run's outcome is recorded)."""
        pending, self._pending = self._pending, []
        if pending:
            results = await asyncio.gather(*pending, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    workflow.logger.warning("a notification gave up: %s", error_text(r))
