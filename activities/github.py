"""GitHub REST activities: open the PR idempotently (look up an open PR for the branch first)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from factory.config import FactoryConfig
from factory.contracts import PullRequestInput, PullRequestResult
from factory.domain.redact import scrub


@dataclass
class PrCommentInput:
    repo_github: str
    number: int
    body: str
    marker: str = ""  # a comment holding this marker is not posted twice


class GithubActivities:
    def __init__(self, cfg: FactoryConfig, client: httpx.AsyncClient | None = None):
        self.cfg = cfg
        self.client = client or httpx.AsyncClient(timeout=30)

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if self.cfg.github_token:
            h["Authorization"] = f"Bearer {self.cfg.github_token.get_secret_value()}"
        return h

    def _url(self, path: str) -> str:
        return self.cfg.github.api_url.rstrip("/") + path

    def _fail(self, what: str, resp: httpx.Response) -> ApplicationError:
        body = scrub(resp.text[:500], self.cfg.secret_values())
        retryable = resp.status_code >= 500 or resp.status_code == 429
        return ApplicationError(
            f"GitHub {what} failed: HTTP {resp.status_code}: {body}", type="GitHubError", non_retryable=not retryable
        )

    @activity.defn
    async def open_pull_request(self, inp: PullRequestInput) -> PullRequestResult:
        """Return the open PR for the branch, or create one."""
        if not inp.repo.github:
            raise ApplicationError(f"{inp.repo.name} is not a GitHub repo", type="NoGitHub", non_retryable=True)
        owner = inp.repo.github.split("/")[0]
        base = f"/repos/{inp.repo.github}/pulls"
        r = await self.client.get(
            self._url(base), params={"head": f"{owner}:{inp.branch}", "state": "open"}, headers=self._headers()
        )
        if r.status_code != 200:
            raise self._fail("PR lookup", r)
        for pr in r.json():
            if (pr.get("head") or {}).get("ref") == inp.branch:
                return PullRequestResult(url=pr["html_url"], number=pr["number"], created=False)
        r = await self.client.post(
            self._url(base),
            json={"title": inp.title, "head": inp.branch, "base": inp.base_branch, "body": inp.body},
            headers=self._headers(),
        )
        if r.status_code not in (200, 201):
            raise self._fail("PR creation", r)
        pr = r.json()
        return PullRequestResult(url=pr["html_url"], number=pr["number"], created=True)

    @activity.defn
    async def comment_on_pull_request(self, inp: PrCommentInput) -> None:
        """Comment on a PR once (a marker in the body makes retries idempotent)."""
        path = f"/repos/{inp.repo_github}/issues/{inp.number}/comments"
        if inp.marker:
            r = await self.client.get(self._url(path), headers=self._headers(), params={"per_page": 100})
            if r.status_code == 200 and any(inp.marker in (c.get("body") or "") for c in r.json()):
                return
        r = await self.client.post(self._url(path), json={"body": inp.body}, headers=self._headers())
        if r.status_code not in (200, 201):
            raise self._fail("PR comment", r)

    async def pull_request_state(self, repo_github: str, number: int) -> str | None:
        """open | merged | closed, or None when GitHub cannot say."""
        r = await self.client.get(self._url(f"/repos/{repo_github}/pulls/{number}"), headers=self._headers())
        if r.status_code != 200:
            return None
        pr = r.json()
        if pr.get("merged") or pr.get("merged_at"):
            return "merged"
        return pr.get("state")
