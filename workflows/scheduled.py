"""ScheduledWorkWorkflow: what a Temporal Schedule starts; it starts the schedule's task or workflow run.

The schedule's overlap policy is skip, so a firing while this workflow runs is dropped. The workflow
itself ends once the work is started, so the activity also skips a firing while the schedule's last
task or run is still at work: runs of one schedule never overlap.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from factory.contracts import ScheduledWork, ScheduledWorkResult
from factory.contracts import activities as acts
from workflows.common import QUICK


@workflow.defn
class ScheduledWorkWorkflow:
    @workflow.run
    async def run(self, work: ScheduledWork) -> ScheduledWorkResult:
        """Start the schedule's work (once, however often the activity is retried)."""
        return await workflow.execute_activity(
            acts.start_scheduled_work,
            work,
            summary=f"schedule {work.schedule}",
            **{**QUICK, "start_to_close_timeout": timedelta(minutes=2)},
        )
