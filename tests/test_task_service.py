"""The task service's state rules, on an in-memory fake of the workflow-engine port and a real SQLite store.

The fake is of Factory's own port (`factory.tasks.ports.WorkflowEngine`), not of a hosted service:
it records what the service asked the engine for. Repos are real: a configured local bare
repository, asked with real `git ls-remote` whether a retried task's branch was pushed.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from factory.config import FactoryConfig, load_config
from factory.contracts import AnswerInput, TaskInput, WorkflowRunInput
from factory.domain.lifecycle import AlreadyRunning, AnswerRefused, Conflict, LaunchError, NewTask, NotFound
from factory.store.tables import (
    Handoff,
    Question,
    Task,
    TaskStatus,
    WorkflowRun,
    WorkflowStatus,
    make_engine,
    session_scope,
)
from factory.tasks.service import TaskService
from tests.conftest import make_remote, write_config

pytestmark = pytest.mark.fast
ROOT = Path(__file__).resolve().parent.parent


class FakeEngine:
    """Factory's WorkflowEngine port in memory: which workflows run, and every call made to it."""

    def __init__(self) -> None:
        self.started: list[tuple[str, Any, bool]] = []  # (workflow id, input, again)
        self.running: set[str] = set()
        self.answers: list[tuple[int, AnswerInput]] = []
        self.cancels: list[str] = []
        self.refuse_answer: str | None = None
        self.fail_start: Exception | None = None
        self.closes = True  # whether a last run closes within the wind-down
        self.start_delay = 0.0

    def task_workflow_id(self, task_id: int) -> str:
        return f"task-{task_id}"

    def run_workflow_id(self, run_id: int) -> str:
        return f"workflow-{run_id}"

    async def check_health(self) -> None:
        return None

    async def start_task(self, inp: TaskInput, agent_type: str, again: bool = False) -> None:
        await asyncio.sleep(self.start_delay)
        if self.fail_start:
            raise self.fail_start
        wid = self.task_workflow_id(inp.task_id)
        if wid in self.running:
            raise AlreadyRunning(f"task {inp.task_id} is already running")
        self.running.add(wid)
        self.started.append((wid, inp, again))

    async def start_run(self, inp: WorkflowRunInput) -> None:
        if self.fail_start:
            raise self.fail_start
        self.running.add(self.run_workflow_id(inp.run_id))
        self.started.append((self.run_workflow_id(inp.run_id), inp, False))

    async def answer(self, task_id: int, answer: AnswerInput) -> None:
        if self.refuse_answer:
            raise AnswerRefused(self.refuse_answer)
        self.answers.append((task_id, answer))

    async def cancel(self, workflow_id: str) -> bool:
        self.cancels.append(workflow_id)
        return workflow_id in self.running

    async def wait_closed(self, workflow_id: str, timeout: float) -> bool:
        if self.closes:
            self.running.discard(workflow_id)
        return self.closes

    async def stage(self, task_id: int) -> str | None:
        return "agent" if self.task_workflow_id(task_id) in self.running else None


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path / "remote.git")


@pytest.fixture
def cfg(tmp_path: Path, remote: Path) -> FactoryConfig:
    return load_config(write_config(tmp_path, remote, "http://127.0.0.1:9"))


@pytest.fixture
def svc(cfg: FactoryConfig, tmp_path: Path) -> TaskService:
    return TaskService(cfg, make_engine(f"sqlite:///{tmp_path / 'factory.db'}"), FakeEngine())


def fake(svc: TaskService) -> FakeEngine:
    assert isinstance(svc.workflows, FakeEngine)
    return svc.workflows


def row(svc: TaskService, task_id: int) -> Task:
    with session_scope(svc.engine) as s:
        task = s.get(Task, task_id)
    assert task is not None
    return task


def put(svc: TaskService, **fields: Any) -> Task:
    with session_scope(svc.engine) as s:
        task = Task(**{"title": "t", "repo": "demo", "agent_type": "coder", **fields})
        s.add(task)
        s.commit()
        s.refresh(task)
        return task


async def test_create_validates_before_any_row_and_starts_only_when_asked(svc):
    with pytest.raises(LaunchError, match="unknown agent_type"):
        await svc.create_task(NewTask(title="x", repo="demo", agent_type="nobody"))
    with pytest.raises(LaunchError):
        await svc.create_task(NewTask(title="x", repo="not/configured/nor/reachable"))
    with session_scope(svc.engine) as s:
        assert s.exec(select(Task)).all() == []
    kept = await svc.create_task(NewTask(title="later", repo="demo"), run=False)
    started = await svc.create_task(NewTask(title="now", repo="demo"))
    assert (kept.status, kept.agent_type) == (TaskStatus.queued, "coder")  # the repo's default agent
    assert [(wid, again) for wid, _, again in fake(svc).started] == [(f"task-{started.id}", False)]


async def test_run_starts_only_a_queued_task_and_only_once(svc):
    queued = put(svc)
    await svc.run_task(queued.id)
    assert fake(svc).started[0][0] == f"task-{queued.id}"
    with pytest.raises(AlreadyRunning):
        await svc.start_task(row(svc, queued.id))
    for status in (TaskStatus.in_progress, TaskStatus.awaiting_input, TaskStatus.done, TaskStatus.failed):
        other = put(svc, status=status)
        with pytest.raises(Conflict, match="not queued"):
            await svc.run_task(other.id)
    with pytest.raises(NotFound):
        await svc.run_task(999)
    assert len(fake(svc).started) == 1


async def test_cancel_signals_a_running_workflow_marks_a_never_started_one_and_refuses_a_finished_one(svc):
    running = put(svc, status=TaskStatus.in_progress)
    fake(svc).running.add(f"task-{running.id}")
    assert (await svc.cancel_task(running.id)).signalled
    assert row(svc, running.id).status == TaskStatus.in_progress  # the workflow itself records its end

    never = put(svc)
    assert not (await svc.cancel_task(never.id)).signalled
    assert row(svc, never.id).status == TaskStatus.cancelled and row(svc, never.id).finished_at is not None

    for status in (TaskStatus.done, TaskStatus.failed, TaskStatus.cancelled):
        done = put(svc, status=status)
        with pytest.raises(Conflict, match="already"):
            await svc.cancel_task(done.id)
        assert f"task-{done.id}" not in fake(svc).cancels
        assert row(svc, done.id).status == status


async def test_cancel_run_follows_the_same_rules(svc):
    with session_scope(svc.engine) as s:
        pending, finished = (
            WorkflowRun(name="code_review", title="a", repo="demo"),
            WorkflowRun(name="code_review", title="b", repo="demo", status=WorkflowStatus.completed),
        )
        s.add_all([pending, finished])
        s.commit()
        ids = pending.id, finished.id
    assert not (await svc.cancel_run(ids[0])).signalled
    with pytest.raises(Conflict, match="already completed"):
        await svc.cancel_run(ids[1])
    with session_scope(svc.engine) as s:
        assert s.get(WorkflowRun, ids[0]).status == WorkflowStatus.cancelled
    with pytest.raises(NotFound):
        await svc.cancel_run(999)


async def test_answer_goes_to_a_live_task_only(svc):
    waiting = put(svc, status=TaskStatus.awaiting_input)
    with pytest.raises(LaunchError, match="empty"):
        await svc.answer_task(waiting.id, "   ")
    await svc.answer_task(waiting.id, "use tabs", "telegram:ann", 7)
    assert fake(svc).answers == [
        (waiting.id, AnswerInput(answer="use tabs", question_id=7, answered_by="telegram:ann"))
    ]
    fake(svc).refuse_answer = "question 7 was answered already"
    with pytest.raises(AnswerRefused, match="answered already"):
        await svc.answer_task(waiting.id, "again")
    done = put(svc, status=TaskStatus.done)
    with pytest.raises(Conflict, match="asks nothing"):
        await svc.answer_task(done.id, "late")
    with pytest.raises(NotFound):
        await svc.answer_task(999, "x")
    assert len(fake(svc).answers) == 1


async def test_an_answer_in_the_moment_before_the_workflow_waits_is_offered_again(svc):
    # the question activity writes the row (awaiting_input, a pending question) one workflow task before
    # the workflow waits on it: its validator then still says "no pending question"
    waiting = put(svc, status=TaskStatus.awaiting_input)
    with session_scope(svc.engine) as s:
        s.add(Question(task_id=waiting.id, text="Which port?"))
        s.commit()
    refusals = iter(["this task has no pending question"] * 2)

    async def answer(task_id: int, ans: AnswerInput) -> None:
        reason = next(refusals, None)
        if reason:
            raise AnswerRefused(reason)
        fake(svc).answers.append((task_id, ans))

    fake(svc).answer = answer  # type: ignore[method-assign]
    await svc.answer_task(waiting.id, "8080")
    assert [a.answer for _, a in fake(svc).answers] == ["8080"]
    # with no pending question in the row, the refusal stands at once
    idle = put(svc, status=TaskStatus.in_progress)
    refusals = iter(["this task has no pending question"] * 100)
    with pytest.raises(AnswerRefused, match="no pending question"):
        await asyncio.wait_for(svc.answer_task(idle.id, "x"), 2)


def _push_branch(remote: Path, branch: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@x"
    subprocess.run(["git", "-C", str(remote), "branch", branch, "main"], check=True, env=env)


async def test_retry_reopens_a_failed_task_on_its_pushed_branch_with_its_session(svc, remote):
    pushed = put(svc, status=TaskStatus.failed, error="agent died", branch="factory/1-pushed", session_id="s-1")
    lost = put(svc, status=TaskStatus.cancelled, branch="factory/2-never-pushed")
    _push_branch(remote, "factory/1-pushed")
    await svc.retry_task(pushed.id)
    await svc.retry_task(lost.id)
    (_, first, again1), (_, second, again2) = fake(svc).started
    assert again1 and again2  # a new run after a failed or cancelled one
    assert first.branch == "factory/1-pushed" and first.resume_session_id == "s-1"
    assert "was failed: agent died" in first.context and "checked out for you" in first.context
    assert second.branch is None and "Nothing was pushed" in second.context  # asked of the remote, not the row
    assert row(svc, pushed.id).status == TaskStatus.queued and row(svc, pushed.id).error is None


async def test_retry_refuses_what_is_not_failed_a_run_step_and_a_run_still_winding_down(svc):
    for status in (TaskStatus.queued, TaskStatus.in_progress, TaskStatus.awaiting_input, TaskStatus.done):
        with pytest.raises(Conflict, match="only a failed or cancelled"):
            await svc.retry_task(put(svc, status=status).id)
    with session_scope(svc.engine) as s:
        run = WorkflowRun(name="code_review", title="r", repo="demo")
        s.add(run)
        s.commit()
        run_id = run.id
    with pytest.raises(Conflict, match="step of workflow run"):
        await svc.retry_task(put(svc, status=TaskStatus.failed, workflow_run_id=run_id).id)
    fake(svc).closes = False
    slow = put(svc, status=TaskStatus.failed)
    with pytest.raises(Conflict, match="winding down"):
        await svc.retry_task(slow.id)
    assert row(svc, slow.id).status == TaskStatus.failed and fake(svc).started == []


async def test_two_retries_at_once_start_one_run_and_a_failed_start_puts_the_row_back(svc):
    task = put(svc, status=TaskStatus.failed, error="boom")
    fake(svc).start_delay = 0.2
    outcomes = await asyncio.gather(svc.retry_task(task.id), svc.retry_task(task.id), return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "Task"]
    assert len(fake(svc).started) == 1

    other = put(svc, status=TaskStatus.failed, error="first")
    fake(svc).fail_start = RuntimeError("engine down")
    with pytest.raises(RuntimeError):
        await svc.retry_task(other.id)
    after = row(svc, other.id)
    assert (after.status, after.error) == (TaskStatus.failed, "first")


async def test_hand_off_only_a_finished_task_with_a_branch(svc):
    with pytest.raises(Conflict, match="hand off a finished task"):
        await svc.hand_off(put(svc, status=TaskStatus.in_progress, branch="factory/x").id, "reviewer")
    with pytest.raises(Conflict, match="no branch"):
        await svc.hand_off(put(svc, status=TaskStatus.done).id, "reviewer")
    with pytest.raises(NotFound):
        await svc.hand_off(999, "reviewer")
    src = put(svc, status=TaskStatus.done, branch="factory/3-done", result="added the parser")
    handoff, task = await svc.hand_off(src.id, "reviewer", "check the edge cases")
    (_, inp, _) = fake(svc).started[0]
    assert (task.agent_type, task.parent_task_id, inp.branch) == ("reviewer", src.id, "factory/3-done")
    assert "added the parser" in inp.context and "check the edge cases" in inp.context
    with session_scope(svc.engine) as s:
        assert [(h.from_task_id, h.to_task_id) for h in s.exec(select(Handoff))] == [(src.id, task.id)]
    assert handoff.to_agent == "reviewer"


async def test_a_workflow_run_that_cannot_start_is_recorded_failed(svc):
    with pytest.raises(LaunchError, match="title"):
        await svc.start_workflow_run("code_review", "  ", "", "demo")
    fake(svc).fail_start = RuntimeError("engine down")
    with pytest.raises(RuntimeError):
        await svc.start_workflow_run("code_review", "review it", "", "demo")
    with session_scope(svc.engine) as s:
        (run,) = s.exec(select(WorkflowRun)).all()
    assert run.status == WorkflowStatus.failed and "engine down" in (run.error or "")


async def test_stage_of_an_unknown_task_is_not_found(svc):
    with pytest.raises(NotFound):
        await svc.task_stage(999)
    assert await svc.task_stage(put(svc).id) is None


# Where a task's status may be written: the service's rows, the activities' progress updates (the
# store's update_task and the question/answer records) and nowhere else.
STATUS_WRITERS = {"factory/tasks/rows.py", "factory/store/writes.py", "activities/records.py"}
WRITE = re.compile(r"(\.status\s*=\s*|status\s*=\s*)TaskStatus\.|update\(Task\)")


def test_task_status_is_written_only_by_the_service_and_the_activities_progress_updates():
    found = set()
    for layer in ("factory", "activities", "workflows", "temporal", "api"):
        for path in (ROOT / layer).rglob("*.py"):
            text = path.read_text()
            if WRITE.search(text):
                found.add(str(path.relative_to(ROOT)))
    found -= {"activities/agent.py"}  # builds a TaskUpdate (status in_progress) that update_task applies
    assert found <= STATUS_WRITERS, found - STATUS_WRITERS
