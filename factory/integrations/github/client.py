"""The few GitHub REST calls Factory makes (against `github.api_url`): pull requests and review comments."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from factory.config import FactoryConfig
from factory.domain.redact import scrub

log = logging.getLogger("factory.integrations.github.client")


class GitHubError(Exception):
    """A GitHub call failed; `status` is the HTTP status, and the message is scrubbed of secrets."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Whether a later try may succeed (a server error or rate limiting)."""
        return self.status >= 500 or self.status == 429


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
        return GitHubError(f"GitHub {what} failed: HTTP {resp.status_code}: {body}", resp.status_code)

    async def open_pull_request(self, repo_github: str, branch: str, base: str, title: str, body: str) -> PullRequest:
        """The open PR of `branch`, or a new one (so a retry never opens a second PR).

        Raises:
            GitHubError: the lookup or the creation failed.
        """
        owner = repo_github.split("/")[0]
        path = f"/repos/{repo_github}/pulls"
        r = await self.http.get(
            self._url(path), params={"head": f"{owner}:{branch}", "state": "open"}, headers=self._headers()
        )
        if r.status_code != 200:
            raise self._fail("PR lookup", r)
        for pr in r.json():
            if (pr.get("head") or {}).get("ref") == branch:
                return PullRequest(url=pr["html_url"], number=pr["number"], created=False)
        r = await self.http.post(
            self._url(path),
            json={"title": title, "head": branch, "base": base, "body": body},
            headers=self._headers(),
        )
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
