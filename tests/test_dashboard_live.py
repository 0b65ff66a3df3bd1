"""The dashboard as a place to live in (Chromium via Playwright, a real Factory, the real CLI against
the scripted model): cards change in place by push, the connection banner follows the server, a
follow-up to a finished task starts a new round whose reply shows in the thread, a line comment on
the split diff reaches the agent, tool calls and Markdown render (markup stays inert), and the
rendered colours pass WCAG AA.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from sqlmodel import select

from factory.store.tables import CostEntry, Question, Task, TaskLog, TaskStatus, WorkflowRun, session_scope
from tests.fakes.anthropic import Text, ToolUse
from tests.fakes.http import BackgroundServer

CHROMIUM = "/usr/bin/chromium"
TOKEN = "live-token-0c41e7"
XSS = "<img src=x onerror=window.__pwned=1>"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}"),
]

# WCAG 2.x contrast of two rendered colours (alpha is composited over the given background)
CONTRAST_JS = """
([sel, bgSel]) => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const bgOf = (node) => {
    for (let n = node; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  return [...document.querySelectorAll(sel)].map((n) => {
    const fg = parse(bgSel === "outline" ? getComputedStyle(n).outlineColor : getComputedStyle(n).color).slice(0, 3);
    const bg = bgSel === "outline" ? bgOf(n.parentElement) : bgOf(n);
    return { sel, text: n.textContent.slice(0, 30), ratio: Math.round(ratio(fg, bg) * 100) / 100 };
  });
}
"""


async def _browser(pw: Any) -> Any:
    return await pw.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
    )


async def _signed_in(browser: Any, url: str, hash_: str = "#/tasks", dark: bool = False) -> Any:
    ctx = await browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme="dark" if dark else "light")
    page = await ctx.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await page.goto(f"{url}/{hash_}")
    await page.fill("#token-input", TOKEN)
    await page.fill("#name-input", "Ana")
    await page.click("#token-save")
    await page.wait_for_selector("#topbar", state="visible")
    return page


def _set(engine: Any, task_id: int, **fields: Any) -> None:
    with session_scope(engine) as s:
        t = s.get(Task, task_id)
        for k, v in fields.items():
            setattr(t, k, v)
        s.add(t)
        s.commit()


async def test_cards_change_in_place_the_banner_follows_the_server_and_colours_pass_aa(start_factory, monkeypatch):
    from playwright.async_api import async_playwright, expect

    monkeypatch.setenv("FACTORY_AUTH_TOKEN", TOKEN)
    async with start_factory(worker=False) as h, async_playwright() as pw:
        engine = h.runtime.engine
        a = await h.create("Tidy the parser", "none", run=False)
        b = await h.create("Answer me", "none", run=False)
        _set(engine, b["id"], status=TaskStatus.awaiting_input)
        with session_scope(engine) as s:
            s.add(Question(task_id=b["id"], text="Which output format?", options=["json", "text"]))
            s.commit()
        server = BackgroundServer(h.app)
        url = server.start()
        port = server.port
        browser = await _browser(pw)
        try:
            page = await _signed_in(browser, url)
            card = page.locator(f'.task-card[data-task-id="{a["id"]}"]')
            await expect(card).to_be_visible()
            await expect(card.locator(".run-btn")).to_have_count(1)  # queued: Run is offered
            await expect(page.locator(f'.task-card[data-task-id="{b["id"]}"] .run-btn')).to_have_count(0)
            await expect(page.locator(f'.task-card[data-task-id="{b["id"]}"] .card-question')).to_contain_text("Which")
            await card.locator(".task-title").focus()
            await page.evaluate("document.activeElement.dataset.mark = 'same-node'")
            # a change in the database reaches the card by push; the focused link is the same node
            _set(engine, a["id"], cost_usd=1.25, title="Tidy the parser, now")
            await expect(card.locator(".card-cost")).to_have_text("$1.25", timeout=10_000)
            await expect(card.locator(".task-title")).to_have_text("Tidy the parser, now")
            assert await page.evaluate("document.activeElement.dataset.mark") == "same-node"
            # a status change moves the card to its column and keeps the focus on it
            _set(engine, a["id"], status=TaskStatus.failed)
            await expect(page.locator(f'.col-failed .task-card[data-task-id="{a["id"]}"]')).to_be_visible()
            assert await page.evaluate("document.activeElement.dataset.mark") == "same-node"
            await expect(card.locator(".run-btn")).to_have_count(0)  # failed: no Run
            # a workflow run is one card with its steps inside; its open steps panel stays open as a step moves
            with session_scope(engine) as s:
                run = WorkflowRun(name="code_review", title="Review calc", repo="demo", status="running")
                s.add(run)
                s.commit()
                run_id = run.id
                for i, agent in enumerate(("coder", "reviewer", "coder_revision")):
                    s.add(Task(title=f"step {i}", repo="demo", agent_type=agent, workflow_run_id=run_id,
                               workflow_step=i, status="done" if i < 2 else "in_progress"))  # fmt: skip
                s.commit()
            run_card = page.locator(f'.run-card[data-run-id="{run_id}"]')
            await expect(run_card).to_have_count(1)
            await expect(page.locator("#board .task-card", has_text="step 1")).to_have_count(0)
            await expect(run_card.locator(".step-list li")).to_have_count(3)
            await run_card.locator(".card-steps summary").click()
            with session_scope(engine) as s:
                last = s.exec(select(Task).where(Task.workflow_run_id == run_id, Task.workflow_step == 2)).one()
                last.status = "done"
                s.add(last)
                s.commit()
            await expect(run_card.locator(".step-list li").nth(2).locator(".badge")).to_have_text("done")
            assert await run_card.locator(".card-steps").get_attribute("open") is not None

            # server-side filters
            await page.fill("#filter-text", "Answer")
            await expect(page.locator("#board .task-card")).to_have_count(1)
            await page.fill("#filter-text", "")
            await expect(page.locator("#board .task-card")).to_have_count(3)

            # follow-ups the server refuses say why; to a working agent one goes to its inbox
            fu = f"/api/tasks/{a['id']}/follow-up"
            assert (await h.api.post("/api/tasks/999999/follow-up", json={"message": "hi"})).status_code == 404
            assert (await h.api.post(fu, json={"message": "   "})).status_code == 422
            r = await h.api.post(f"/api/tasks/{b['id']}/follow-up", json={"message": "also check the docs"})
            assert r.status_code == 202 and r.json()["delivery"] == "inbox", r.text
            inbox = h.runtime.board.inbox("coder", b["id"], None)
            assert [(m.content, m.sender) for m in inbox] == [("also check the docs", "user")]

            # contrast: badges, the waiting question, body text and the focus ring, light and dark
            await page.keyboard.press("Tab")
            checks = [(".badge", "bg"), (".card-question", "bg"), (".task-title", "bg"), (".meta span", "bg")]
            for dark in (False, True):
                p = page if not dark else await _signed_in(browser, url, dark=True)
                await expect(p.locator(".card-question")).to_be_visible()
                found = []
                for sel, how in checks:
                    found += await p.evaluate(CONTRAST_JS, [sel, how])
                await p.locator(f'.task-card[data-task-id="{b["id"]}"] .task-title').focus()
                await p.keyboard.press("Shift+Tab")
                await p.keyboard.press("Tab")
                found += await p.evaluate(CONTRAST_JS, [":focus-visible", "outline"])
                assert any(f["sel"] == ":focus-visible" for f in found)
                low = [f for f in found if f["ratio"] < (3.0 if f["sel"] == ":focus-visible" else 4.5)]
                assert not low, f"{'dark' if dark else 'light'}: {low}"

            # the task page's waiting question and badges pass too
            await page.goto(f"{url}/#/tasks/{b['id']}")
            await expect(page.locator("#question .question-text")).to_have_text("Which output format?")
            found = []
            for sel in ("#question .question-text", "#task-head .badge", ".facts dt", ".crumbs"):
                found += await page.evaluate(CONTRAST_JS, [sel, "bg"])
            assert found and not [f for f in found if f["ratio"] < 4.5], found
            await page.goto(f"{url}/#/tasks")
            await expect(card).to_be_visible()

            # the server stops: the banner says so; it comes back: the banner goes, what changed shows
            h.app.state.stopping = True  # open streams end, so the server can stop
            server.stop()
            await expect(page.locator("#conn-banner")).to_be_visible(timeout=10_000)
            _set(engine, b["id"], title="Answer me, changed while down")
            h.app.state.stopping = False
            server = BackgroundServer(h.app, port=port)
            server.start()
            await expect(page.locator("#conn-banner")).to_be_hidden(timeout=15_000)
            await expect(page.locator(f'.task-card[data-task-id="{b["id"]}"] .task-title')).to_have_text(
                "Answer me, changed while down"
            )

            # with permission given, a new question raises a browser notification (recorded by a wrapper
            # around the real Notification constructor)
            await page.context.grant_permissions(["notifications"], origin=url)
            await page.evaluate(
                """() => { window.__notes = []; const N = window.Notification;
                window.Notification = class extends N { constructor(t, o) { super(t, o); window.__notes.push(t); } };
                Object.defineProperty(window.Notification, "permission", { get: () => N.permission }); }"""
            )
            c = await h.create("Ask later", "none", run=False)
            _set(engine, c["id"], status=TaskStatus.awaiting_input)
            with session_scope(engine) as s:
                s.add(Question(task_id=c["id"], text="Ship it?"))
                s.commit()
            await expect(page.locator(f'.task-card[data-task-id="{c["id"]}"] .card-question')).to_be_visible()
            await page.wait_for_function("window.__notes.length > 0")
            assert await page.evaluate("window.__notes") == [f"Factory: task #{c['id']} asks"]

            # a missing task is a real 404; the title names the page; a new tab needs no token again
            await page.goto(f"{url}/#/tasks/999999")
            await expect(page.locator("#not-found")).to_contain_text("no task #999999")
            # a killed run: its row says $0 and 0 turns; the page shows the ledger's cost and its tool calls
            _set(engine, a["id"], cost_usd=0.0, num_turns=0)
            with session_scope(engine) as s:
                s.add(CostEntry(task_id=a["id"], repo="demo", agent_type="coder", day="2026-12-04", cost_usd=0.42))
                for n in range(3):
                    s.add(TaskLog(task_id=a["id"], kind="tool_use", content=f'Bash: {{"command": "echo {n}"}}'))
                s.commit()
            await page.goto(f"{url}/#/tasks/{a['id']}")
            await expect(page).to_have_title(f"Task #{a['id']} · Factory")
            await expect(page.locator("#task-cost")).to_have_text("$0.42")
            await expect(page.locator("#task-turns")).to_contain_text("3 tool calls")
            await expect(page.locator("#logs .tool-bash .tool-cmd").last).to_have_text("$ echo 2")
            other = await page.context.new_page()
            await other.goto(f"{url}/#/tasks")
            await expect(other.locator("#board")).to_be_visible()
            await expect(other.locator("#token-gate")).to_be_hidden()
            # ? opens the keyboard help
            await page.locator("body").press("?")
            await expect(page.locator("#shortcuts")).to_be_visible()
            assert page.errors == []
        finally:
            await browser.close()
            h.app.state.stopping = True
            server.stop()


def _png() -> bytes:
    """A 1×1 PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


EDIT_OLD = "    share = total // parts\n    return [share] * parts\n"
EDIT_NEW = "    share, left = divmod(total, parts)\n\n    return [share + (i < left) for i in range(parts)]\n"


async def test_the_task_page_mounts_one_evidence_panel_and_shows_an_edit_as_a_diff_would(start_factory, monkeypatch):
    """Every load of the page's parts (its render, "Who did what", a hash change, a new render of the same
    task) asks for the Evidence panel; with the answers held back until all of them are waiting, the page
    still mounts one panel, and keeps one through a live update. An Edit's old and new text end with a
    newline: no empty `-` or `+` line for it, while a blank line inside the text shows."""
    from playwright.async_api import async_playwright, expect

    monkeypatch.setenv("FACTORY_AUTH_TOKEN", TOKEN)
    async with start_factory(worker=False) as h, async_playwright() as pw:
        engine = h.runtime.engine
        t = await h.create("Split evenly", "none", run=False)
        _set(engine, t["id"], status=TaskStatus.in_progress)  # its stream stays open: live updates come
        with session_scope(engine) as s:
            edit = {"file_path": "money.py", "old_string": EDIT_OLD, "new_string": EDIT_NEW}
            s.add(TaskLog(task_id=t["id"], kind="tool_use", content=f"Edit: {json.dumps(edit)}"))
            write = {"file_path": "notes.txt", "content": "alpha\nbeta\n"}
            s.add(TaskLog(task_id=t["id"], kind="tool_use", content=f"Write: {json.dumps(write)}"))
            s.commit()
        evidence = {
            "verdict": "passed", "commit": "0123456789abcdef", "round": 1,
            "tests": {"passed": 3, "failed": 0, "skipped": 0, "failures": []},
            "scenarios": [{"name": "home", "ok": True, "screenshots": [{"url": f"/api/artifacts/{'a' * 64}"}]}],
            "cost_usd": 0.01, "tokens": 100, "turns": 2,
        }  # fmt: skip
        held: list[Any] = []
        release = False

        async def shot(route: Any) -> None:
            if release:
                await route.fulfill(status=200, content_type="image/png", body=_png())
            else:
                held.append(route)

        with BackgroundServer(h.app) as url:
            browser = await _browser(pw)
            try:
                page = await _signed_in(browser, url)
                # every fetch of the panel's record, counted in the page as it is made
                await page.evaluate(
                    """() => { window.__asked = 0; const f = window.fetch;
                    window.fetch = (u, o) => { if (String(u).endsWith('/evidence')) window.__asked += 1; return f(u, o); }; }"""
                )
                await page.route("**/api/tasks/*/evidence", lambda r: r.fulfill(json=evidence))
                await page.route("**/api/artifacts/*", shot)
                await expect(page.locator("#board")).to_be_visible()
                await page.goto(f"{url}/#/tasks/{t['id']}")  # a hash change: the same document
                await expect(page.locator("#task-audit")).to_be_visible()
                # every load under way waits for its screenshot
                await h.until(lambda: page.evaluate("window.__asked"), what="a load of the panel", timeout=15)
                await h.until(
                    lambda: page.evaluate(f"window.__asked === {len(held)}"),
                    what="every load at its screenshot",
                    timeout=15,
                )
                # a new render of the same task while the loads wait (as an action's F.go does)
                await page.evaluate("F.go(location.hash)")
                await expect(page.locator("#task-audit")).to_be_visible()
                await h.until(
                    lambda: page.evaluate(f"window.__asked === {len(held)}"),
                    what="every load at its screenshot",
                    timeout=15,
                )
                release = True
                for route in held:
                    await route.fulfill(status=200, content_type="image/png", body=_png())
                # as many screenshots in the page as loads were let through: one panel each would be mounted
                await page.wait_for_function(
                    "(n) => document.querySelectorAll('.evidence-shot').length === n", arg=len(held)
                )
                assert await page.locator("#task-evidence").count() == 1
                assert await page.locator(".evidence-shot").count() == 1
                await expect(page.locator("#evidence-verdict")).to_have_text("Verdict: passed")

                # the Edit as a diff shows it: no line for the final newlines, the blank line inside kept
                lines = "(pre) => [...pre.querySelectorAll('.pl')].map((l) => l.textContent)"
                assert await page.locator("#logs .tool-edit .mini-diff").evaluate(lines) == [
                    "-    share = total // parts",
                    "-    return [share] * parts",
                    "+    share, left = divmod(total, parts)",
                    "+",
                    "+    return [share + (i < left) for i in range(parts)]",
                ]
                write_el = page.locator("#logs .tool-write")
                await expect(write_el.locator("summary")).to_have_text("2 lines")
                assert await write_el.locator(".mini-diff").evaluate(lines) == ["+alpha", "+beta"]

                # a live update: the page changes in place, still one panel
                _set(engine, t["id"], title="Split evenly, now", cost_usd=0.5)
                with session_scope(engine) as s:
                    s.add(TaskLog(task_id=t["id"], kind="tool_use", content='Bash: {"command": "pytest -q"}'))
                    s.commit()
                await expect(page.locator("#task-head h1")).to_have_text("Split evenly, now", timeout=10_000)
                await expect(page.locator("#logs .tool-bash .tool-cmd")).to_have_text("$ pytest -q")
                assert await page.locator("#task-evidence").count() == 1
                assert await page.locator(".evidence-shot").count() == 1
                assert page.errors == []
            finally:
                await browser.close()


async def test_work_renders_by_kind_a_follow_up_starts_a_round_and_a_line_comment_reaches_the_agent(
    start_factory, model, monkeypatch
):
    from playwright.async_api import async_playwright, expect

    monkeypatch.setenv("FACTORY_AUTH_TOKEN", TOKEN)
    model.add_scenario(
        "live-work",
        [
            [
                Text(
                    f"I will **fix** the `parser`:\n\n- step one\n- step two\n\n{XSS} [docs](https://example.com)\n"
                    + json.dumps({"type": "message", "to": "reviewer", "content": "Parser plan posted"})
                ),
                ToolUse("Bash", {"command": "printf 'alpha\\nbeta\\n' > notes.txt && cat notes.txt"}),
            ],
            [ToolUse("Write", {"file_path": "calc.py", "content": "def add(a, b):\n    return a - b\n"})],
            Text("Added add()."),
            # each follow-up round resumes the session before it, so its turns go on in this scenario
            Text("Round two: noted, calc stays."),
            [ToolUse("Write", {"file_path": "calc.py", "content": "def add(a, b):\n    return a + b\n"})],
            Text("Fixed the sign."),
        ],
    )
    async with start_factory() as h, async_playwright() as pw:
        with BackgroundServer(h.app) as url:
            browser = await _browser(pw)
            try:
                t = await h.create("Add calc", "live-work")
                page = await _signed_in(browser, url, f"#/tasks/{t['id']}")
                logs = page.locator("#logs")
                bash = logs.locator(".tool-bash")
                await expect(bash.locator(".tool-cmd")).to_contain_text("printf", timeout=60_000)
                await expect(bash.locator(".tool-out")).to_contain_text("beta")
                said = logs.locator(".log-assistant").first
                await expect(said.locator(".md strong")).to_have_text("fix")
                await expect(said.locator(".md code")).to_have_text("parser")
                await expect(said.locator(".md li")).to_have_count(2)
                await expect(said.locator("a")).to_have_attribute("href", "https://example.com")
                await expect(said).to_contain_text(XSS)  # text, not an element
                # a protocol line shows as what it means, not as JSON
                await expect(said.locator(".proto-message")).to_have_text(
                    "Board message to reviewer: Parser plan posted"
                )
                assert '"type"' not in await said.inner_text()
                assert await page.locator("#view img").count() == 0
                assert await page.evaluate("window.__pwned === undefined")
                await expect(page.locator("#task-head .badge")).to_have_text("done", timeout=60_000)
                await expect(logs.locator(".log-final")).to_have_count(1)  # the final reply once

                # the split diff: line numbers on both sides
                await expect(page.locator("#diff .diff-file")).to_have_count(2, timeout=30_000)
                await page.click("#diff-split")
                row = page.locator('#diff .diff-file[data-path="calc.py"] tr[data-line="2"]')
                await expect(row.locator(".ln").nth(1)).to_have_text("2")

                # a follow-up to the finished task: a new round on its branch whose reply shows in the thread
                await page.fill("#follow-up-text", "Keep calc as it is")
                await page.click("#follow-up-send")
                thread = page.locator("#thread")
                await expect(thread.locator(".message", has_text="Keep calc")).to_contain_text("Ana")
                await expect(thread.locator(".round")).to_contain_text("Round two: noted", timeout=90_000)
                rounds = [r for r in model.requests_for("live-work") if r.turn == 3]  # the first session, resumed
                assert rounds and "Keep calc as it is" in rounds[0].last_user_text
                assert "Added add()." in rounds[0].all_text

                # a line comment goes to the agent as its next round, with file and line
                await page.click("#diff-refresh")
                await page.click("#diff-split")
                row = page.locator('#diff .diff-file[data-path="calc.py"] tr[data-line="2"]')
                await row.locator(".add-comment").click()
                await page.fill(".comment-text", "this should add")
                # a reload of the diff (here a click on Refresh, which takes the focus) keeps the unsent comment
                reads = int(await page.locator("#diff").get_attribute("data-reads") or 0)
                await page.click("#diff-refresh")
                await expect(page.locator("#diff")).to_have_attribute("data-reads", str(reads + 1))
                await expect(page.locator(".comment-text")).to_have_value("this should add")
                await page.click(".comment-form button[type=submit]")
                await expect(page.locator(".comment-sent")).to_be_visible()
                comment = lambda: [r for r in model.requests_for("live-work") if r.turn == 4]  # noqa: E731
                await h.until(comment, what="the comment's round (round two's session resumed)", timeout=60)
                seen = comment()[0].last_user_text
                assert "calc.py:2" in seen and "this should add" in seen
                assert "Round two: noted" in comment()[0].all_text
                await expect(thread.locator(".round")).to_have_count(2, timeout=60_000)
                await expect(thread.locator(".round").nth(1)).to_contain_text("Fixed the sign", timeout=90_000)
                first = await h.task(t["id"])
                tasks = [x for x in (await h.api.get("/api/tasks")).json() if x["parent_task_id"] == t["id"]]
                assert len(tasks) == 2 and all(x["branch"] == first["branch"] for x in tasks)
                assert first["pr_number"] and {x["pr_number"] for x in tasks} == {first["pr_number"]}  # one PR
                assert len(h.github.prs) == 1
                # every round is finished: the page has stopped asking
                await expect(page.locator("#live-note")).to_contain_text("stopped", timeout=30_000)
                await page.wait_for_timeout(2000)  # the diff refresh the last edit scheduled (1.5 s debounce)
                asked: list[str] = []
                page.on("request", lambda req: asked.append(req.url))
                await page.wait_for_timeout(3000)
                assert asked == []
                # a stream resumes after Last-Event-ID: only the log lines after it
                logs_all = (await h.api.get(f"/api/tasks/{t['id']}/logs")).json()
                cut = logs_all[len(logs_all) // 2]["id"]
                r = await h.api.get(f"/api/events?task_id={t['id']}", headers={"Last-Event-ID": f"{cut}.0"})
                ids = [int(x[3:].strip().split(".")[0]) for x in r.text.splitlines() if x.startswith("id:")]
                assert ids and min(ids) > cut and "event: end" in r.text
                # a hand-off's instruction stays in the thread afterwards
                await page.select_option("#handoff-agent", "reviewer")
                await page.fill("#handoff-context", "check the sign of add")
                await page.click("#action-hand-off")
                await page.wait_for_url(f"**/#/tasks/{t['id'] + 3}")
                # (the new task's "started" board message may be in its thread too, before or after it)
                handed = page.locator("#thread .message", has_text="Handed off to reviewer: check the sign")
                await expect(handed).to_have_count(1)
                await page.goto(f"{url}/#/tasks/{t['id']}")
                await expect(page.locator("#thread .message", has_text="Handed off")).to_contain_text("Ana")
                assert page.errors == []
            finally:
                await browser.close()
