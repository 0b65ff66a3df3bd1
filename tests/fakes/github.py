"""A stand-in GitHub REST server, recording every call.

It speaks the parts of GitHub's REST API Factory uses, in GitHub's shapes: pulls (with `head.sha`,
`mergeable`, `mergeable_state`), issue comments (create, list, edit), replies to PR line comments,
review comments, check runs (create, update), a check suite's check runs, a workflow run's jobs, and
job logs (a 302 to a download URL, as GitHub answers).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse

from tests.fakes.http import BackgroundServer


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    body: Any
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


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
    body: Any = None  # the JSON answered (default: GitHub's error shape); e.g. `[]` for a list that lags
    hold: Hold | None = None  # hold the call until released, then let it through
    body_matches: str | None = None  # only calls whose raw body this regular expression finds


@dataclass
class Hold:
    """A call held by the stand-in: `entered` is set when one arrives; it proceeds once `release()`d."""

    entered: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


@dataclass
class FakeGitHub:
    prs: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    review_comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # review id -> line comments
    calls: list[Call] = field(default_factory=list)
    replies: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # line comment id -> replies
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # Factory's check runs, by id
    suites: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # check suite id -> its check runs
    run_jobs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # workflow run id -> jobs
    job_logs: dict[int, str] = field(default_factory=dict)  # job id -> plain-text log
    # login -> role on every repository (admin, maintain, write, triage, read); anyone else reads
    roles: dict[str, str] = field(default_factory=lambda: {"carol": "write", "dave": "admin", "bob": "maintain"})
    next_id: int = 900_000
    remotes: dict[str, Any] = field(default_factory=dict)  # owner/name -> bare repository the branches live in
    fail_next: list[int] = field(default_factory=list)  # status codes to answer the next calls with
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: BackgroundServer | None = None
    url: str = ""
    # the OAuth web flow (sign-in with GitHub): who signs in next, issued codes and access tokens
    oauth_user: str = "octocat"
    oauth_client: tuple[str, str] = ("gh-client", "gh-oauth-secret-51a9")
    oauth_codes: dict[str, str] = field(default_factory=dict)
    oauth_tokens: dict[str, str] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget every PR, comment, call, check run, remote and fault (the server keeps running)."""
        fresh = FakeGitHub()
        with self.lock:
            for name in ("prs", "comments", "review_comments", "calls", "replies", "check_runs", "suites",
                         "run_jobs", "job_logs", "roles", "remotes", "fail_next", "faults", "oauth_codes",
                         "oauth_tokens"):  # fmt: skip
                setattr(self, name, getattr(fresh, name))
            self.oauth_user, self.oauth_client = fresh.oauth_user, fresh.oauth_client

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
                fault = self._fault(request.method, request.url.path, body.decode(errors="replace"))
            if status:
                return JSONResponse({"message": "injected failure"}, status_code=status)
            if fault is not None and fault.hold is not None:
                fault.hold.entered.set()
                while not fault.hold.released.is_set():
                    await asyncio.sleep(0.05)
                return await call_next(request)  # the caller may be gone: the work is done all the same
            answer = fault.body if fault is not None and fault.body is not None else {"message": "injected failure"}
            if fault is not None and not fault.after:
                return JSONResponse(answer, status_code=fault.status, headers=fault.headers)
            response = await call_next(request)
            if fault is not None:  # the work is done; the reply is lost
                return JSONResponse(answer, status_code=fault.status, headers=fault.headers)
            return response

        @app.get("/repos/{owner}/{repo}/pulls")
        def list_pulls(owner: str, repo: str, head: str = "", state: str = "open") -> list[dict[str, Any]]:
            with self.lock:
                out = [p for p in self.prs if p["_repo"] == f"{owner}/{repo}"]
                if head:
                    out = [p for p in out if f"{owner}:{p['head']['ref']}" == head]
                if state != "all":
                    out = [p for p in out if p["state"] == state]
                return [self._public(p) for p in out]

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
                    "head": {"ref": data["head"], "sha": "", "repo": {"full_name": f"{owner}/{repo}"}},
                    "base": {"ref": data["base"], "sha": "", "repo": {"full_name": f"{owner}/{repo}"}},
                    "state": "open",
                    "merged": False,
                    "mergeable": True,
                    "mergeable_state": "clean",
                }
                self.prs.append(pr)
                return self._public(pr)

        @app.get("/repos/{owner}/{repo}/collaborators/{username}/permission")
        def permission(owner: str, repo: str, username: str) -> Any:
            # as GitHub answers: `permission` is the legacy level (maintain shows as write, triage as read)
            role = self.roles.get(username, "read")
            legacy = {"maintain": "write", "triage": "read"}.get(role, role)
            return {"permission": legacy, "role_name": role, "user": {"login": username, "type": "User"}}

        @app.get("/repos/{owner}/{repo}/pulls/{number}")
        def get_pull(owner: str, repo: str, number: int) -> Any:
            with self.lock:
                for p in self.prs:
                    if p["_repo"] == f"{owner}/{repo}" and p["number"] == number:
                        return self._public(p)
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
                cid = self._id()
                c = {
                    "id": cid,
                    "body": data["body"],
                    "user": {"login": "factory-bot", "type": "Bot"},
                    "html_url": f"https://github.example/{owner}/{repo}/issues/{number}#issuecomment-{cid}",
                    "author_association": "NONE",
                    "edits": 0,
                }
                self.comments.setdefault(number, []).append(c)
                return c

        @app.patch("/repos/{owner}/{repo}/issues/comments/{comment_id}")
        async def edit_comment(owner: str, repo: str, comment_id: int, request: Request) -> Any:
            data = await request.json()
            with self.lock:
                for c in (c for cs in self.comments.values() for c in cs):
                    if c["id"] == comment_id:
                        c["body"] = data["body"]
                        c["edits"] += 1
                        return c
            return JSONResponse({"message": "Not Found"}, status_code=404)

        @app.post("/repos/{owner}/{repo}/pulls/{number}/comments/{comment_id}/replies", status_code=201)
        async def reply(owner: str, repo: str, number: int, comment_id: int, request: Request) -> Any:
            data = await request.json()
            with self.lock:
                known = {c.get("id") for cs in self.review_comments.values() for c in cs}
                if comment_id not in known:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                r = {"id": self._id(), "body": data["body"], "in_reply_to_id": comment_id}
                self.replies.setdefault(comment_id, []).append(r)
                return r

        @app.post("/repos/{owner}/{repo}/check-runs", status_code=201)
        async def create_check_run(owner: str, repo: str, request: Request) -> Any:
            data = await request.json()
            if not data.get("name") or not data.get("head_sha"):
                return JSONResponse({"message": "Invalid request", "errors": ["name", "head_sha"]}, status_code=422)
            with self.lock:
                run = {"id": self._id(), **data, "history": [data.get("status") or "queued"]}
                self.check_runs[run["id"]] = run
                return run

        @app.patch("/repos/{owner}/{repo}/check-runs/{run_id}")
        async def update_check_run(owner: str, repo: str, run_id: int, request: Request) -> Any:
            data = await request.json()
            with self.lock:
                run = self.check_runs.get(run_id)
                if run is None:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                run.update(data)
                run["history"].append(data.get("conclusion") or data.get("status") or "")
                return run

        @app.get("/repos/{owner}/{repo}/check-suites/{suite_id}/check-runs")
        def suite_runs(owner: str, repo: str, suite_id: int) -> dict[str, Any]:
            with self.lock:
                runs = list(self.suites.get(suite_id, []))
            return {"total_count": len(runs), "check_runs": runs}

        @app.get("/repos/{owner}/{repo}/actions/runs/{run_id}/jobs")
        def jobs(owner: str, repo: str, run_id: int) -> dict[str, Any]:
            with self.lock:
                found = list(self.run_jobs.get(run_id, []))
            return {"total_count": len(found), "jobs": found}

        @app.get("/repos/{owner}/{repo}/actions/jobs/{job_id}/logs")
        def job_log(owner: str, repo: str, job_id: int) -> Any:
            with self.lock:
                if job_id not in self.job_logs:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
            # GitHub answers with a short-lived download URL on another host; here, on this server
            return RedirectResponse(f"/_blobs/job-logs/{job_id}.txt", status_code=302)

        @app.get("/login/oauth/authorize")
        def oauth_authorize(client_id: str, redirect_uri: str, state: str) -> Any:
            if client_id != self.oauth_client[0]:
                return JSONResponse({"error": "bad client"}, status_code=400)
            code = f"code-{self._id()}"
            self.oauth_codes[code] = self.oauth_user
            return RedirectResponse(f"{redirect_uri}?code={code}&state={state}", status_code=302)

        @app.post("/login/oauth/access_token")
        async def oauth_token(request: Request) -> Any:
            form = dict(parse_qsl((await request.body()).decode()))  # urlencoded, as GitHub takes it
            login = self.oauth_codes.pop(str(form.get("code")), None)
            if login is None or (form.get("client_id"), form.get("client_secret")) != self.oauth_client:
                return JSONResponse({"error": "bad_verification_code"})  # GitHub answers 200 with an error
            token = f"gho_{self._id()}"
            self.oauth_tokens[token] = login
            return {"access_token": token, "token_type": "bearer", "scope": "read:user"}

        @app.get("/user")
        def oauth_user_info(request: Request) -> Any:
            login = self.oauth_tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))
            if login is None:
                return JSONResponse({"message": "Bad credentials"}, status_code=401)
            return {"login": login, "id": 1}

        @app.get("/_blobs/job-logs/{job_id}.txt")
        def job_log_blob(job_id: int) -> Any:
            with self.lock:
                return PlainTextResponse(self.job_logs.get(job_id, ""))

        return app

    def fail(
        self, method: str, path: str, status: int, times: int = 1, after: bool = False, body: Any = None, **headers: str
    ) -> None:
        """Make the next `times` calls matching `method` and the `path` pattern answer `status` (with `body`)."""
        with self.lock:
            hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
            self.faults.append(Fault(method, path, status, times, after, hdrs, body))

    def hold(self, method: str, path: str, times: int = 1, body_matches: str | None = None) -> Hold:
        """Hold the next `times` calls matching `method`, `path` (and `body_matches`) until released."""
        hold = Hold()
        with self.lock:
            self.faults.append(Fault(method, path, 0, times, hold=hold, body_matches=body_matches))
        return hold

    def _fault(self, method: str, path: str, body: str) -> Fault | None:
        for f in self.faults:
            if f.body_matches is not None and not re.search(f.body_matches, body):
                continue
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

    def _public(self, p: dict[str, Any]) -> dict[str, Any]:
        """A PR as the API shows it; with its repo in `remotes`, head and base SHAs follow the real branches."""
        out = _public(p)
        remote = self.remotes.get(p["_repo"])
        if remote is not None:
            for side in ("head", "base"):
                sha = _rev(remote, out[side]["ref"])
                if sha:
                    out[side] = {**out[side], "sha": sha}
        return out

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def issue_comments(self, number: int) -> list[dict[str, Any]]:
        """The comments on issue (or PR) `number`, oldest first."""
        with self.lock:
            return [dict(c) for c in self.comments.get(number, [])]

    def pr_creations(self) -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and c.path.endswith("/pulls")]

    def set_state(self, number: int, state: str, merged: bool = False) -> None:
        with self.lock:
            for p in self.prs:
                if p["number"] == number:
                    p["state"] = state
                    p["merged"] = merged


def _rev(remote: Any, ref: str) -> str:
    r = subprocess.run(["git", "-C", str(remote), "rev-parse", "--verify", "-q", f"refs/heads/{ref}"],
                       capture_output=True, text=True)  # fmt: skip
    return r.stdout.strip() if r.returncode == 0 else ""


def _public(p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if not k.startswith("_")}
