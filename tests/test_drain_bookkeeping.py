"""A draining host waits for each finished run's next step on it: a run that pushed its own work counts as its
workflow step's push (temporal/drain.py), so the drain does not wait out its bound for a step that never comes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from factory.contracts import AgentRequest, AgentResult, AgentSpec, ChangesResult, FinalizeInput, RepoRef, WorkspaceInfo
from temporal.drain import HostWork

pytestmark = pytest.mark.fast

SPEC = AgentSpec(
    agent_type="coder", system_prompt_file="coder.md", tools=["Write"], total_timeout_s=60, idle_timeout_s=30
)
WS = WorkspaceInfo(
    path="/w/task-5", branch="factory/task-5", base_branch="main", host="h", host_queue="q@h", agent_queue="q@h/agents"
)


class _Ran(ActivityInboundInterceptor):
    """The run_agent activity beneath the interceptor, ending as `result`."""

    def __init__(self, result: AgentResult) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.result = result

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        return self.result


async def _run(work: HostWork, req: AgentRequest, result: AgentResult) -> None:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_type="run_agent")
    inbound = work.interceptor().intercept_activity(_Ran(result))
    await env.run(inbound.execute_activity, ExecuteActivityInput(fn=lambda r: r, args=[req], executor=None, headers={}))


@pytest.mark.parametrize("pushed", [True, False])
async def test_a_workflow_steps_run_that_pushed_counts_as_its_finalize(pushed: bool):
    work = HostWork()
    push = FinalizeInput(task_id=5, workspace=WS, repo=RepoRef(name="demo", url="file:///r"), message="m")
    req = AgentRequest(task_id=5, agent=SPEC, cwd=WS.path, prompt="p", session_id="s", workflow_run_id=9, finalize=push)
    changes = ChangesResult(committed=True, pushed=True, commits_ahead=1) if pushed else None
    await _run(work, req, AgentResult(session_id="s", result_text="done", changes=changes))
    assert ("run_agent", 5) in work.finished
    # the drain's wait for this step (drain(): finalize_changes for a workflow's step) is over at once, or not yet
    assert (("finalize_changes", 5) in work.finished) is pushed
