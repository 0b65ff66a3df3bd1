"""A stand-in Plane server: the REST calls Factory makes, recorded, plus builders for Plane's webhooks.

REST (`X-API-Key` required): `GET`/`PATCH .../issues/{id}/` (state), `POST .../issues/{id}/comments/`
(`comment_html`, `external_source`, `external_id`; 409 with the existing id for a repeated
external id, as Plane does), `GET .../labels/`, `GET .../members/` (the project's members, as
Plane's UserLite list), `GET /api/v1/users/me/`. `fail_next` answers the next calls with an error
status (a `(status, retry_after)` tuple for 429). `down()` stops the server (connections refused)
until `recover()` serves again on the same port.

Webhooks come in both of Plane's formats: v1 (`issue_payload`, `comment_payload`) and v2
(`workitem_payload`, `workitem_comment_payload`: dot-notation events, `event_id`, `previous_attributes`).
They are signed the way Plane signs them: hex HMAC-SHA256 of `json.dumps(payload)`, which is also the
body Plane posts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.http import BackgroundServer

PREFIX = "/api/v1/workspaces/{slug}/projects/{project}"


@dataclass
class Call:
    method: str
    path: str
    body: Any
    headers: dict[str, str]


@dataclass
class FakePlane:
    api_key: str = "plane_api_testkey0123456789"
    workspace_slug: str = "acme"
    project_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    user: dict[str, Any] = field(
        default_factory=lambda: {"id": str(uuid.uuid4()), "display_name": "factory-bot", "email": "bot@example.com"}
    )
    states: dict[str, str] = field(
        default_factory=lambda: {
            k: str(uuid.uuid4())
            for k in (
                "backlog",
                "queued",
                "in_progress",
                "in_review",
                "done",
                "failed",
                "cancelled",
                "waiting_for_input",
            )
        }
    )
    labels: dict[str, str] = field(default_factory=dict)  # id -> name
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # user id -> UserLite (the project's members)
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)  # issue id -> the work item the API returns
    issue_states: dict[str, list[str]] = field(default_factory=dict)  # issue id -> state ids set through the API
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    fail_next: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: BackgroundServer | None = None
    url: str = ""
    downtime: list[tuple[float, float | None]] = field(default_factory=list)  # (from, until) monotonic

    def __post_init__(self) -> None:
        self.add_member(self.user["display_name"], self.user["id"])
        self.add_member("alice")

    def add_member(self, name: str, user_id: str | None = None) -> str:
        """Make `name` a member of the project; returns the user id."""
        uid = user_id or str(uuid.uuid4())
        self.members[uid] = {
            "id": uid,
            "first_name": name.title(),
            "last_name": "",
            "display_name": name,
            "email": f"{name}@example.com",
            "avatar": "",
        }
        return uid

    def user_id(self, name: str) -> str:
        """The member called `name`, else a fresh id (a user outside the project)."""
        return next((i for i, m in self.members.items() if m["display_name"] == name), None) or str(uuid.uuid4())

    # --- the server ---------------------------------------------------------------------------
    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Any:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            with self.lock:
                self.calls.append(Call(request.method, request.url.path, body, dict(request.headers)))
                failure = self.fail_next.pop(0) if self.fail_next else None
            if request.headers.get("x-api-key") != self.api_key:
                return JSONResponse({"detail": "Given API token is not valid"}, status_code=401)
            if failure:
                status, retry = failure if isinstance(failure, tuple) else (failure, None)
                headers = {"Retry-After": str(retry)} if retry is not None else {}
                return JSONResponse({"detail": "injected failure"}, status_code=status, headers=headers)
            return await call_next(request)

        @app.get(PREFIX + "/issues/{issue}/")
        def get_issue(slug: str, project: str, issue: str) -> Any:
            with self.lock:
                found = self.issues.get(issue)
            if found is None:
                return JSONResponse({"error": "Issue does not exist"}, status_code=404)
            return found

        @app.get(PREFIX + "/members/")
        def list_members(slug: str, project: str) -> Any:
            with self.lock:
                return list(self.members.values())

        @app.patch(PREFIX + "/issues/{issue}/")
        async def update_issue(slug: str, project: str, issue: str, request: Request) -> Any:
            data = await request.json()
            with self.lock:
                if "state" in data:
                    self.issue_states.setdefault(issue, []).append(data["state"])
            return {"id": issue, "project": project, **data}

        @app.post(PREFIX + "/issues/{issue}/comments/", status_code=201)
        async def add_comment(slug: str, project: str, issue: str, request: Request) -> Any:
            data = await request.json()
            with self.lock:
                src, ext = data.get("external_source"), data.get("external_id")
                if src and ext:
                    for rows in self.comments.values():
                        for c in rows:
                            if c["external_source"] == src and c["external_id"] == ext:
                                return JSONResponse(
                                    {
                                        "error": "Issue Comment with the same external id and external source already exists",
                                        "id": c["id"],
                                    },
                                    status_code=409,
                                )
                comment = {
                    "id": str(uuid.uuid4()),
                    "issue": issue,
                    "project": project,
                    "workspace": str(uuid.uuid4()),
                    "comment_html": data.get("comment_html", ""),
                    "external_source": src,
                    "external_id": ext,
                    "actor": self.user["id"],
                    "created_by": self.user["id"],
                    "access": "INTERNAL",
                }
                self.comments.setdefault(issue, []).append(comment)
                return comment

        @app.get(PREFIX + "/labels/")
        def list_labels(slug: str, project: str) -> Any:
            with self.lock:
                return {"results": [{"id": i, "name": n, "color": "#000000"} for i, n in self.labels.items()]}

        @app.get("/api/v1/users/me/")
        def me() -> Any:
            return self.user

        return app

    def start(self) -> str:
        self.server = BackgroundServer(self.app())
        self.url = self.server.start()
        return self.url

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def down(self) -> None:
        """Start an outage: the port stops listening, so every call is refused until `recover()`."""
        assert self.server is not None
        self.server.stop()
        self.downtime.append((time.monotonic(), None))

    def recover(self) -> None:
        """Serve again, on the same port (the URL in Factory's config stays right)."""
        assert self.server is not None
        self.server = BackgroundServer(self.app(), port=self.server.port)
        self.server.start()
        self.downtime[-1] = (self.downtime[-1][0], time.monotonic())

    # --- what a test reads ----------------------------------------------------------------------
    def config(self, **extra: Any) -> dict[str, Any]:
        """The `plane:` section of config.yml for this server."""
        states = {k: v for k, v in self.states.items() if k != "backlog"}
        return {
            "base_url": self.url,
            "api_key": self.api_key,
            "workspace_slug": self.workspace_slug,
            "project_id": self.project_id,
            "states": states,
            **extra,
        }

    def state_names(self, issue: str) -> list[str]:
        """The states Factory moved the issue to, in order, by name."""
        names = {v: k for k, v in self.states.items()}
        with self.lock:
            return [names.get(s, s) for s in self.issue_states.get(issue, [])]

    def comments_on(self, issue: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.comments.get(issue, []))

    # --- webhooks as Plane sends them -----------------------------------------------------------
    def issue_payload(
        self,
        issue: str,
        state: str,
        labels: list[str] = (),
        name: str = "An issue",
        description_html: str = "",
        action: str = "updated",
        field: str | None = "state",
        expand: bool = True,
        updated_at: str | None = None,
    ) -> dict[str, Any]:
        """An `issue` webhook; labels are expanded (`{"id","name","color"}`) or bare ids (`expand=False`).

        Plane's retries re-send the same data (same `updated_at`); a new move gets a new `updated_at`.
        """
        label_rows = []
        for label in labels:
            lid = next((i for i, n in self.labels.items() if n == label), None) or str(uuid.uuid4())
            self.labels[lid] = label
            label_rows.append({"id": lid, "name": label, "color": "#3a3a3a"} if expand else lid)
        state_id = self.states[state]
        return {
            "event": "issue",
            "action": action,
            "webhook_id": str(uuid.uuid4()),
            "workspace_id": str(uuid.uuid4()),
            "data": {
                "id": issue,
                "name": name,
                "description_html": description_html,
                "state": {
                    "id": state_id,
                    "name": state.replace("_", " ").title(),
                    "color": "#000",
                    "group": "unstarted",
                },
                "labels": label_rows,
                "assignees": [],
                "project": self.project_id,
                "workspace": str(uuid.uuid4()),
                "sequence_id": 7,
                "priority": "none",
                "updated_at": updated_at or datetime.now(UTC).isoformat(),
            },
            "activity": {
                "field": field,
                "old_value": self.states["backlog"] if field == "state" else None,
                "new_value": state_id if field == "state" else None,
                "actor": {"id": str(uuid.uuid4()), "display_name": "alice"},
                "old_identifier": None,
                "new_identifier": None,
            },
        }

    def comment_payload(
        self, issue: str, html: str, comment: dict[str, Any] | None = None, actor: str = "alice"
    ) -> dict[str, Any]:
        """An `issue_comment` created webhook by `actor` (a member unless added otherwise); pass `comment`
        to replay one of Factory's own comments."""
        actor_id = self.user_id(actor)
        data = (
            dict(comment)
            if comment
            else {
                "id": str(uuid.uuid4()),
                "issue": issue,
                "project": self.project_id,
                "comment_html": html,
                "external_source": None,
                "external_id": None,
                "actor": actor_id,
                "access": "INTERNAL",
            }
        )
        return {
            "event": "issue_comment",
            "action": "created",
            "webhook_id": str(uuid.uuid4()),
            "workspace_id": str(uuid.uuid4()),
            "data": data,
            "activity": {
                "field": None,
                "old_value": None,
                "new_value": None,
                "actor": {"id": data.get("actor"), "display_name": actor},
            },
        }

    def workitem_payload(
        self,
        issue: str,
        state: str,
        previous_state: str | None = "backlog",
        labels: list[str] = (),
        name: str = "A work item",
        description_html: str = "",
        previous: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """A v2 `workitem.updated` webhook (as Plane's docs show it): the work item with `state_id` and
        `label_ids`, `previous_attributes` holding the old state (or `previous`), no description (the
        work item, description included, is served by `GET .../issues/{id}/`)."""
        label_ids = []
        for label in labels:
            lid = next((i for i, n in self.labels.items() if n == label), None) or str(uuid.uuid4())
            self.labels[lid] = label
            label_ids.append(lid)
        now = datetime.now(UTC).isoformat()
        item = {
            "id": issue,
            "name": name,
            "point": "None",
            "type_id": "None",
            "is_draft": False,
            "priority": "none",
            "state_id": self.states[state],
            "label_ids": label_ids,
            "parent_id": "None",
            "created_at": now,
            "deleted_at": "None",
            "project_id": self.project_id,
            "sort_order": 65535,
            "start_date": "None",
            "updated_at": now,
            "archived_at": "None",
            "external_id": "None",
            "sequence_id": 3,
            "target_date": "None",
            "assignee_ids": [],
            "completed_at": "None",
            "workspace_id": str(uuid.uuid4()),
            "created_by_id": self.user_id("alice"),
            "updated_by_id": "None",
            "external_source": "None",
            "description_json": {},
            "last_activity_at": now,
            "estimate_point_id": "None",
        }
        with self.lock:
            self.issues[issue] = {**item, "description_html": description_html}
        if previous is None:
            previous = {"state_id": self.states[previous_state]} if previous_state else {}
        return {
            "version": "v2",
            "delivery_id": str(uuid.uuid4()),
            "event_id": event_id or str(uuid.uuid4()),
            "entity_id": issue,
            "entity_type": "issue",
            "event": "workitem.updated",
            "webhook_id": str(uuid.uuid4()),
            "workspace_id": item["workspace_id"],
            "data": item,
            "previous_attributes": previous,
        }

    def workitem_comment_payload(self, issue: str, text: str, actor: str = "alice") -> dict[str, Any]:
        """A v2 `workitem.comment.created` webhook: the work item with the new comment in `data.comment`."""
        cid = str(uuid.uuid4())
        return {
            "version": "v2",
            "delivery_id": str(uuid.uuid4()),
            "event_id": str(uuid.uuid4()),
            "entity_id": issue,
            "entity_type": "issue",
            "event": "workitem.comment.created",
            "webhook_id": str(uuid.uuid4()),
            "workspace_id": str(uuid.uuid4()),
            "data": {
                "id": issue,
                "name": "A work item",
                "comment": {
                    "id": cid,
                    "access": "INTERNAL",
                    "actor_id": self.user_id(actor),
                    "issue_id": issue,
                    "edited_at": None,
                    "comment_stripped": text,
                },
            },
            "previous_attributes": {},
        }


def signed(
    payload: dict[str, Any], secret: str, event: str | None = None, delivery: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers Plane sends for `payload` (v2: the header repeats the body's `delivery_id`)."""
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Autopilot",
        "X-Plane-Delivery": delivery or str(payload.get("delivery_id") or uuid.uuid4()),
        "X-Plane-Event": event or payload.get("event", ""),
        "X-Plane-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }
    return body, headers
