"""A stand-in GitHub REST server: pulls and issue comments, recording every call."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.http import BackgroundServer


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class Fault:
    """Answer matching calls with `status` (`after`: only once the call has done its work, as a reply lost
    on the way back would look)."""

    method: str
    path: str  # a regular expression the whole path must match
    status: int
    times: int = 1
    after: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeGitHub:
    prs: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    review_comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # review id -> line comments
    calls: list[Call] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # status codes to answer the next calls with
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: BackgroundServer | None = None
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Any:
            body = await request.body()
            import json

            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = body.decode(errors="replace")
            with self.lock:
                self.calls.append(
                    Call(request.method, request.url.path, dict(request.query_params), parsed, dict(request.headers))
                )
                status = self.fail_next.pop(0) if self.fail_next else None
                fault = self._fault(request.method, request.url.path)
            if status:
                return JSONResponse({"message": "injected failure"}, status_code=status)
            if fault is not None and not fault.after:
                return JSONResponse({"message": "injected failure"}, status_code=fault.status, headers=fault.headers)
            response = await call_next(request)
            if fault is not None:  # the work is done; the reply is lost
                return JSONResponse({"message": "injected failure"}, status_code=fault.status, headers=fault.headers)
            return response

        @app.get("/repos/{owner}/{repo}/pulls")
        def list_pulls(owner: str, repo: str, head: str = "", state: str = "open") -> list[dict[str, Any]]:
            with self.lock:
                out = [p for p in self.prs if p["_repo"] == f"{owner}/{repo}"]
                if head:
                    out = [p for p in out if f"{owner}:{p['head']['ref']}" == head]
                if state != "all":
                    out = [p for p in out if p["state"] == state]
                return [_public(p) for p in out]

        @app.post("/repos/{owner}/{repo}/pulls", status_code=201)
        async def create_pull(owner: str, repo: str, request: Request) -> Any:
            data = await request.json()
            with self.lock:
                for p in self.prs:
                    if p["_repo"] == f"{owner}/{repo}" and p["head"]["ref"] == data["head"] and p["state"] == "open":
                        return JSONResponse({"message": "A pull request already exists"}, status_code=422)
                number = len(self.prs) + 1
                pr = {
                    "_repo": f"{owner}/{repo}",
                    "number": number,
                    "html_url": f"https://github.example/{owner}/{repo}/pull/{number}",
                    "title": data["title"],
                    "body": data.get("body", ""),
                    "head": {"ref": data["head"]},
                    "base": {"ref": data["base"]},
                    "state": "open",
                    "merged": False,
                }
                self.prs.append(pr)
                return _public(pr)

        @app.get("/repos/{owner}/{repo}/pulls/{number}")
        def get_pull(owner: str, repo: str, number: int) -> Any:
            with self.lock:
                for p in self.prs:
                    if p["_repo"] == f"{owner}/{repo}" and p["number"] == number:
                        return _public(p)
            return JSONResponse({"message": "Not Found"}, status_code=404)

        @app.get("/repos/{owner}/{repo}/pulls/{number}/reviews/{review_id}/comments")
        def list_review_comments(owner: str, repo: str, number: int, review_id: int) -> list[dict[str, Any]]:
            with self.lock:
                return list(self.review_comments.get(review_id, []))

        @app.get("/repos/{owner}/{repo}/issues/{number}/comments")
        def list_comments(owner: str, repo: str, number: int) -> list[dict[str, Any]]:
            with self.lock:
                return list(self.comments.get(number, []))

        @app.post("/repos/{owner}/{repo}/issues/{number}/comments", status_code=201)
        async def add_comment(owner: str, repo: str, number: int, request: Request) -> dict[str, Any]:
            data = await request.json()
            with self.lock:
                c = {"id": sum(len(v) for v in self.comments.values()) + 1, "body": data["body"]}
                self.comments.setdefault(number, []).append(c)
                return c

        return app

    def fail(self, method: str, path: str, status: int, times: int = 1, after: bool = False, **headers: str) -> None:
        """Make the next `times` calls matching `method` and the `path` pattern answer `status`."""
        with self.lock:
            hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
            self.faults.append(Fault(method, path, status, times, after, hdrs))

    def _fault(self, method: str, path: str) -> Fault | None:
        for f in self.faults:
            if f.times > 0 and f.method == method and re.fullmatch(f.path, path):
                f.times -= 1
                return f
        return None

    def start(self) -> str:
        self.server = BackgroundServer(self.app())
        self.url = self.server.start()
        return self.url

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def pr_creations(self) -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and c.path.endswith("/pulls")]

    def set_state(self, number: int, state: str, merged: bool = False) -> None:
        with self.lock:
            for p in self.prs:
                if p["number"] == number:
                    p["state"] = state
                    p["merged"] = merged


def _public(p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if not k.startswith("_")}
