"""Retried activities write once and lose nothing.

`record_question` and `publish_event` are keyed by workflow and activity: they run in Temporal's
ActivityEnvironment with the same activity info twice, as a retry (or a local activity replayed
after a lost workflow task) would call them, on a real SQLite file. The board inbox is marked
delivered only when the agent run that read it finishes: a worker killed mid-run (a real worker
process, the real CLI against the scripted model) leaves the message for the retried run.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

from activities.records import QuestionInput, RecordActivities
from factory.contracts import TaskEvent, TaskUpdate
from factory.store.board import Board
from factory.store.tables import AgentRun, Message, Question, Task, TaskLog, make_engine
from tests.fakes.anthropic import RecordedRequest, Stall, Text
from tests.procs import WorkerProcess, alive, pids_running


def _env(activity_id: str, attempt: int = 1, run_id: str = "run-a") -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, workflow_id="task-7", workflow_run_id=run_id, activity_id=activity_id, attempt=attempt
    )
    return env


def _setup(tmp_path: Path) -> tuple[RecordActivities, int]:
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    with Session(engine) as s:
        task = Task(title="t", repo="demo", status="in_progress")
        s.add(task)
        s.commit()
        s.refresh(task)
        assert task.id is not None
        return RecordActivities(engine, Board(engine)), task.id


def test_a_retried_record_question_stores_one_question_and_returns_it(tmp_path: Path) -> None:
    rec, task_id = _setup(tmp_path)
    inp = QuestionInput(task_id=task_id, text="Which name?", options=["a", "b"])
    first = _env("5", attempt=1).run(rec.record_question, inp)
    again = _env("5", attempt=2).run(rec.record_question, inp)
    assert again == first
    with Session(rec.engine) as s:
        assert [q.id for q in s.exec(select(Question))] == [first.id]
        logged = [lg.content for lg in s.exec(select(TaskLog)) if lg.content.startswith("question #")]
        assert logged == [f"question #{first.id}: Which name?"]
        assert s.get(Task, task_id).status == "awaiting_input"
    # another activity (a second question), or the same activity id in a continued-as-new run, asks anew
    other = _env("9").run(rec.record_question, inp)
    next_run = _env("5", run_id="run-b").run(rec.record_question, inp)
    assert len({first.id, other.id, next_run.id}) == 3


async def test_a_retried_publish_event_posts_one_board_message(tmp_path: Path) -> None:
    rec, task_id = _setup(tmp_path)
    heard: list[int] = []

    async def listener(msg: Message) -> None:
        heard.append(msg.id)

    rec.board.listeners.append(listener)
    event = TaskEvent(kind="started", task_id=task_id, title="Parse it", branch="factory/task-1-parse")
    assert await _env("3", attempt=1).run(rec.publish_event, event) == []
    assert await _env("3", attempt=2).run(rec.publish_event, event) == []
    with Session(rec.engine) as s:
        rows = list(s.exec(select(Message)))
    assert len(rows) == 1 and rows[0].content.startswith(f"task #{task_id} started: Parse it")
    await _env("4").run(rec.publish_event, event)  # a new event (another activity) is posted
    with Session(rec.engine) as s:
        ids = [m.id for m in s.exec(select(Message).order_by(Message.id))]
    assert len(ids) == 2
    # listeners (Telegram forwarding) run in posting order: had the retry told them, it would show first
    async with asyncio.timeout(5):
        while len(heard) < 2:
            await asyncio.sleep(0.01)
    assert heard == ids


async def test_a_retried_prepare_announces_the_start_once(tmp_path: Path) -> None:
    """The prepare step records the start and posts its event (patch started-in-prepare); a retry of the step
    (the same activity) writes the row again and posts nothing more."""
    rec, task_id = _setup(tmp_path)
    upd = TaskUpdate(task_id=task_id, branch="factory/task-1-parse", base_branch="main", host="h1", base_sha="abc")
    event = TaskEvent(kind="started", task_id=task_id, title="Parse it", branch="factory/task-1-parse")
    assert await _env("1", attempt=1).run(rec.announce, upd, event) == []
    assert await _env("1", attempt=2).run(rec.announce, upd, event) == []
    with Session(rec.engine) as s:
        posts = [m.content for m in s.exec(select(Message))]
        task = s.get(Task, task_id)
        assert task is not None and (task.branch, task.base_branch, task.host) == ("factory/task-1-parse", "main", "h1")
    assert posts == [f"task #{task_id} started: Parse it (branch factory/task-1-parse)"]


@pytest.mark.parametrize("session_saved", [True, False], ids=["resumed", "started-afresh"])
async def test_a_board_message_survives_a_killed_run_and_reaches_the_retry(
    start_factory, model, temporal_env, tmp_path: Path, session_saved: bool
) -> None:
    """The inbox is marked delivered when the run that read it finishes, not when it starts.

    The retry resumes the CLI session when the killed CLI had saved it, and starts afresh when it
    had not (its session file is removed here, as a CLI killed earlier would have left none): either
    way the message is in the retry's own prompt.
    """
    note = "Prefer short names"
    calls: list[int] = []

    def turn(rec: RecordedRequest) -> Any:
        calls.append(1)
        return Stall(60) if len(calls) == 1 else Text("Named it.")  # the first run hangs until killed

    # one scenario per case: the scripted model serves the whole test process, and the other case's requests
    # under the same name would be taken for this one's (its session id, which never shows up here)
    scenario = f"inbox-retry-{'resumed' if session_saved else 'afresh'}"
    model.add_scenario(scenario, [turn, Text("Named it.")])
    address = temporal_env.client.service_client.config.target_host
    async with start_factory(worker=False, temporal={"address": address}) as h:
        config = h.cfg.config_file
        first = WorkerProcess(config, tmp_path / "worker1.log").start()
        second = None
        try:
            t = await h.create("Name it", scenario, run=False)
            r = await h.api.post(
                "/api/messages", json={"sender": "ana", "to": "coder", "content": note, "task_id": t["id"]}
            )
            assert r.status_code == 201
            msg_id = r.json()["id"]
            assert (await h.api.post(f"/api/tasks/{t['id']}/run")).status_code == 202

            def running() -> AgentRun | None:
                with Session(h.runtime.engine) as s:
                    q = select(AgentRun).where(AgentRun.task_id == t["id"], AgentRun.pid.is_not(None))
                    return s.exec(q).first()

            run = await h.until(running, timeout=60, what="the agent to start")
            await h.until(lambda: model.requests_for(scenario), what="the model to be called")
            assert note in model.requests_for(scenario)[0].first_user_text
            session = model.requests_for(scenario)[0].session_id
            # the CLI saves its session a moment after it calls the model: killed before that, a retry can only
            # start afresh (the other case below), so this one waits for the file
            await h.until(
                lambda: any(h.cfg.workspace_path.rglob(f"{session}.jsonl")), timeout=30, what="the session saved"
            )
            first.kill()
            await h.until(lambda: not alive(run.pid), timeout=10, what="the agent to die with its worker")
            # the CLI in the sandbox's PID namespace dies a moment after the wrapper: gone before its file goes
            await h.until(lambda: not pids_running(session), timeout=10, what="the killed run's CLI to exit")
            if not session_saved:
                for saved in h.cfg.workspace_path.rglob(f"{session}.jsonl"):
                    saved.unlink()
            with Session(h.runtime.engine) as s:
                assert s.get(Message, msg_id).delivered_at is None  # the run that read it never finished
            second = WorkerProcess(config, tmp_path / "worker2.log").start()
            done = await h.wait_for(t["id"], {"done", "failed"}, timeout=120)
            assert done["status"] == "done", done["error"]
            retry = model.requests_for(scenario)[-1]
            assert note in retry.last_user_text, retry.messages
            # resumed: the same session; started afresh: a new id, which the task keeps (a thread of the killed CLI
            # may still be writing the old id's file, and the CLI refuses an id whose file exists: "already in use")
            assert (retry.session_id == session) is session_saved and done["session_id"] == retry.session_id
            with Session(h.runtime.engine) as s:
                assert s.get(Message, msg_id).delivered_at is not None
                # the dead worker's run was closed by the new worker's first retention pass
                assert s.get(AgentRun, run.id).ended_at is not None
                assert not s.exec(select(AgentRun).where(AgentRun.ended_at.is_(None))).all()
            await h.settled(t["id"])
        finally:
            first.stop()
            if second:
                second.stop()
