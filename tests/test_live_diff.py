"""The live diff: a running task's unpushed work, read from its worktree without running git there
(factory/git/live_diff.py), shown on the task page and refreshed as the agent edits.

A real Factory, the real CLI against the scripted model, Chromium via Playwright. The agent writes
a file and asks a question, so its run is paused with the edit not pushed: the API and the page show
it live; after the answer it edits again and asks again, and the page shows the new edit without a
reload. Once the task finishes, the pushed diff is the answer again.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from factory.store.tables import Task, TaskStatus, session_scope
from tests.fakes.anthropic import Text, ToolUse
from tests.fakes.http import BackgroundServer

CHROMIUM = "/usr/bin/chromium"
TOKEN = "live-diff-token-5d1e"


def _ask(question: str, options: list[str]) -> Text:
    return Text(json.dumps({"type": "question", "question": question, "options": options}))


async def _page(pw: Any, url: str, hash_: str) -> tuple[Any, Any]:
    browser = await pw.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
    )
    page = await (await browser.new_context(viewport={"width": 1440, "height": 900})).new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await page.goto(f"{url}/{hash_}")
    await page.fill("#token-input", TOKEN)
    await page.fill("#name-input", "Ana")
    await page.click("#token-save")
    return browser, page


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}")
async def test_a_paused_agents_edits_show_live_and_a_later_edit_appears_without_reload(
    start_factory, model, monkeypatch
):
    from playwright.async_api import async_playwright, expect

    monkeypatch.setenv("FACTORY_AUTH_TOKEN", TOKEN)
    model.add_scenario(
        "live-diff",
        [
            [ToolUse("Write", {"file_path": "calc.py", "content": "def add(a, b):\n    return a - b\n"})],
            _ask("Should add() also accept strings?", ["yes", "no"]),
            [ToolUse("Edit", {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"})],
            _ask("Open the pull request now?", ["yes", "later"]),
            Text("Done: add() adds."),
        ],
    )
    async with start_factory() as h, async_playwright() as pw:
        t = await h.create("Add calc", "live-diff")
        await h.wait_for(t["id"], "awaiting_input", timeout=90)
        # the run is paused, nothing is pushed: the diff is the worktree's, live
        r = await h.api.get(f"/api/tasks/{t['id']}/diff")
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["live"] is True and d["as_of"], d
        assert [(f["path"], f["additions"], f["deletions"]) for f in d["files"]] == [("calc.py", 2, 0)]
        assert "+    return a - b" in d["patch"] and "new file mode 100644" in d["patch"]
        assert not h.github.prs  # nothing opened yet

        with BackgroundServer(h.app) as url:
            browser, page = await _page(pw, url, f"#/tasks/{t['id']}")
            try:
                live = page.locator("#diff-live")
                await expect(live).to_contain_text("not pushed yet", timeout=30_000)
                row = page.locator('#diff .diff-file[data-path="calc.py"] tr[data-line="2"]')
                await expect(row.locator(".ln").nth(1)).to_have_text("2")
                await expect(row.locator(".code")).to_contain_text("return a - b")
                # the answer resumes the agent; its edit reaches the open page by the stream, no reload
                await page.evaluate("window.__same = 1")
                await page.locator("#question .option-btn", has_text="no").click()
                await expect(row.locator(".code")).to_contain_text("return a + b", timeout=60_000)
                assert await page.evaluate("window.__same") == 1  # the same document: not reloaded
                await expect(page.locator("#question .question-text")).to_have_text(
                    "Open the pull request now?", timeout=60_000
                )
                await page.click("#diff-split")
                split_row = page.locator('#diff .diff-file[data-path="calc.py"] tr[data-line="2"]')
                await expect(split_row.locator(".ln").nth(1)).to_have_text("2")
                assert page.errors == []
            finally:
                await browser.close()

        d = (await h.api.get(f"/api/tasks/{t['id']}/diff")).json()
        assert d["live"] and "+    return a + b" in d["patch"] and "a - b" not in d["patch"]
        # the finished task's diff is the pushed branch's again
        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "yes"})
        assert r.status_code == 200, r.text
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=90)
        assert done["status"] == "done", done
        d = (await h.api.get(f"/api/tasks/{t['id']}/diff")).json()
        assert d["live"] is False and d["files"] == [{"path": "calc.py", "additions": 2, "deletions": 0}]


async def test_a_running_task_whose_worktree_is_on_another_host_gets_the_pushed_answer_or_a_409_that_says_why(
    start_factory,
):
    async with start_factory(worker=False) as h:
        t = await h.create("Elsewhere", "none", run=False)
        with session_scope(h.runtime.engine) as s:
            row = s.get(Task, t["id"])
            row.status, row.branch, row.base_branch, row.host = TaskStatus.in_progress, "factory/x", "main", "host-b"
            s.add(row)
            s.commit()
        r = await h.api.get(f"/api/tasks/{t['id']}/diff")
        assert r.status_code == 409, r.text
        assert "host-b" in r.text and "cannot be read from this Factory's host" in r.text
