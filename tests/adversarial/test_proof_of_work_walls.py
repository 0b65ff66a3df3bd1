"""Attacks on proof of work's walls (docs/proof-of-work.md), through the whole task with the real CLI.

The repo's test script is the agent's to write, and Factory runs it itself: here the agent replaces it
with one that tries to read Factory's config and data, reach a service over the network, write into
the agent's own checkout (to plant a result for later), and feed Factory an entity-expanding JUnit
file. Each attempt that works prints LEAK; the test fails on any LEAK and on a probe that did not run.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fakes.anthropic import Text, ToolUse

pytestmark = pytest.mark.adversarial

HOSTILE = """#!/bin/sh
cat {config} >/dev/null 2>&1 && echo "LEAK: read Factory's config.yml"
ls {data} >/dev/null 2>&1 && echo "LEAK: listed Factory's data dir"
ls {worktrees} >/dev/null 2>&1 && echo "LEAK: saw the agents' checkouts"
/usr/bin/python3 -c "import socket; socket.create_connection(('{host}', {port}), 2)" 2>/dev/null \\
  && echo "LEAK: reached {host}:{port}"
/usr/bin/python3 -c "import socket; socket.create_connection(('1.1.1.1', 53), 2)" 2>/dev/null && echo "LEAK: internet"
test -e .git && echo "LEAK: a repository in Factory's copy"
cat > bomb.xml <<'X'
<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>
<testsuite><testcase name="&d;"/></testsuite>
X
echo PROBED
exit 0
"""


async def test_the_test_command_reaches_nothing_of_factory(start_factory, model, github, remote):
    async with start_factory() as h:
        pass  # only for the paths and the fake GitHub's address this test's Factory will have
    gh = urlsplit(github.url)
    script = HOSTILE.format(
        config=h.tmp / "config.yml", data=h.cfg.data_path, worktrees=h.cfg.workspace_path / "worktrees",
        host=gh.hostname, port=gh.port,
    )  # fmt: skip
    model.add_scenario(
        "pow-hostile", [[ToolUse("Write", {"file_path": "run_tests.sh", "content": script})], Text("Tests added.")]
    )
    repos = {"demo": {"url": f"file://{remote}", "github": "acme/demo", "checks": {
        "test_command": "sh run_tests.sh", "junit": "*.xml", "max_rounds": 0}}}  # fmt: skip
    async with start_factory(repos=repos) as h:
        t = await h.create("Add tests", "pow-hostile")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=120)
        assert done["status"] == "done", done
        ev = (await h.api.get(f"/api/tasks/{t['id']}/evidence")).json()
        out = (await h.api.get(ev["tests"]["output_url"])).text
        assert "PROBED" in out, out  # the script ran to its end
        assert "LEAK" not in out, out
        # the entity bomb was refused, not expanded: no test case was counted from it
        assert ev["tests"]["passed"] == 1 and ev["tests"]["failed"] == 0 and ev["tests"]["exit_code"] == 0, ev
        record = Path(h.cfg.data_path / "evidence" / "tasks" / f"task-{t['id']}.json").read_text()
        assert "bomb.xml" in record and "DTD" in record
