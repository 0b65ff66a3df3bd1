"""Every recorded history in tests/histories/ replays against the current workflow code.

Histories are only ever added, never re-recorded. Each one is a workflow path that can be waiting in
production when a new release starts (a question waits up to 72 h, a review loop, a handoff, a budget
question or hold, a CI-fix round, a failover, a scheduled start): the new code must replay it step for
step. A history that stops replaying is a bug in the change that broke it — guard the change with
`workflow.patched` (docs/versioning.md) — not a file to refresh. New paths get a new history, recorded
once by hand with tests/histories/record.py.
"""

from __future__ import annotations

import importlib.machinery as machinery
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

import workflows.task
from factory.contracts import TaskInput, TaskResult
from temporal.client import data_converter
from temporal.workflow_sandbox import workflow_runner
from workflows.memory_service import MemoryServiceWorkflow
from workflows.registry import WORKFLOWS

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]
HISTORIES = Path(__file__).resolve().parent / "histories"
FILES = sorted(HISTORIES.glob("*.json"))


def _replayer() -> Replayer:
    """The production set-up: every workflow type, Factory's converter, the production sandbox."""
    return Replayer(
        workflows=[*WORKFLOWS, MemoryServiceWorkflow], data_converter=data_converter, workflow_runner=workflow_runner()
    )


def test_the_corpus_holds_every_path_that_can_be_waiting():
    names = {p.stem for p in FILES}
    assert {
        "code_review", "code_review_reviewer_step", "task_question_answered", "code_review_changes_then_approved",
        "handoff_reviewer_task", "budget_question_raised", "budget_hold_then_start", "ci_fix_round",
        "failover_moved_host", "schedule_started_task",
    } <= names  # fmt: skip


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_a_recorded_history_replays(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    res = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert res.replay_failure is None, f"{path.name} no longer replays: {res.replay_failure}"


@workflow.defn(name="TaskWorkflow")
class _ReorderedTask:
    """A TaskWorkflow whose first step changed without a patch: what the replay test exists to catch."""

    @workflow.run
    async def run(self, inp: TaskInput) -> TaskResult:
        await workflow.execute_activity("open_pull_request", inp, start_to_close_timeout=timedelta(seconds=5))
        return TaskResult(status="done")


async def test_an_unpatched_change_of_a_workflow_fails_the_replay():
    history = WorkflowHistory.from_json("q", (HISTORIES / "task_question_answered.json").read_text())
    # unsandboxed: the sandbox would re-import this test module, which reads the disk at import
    replayer = Replayer(
        workflows=[_ReorderedTask], data_converter=data_converter, workflow_runner=UnsandboxedWorkflowRunner()
    )
    res = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert res.replay_failure is not None


async def test_the_sandbox_compiles_a_workflow_module_once_per_process(monkeypatch, tmp_path):
    """The sandbox runs a workflow's modules afresh for each run; their source is compiled once
    (temporal/workflow_sandbox.py), also where Python keeps no bytecode on disk."""
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path))  # no bytecode to be found, none written
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    compiled: list[str] = []
    real = machinery.SourceFileLoader.source_to_code

    def counting(self: Any, data: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(str(path))
        return real(self, data, path, *args, **kwargs)

    monkeypatch.setattr(machinery.SourceFileLoader, "source_to_code", counting)
    history = (HISTORIES / "task_done_agent_pushed.json").read_text()
    for run in ("first", "second"):
        res = await _replayer().replay_workflow(WorkflowHistory.from_json(run, history), raise_on_replay_failure=False)
        assert res.replay_failure is None
    assert compiled.count(str(Path(workflows.task.__file__))) <= 1, compiled
