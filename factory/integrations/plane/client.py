"""Plane: a small REST client (`X-API-Key`), the HTML helpers, and how Factory knows its own comments.

Factory's own comments are told apart from people's by two marks a person cannot put on a
comment made in Plane's UI: every comment Factory posts carries `external_source: "factory"`
(with a unique `external_id`, which Plane also uses to refuse a duplicate with 409), and its id is
remembered in the database (`plane:comment:<id>`). The author is not used: Plane API keys are
personal tokens, so Factory may well post as the same user who answers.
"""

from __future__ import annotations

import logging
import re
from html.parser import HTMLParser
from typing import Any

import httpx
from markupsafe import Markup, escape
from sqlalchemy.engine import Engine

from factory.config import FactoryConfig
from factory.domain.redact import scrub
from factory.integrations.errors import ServiceError
from factory.store.kv import kv_get, kv_set

log = logging.getLogger("factory.integrations.plane.client")

FACTORY_SOURCE = "factory"
STATE_KEYS = ("queued", "in_progress", "in_review", "done", "failed", "cancelled", "waiting_for_input")


class PlaneError(ServiceError):
    """A Plane API call failed; `status` is the HTTP status (None for network errors)."""

    service = "Plane"

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None, body: Any = None):
        super().__init__(message, status, retry_after)
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

    async def project_members(self) -> dict[str, dict[str, Any]]:
        """User id → user (`display_name`, `email`, ...) for the project's members."""
        data = await self._request("GET", f"{self._project()}/members/")
        rows = data.get("results", []) if isinstance(data, dict) else (data or [])
        return {str(r["id"]): r for r in rows if isinstance(r, dict) and r.get("id")}

    async def get_issue(self, issue_id: str) -> dict[str, Any]:
        """One work item as the API returns it (v2 webhooks leave its description out)."""
        data = await self._request("GET", f"{self._project()}/issues/{issue_id}/")
        return data if isinstance(data, dict) else {}

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
