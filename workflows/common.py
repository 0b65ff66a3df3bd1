"""Shared workflow helpers: activity options, search attributes, the stage, error text."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, RetryState, TimeoutError

from factory.domain.errors import gave_up
from factory.search_attributes import AGENT_TYPE, REPO, STAGE, TASK_ID  # noqa: F401 (re-exported to workflows)

_RAN_OUT = (RetryState.MAXIMUM_ATTEMPTS_REACHED, RetryState.TIMEOUT)


# short, idempotent database writes; also run as local activities (no server round trip)
QUICK = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=20)),
}

# Steps that heartbeat while they run (activities/_heartbeat.py): when their worker dies, the
# next attempt starts within this time, not when a 20-minute start-to-close runs out.
HEARTBEAT = timedelta(seconds=30)

# A git host, GitHub, Plane or Telegram being down is waited out for hours, with capped backoff
# and no attempt limit; a business error (an ApplicationError raised non_retryable: no such
# branch, a 422) still ends the step at once.
OUTAGE_WINDOW = timedelta(hours=6)
OUTAGE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5))

GIT = {
    "start_to_close_timeout": timedelta(minutes=20),
    "heartbeat_timeout": HEARTBEAT,
    "schedule_to_close_timeout": OUTAGE_WINDOW,
    "retry_policy": OUTAGE_RETRY,
}
GITHUB = {
    "start_to_close_timeout": timedelta(minutes=5),
    "heartbeat_timeout": HEARTBEAT,
    "schedule_to_close_timeout": OUTAGE_WINDOW,
    "retry_policy": OUTAGE_RETRY,
}
# the same REST calls run as a local activity in the workflow's own worker (no server round trip, no
# workflow task of their own): a few seconds each, retried through an outage with markers and timers
GITHUB_LOCAL = {
    "start_to_close_timeout": timedelta(minutes=2),
    "schedule_to_close_timeout": OUTAGE_WINDOW,
    "retry_policy": OUTAGE_RETRY,
}
# one short send each; the 30-second timeout is what notices a dead worker
NOTIFY = {
    "start_to_close_timeout": timedelta(seconds=30),
    "schedule_to_close_timeout": OUTAGE_WINDOW,
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)),
}


def memory_step(outage_s: float) -> dict[str, Any]:
    """A task's memory: a short outage of the store (or of the process that owns it) is ridden out by
    retrying for `outage_s` (`memory.outage_seconds`, 40 s by default), a longer one is logged and let go,
    so a memory never holds a finished task for long."""
    return {
        "start_to_close_timeout": timedelta(seconds=min(20, outage_s)),
        "schedule_to_close_timeout": timedelta(seconds=outage_s),
        "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=8)),
    }


ENVIRONMENTS = {"start_to_close_timeout": timedelta(minutes=5), "heartbeat_timeout": HEARTBEAT}
# a done task's worktree removed in its workflow task (`clean_up_here`): a directory removed, no git, no
# docker; tried twice, then the host's own cleanup step does it under GIT's policy
HERE = {"start_to_close_timeout": timedelta(minutes=2), "retry_policy": RetryPolicy(maximum_attempts=2)}


def noticing(options: dict[str, Any], heartbeat_timeout_s: float) -> dict[str, Any]:
    """`options` with the run's heartbeat timeout (`temporal.heartbeat_timeout_seconds`) where it is
    shorter than 30 s: an operator who wants a dead worker noticed sooner gets that for git and
    GitHub steps too, not only for agents."""
    if heartbeat_timeout_s <= 0 or timedelta(seconds=heartbeat_timeout_s) >= options["heartbeat_timeout"]:
        return options
    return {**options, "heartbeat_timeout": timedelta(seconds=heartbeat_timeout_s)}


def error_text(exc: BaseException) -> str:
    """The most useful message in a chain of Temporal errors."""
    cur: BaseException | None = exc
    retries_ran_out = False
    while isinstance(cur, ActivityError | ChildWorkflowError) and cur.cause is not None:
        # a retryable failure that ends the step: its attempts or its retry window ran out
        retries_ran_out |= isinstance(cur, ActivityError) and cur.retry_state in _RAN_OUT
        cur = cur.cause
    if isinstance(cur, TimeoutError):
        last = cur.cause  # the retry window ran out: the last try's failure, when there was one
        if isinstance(last, ApplicationError) and not last.non_retryable:
            return gave_up(last.message, last.details)
        return f"{cur.type.name.lower().replace('_', ' ')} timeout of a step".replace("timeout_type.", "")
    if isinstance(cur, ApplicationError):
        # "not retried: ..." is in the message already (factory/domain/errors.py)
        return gave_up(cur.message, cur.details) if retries_ran_out and not cur.non_retryable else cur.message
    return str(cur) if cur is not None else str(exc)


def set_stage(stage: str, details: str) -> None:
    """Show where a run stands: the Stage search attribute and the web UI's current details."""
    workflow.upsert_search_attributes([STAGE.value_set(stage)])
    workflow.set_current_details(details)
