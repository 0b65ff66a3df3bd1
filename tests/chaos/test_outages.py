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
    model.add_scenario("gh-outage", [[ToolUse("Write", {"file_path": "gh.txt", "content": "x\n"})], Text("Wrote gh.txt.")])
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
