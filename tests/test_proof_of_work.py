"""Proof of work end to end: Factory runs the repo's checks on the agent's commit itself, in a fresh
sandbox on its own copy, sends a failing check back to the agent, and puts the evidence on the PR
and behind the API. Real Temporal, real git, the real claude CLI against the scripted model, real bwrap."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from factory.evidence.junit import TestCounts, read_junit
from factory.evidence.store import ArtifactStore
from tests.conftest import make_remote
from tests.fakes.anthropic import Text, ToolUse

# The repo's own test script: one JUnit case per check, written where `checks.junit` looks.
RUN_TESTS = """#!/bin/sh
ok() { echo "<testcase classname='calc' name='$1'/>"; }
bad() { echo "<testcase classname='calc' name='$1'><failure message='$2'>$2</failure></testcase>"; }
{
  echo '<?xml version="1.0"?><testsuite name="calc">'
  if [ "$(cat answer.txt 2>/dev/null)" = "4" ]; then ok test_sum; else bad test_sum "expected 4, got $(cat answer.txt)"; fi
  ok test_truth
  echo "<testcase classname='calc' name='test_later'><skipped/></testcase>"
  echo '</testsuite>'
} > report.xml
grep -q failure report.xml && exit 1 || exit 0
"""


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path / "remote.git", {"README.md": "# calc\n", "run_tests.sh": RUN_TESTS})


def checks_repo(remote: Path, **checks: object) -> dict:
    return {"demo": {"url": f"file://{remote}", "github": "acme/demo", "checks": {
        "test_command": "sh run_tests.sh", "junit": "report.xml", **checks}}}  # fmt: skip


async def test_failing_check_sends_the_agent_back_then_passes(start_factory, model, github, remote):
    model.add_scenario(
        "pow-fix",
        [
            [ToolUse("Write", {"file_path": "answer.txt", "content": "5"})],
            Text("I wrote the answer."),
            # the second round, sent back by Factory's failing check: the fix
            [ToolUse("Write", {"file_path": "answer.txt", "content": "4"})],
            Text("Fixed: the answer is 4."),
        ],
    )
    async with start_factory(repos=checks_repo(remote)) as h:
        t = await h.create("Compute the answer", "pow-fix")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=120)
        assert done["status"] == "done", done
        # the agent's second round was told what Factory's check found
        reqs = model.requests_for("pow-fix")
        told = [r for r in reqs if "Factory ran its own checks" in str(r.messages)]
        assert told, [str(r.messages)[-1500:] for r in reqs]
        assert "calc.test_sum: expected 4, got 5" in str(told[0].messages), str(told[0].messages)[-2500:]
        ev = (await h.api.get(f"/api/tasks/{t['id']}/evidence")).json()
        assert ev["verdict"] == "passed", ev
        assert ev["tests"]["passed"] == 2 and ev["tests"]["failed"] == 0 and ev["tests"]["skipped"] == 1
        head = __import__("subprocess").run(
            ["git", "-C", str(remote), "rev-parse", done["branch"]], capture_output=True, text=True
        ).stdout.strip()
        assert ev["commit"] == head  # the pushed fix is what was tested
        assert ev["cost_usd"] > 0 and ev["tokens"] > 0 and ev["turns"] >= 1
        out = await h.api.get(ev["tests"]["output_url"])
        assert out.status_code == 200 and out.headers["content-type"].startswith("text/plain")
        # one evidence comment on the PR, with the verdict and the tested commit
        pr = github.prs[-1]["number"]
        mine = [c for c in github.comments.get(pr, []) if "factory:evidence" in c["body"]]
        assert len(mine) == 1 and "Factory checks: passed" in mine[0]["body"] and head[:12] in mine[0]["body"]
        # Factory's copy is gone; the agent's checkout never held the report
        assert not (h.cfg.workspace_path / "checks" / f"task-{t['id']}").exists()


async def test_checks_that_keep_failing_end_after_max_rounds(start_factory, model, github, remote):
    model.add_scenario(
        "pow-stuck",
        [[ToolUse("Write", {"file_path": "answer.txt", "content": "5"})], Text("Done."), Text("Still done.")],
    )
    async with start_factory(repos=checks_repo(remote, max_rounds=1)) as h:
        t = await h.create("Compute the answer", "pow-stuck")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=120)
        assert done["status"] == "done", done
        ev = (await h.api.get(f"/api/tasks/{t['id']}/evidence")).json()
        assert ev["verdict"] == "failed" and ev["tests"]["failed"] == 1
        assert ev["tests"]["failures"] == ["calc.test_sum: expected 4, got 5"]
        assert len([r for r in model.requests_for("pow-stuck") if "Factory ran its own checks" in str(r.messages)]) >= 1


async def test_evidence_api_unknown_and_malformed(start_factory):
    async with start_factory() as h:
        assert (await h.api.get("/api/tasks/999/evidence")).json()["verdict"] == "none"
        assert (await h.api.get("/api/artifacts/" + "0" * 64)).status_code == 404
        assert (await h.api.get("/api/artifacts/..%2F..%2Fconfig.yml")).status_code in (404, 422)
        assert (await h.api.get("/api/artifacts/" + "A" * 64)).status_code == 404


def test_junit_with_entities_is_refused_and_store_is_content_addressed(tmp_path: Path):
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite><testcase name="&a;"/></testsuite>'
    with pytest.raises((ValueError, ET.ParseError)):
        read_junit(bomb, TestCounts())
    store = ArtifactStore(tmp_path)
    a = store.put(b"png bytes", "png")
    assert store.put(b"png bytes", "png") == a and store.find(a)[1] == "image/png"
    assert store.find("../" + a) is None and store.prune(30) == 0 and store.prune(-1) == 1
