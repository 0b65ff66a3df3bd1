"""Hosted services failing on demand: the task still finishes, and nothing is written twice."""

from __future__ import annotations

import pytest

from tests.fakes.anthropic import Text, ToolUse

pytestmark = pytest.mark.chaos


@pytest.fixture
def clean_faults(github):
    yield github
    with github.lock:
        github.faults.clear()


async def test_github_lost_replies_and_rate_limits_still_give_one_pr(start_factory, model, clean_faults):
    github = clean_faults
    model.add_scenario(
        "gh-outage", [[ToolUse("Write", {"file_path": "gh.txt", "content": "x\n"})], Text("Wrote gh.txt.")]
    )
    pulls = r"/repos/acme/demo/pulls"
    github.fail("GET", pulls, 503, times=2)  # the look-up for an open PR fails twice
    github.fail("POST", pulls, 429, times=1, Retry_After="1")  # rate limited once
    github.fail("POST", pulls, 502, times=1, after=True)  # created, but the reply is lost
    async with start_factory() as h:
        t = await h.create("Survive GitHub", "gh-outage")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=120)
        assert done["status"] == "done", done["error"]
        mine = [p for p in github.prs if p["head"]["ref"] == done["branch"]]
        assert len(mine) == 1, "the lost reply led to a second pull request"
        assert done["pr_url"] == mine[0]["html_url"]
        assert all(f.times == 0 for f in github.faults), "not every injected failure was met"
        await h.settled(t["id"])


async def test_github_pr_made_by_a_lost_attempt_is_adopted_after_422_and_rate_limits_are_waited_out(
    start_factory, model, clean_faults
):
    github = clean_faults
    first = len(github.calls)
    model.add_scenario("gh-422", [[ToolUse("Write", {"file_path": "gh422.txt", "content": "y\n"})], Text("Wrote it.")])
    pulls = r"/repos/acme/demo/pulls"
    github.fail("GET", pulls, 200, times=2, body=[])  # GitHub's list lags behind: the PR is not listed yet
    github.fail("POST", pulls, 502, times=1, after=True)  # created, but the reply is lost
    github.fail(
        "GET", pulls, 429, times=1, Retry_After="7"
    )  # the look-up after the 422 is rate limited (backoff alone: 4 s)
    async with start_factory() as h:
        t = await h.create("Adopt my PR", "gh-422")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=120)
        assert done["status"] == "done", done["error"]
        mine = [p for p in github.prs if p["head"]["ref"] == done["branch"]]
        assert len(mine) == 1 and done["pr_url"] == mine[0]["html_url"]
        assert all(f.times == 0 for f in github.faults), "not every injected failure was met"
        calls = [c for c in github.calls[first:] if c.path == "/repos/acme/demo/pulls"]
        # GET (lags), POST (reply lost) | GET (lags), POST (422), GET (429) | GET: the PR, adopted
        posts = [i for i, c in enumerate(calls) if c.method == "POST"]
        limited = posts[1] + 1
        assert calls[limited + 1].at - calls[limited].at >= 6.9, "the retry did not wait for Retry-After"
        await h.settled(t["id"])
