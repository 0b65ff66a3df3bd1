"""Plane webhook events → Factory: queued issues start tasks, cancelled issues cancel them, comments answer.

The payload is what Plane sends: `{"event": "issue" | "issue_comment", "action": "created" |
"updated" | "deleted", "webhook_id", "workspace_id", "data": {...}, "activity": {"field",
"old_value", "new_value", "actor": {...}}}`. For issues, `data.state` is the state (expanded
`{"id", "name", "group"}` or a bare id) and `data.labels` the labels (expanded `{"id", "name"}` or
bare ids, which are then looked up through the API).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import select

from factory.config import FactoryConfig
from factory.domain.redact import scrub
from factory.domain.text import clip
from factory.integrations.plane.client import PlaneClient, PlaneError, html_to_text, is_factory_comment, paragraph
from factory.launcher import AnswerRefused, Launcher, LaunchError, NewTask
from factory.store.kv import claim_delivery
from factory.store.tables import FINISHED, Question, Task, TaskStatus, WorkflowRun, WorkflowStatus, session_scope

log = logging.getLogger("factory.integrations.plane.inbound")

AGENT_LABELS = ("coder", "reviewer", "researcher", "devops")
_issue_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


class BadPayload(ValueError):
    """The body is not a Plane webhook Factory can read (-> 400)."""


class Refused(Exception):
    """The issue asks for something Factory cannot do (-> 422); the issue gets a comment saying why."""


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


def ignored(reason: str) -> dict[str, Any]:
    return {"status": "ignored", "reason": reason}


async def handle_plane_event(
    cfg: FactoryConfig, engine: Engine, launcher: Launcher, payload: dict[str, Any], http: httpx.AsyncClient
) -> dict[str, Any]:
    """Act on one verified, de-duplicated Plane webhook; returns what happened (for the response)."""
    event = payload.get("event")
    if not isinstance(event, str):
        raise BadPayload("no 'event' in the payload")
    data = payload.get("data")
    if event in ("issue", "issue_comment") and not isinstance(data, dict):
        raise BadPayload("'data' must be an object")
    action = str(payload.get("action") or "")
    if event == "issue":
        return await _issue_event(cfg, engine, launcher, action, data, payload.get("activity") or {}, http)
    if event == "issue_comment":
        return await _comment_event(engine, launcher, action, data, payload.get("activity") or {})
    return ignored(f"event {event!r} is not used by Factory")


async def _issue_event(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    action: str,
    data: dict[str, Any],
    activity: dict[str, Any],
    http: httpx.AsyncClient,
) -> dict[str, Any]:
    if not data.get("id"):
        raise BadPayload("'data.id' is missing")
    if action not in ("created", "updated", "create", "update"):
        return ignored(f"issue action {action!r}")
    project = _id(data.get("project")) or _id(data.get("project_id"))
    if cfg.plane.project_id and project and project != cfg.plane.project_id:
        return ignored("issue of another project")
    field = activity.get("field") if isinstance(activity, dict) else None
    if action.startswith("update") and field and field not in ("state", "state_id"):
        return ignored(f"{field} changed, not the state")
    state = _id(data.get("state")) or _id(data.get("state_id"))
    states = cfg.plane.states
    if state and state == states.get("queued"):
        return await _queue(cfg, engine, launcher, data, http)
    if state and state == states.get("cancelled"):
        return await _cancel(engine, launcher, str(data["id"]))
    return ignored("the issue is not in the queued or cancelled state")


def _active(engine: Engine, issue_id: str) -> tuple[list[Task], list[WorkflowRun]]:
    with session_scope(engine) as s:
        tasks = s.exec(
            select(Task).where(Task.plane_issue_id == issue_id, Task.status.not_in([str(x) for x in FINISHED]))
        ).all()
        runs = s.exec(
            select(WorkflowRun).where(
                WorkflowRun.plane_issue_id == issue_id,
                WorkflowRun.status.in_([WorkflowStatus.pending, WorkflowStatus.running]),
            )
        ).all()
        return list(tasks), list(runs)


async def _label_names(cfg: FactoryConfig, data: dict[str, Any], http: httpx.AsyncClient) -> list[str]:
    raw = data.get("labels") or data.get("label_ids") or []
    names = [str(x.get("name") or "") for x in raw if isinstance(x, dict)]
    ids = [str(x) for x in raw if isinstance(x, str)]
    if ids:
        try:
            known = await PlaneClient(cfg, http).label_names()
        except PlaneError as exc:
            log.warning("could not read the project's labels: %s", exc)
            known = {}
        names += [known[i] for i in ids if i in known]
    return [n.strip() for n in names if n.strip()]


async def _queue(
    cfg: FactoryConfig, engine: Engine, launcher: Launcher, data: dict[str, Any], http: httpx.AsyncClient
) -> dict[str, Any]:
    issue_id = str(data["id"])
    async with _issue_locks[issue_id]:  # two deliveries for one move must not start two tasks
        tasks, runs = await asyncio.to_thread(_active, engine, issue_id)
        if tasks or runs:
            what = f"task #{tasks[0].id}" if tasks else f"workflow run #{runs[0].id}"
            return ignored(f"issue already has {what} running")
        try:
            return await _start(cfg, engine, launcher, issue_id, data, http)
        except Refused as exc:
            await _tell_issue(cfg, http, issue_id, f"Factory did not start this issue: {exc}")
            raise


async def _start(
    cfg: FactoryConfig, engine: Engine, launcher: Launcher, issue_id: str, data: dict[str, Any], http: httpx.AsyncClient
) -> dict[str, Any]:
    labels = await _label_names(cfg, data, http)
    lowered = [label.lower() for label in labels]
    title = str(data.get("name") or "").strip()[:500] or f"Plane issue {issue_id}"
    description = html_to_text(data.get("description_html")) or str(data.get("description_stripped") or "")
    repo = next((label.split(":", 1)[1].strip() for label in labels if label.lower().startswith("repo:")), "")
    repo = repo or cfg.plane.default_repo
    if not repo:
        raise Refused("no repository: add a repo:NAME label or set plane.default_repo")
    workflow = next((label.split(":", 1)[1].strip() for label in labels if label.lower().startswith("workflow:")), "")
    try:
        if workflow:
            run = await launcher.start_workflow_run(workflow, title, description, repo, plane_issue_id=issue_id)
            return {"status": "started", "workflow": workflow, "workflow_run_id": run.id}
        agent_type = next((a for a in AGENT_LABELS if a in lowered), None)
        new = NewTask(title=title, description=description, repo=repo, agent_type=agent_type, plane_issue_id=issue_id)
        task = await launcher.create_task(new, run=False)
    except LaunchError as exc:
        raise Refused(str(exc)) from exc
    try:
        await launcher.start_task(task)
    except Exception as exc:
        await asyncio.to_thread(_mark_failed, engine, task.id, f"could not start: {exc}")
        raise
    log.info("Plane issue %s started task #%s (%s on %s)", issue_id, task.id, task.agent_type, task.repo)
    return {"status": "started", "task_id": task.id, "repo": task.repo, "agent_type": task.agent_type}


def _mark_failed(engine: Engine, task_id: int, error: str) -> None:
    with session_scope(engine) as s:
        task = s.get(Task, task_id)
        if task is not None:
            task.status = TaskStatus.failed
            task.error = clip(error, 2000)
            s.add(task)
            s.commit()


async def _cancel(engine: Engine, launcher: Launcher, issue_id: str) -> dict[str, Any]:
    tasks, runs = await asyncio.to_thread(_active, engine, issue_id)
    if not tasks and not runs:
        return ignored("no running task for this issue")
    own = [t.id for t in tasks if t.workflow_run_id is None]  # steps go with their run
    for task_id in own:
        await launcher.cancel_task(task_id)
    for run in runs:
        await launcher.cancel_run(run.id)
    return {"status": "cancelled", "task_ids": own, "workflow_run_ids": [r.id for r in runs]}


def _waiting_question(engine: Engine, issue_id: str) -> tuple[Task, Question] | None:
    with session_scope(engine) as s:
        run_ids = [r.id for r in s.exec(select(WorkflowRun).where(WorkflowRun.plane_issue_id == issue_id)).all()]
        q = select(Task).where(Task.status == TaskStatus.awaiting_input)
        cond = Task.plane_issue_id == issue_id
        if run_ids:
            cond = cond | Task.workflow_run_id.in_(run_ids)
        for task in s.exec(q.where(cond).order_by(Task.id.desc())).all():
            question = s.exec(
                select(Question)
                .where(Question.task_id == task.id, Question.status == "pending")
                .order_by(Question.id.desc())
            ).first()
            if question is not None:
                return task, question
    return None


def _actor_name(data: dict[str, Any], activity: dict[str, Any]) -> str:
    for src in (activity.get("actor") if isinstance(activity, dict) else None, data.get("actor_detail")):
        if isinstance(src, dict):
            name = src.get("display_name") or src.get("first_name") or src.get("email") or src.get("id")
            if name:
                return str(name)
    return str(data.get("actor") or data.get("created_by") or "unknown")


async def _comment_event(
    engine: Engine, launcher: Launcher, action: str, data: dict[str, Any], activity: dict[str, Any]
) -> dict[str, Any]:
    if action not in ("created", "create"):
        return ignored(f"comment action {action!r}")
    issue_id = _id(data.get("issue")) or _id(data.get("issue_id"))
    if not issue_id or not data.get("id"):
        raise BadPayload("'data.id' and 'data.issue' are required for a comment")
    if await asyncio.to_thread(is_factory_comment, engine, data):
        return ignored("Factory's own comment")
    text = html_to_text(data.get("comment_html")) or str(data.get("comment_stripped") or "").strip()
    if not text:
        return ignored("empty comment")
    found = await asyncio.to_thread(_waiting_question, engine, issue_id)
    if found is None:
        return ignored("no task of this issue is waiting for an answer")
    task, question = found
    if not await asyncio.to_thread(claim_delivery, engine, "plane-comment", str(data["id"])):
        return ignored("this comment was already taken as an answer")
    who = _actor_name(data, activity)
    try:
        await launcher.deliver_answer(task.id, text, f"plane:{who}", question.id)
    except AnswerRefused as exc:
        return ignored(f"not taken as an answer: {exc}")
    log.info("Plane comment %s answered question #%s of task #%s", data["id"], question.id, task.id)
    return {"status": "answered", "task_id": task.id, "question_id": question.id}


async def _tell_issue(cfg: FactoryConfig, http: httpx.AsyncClient, issue_id: str, text: str) -> None:
    """Best effort: say on the issue why nothing started."""
    plane = PlaneClient(cfg, http)
    if not plane.configured:
        return
    try:
        html = str(paragraph(scrub(text, cfg.secret_values())))
        await plane.add_comment(issue_id, html, external_id=f"refused-{issue_id}-{uuid.uuid4().hex[:12]}")
        await plane.set_state(issue_id, "failed")
    except PlaneError as exc:
        log.warning("could not comment on Plane issue %s: %s", issue_id, exc)
