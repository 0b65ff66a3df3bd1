"""Plane: a small REST client (`X-API-Key`) and the notifier that moves issues and comments on them.

Status flows back to the issue a task came from: started → `in_progress`; done → `in_review`
plus a comment with the PR link, summary and cost; failed → `failed` plus a comment with the
scrubbed error; cancelled → `cancelled`; a question → `waiting_for_input` (when configured) plus a
comment holding the question. Each send runs in its own retried activity (`send_notification`).

Factory's own comments are told apart from people's by two marks a person cannot put on a
comment made in Plane's UI: every comment Factory posts carries `external_source: "factory"`
(with a unique `external_id`, which Plane also uses to refuse a duplicate with 409), and its id is
remembered in the database (`plane:comment:<id>`). The author is not used: Plane API keys are
personal tokens, so Factory may well post as the same user who answers.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
from markupsafe import Markup, escape
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.exceptions import ApplicationError

from factory.config import FactoryConfig
from factory.contracts import TaskEvent
from factory.domain.redact import scrub
from factory.store.kv import kv_get, kv_set
from factory.store.tables import Question, Task, WorkflowRun, session_scope

log = logging.getLogger("factory.integrations.plane.client")

FACTORY_SOURCE = "factory"
STATE_KEYS = ("queued", "in_progress", "in_review", "done", "failed", "cancelled", "waiting_for_input")


class PlaneError(Exception):
    """A Plane API call failed; `status` is the HTTP status (None for network errors)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.body = body


class PlaneClient:
    """The few Plane REST calls Factory makes, against `plane.base_url`."""

    def __init__(self, cfg: FactoryConfig, http: httpx.AsyncClient | None = None):
        self.cfg = cfg
        self.http = http or httpx.AsyncClient(timeout=20)

    @property
    def configured(self) -> bool:
        p = self.cfg.plane
        return bool(p.base_url and self.cfg.plane_key and p.workspace_slug and p.project_id)

    def _project(self) -> str:
        p = self.cfg.plane
        return f"/api/v1/workspaces/{p.workspace_slug}/projects/{p.project_id}"

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.cfg.plane.base_url.rstrip("/") + path
        headers = {"X-API-Key": self.cfg.plane_key, "Accept": "application/json"}
        try:
            r = await self.http.request(method, url, headers=headers, timeout=15, **kwargs)
        except httpx.HTTPError as exc:
            raise PlaneError(f"Plane {method} {path}: {type(exc).__name__}") from None
        if r.status_code >= 400:
            retry = r.headers.get("Retry-After")
            try:
                body = r.json()
            except ValueError:
                body = None
            text = scrub(r.text[:300], self.cfg.secret_values())
            raise PlaneError(
                f"Plane {method} {path}: HTTP {r.status_code}: {text}",
                r.status_code,
                float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
                body,
            )
        return r.json() if r.content else None

    async def set_state(self, issue_id: str, state_key: str) -> bool:
        """Move the issue to the configured state `state_key`; False when that state is not configured."""
        state_id = self.cfg.plane.states.get(state_key)
        if not state_id:
            return False
        await self._request("PATCH", f"{self._project()}/issues/{issue_id}/", json={"state": state_id})
        return True

    async def add_comment(self, issue_id: str, html: str, external_id: str) -> str | None:
        """Post a comment as Factory; returns its id (the existing one when Plane reports a duplicate)."""
        body = {"comment_html": html, "external_source": FACTORY_SOURCE, "external_id": external_id}
        try:
            data = await self._request("POST", f"{self._project()}/issues/{issue_id}/comments/", json=body)
        except PlaneError as exc:
            if exc.status == 409 and isinstance(exc.body, dict) and exc.body.get("id"):
                return str(exc.body["id"])
            raise
        return str(data.get("id")) if isinstance(data, dict) and data.get("id") else None

    async def label_names(self) -> dict[str, str]:
        """Label id → name for the project (webhooks may carry label ids only)."""
        data = await self._request("GET", f"{self._project()}/labels/")
        rows = data.get("results", []) if isinstance(data, dict) else (data or [])
        return {str(r.get("id")): str(r.get("name") or "") for r in rows if isinstance(r, dict)}


def remember_comment(engine: Engine, comment_id: str, issue_id: str) -> None:
    kv_set(engine, f"plane:comment:{comment_id}", issue_id)


def is_factory_comment(engine: Engine, comment: dict[str, Any]) -> bool:
    """True for a comment Factory posted (its id is on record, or it carries Factory's external source)."""
    cid = comment.get("id")
    if cid and kv_get(engine, f"plane:comment:{cid}") is not None:
        return True
    return comment.get("external_source") == FACTORY_SOURCE


class _TextExtractor(HTMLParser):
    BLOCKS = {"p", "div", "br", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "pre", "blockquote", "ul", "ol", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in self.BLOCKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def html_to_text(html: str | None) -> str:
    """Plain text from Plane's HTML (paragraphs and list items kept as lines)."""
    if not html:
        return ""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.rstrip() for line in "".join(parser.out).replace("\xa0", " ").splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def paragraph(text: str) -> Markup:
    """An escaped paragraph with line breaks kept."""
    return Markup("<p>{}</p>").format(Markup("<br>").join(escape(line) for line in text.splitlines() or [""]))


def _event_key(e: TaskEvent) -> str:
    return f"{e.kind}-t{e.task_id}-w{e.workflow_run_id}-q{e.question_id}"


def _as_application_error(exc: PlaneError) -> ApplicationError:
    if exc.status == 429:
        return ApplicationError(
            str(exc), type="PlaneRateLimited", next_retry_delay=timedelta(seconds=exc.retry_after or 5)
        )
    permanent = exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 409)
    return ApplicationError(str(exc), type="PlaneError", non_retryable=permanent)


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
            raise _as_application_error(exc) from None

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
            await self._comment_once(issue, e, html + paragraph(_clip(error, 3000)))
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
            html += Markup("<p>Summary:</p>") + paragraph(_clip(scrub(e.summary, self.cfg.secret_values()), 3000))
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


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
