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


async def test_the_preview_page_reaches_only_its_own_origin(tmp_path):
    """The page is the agent's code, run in Factory's browser: a request to another origin (Factory's API,
    the host's loopback) is aborted and counted, and never arrives."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from playwright.async_api import async_playwright

    from activities.browser_checks import CHROMIUM, _scenario
    from factory.config_sections import BrowserScenario
    from factory.evidence.store import ArtifactStore

    arrived: list[str] = []

    class Factoryish(BaseHTTPRequestHandler):  # stands for any of Factory's services on the host
        def do_GET(self) -> None:
            arrived.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    victim = ThreadingHTTPServer(("127.0.0.1", 0), Factoryish)
    page_html = (
        f'<html><body><h1>hi</h1><img src="http://127.0.0.1:{victim.server_port}/api/tasks">'
        f'<script>fetch("http://127.0.0.1:{victim.server_port}/api/settings").catch(() => {{}})</script></body></html>'
    ).encode()

    class Preview(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page_html if self.path == "/" else b"")

        def log_message(self, *args: object) -> None:
            pass

    preview = ThreadingHTTPServer(("127.0.0.1", 0), Preview)
    for srv in (victim, preview):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            try:
                base = f"http://127.0.0.1:{preview.server_port}"
                out = await _scenario(
                    browser, ArtifactStore(tmp_path), base, BrowserScenario(name="x", expect_text="hi")
                )
            finally:
                await browser.close()
    finally:
        victim.shutdown()
        preview.shutdown()
    assert arrived == [], arrived
    refused = [r for r in out["failed_requests"] if "refused (not the preview)" in r]
    assert len(refused) >= 2, out["failed_requests"]
    assert out["ok"] is False and out["screenshots"], out
