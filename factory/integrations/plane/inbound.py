"""Plane webhook events → Factory: queued issues start tasks, cancelled issues cancel them, comments answer.

Both of Plane's webhook formats are read:

- v1 (deprecated, still delivered): `{"event": "issue" | "issue_comment", "action": "created" |
  "updated" | "deleted", "webhook_id", "workspace_id", "data": {...}, "activity": {"field",
  "old_value", "new_value", "actor": {...}}}`. For issues, `data.state` is the state (expanded
  `{"id", "name", "group"}` or a bare id) and `data.labels` the labels (expanded `{"id", "name"}` or
  bare ids, which are then looked up through the API).
- v2: `{"version": "v2", "delivery_id", "event_id", "entity_id", "entity_type", "event":
  "workitem.updated" | "workitem.created" | "workitem.comment.created", "data", "previous_attributes"}`,
  where a work item carries `state_id`, `label_ids` and `project_id`, `previous_attributes` the old
  values of what changed, and a comment event the work item with its `comment` inside.

Plane sends a new delivery id on every attempt, so events are also claimed by what happened: v2's
`event_id` (or, for v1, the issue, its new state and `updated_at`) for a state change, the comment id
for a comment. A resend after the task ended therefore starts nothing. Comments answer questions only
when their author is a member of the project (asked through Plane's members API).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import select

from factory.config import FactoryConfig
from factory.domain.redact import scrub
from factory.git.repos import discoverable
from factory.integrations.claims import claimed, start_or_forget
from factory.integrations.plane.client import PlaneClient, PlaneError, html_to_text, is_factory_comment, paragraph
from factory.launcher import AnswerRefused, Launcher, LaunchError, NewTask
from factory.store import audit
from factory.store.tables import FINISHED, Question, Task, WorkflowRun, WorkflowStatus, session_scope
from factory.store.views import first_waiting

log = logging.getLogger("factory.integrations.plane.inbound")

AGENT_LABELS = ("coder", "reviewer", "researcher", "devops")
V2_ISSUE_EVENTS = {"workitem.created": "created", "workitem.updated": "updated"}
V2_COMMENT_EVENT = "workitem.comment.created"
STATE_FIELDS = ("state", "state_id")
# one lock per Plane issue while someone holds or waits for it; a lock nobody refers to any more
# drops out by itself, so the map does not grow with every issue ever seen
_issue_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _issue_lock(issue_id: str) -> asyncio.Lock:
    lock = _issue_locks.get(issue_id)
    if lock is None:
        lock = _issue_locks[issue_id] = asyncio.Lock()
    return lock


class BadPayload(ValueError):
    """The body is not a Plane webhook Factory can read (-> 400)."""


class Refused(Exception):
    """The issue asks for something Factory cannot do (-> 422); the issue gets a comment saying why."""


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    # v2 payloads spell a missing value as the string "None"
    return str(value) if value and value != "None" else None


def ignored(reason: str) -> dict[str, Any]:
    return {"status": "ignored", "reason": reason}


def v2_event_name(event: str) -> str:
    """The dot-notation name of a v2 event (Plane's docs also show the enum's name, `...WORK_ITEM_UPDATED`)."""
    if "ScopeChoices." in event:
        return event.rsplit(".", 1)[1].lower().replace("work_item_", "workitem.").replace("_", ".")
    return event


async def handle_plane_event(
    cfg: FactoryConfig, engine: Engine, launcher: Launcher, payload: dict[str, Any], http: httpx.AsyncClient
) -> dict[str, Any]:
    """Act on one verified Plane webhook of either format; returns what happened (for the response).

    Every ignored event gets one log line naming why (a warning for a stranger's comment)."""
    out = await _handle(cfg, engine, launcher, payload, http)
    if out.get("status") == "ignored":
        reason = str(out.get("reason") or "")
        level = logging.WARNING if "not a member" in reason or "cannot check" in reason else logging.INFO
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        log.log(level, "ignored Plane %s %s (%s): %s", payload.get("event"), payload.get("action") or "",
                data.get("id"), reason)  # fmt: skip
    return out


async def _handle(
    cfg: FactoryConfig, engine: Engine, launcher: Launcher, payload: dict[str, Any], http: httpx.AsyncClient
) -> dict[str, Any]:
    event = payload.get("event")
    if not isinstance(event, str):
        raise BadPayload("no 'event' in the payload")
    event = v2_event_name(event)
    data = payload.get("data")
    if event in ("issue", "issue_comment", V2_COMMENT_EVENT, *V2_ISSUE_EVENTS) and not isinstance(data, dict):
        raise BadPayload("'data' must be an object")
    activity = payload.get("activity") if isinstance(payload.get("activity"), dict) else {}
    if event == "issue":
        action = str(payload.get("action") or "")
        updated_at = data.get("updated_at")
        happened = f"{data.get('id')}:{_state_of(data)}:{updated_at}" if updated_at else None
        return await _issue_event(cfg, engine, launcher, action, data, activity.get("field"), happened, http)
    if event in V2_ISSUE_EVENTS:
        previous = payload.get("previous_attributes")
        changed = list(previous) if isinstance(previous, dict) else []
        # an update that names what changed, but not the state, is not a move
        field = None if not changed or any(f in changed for f in STATE_FIELDS) else changed[0]
        event_id = payload.get("event_id")
        happened = f"v2:{event_id}" if event_id else None
        action = V2_ISSUE_EVENTS[event]
        return await _issue_event(cfg, engine, launcher, action, data, field, happened, http)
    if event == "issue_comment":
        return await _comment_event(cfg, engine, launcher, http, str(payload.get("action") or ""), data, activity)
    if event == V2_COMMENT_EVENT:
        comment = data.get("comment")
        if not isinstance(comment, dict):
            raise BadPayload("'data.comment' must be an object")
        flat = {**comment, "issue": _id(comment.get("issue_id")) or _id(data.get("id"))}
        return await _comment_event(cfg, engine, launcher, http, "created", flat, activity)
    return ignored(f"event {event!r} is not used by Factory")


def _state_of(data: dict[str, Any]) -> str | None:
    return _id(data.get("state")) or _id(data.get("state_id"))


async def _issue_event(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    action: str,
    data: dict[str, Any],
    field: str | None,
    happened: str | None,
    http: httpx.AsyncClient,
) -> dict[str, Any]:
    if not data.get("id"):
        raise BadPayload("'data.id' is missing")
    if action not in ("created", "updated", "create", "update"):
        return ignored(f"issue action {action!r}")
    project = _id(data.get("project")) or _id(data.get("project_id"))
    if cfg.plane.project_id and project and project != cfg.plane.project_id:
        return ignored("issue of another project")
    if action.startswith("update") and field and field not in STATE_FIELDS:
        return ignored(f"{field} changed, not the state")
    state = _state_of(data)
    states = cfg.plane.states
    if state and state == states.get("queued"):
        return await _queue(cfg, engine, launcher, data, happened, http)
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
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    data: dict[str, Any],
    happened: str | None,
    http: httpx.AsyncClient,
) -> dict[str, Any]:
    issue_id = str(data["id"])
    async with _issue_lock(issue_id):  # two deliveries for one move must not start two tasks
        tasks, runs = await asyncio.to_thread(_active, engine, issue_id)
        if tasks or runs:
            what = f"task #{tasks[0].id}" if tasks else f"workflow run #{runs[0].id}"
            return ignored(f"issue already has {what} running")
        # kept once a task started (or the issue was told why not); released when the start failed
        async with claimed(engine, "plane-move", happened, keep_on=(Refused,)) as first:
            if not first:
                return ignored("this move to queued was handled already")
            try:
                return await _start(cfg, engine, launcher, issue_id, data, http)
            except Refused as exc:
                await _tell_issue(cfg, http, issue_id, f"Factory did not start this issue: {exc}")
                raise


async def _description(cfg: FactoryConfig, issue_id: str, data: dict[str, Any], http: httpx.AsyncClient) -> str:
    text = html_to_text(data.get("description_html")) or str(data.get("description_stripped") or "")
    if text or "description_html" in data:
        return text
    plane = PlaneClient(cfg, http)  # a v2 work item comes without its description
    if not plane.configured:
        return ""
    issue = await plane.get_issue(issue_id)
    return html_to_text(issue.get("description_html")) or str(issue.get("description_stripped") or "")


async def _start(
    cfg: FactoryConfig, engine: Engine, launcher: Launcher, issue_id: str, data: dict[str, Any], http: httpx.AsyncClient
) -> dict[str, Any]:
    labels = await _label_names(cfg, data, http)
    lowered = [label.lower() for label in labels]
    title = str(data.get("name") or "").strip()[:500] or f"Plane issue {issue_id}"
    description = await _description(cfg, issue_id, data, http)
    repo = next((label.split(":", 1)[1].strip() for label in labels if label.lower().startswith("repo:")), "")
    repo = repo or cfg.plane.default_repo
    if not repo:
        raise Refused("no repository: add a repo:NAME label or set plane.default_repo")
    if not discoverable(cfg, repo):
        raise Refused(f"repository {repo!r} is not in repos: and not in default_org")
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
    await start_or_forget(launcher, engine, task)  # a failed start leaves no row; Plane's retry makes the task
    log.info("Plane issue %s started task #%s (%s on %s)", issue_id, task.id, task.agent_type, task.repo)
    return {"status": "started", "task_id": task.id, "repo": task.repo, "agent_type": task.agent_type}


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
        cond = Task.plane_issue_id == issue_id
        if run_ids:
            cond = cond | Task.workflow_run_id.in_(run_ids)
        return first_waiting(s, cond)


def _actor_id(data: dict[str, Any], activity: dict[str, Any]) -> str | None:
    actor = activity.get("actor")
    for value in (data.get("actor"), data.get("actor_id"), data.get("created_by"), actor):
        if _id(value):
            return _id(value)
    return None


def _actor_name(member: dict[str, Any], activity: dict[str, Any], actor_id: str) -> str:
    for src in (member, activity.get("actor")):
        if isinstance(src, dict):
            name = src.get("display_name") or src.get("first_name") or src.get("email")
            if name:
                return str(name)
    return actor_id


async def _comment_event(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    http: httpx.AsyncClient,
    action: str,
    data: dict[str, Any],
    activity: dict[str, Any],
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
    actor = _actor_id(data, activity)
    plane = PlaneClient(cfg, http)
    if not plane.configured:
        return ignored("cannot check the comment's author: the Plane API is not configured")
    # a Plane outage raises here, so the webhook is answered 503 and Plane's retry tries again
    member = (await plane.project_members()).get(actor or "")
    if member is None:
        return ignored("the comment's author is not a member of the project")
    async with claimed(engine, "plane-comment", str(data["id"])) as first:
        if not first:
            return ignored("this comment was already taken as an answer")
        who = _actor_name(member, activity, str(actor))
        try:
            await launcher.deliver_answer(task.id, text, f"plane:{who}", question.id)
        except AnswerRefused as exc:
            return ignored(f"not taken as an answer: {exc}")
    await audit.arecord(engine, f"plane:{actor}", "task.answer", f"task:{task.id}", source="plane", task_id=task.id)
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
