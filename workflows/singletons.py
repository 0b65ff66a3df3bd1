"""SingletonWorkflow: work done once per cluster, as one long-running workflow per job with a fixed id.

Every worker asks at start for each job's workflow to run (temporal/singletons.py: start it if it
is not running, adopt it if it is), so N hosts still run one Telegram poller, one PR poll and one
pass of retention over the shared database. Its activities run on the shared queue: any live worker
takes them, and a dead worker's activity moves to another once its heartbeat stops.

- `telegram`: back-to-back `poll_telegram` spans (each heartbeats); a failed span is retried
  at once by the activity's retry policy, so polling never stops for long.
- `pull_requests`, `retention`: one pass, then a durable timer of `every_s`.
The history is kept short: the workflow continues as new when Temporal suggests it, or after
`MAX_PASSES` passes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from factory.contracts import PollSpan
from factory.contracts import activities as acts

MAX_PASSES = 500


@dataclass
class Singleton:
    """One job: its name, the pause between passes and (Telegram) how long one poll span lasts."""

    job: str  # telegram | pull_requests | retention
    every_s: float = 0.0
    span_s: float = 600.0
    heartbeat_s: float = 30.0
    passes: int = 0


@workflow.defn
class SingletonWorkflow:
    @workflow.run
    async def run(self, job: Singleton) -> None:
        while True:
            try:
                await self._pass(job)
            except ActivityError as exc:  # the next pass tries again; the job never ends on a failure
                workflow.logger.warning("singleton %s: pass failed: %s", job.job, exc.cause or exc)
            job.passes += 1
            if workflow.info().is_continue_as_new_suggested() or job.passes >= MAX_PASSES:
                workflow.continue_as_new(dataclasses.replace(job, passes=0))
            if job.every_s > 0:
                await workflow.sleep(timedelta(seconds=job.every_s))

    async def _pass(self, job: Singleton) -> None:
        beat = timedelta(seconds=job.heartbeat_s)
        if job.job == "telegram":
            await workflow.execute_activity(
                acts.poll_telegram,
                PollSpan(job.span_s),
                start_to_close_timeout=timedelta(seconds=job.span_s + 120),
                heartbeat_timeout=beat,
                # a span cut short (its worker died) is taken up again at once, elsewhere
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60)),
                summary="Telegram getUpdates",
            )
            return
        method = {
            "pull_requests": acts.poll_pull_requests,
            "retention": acts.prune_records,
        }[job.job]
        await workflow.execute_activity(
            method,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=beat,
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary=job.job,
        )
