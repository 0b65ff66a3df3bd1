"""The GitHub REST calls Factory makes (against `github.api_url`): pull requests, comments, checks, job logs."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from factory.config import FactoryConfig
from factory.domain.errors import http_retryable
from factory.domain.redact import scrub

log = logging.getLogger("factory.integrations.github.client")


class GitHubError(Exception):
    """A GitHub call failed; `status` is the HTTP status, and the message is scrubbed of secrets."""

    def __init__(self, message: str, status: int, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds GitHub asked us to wait (rate limits)

    @property
    def retryable(self) -> bool:
        """Whether a later try may succeed (factory/domain/errors.py; a spent rate limit is retried, too)."""
        return http_retryable(self.status) or self.retry_after is not None


@dataclass
class PullRequest:
    """An open or just-created pull request."""

    url: str
    number: int
    created: bool


class GitHubClient:
    """GitHub's REST API with Factory's token (sent as a header, never in a URL)."""

    def __init__(self, cfg: FactoryConfig, http: httpx.AsyncClient):
        self.cfg = cfg
        self.http = http

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if self.cfg.github_token:
            h["Authorization"] = f"Bearer {self.cfg.github_token.get_secret_value()}"
        return h

    def _url(self, path: str) -> str:
        return self.cfg.github.api_url.rstrip("/") + path

    def _fail(self, what: str, resp: httpx.Response) -> GitHubError:
        body = scrub(resp.text[:500], self.cfg.secret_values())
        return GitHubError(
            f"GitHub {what} failed: HTTP {resp.status_code}: {body}", resp.status_code, _retry_after(resp)
        )

    async def _open_pr_of(self, repo_github: str, branch: str) -> PullRequest | None:
        owner = repo_github.split("/")[0]
        r = await self.http.get(
            self._url(f"/repos/{repo_github}/pulls"),
            params={"head": f"{owner}:{branch}", "state": "open"},
            headers=self._headers(),
        )
        if r.status_code != 200:
            raise self._fail("PR lookup", r)
        for pr in r.json():
            if (pr.get("head") or {}).get("ref") == branch:
                return PullRequest(url=pr["html_url"], number=pr["number"], created=False)
        return None

    async def open_pull_request(
        self, repo_github: str, branch: str, base: str, title: str, body: str, draft: bool = False
    ) -> PullRequest:
        """The open PR of `branch`, or a new one (so a retry never opens a second PR).

        Raises:
            GitHubError: the lookup or the creation failed.
        """
        found = await self._open_pr_of(repo_github, branch)
        if found is not None:
            return found
        r = await self.http.post(
            self._url(f"/repos/{repo_github}/pulls"),
            json={"title": title, "head": branch, "base": base, "body": body, **({"draft": True} if draft else {})},
            headers=self._headers(),
        )
        if r.status_code == 422 and "already exists" in r.text:
            # an earlier attempt made it (its reply was lost) and the lookup above did not list it yet
            found = await self._open_pr_of(repo_github, branch)
            if found is not None:
                return found
            raise GitHubError(f"GitHub says a PR for {branch} exists, but does not list it yet", 503)
        if r.status_code not in (200, 201):
            raise self._fail("PR creation", r)
        pr = r.json()
        return PullRequest(url=pr["html_url"], number=pr["number"], created=True)

    async def pull_request_state(self, repo_github: str, number: int) -> str | None:
        """open | merged | closed, or None when GitHub cannot say."""
        r = await self.http.get(self._url(f"/repos/{repo_github}/pulls/{number}"), headers=self._headers())
        if r.status_code != 200:
            return None
        pr = r.json()
        if pr.get("merged") or pr.get("merged_at"):
            return "merged"
        return pr.get("state")

    async def review_comments(self, repo_github: str, number: int, review_id: Any) -> list[dict[str, Any]]:
        """A review's line comments; an empty list (and a warning) when GitHub cannot be read."""
        try:
            r = await self.http.get(
                self._url(f"/repos/{repo_github}/pulls/{number}/reviews/{review_id}/comments"),
                headers=self._headers(),
                params={"per_page": 100},
                timeout=20,
            )
        except httpx.HTTPError as exc:
            log.warning("could not read review comments: %s", type(exc).__name__)
            return []
        if r.status_code != 200:
            log.warning("could not read review comments: HTTP %s", r.status_code)
            return []
        data = r.json()
        return [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []

    async def call(
        self, method: str, path: str, what: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """One REST call; its JSON (None for an empty body).

        Raises:
            GitHubError: GitHub answered an error or could not be reached (status 503 then).
        """
        try:
            r = await self.http.request(
                method, self._url(path), json=json, params=params, headers=self._headers(), timeout=30
            )
        except httpx.HTTPError as exc:
            raise GitHubError(f"GitHub {what} failed: {type(exc).__name__}", 503) from None
        if r.status_code >= 300:
            raise self._fail(what, r)
        return r.json() if r.content else None

    async def add_comment(self, repo_github: str, number: int, body: str) -> int:
        """Comment on an issue or PR; the new comment's id."""
        data = await self.call("POST", f"/repos/{repo_github}/issues/{number}/comments", "comment", json={"body": body})
        return int(data["id"])

    async def edit_comment(self, repo_github: str, comment_id: int, body: str) -> None:
        """Replace the text of an issue comment Factory made."""
        await self.call(
            "PATCH", f"/repos/{repo_github}/issues/comments/{comment_id}", "comment edit", json={"body": body}
        )

    async def reply_to_review_comment(self, repo_github: str, number: int, comment_id: int, body: str) -> int:
        """Reply in the thread of a PR line comment; the reply's id."""
        data = await self.call(
            "POST", f"/repos/{repo_github}/pulls/{number}/comments/{comment_id}/replies", "reply", json={"body": body}
        )
        return int(data["id"])

    async def has_write_access(self, repo_github: str, login: str) -> bool:
        """Whether `login` may write to the repository (write, maintain or admin), by the collaborator
        permission endpoint; a user GitHub does not know (404) has none."""
        try:
            data = await self.call(
                "GET", f"/repos/{repo_github}/collaborators/{quote(login, safe='')}/permission", "permission lookup"
            )
        except GitHubError as exc:
            if exc.status == 404:
                return False
            raise
        data = data if isinstance(data, dict) else {}
        return data.get("permission") in ("admin", "write") or data.get("role_name") in ("admin", "maintain", "write")

    async def pull_request(self, repo_github: str, number: int) -> dict[str, Any]:
        """The PR as the REST API shows it (head, base, `mergeable`, ...)."""
        return dict(await self.call("GET", f"/repos/{repo_github}/pulls/{number}", "PR lookup"))

    async def open_pulls(self, repo_github: str, base: str) -> list[dict[str, Any]]:
        """Open PRs into `base`."""
        data = await self.call(
            "GET", f"/repos/{repo_github}/pulls", "PR list", params={"state": "open", "base": base, "per_page": 100}
        )
        return [p for p in data if isinstance(p, dict)] if isinstance(data, list) else []

    async def check_run(self, repo_github: str, run_id: int | None, fields: dict[str, Any]) -> int:
        """Create a check run (`run_id` None) or update one; its id."""
        if run_id is None:
            data = await self.call("POST", f"/repos/{repo_github}/check-runs", "check run", json=fields)
        else:
            data = await self.call("PATCH", f"/repos/{repo_github}/check-runs/{run_id}", "check run", json=fields)
        return int(data["id"])

    async def suite_check_runs(self, repo_github: str, suite_id: int) -> list[dict[str, Any]]:
        """The latest check runs of a check suite."""
        data = await self.call(
            "GET", f"/repos/{repo_github}/check-suites/{suite_id}/check-runs", "check runs",
            params={"filter": "latest", "per_page": 100},
        )  # fmt: skip
        return [c for c in (data or {}).get("check_runs", []) if isinstance(c, dict)]

    async def workflow_run_jobs(self, repo_github: str, run_id: int) -> list[dict[str, Any]]:
        """The jobs of an Actions workflow run (their latest attempt)."""
        data = await self.call(
            "GET", f"/repos/{repo_github}/actions/runs/{run_id}/jobs", "jobs", params={"per_page": 100}
        )
        return [j for j in (data or {}).get("jobs", []) if isinstance(j, dict)]

    async def job_log(self, repo_github: str, job_id: int) -> str | None:
        """An Actions job's plain-text log (GitHub redirects to a download URL), or None when unavailable."""
        try:
            r = await self.http.get(
                self._url(f"/repos/{repo_github}/actions/jobs/{job_id}/logs"),
                headers=self._headers(), follow_redirects=True, timeout=60,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            log.warning("could not read the log of job %s: %s", job_id, type(exc).__name__)
            return None
        if r.status_code != 200:
            log.warning("could not read the log of job %s: HTTP %s", job_id, r.status_code)
            return None
        return r.text


def _retry_after(resp: httpx.Response) -> float | None:
    """Seconds to wait before the next call, when GitHub rate-limits (`Retry-After`, or a spent quota)."""
    value = resp.headers.get("retry-after")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    if resp.status_code in (403, 429) and resp.headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(0.0, float(resp.headers.get("x-ratelimit-reset", "")) - time.time())
        except ValueError:
            return None
    return None
