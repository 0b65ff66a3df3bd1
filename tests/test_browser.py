"""The /messages page in a real browser (Playwright driving Debian's Chromium).

A running agent posts messages (one of them HTML that must stay text) and asks a question; the
page behind the auth token shows the messages live, filters them, and answers the question,
after which the task resumes to `done`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.fakes.anthropic import Text, ToolUse
from tests.fakes.http import BackgroundServer

CHROMIUM = "/usr/bin/chromium"
TOKEN = "browser-token-4711"
XSS = "<script>window.__xss=1</script><b>bold</b>"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}"),
]


def line(obj: dict[str, Any]) -> str:
    return json.dumps(obj)


async def test_the_board_page_shows_live_messages_filters_and_answers_a_question(start_factory, model, monkeypatch):
    from playwright.async_api import async_playwright, expect

    monkeypatch.setenv("FACTORY_AUTH_TOKEN", TOKEN)
    model.add_scenario(
        "ui",
        [
            [
                Text(
                    "Starting.\n"
                    + line({"type": "message", "to": "user", "content": XSS, "message_type": "info"})
                    + "\n"
                    + line({"type": "message", "content": "Working on the parser", "message_type": "status"})
                ),
                ToolUse("Read", {"file_path": "README.md"}),
            ],
            Text(line({"type": "question", "question": "Which output format?", "options": ["json", "text"]})),
            [ToolUse("Write", {"file_path": "format.txt", "content": "json\n"})],
            Text("Switched the output to json."),
        ],
    )
    async with start_factory() as h, async_playwright() as pw:
        with BackgroundServer(h.app) as url:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                ],
            )
            try:
                page = await browser.new_page(viewport={"width": 1360, "height": 860})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(f"{url}/messages")

                # behind the token: the page asks for it, then connects live
                await expect(page.locator("#token-dialog")).to_be_visible()
                await page.fill("#token-input", TOKEN)
                await page.fill("#name-input", "Ana")
                await page.click("#token-save")
                await expect(page.locator("#token-dialog")).to_be_hidden()
                await expect(page.locator("#conn-status")).to_have_text("live", timeout=10_000)

                # a running agent's messages arrive without a reload; its HTML stays text
                t = await h.create("Change the output format", "ui")
                xss = page.locator(".msg-body", has_text=XSS)
                await expect(xss).to_have_count(1, timeout=60_000)
                assert await xss.text_content() == XSS
                assert await page.evaluate("typeof window.__xss") == "undefined"
                assert await page.locator(".messages b, .messages script").count() == 0
                await expect(page.locator(".msg-body", has_text="Working on the parser")).to_be_visible()

                # filters: agent + type, then search, then clear
                await page.fill("#filter-agent", "coder")
                await page.select_option("#filter-type", "status")
                await expect(page.locator("#messages .msg-body")).to_have_text(["Working on the parser"])
                assert "agent=coder" in page.url and "message_type=status" in page.url
                await page.click("#filter-clear")
                await page.fill("#filter-search", "BOLD")
                # the whole list, awaited (the list before the search also had one message)
                await expect(page.locator("#messages .msg-body")).to_have_text([XSS])
                await page.click("#filter-clear")
                await expect(page.locator("#messages .msg-body", has_text="Working on the parser")).to_have_count(1)

                # the thread view
                await page.locator("#messages .msg", has_text="Working on the parser").locator(".thread-btn").click()
                await expect(page.locator("#thread-panel")).to_be_visible()
                await expect(page.locator("#thread-messages .msg-body")).to_have_text(["Working on the parser"])
                await page.fill("#reply-content", "Thanks, <i>go on</i>")
                await page.click("#reply-form button[type=submit]")
                await expect(page.locator("#thread-messages .msg-body")).to_have_text(
                    ["Working on the parser", "Thanks, <i>go on</i>"]
                )
                await page.click("#thread-close")
                await expect(page.locator("#messages .msg-body", has_text="Thanks, <i>go on</i>")).to_have_count(1)

                # the question waits beside the board, with its options
                card = page.locator(f'.pending-card[data-task-id="{t["id"]}"]')
                await expect(card).to_be_visible(timeout=60_000)
                await expect(card.locator(".pending-question")).to_have_text("Which output format?")
                await expect(card.locator(".option-btn")).to_have_text(["json", "text"])
                await expect(page.locator("#pending-count")).to_have_text("1")
                await page.screenshot(path="/tmp/messages.png", full_page=True)

                await card.locator(".option-btn", has_text="json").click()
                await expect(page.locator(".pending-card")).to_have_count(0, timeout=15_000)
                await expect(page.locator("#pending-empty")).to_be_visible()
                done = await h.wait_for(t["id"], {"done", "failed"})
                assert done["status"] == "done", done
                await expect(page.locator(".msg-body", has_text=f"task #{t['id']} done")).to_have_count(
                    1, timeout=10_000
                )
                assert errors == []
            finally:
                await browser.close()

        qs = (await h.api.get(f"/api/tasks/{t['id']}/questions")).json()
        assert [(q["answer"], q["answered_by"]) for q in qs] == [("json", "Ana")]
        reqs = model.requests_for("ui")
        assert "json" in reqs[2].last_user_text and reqs[2].session_id == reqs[0].session_id
