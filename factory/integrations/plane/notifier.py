"""Plane notifier: task events move the issue a task came from and comment on it.

Status flows back to the issue: started → `in_progress`; done → `in_review` plus a comment with
the PR link, summary and cost; failed → `failed` plus a comment with the scrubbed error;
cancelled → `cancelled`; a question → `waiting_for_input` (when configured) plus a comment
holding the question. Each send runs in its own retried activity (`send_notification`).
"""

from __future__ import annotations

import httpx
from markupsafe import Markup
from sqlalchemy.engine import Engine
from sqlmodel import select

from factory.config import FactoryConfig
from factory.contracts import TaskEvent
from factory.domain.redact import scrub
from factory.domain.text import clip
from factory.integrations.plane.client import PlaneClient, PlaneError, paragraph, remember_comment
from factory.store.kv import kv_get, kv_set
from factory.store.tables import Question, Task, WorkflowRun, session_scope


def _event_key(e: TaskEvent) -> str:
    return f"{e.kind}-t{e.task_id}-w{e.workflow_run_id}-q{e.question_id}"



class PlaneNotifier:
    """Moves the task's Plane issue and comments on it (a `Notifier` for `send_notification`)."""

    name = "plane"
    KINDS = frozenset({"started", "completed", "failed", "cancelled", "question", "answered"})

    def __init__(self, cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient | None = None):
        self.cfg = cfg
        self.engine = engine
        self.client = PlaneClient(cfg, http)

    def wants(self, event: TaskEvent) -> bool:
        return self.client.configured and event.kind in self.KINDS and self._target(event) is not None

    def _target(self, e: TaskEvent) -> tuple[str, bool] | None:
        """(issue id, is a step of a workflow run) for the event, or None when it has no issue."""
        with session_scope(self.engine) as s:
            if e.task_id is not None:
                task = s.get(Task, e.task_id)
                if task is None:
                    return None
                if task.workflow_run_id is not None:
                    run = s.get(WorkflowRun, task.workflow_run_id)
                    issue = task.plane_issue_id or (run.plane_issue_id if run else None)
                    return (issue, True) if issue else None
                return (task.plane_issue_id, False) if task.plane_issue_id else None
            if e.workflow_run_id is not None:
                run = s.get(WorkflowRun, e.workflow_run_id)
                return (run.plane_issue_id, False) if run and run.plane_issue_id else None
        return None

    async def send(self, event: TaskEvent) -> None:
        target = self._target(event)
        if target is None:
            return
        issue, is_step = target
        # a step of a workflow run moves the issue along, but only the run itself reports its outcome
        if is_step and event.kind not in ("started", "question", "answered"):
            return
        try:
            await self._send(issue, event)
        except PlaneError as exc:
            raise exc.as_application_error() from None

    def _current(self, e: TaskEvent) -> bool:
        """False when a retried started/question event is overtaken by what happened since."""
        with session_scope(self.engine) as s:
            if e.kind == "question" and e.question_id is not None:
                q = s.get(Question, e.question_id)
                return q is None or q.status == "pending"
            if e.kind in ("started", "answered") and e.task_id is not None:
                t = s.get(Task, e.task_id)
                return t is None or t.status in ("queued", "in_progress")
        return True

    async def _send(self, issue: str, e: TaskEvent) -> None:
        if not self._current(e):
            if e.kind == "question":  # the question stays on record, the state has moved on
                await self._comment_once(issue, e, self._question_html(e))
            return
        if e.kind in ("started", "answered"):  # "answered": back from waiting_for_input, when emitted
            await self.client.set_state(issue, "in_progress")
        elif e.kind == "completed":
            await self.client.set_state(issue, "in_review")
            await self._comment_once(issue, e, self._completed_html(e))
        elif e.kind == "failed":
            await self.client.set_state(issue, "failed")
            error = scrub(e.error or "unknown error", self.cfg.secret_values())
            html = Markup("<p><strong>Factory: {} failed</strong>: {}</p>").format(self._who(e), e.title)
            cost, turns = self._cost(e)
            html += paragraph(clip(error, 3000)) + Markup("<p>Cost: ${} ({} turns)</p>").format(f"{cost:.4f}", turns)
            await self._comment_once(issue, e, html)
        elif e.kind == "cancelled":
            await self.client.set_state(issue, "cancelled")
        elif e.kind == "question":
            await self.client.set_state(issue, "waiting_for_input")
            await self._comment_once(issue, e, self._question_html(e))

    def _question_html(self, e: TaskEvent) -> Markup:
        html = Markup("<p><strong>Factory: {} asks</strong>:</p>").format(self._who(e)) + paragraph(e.question or "")
        if e.options:
            items = Markup("").join(Markup("<li>{}</li>").format(o) for o in e.options)
            html += Markup("<p>Options:</p><ul>{}</ul>").format(items)
        return html + Markup("<p><em>Reply with a comment on this issue to answer.</em></p>")

    @staticmethod
    def _who(e: TaskEvent) -> str:
        return f"task #{e.task_id}" if e.task_id is not None else f"workflow #{e.workflow_run_id}"

    def _completed_html(self, e: TaskEvent) -> Markup:
        cost, turns = self._cost(e)
        html = Markup("<p><strong>Factory: {} is done</strong>: {}</p>").format(self._who(e), e.title)
        if e.pr_url:
            html += Markup('<p>Pull request: <a href="{0}">{0}</a></p>').format(e.pr_url)
        else:
            html += Markup("<p>No pull request (no changes were made).</p>")
        if e.summary:
            html += Markup("<p>Summary:</p>") + paragraph(clip(scrub(e.summary, self.cfg.secret_values()), 3000))
        html += Markup("<p>Cost: ${} ({} turns)</p>").format(f"{cost:.4f}", turns)
        return html

    def _cost(self, e: TaskEvent) -> tuple[float, int]:
        with session_scope(self.engine) as s:
            if e.task_id is not None:
                t = s.get(Task, e.task_id)
                return (t.cost_usd or 0.0, t.num_turns or 0) if t else (e.cost_usd or 0.0, 0)
            rows = s.exec(select(Task).where(Task.workflow_run_id == e.workflow_run_id)).all()
            return sum(t.cost_usd or 0.0 for t in rows), sum(t.num_turns or 0 for t in rows)

    async def _comment_once(self, issue: str, e: TaskEvent, html: Markup) -> None:
        key = f"plane:sent:{issue}:{_event_key(e)}"
        if kv_get(self.engine, key) is not None:
            return
        comment_id = await self.client.add_comment(issue, str(html), external_id=f"factory-{_event_key(e)}-{issue}")
        if comment_id:
            remember_comment(self.engine, comment_id, issue)
        kv_set(self.engine, key, comment_id or "")
