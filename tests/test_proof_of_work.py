"""Proof of work end to end: Factory runs the repo's checks on the agent's commit itself, in a fresh
sandbox on its own copy, sends a failing check back to the agent, and puts the evidence on the PR
and behind the API. Real Temporal, real git, the real claude CLI against the scripted model, real bwrap."""

from __future__ import annotations

import subprocess
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


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


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
        head = git_out(remote, "rev-parse", done["branch"])
        assert ev["commit"] == head  # the pushed fix is what was tested
        print(f"\nCHECKS without a browser: {ev['seconds']}s a round (test command {ev['tests']['seconds']}s)")
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
        t = await h.create("Answer that stays wrong", "pow-stuck")  # its own branch: the fake GitHub lives on
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=120)
        assert done["status"] == "done", done
        ev = (await h.api.get(f"/api/tasks/{t['id']}/evidence")).json()
        assert ev["verdict"] == "failed" and ev["tests"]["failed"] == 1
        assert ev["tests"]["failures"] == ["calc.test_sum: expected 4, got 5"]
        made = [c for c in github.pr_creations() if c.body["head"] == done["branch"]]
        assert made[-1].body.get("draft") is True  # still failing: the PR is a draft
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


COMPOSE = """services:
  web:
    image: {image}
    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
    volumes:
      - ./www:/www:ro
"""


def page(answer: int) -> str:
    """The agent's page: coloured blocks and the answer, so a screenshot has pixels worth checking."""
    blocks = "".join(
        f'<div style="background:{c};height:60px;width:300px"></div>' for c in ("#d62828", "#2a9d8f", "#264653")
    )
    return f'<html><body style="background:#f4d35e;margin:0"><h1 style="font-size:48px">Answer: {answer}</h1>{blocks}</body></html>'


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes): width, height, pixels."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, prev, pixels = zlib.decompress(idat), width * bpp, bytearray(width * bpp), []
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a, b = line[i - bpp] if i >= bpp else 0, prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels += [tuple(line[i : i + 3]) for i in range(0, stride, bpp)]
        prev = line
    return width, height, pixels


@pytest.mark.docker
async def test_browser_scenario_screenshots_the_preview_and_a_failure_is_fixed(
    start_factory, model, github, tmp_path, busybox_image
):
    remote = make_remote(
        tmp_path / "preview.git",
        {"README.md": "# app\n", "docker-compose.preview.yml": COMPOSE.format(image=busybox_image)},
    )  # the agent writes www/index.html (the CLI's Write refuses to overwrite a file it has not read)
    model.add_scenario(
        "pow-browser",
        [
            [ToolUse("Write", {"file_path": "www/index.html", "content": page(5)})],
            Text("The page shows the answer."),
            [ToolUse("Write", {"file_path": "www/index.html", "content": page(4)})],
            Text("Fixed the page: the answer is 4."),
        ],
    )
    repos = {"demo": {"url": f"file://{remote}", "github": "acme/demo", "checks": {
        "test_command": "grep -q Answer www/index.html", "preview_service": "web", "preview_port": 8080,
        "browser": [{"name": "answer", "path": "/", "expect_text": "Answer: 4"}]}}}  # fmt: skip
    async with start_factory(repos=repos) as h:
        # Docker's projects carry the deployment's namespace (factory-<ns>-task-<id>-test): other test
        # runs' Factories on this engine have a task 1 too, and neither tears down nor replaces ours
        t = await h.create("Show the answer", "pow-browser")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=240)
        assert done["status"] == "done", done
        told = [r for r in model.requests_for("pow-browser") if "Factory ran its own checks" in str(r.messages)]
        assert told, (await h.api.get(f"/api/tasks/{t['id']}/evidence")).json()
        said = str(told[0].messages[-1]["content"])
        assert "Browser scenario 'answer' failed" in said, said
        assert "/api/artifacts/" in str(told[0].messages)  # the failing round's screenshot, by its address
        ev = (await h.api.get(f"/api/tasks/{t['id']}/evidence")).json()
        assert ev["verdict"] == "passed", ev
        assert ev["commit"] == git_out(remote, "rev-parse", done["branch"])
        assert ev["tests"]["passed"] == 1 and ev["tests"]["failed"] == 0
        assert ev["cost_usd"] > 0 and ev["tokens"] > 0
        names = [s["name"] for s in ev["scenarios"]]
        assert names == ["smoke", "answer"] and all(s["ok"] for s in ev["scenarios"]), ev["scenarios"]
        shot = ev["scenarios"][1]["screenshots"][0]
        r = await h.api.get(shot["url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert __import__("hashlib").sha256(r.content).hexdigest() == shot["sha256"]
        width, height, pixels = png_pixels(r.content)
        colours = {p for p in pixels[:: max(1, len(pixels) // 20000)]}
        # the page's own colours rendered: yellow background, red, teal and dark blocks
        for want in ((0xF4, 0xD3, 0x5E), (0xD6, 0x28, 0x28), (0x2A, 0x9D, 0x8F), (0x26, 0x46, 0x53)):
            assert want in colours, (want, len(colours))
        assert width >= 1000 and height >= 300 and len(colours) >= 5
        pr = github.prs[-1]["number"]
        body = [c for c in github.comments.get(pr, []) if "factory:evidence" in c["body"]][0]["body"]
        assert "Factory checks: passed" in body and "screenshot" in body
        timings = {s["name"]: s["seconds"] for s in ev["scenarios"]}
        assert len(ev["rounds"]) == 1 and "failed" in ev["rounds"][0], ev["rounds"]
        print(f"\nROUNDS {ev['rounds']} CHECKS {ev['seconds']}s")
        print(f"\nBROWSER TIMINGS preview boot {ev['scenarios'][0].get('preview_seconds')}s, scenarios {timings}")
        await evidence_tab_shows(h, t["id"])
        # the preview Factory started for the checks is gone
        assert not h.cfg.workspace_path.joinpath("checks", f"task-{t['id']}").exists()


async def evidence_tab_shows(h, task_id: int) -> None:
    """The task page's Evidence section, in Chromium: the verdict, the counts and the screenshot drawn."""
    from playwright.async_api import async_playwright

    from tests.fakes.http import BackgroundServer

    with BackgroundServer(h.app) as url:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{url}/#/tasks/{task_id}")
                await page.wait_for_selector("#task-evidence .evidence-shot", timeout=15000)
                assert await page.text_content("#evidence-verdict") == "Verdict: passed"
                assert "1 passed, 0 failed" in (await page.text_content("#task-evidence .evidence-tests"))
                assert "tokens" in (await page.text_content("#task-evidence .evidence-cost"))
                await page.wait_for_function(
                    "() => [...document.querySelectorAll('.evidence-shot')].every(i => i.complete && i.naturalWidth > 0)"
                )
            finally:
                await browser.close()
