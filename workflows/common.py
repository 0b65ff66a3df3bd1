"""Shared workflow helpers: search attributes, activity options, error text, notifications."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    TimeoutError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from activities.records import NotifyInput, RecordActivities
    from factory.contracts import TaskEvent
    from factory.search_attributes import AGENT_TYPE, REPO, STAGE, TASK_ID  # noqa: F401 (re-exported to workflows)


# short, idempotent database writes; also run as local activities (no server round trip)
QUICK = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=20)),
}
GIT = {
    "start_to_close_timeout": timedelta(minutes=20),
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5),
}
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)


def error_text(exc: BaseException) -> str:
    """The most useful message in a chain of Temporal errors."""
    cur: BaseException | None = exc
    while isinstance(cur, ActivityError | ChildWorkflowError) and cur.cause is not None:
        cur = cur.cause
    if isinstance(cur, TimeoutError):
        return f"{cur.type.name.lower().replace('_', ' ')} timeout of a step".replace("timeout_type.", "")
    if isinstance(cur, ApplicationError):
        return cur.message
    return str(cur) if cur is not None else str(exc)


def error_type(exc: BaseException) -> str | None:
    cur: BaseException | None = exc
    while isinstance(cur, ActivityError | ChildWorkflowError) and cur.cause is not None:
        cur = cur.cause
    return cur.type if isinstance(cur, ApplicationError) else None


class Notifications:
    """Fire-and-collect notifications: board post first, each channel in its own retried activity."""

    def __init__(self) -> None:
        self._pending: list[Any] = []

    async def emit(self, event: TaskEvent) -> None:
        try:
            channels = await workflow.execute_local_activity_method(
                RecordActivities.publish_event, event, summary=f"event: {event.kind}", **QUICK
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise  # a cancel of the workflow landed here: it must not be swallowed
            workflow.logger.warning("could not post %s event", event.kind)
            return
        for channel in channels:
            self._pending.append(
                workflow.start_activity_method(
                    RecordActivities.send_notification,
                    NotifyInput(channel=channel, event=event),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=NOTIFY_RETRY,
                    summary=f"{channel}: {event.kind}",
                )
            )

    async def drain(self) -> None:
        """Wait for notifications still retrying (after the task's outcome is recorded)."""
        pending, self._pending = self._pending, []
        if pending:
            results = await asyncio.gather(*pending, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    workflow.logger.warning("a notification gave up: %s", error_text(r))


def set_stage(stage: str, details: str) -> None:
    workflow.upsert_search_attributes([STAGE.value_set(stage)])
    workflow.set_current_details(details)
