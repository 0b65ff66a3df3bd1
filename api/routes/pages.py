"""The web pages: the dashboard at `/` and `/messages` (the live board and the questions waiting for an answer).

The pages hold no data: their scripts read `/api` with the bearer token the person
enters (kept in the browser's localStorage, so a new tab opens signed in), so they are served without auth. A strict
Content-Security-Policy (no inline script, nothing from other origins) backs up the
script's rule of putting agents' text into the page only as text.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse

router = APIRouter(tags=["pages"])

STATIC = Path(__file__).resolve().parent.parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> FileResponse:
    path = STATIC / name
    if path.suffix not in _TYPES or path.parent != STATIC or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)


@router.get("/", include_in_schema=False)
def dashboard_page() -> FileResponse:
    """The dashboard: tasks, a task's page, workflow runs, agents, environments, memory, analytics, settings."""
    return _file("index.html")


@router.get("/messages", include_in_schema=False)
def messages_page(request: Request) -> FileResponse:
    """The message board page (404 when `message_board.enabled` is false)."""
    if not request.app.state.cfg.message_board.enabled:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the message board is disabled (message_board.enabled: false)")
    return _file("messages.html")


@router.get("/static/{name}", include_in_schema=False)
def static_file(name: str) -> FileResponse:
    """The pages' scripts and styles (only files directly in api/static)."""
    return _file(name)
