"""GitHub activities: open the PR idempotently (the client looks up an open PR for the branch first)."""

from __future__ import annotations

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._heartbeat import heartbeats
from factory.config import FactoryConfig
from factory.contracts import PullRequestInput, PullRequestResult
from factory.integrations.errors import failure
from factory.integrations.github.client import GitHubClient, GitHubError


class GithubActivities:
    """Activities over the shared `GitHubClient` (one `httpx.AsyncClient` per worker)."""

    def __init__(self, cfg: FactoryConfig, http: httpx.AsyncClient):
        self.github = GitHubClient(cfg, http)

    @activity.defn
    @heartbeats
    async def open_pull_request(self, inp: PullRequestInput) -> PullRequestResult:
        """Return the open PR for the branch, or create one."""
        if not inp.repo.github:
            raise ApplicationError(f"{inp.repo.name} is not a GitHub repo", type="NoGitHub", non_retryable=True)
        try:
            pr = await self.github.open_pull_request(
                inp.repo.github, inp.branch, inp.base_branch, inp.title, inp.body, draft=inp.draft
            )
        except GitHubError as exc:
            # a rate limit's Retry-After sets the next attempt; otherwise the caller's backoff does
            raise failure(str(exc), "GitHubError", exc.retryable, exc.retry_after) from None
        return PullRequestResult(url=pr.url, number=pr.number, created=pr.created)
