"""A stand-in Plane server: the REST calls Factory makes, recorded, plus builders for Plane's webhooks.

REST (`X-API-Key` required): `PATCH .../issues/{id}/` (state), `POST .../issues/{id}/comments/`
(`comment_html`, `external_source`, `external_id`; 409 with the existing id for a repeated
external id, as Plane does), `GET .../labels/`, `GET /api/v1/users/me/`. `fail_next` answers the
next calls with an error status (a `(status, retry_after)` tuple for 429).

Webhooks are signed the way Plane signs them: hex HMAC-SHA256 of `json.dumps(payload)`, which is
also the body Plane posts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from dataclasses import dataclass, field
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
    issue_states: dict[str, list[str]] = field(default_factory=dict)  # issue id -> state ids set through the API
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    fail_next: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: BackgroundServer | None = None
    url: str = ""

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
    ) -> dict[str, Any]:
        """An `issue` webhook; labels are expanded (`{"id","name","color"}`) or bare ids (`expand=False`)."""
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
        """An `issue_comment` created webhook; pass `comment` to replay one of Factory's own comments."""
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
                "actor": str(uuid.uuid4()),
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


def signed(
    payload: dict[str, Any], secret: str, event: str | None = None, delivery: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers Plane sends for `payload`."""
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Autopilot",
        "X-Plane-Delivery": delivery or str(uuid.uuid4()),
        "X-Plane-Event": event or payload.get("event", ""),
        "X-Plane-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }
    return body, headers
