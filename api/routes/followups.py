"""Talking to an agent from the dashboard: `POST /api/tasks/{id}/follow-up`.

- to a task whose agent is working (in progress, or waiting on a question): a board message
  addressed to its agent type for that task; the agent reads it from its inbox at its next turn
  (activities/agent.py `_inbox_section`). A question is still answered with `/answer`.
- to a finished single task (done, failed, cancelled) with a branch: a new round, a task on the
  same branch (and the same PR: it carries the PR's number, so no second one is opened) whose
  prompt holds the message, started as a GitHub review's revision is (`start_or_forget`); it
  resumes the last round's CLI session, whose transcript the agent activity copies into the new
  round's home (Claude Code only: activities/_session_seed.py). When that cannot be done (another
  host, another backend, a transcript that is not a plain file) the round starts afresh, with the
  last reply in its prompt, and its log says why.
- 409 otherwise (queued: not started yet; a workflow step that finished: start a new run; a round
  still working), 404 for a missing task, 422 for an empty message.
The message is kept on the board under the task it was sent to, with its sender, for the thread.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status
from pydantic import Field, field_validator
from sqlmodel import Session, col, select

from api.bodies import Body, filled
from api.deps import BoardDep, EngineDep, IdPath, LauncherDep, temporal_call
from api.errors import JSONRoute, responses
from factory.domain.text import clip
from factory.integrations.claims import start_or_forget
from factory.launcher import Conflict, NewTask, NotFound, TaskStart
from factory.store.tables import FINISHED, Task, TaskStatus

router = APIRouter(prefix="/api/tasks", tags=["tasks"], route_class=JSONRoute)

RESULT_CHARS = 4000  # how much of the last reply a new round's prompt quotes


class FollowUpBody(Body):
    message: str = filled(50_000, "what to tell the agent")
    sent_by: str = Field(default="user", max_length=200)
    file: str | None = Field(default=None, max_length=1000, description="a diff line comment: its file")
    line: int | None = Field(default=None, ge=1, le=10_000_000, description="a diff line comment: its line")

    @field_validator("message")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("write a message: it is empty")
        return v


def _load(engine: object, task_id: int) -> tuple[Task, list[Task]]:
    with Session(engine) as s:  # type: ignore[arg-type]
        task = s.get(Task, task_id)
        if task is None:
            raise NotFound(f"task {task_id} not found")
        rounds = list(s.exec(select(Task).where(Task.parent_task_id == task_id).order_by(col(Task.id))))
        return task, rounds


def _text(body: FollowUpBody) -> str:
    if body.file:
        where = f"{body.file}:{body.line}" if body.line else body.file
        return f"On `{where}`: {body.message}"
    return body.message


@router.post("/{task_id}/follow-up", status_code=status.HTTP_202_ACCEPTED, responses=responses(404, 409, 413, 422, 503))
async def follow_up(
    task_id: IdPath, body: FollowUpBody, engine: EngineDep, board: BoardDep, launcher: LauncherDep
) -> dict[str, object]:
    """Send a message to the task's agent: to its inbox while it works, or as a new round once it finished."""
    task, rounds = await asyncio.to_thread(_load, engine, task_id)
    text = _text(body)
    sender = body.sent_by.strip() or "user"
    busy = [r for r in rounds if r.status not in FINISHED]
    if task.status in (TaskStatus.in_progress, TaskStatus.awaiting_input) or busy:
        target = busy[-1] if busy and task.status in FINISHED else task
        if not board.enabled:
            raise Conflict(
                "the message board is disabled (message_board.enabled: false), so a running agent cannot be told"
            )
        msg = await board.publish(
            sender=sender, content=text, message_type="request", recipient=target.agent_type,
            task_id=target.id, workflow_run_id=target.workflow_run_id,
        )  # fmt: skip
        if msg is None:
            raise Conflict("the message board is disabled")
        return {"delivery": "inbox", "task_id": target.id, "message_id": msg.id}
    if task.status == TaskStatus.queued:
        raise Conflict(f"task {task_id} has not started: run it first")
    if task.workflow_run_id is not None:
        raise Conflict(f"task {task_id} is a finished step of workflow run {task.workflow_run_id}; start a new run")
    if not task.branch:
        raise Conflict(f"task {task_id} pushed no branch to continue")
    last = rounds[-1] if rounds else task
    context = (
        f"## A follow-up from {clip(sender, 200)}\nThis continues task #{task.id} on its branch, checked out for you."
        + (f"\nYour last reply was:\n\n{clip(last.result, RESULT_CHARS)}\n" if last.result else "")
        + f"\nThe person now writes:\n\n{text}\n"
    )
    new = NewTask(
        title=clip(f"Follow-up {len(rounds) + 2} on #{task.id}: {task.title}", 500),
        description=text, repo=task.repo, agent_type=task.agent_type, parent_task_id=task.id,
        plane_issue_id=task.plane_issue_id, branch=task.branch,  # busy from the start, as a revision is
        pr_url=task.pr_url, pr_number=task.pr_number, pr_state=task.pr_state,
    )  # fmt: skip
    start = TaskStart(
        branch=task.branch, context=context, parent_task_id=task.id, resume_session=last.session_id,
        resume_from_task=last.id,  # the session's transcript is copied from that round's home
    )  # fmt: skip
    async with temporal_call(launcher):
        created = await launcher.create_task(new, run=False)
        await start_or_forget(launcher, engine, created, start)
    if board.enabled:  # the thread shows who asked; addressed to no agent, so no inbox reads it twice
        await board.publish(sender=sender, content=text, message_type="info", task_id=task.id)
    return {"delivery": "new_round", "task_id": created.id}
