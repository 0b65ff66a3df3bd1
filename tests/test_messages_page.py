"""The /messages page when answers come back out of order (Chromium via Playwright, a real Factory).

Clearing the filters and then typing a search sends two loads; if the first (unfiltered) answer
arrives after the second, the page must keep showing what the search asked for. Found in CI: the
board showed every message under a search for "BOLD".
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest

from tests.fakes.http import BackgroundServer

CHROMIUM = "/usr/bin/chromium"
TOKEN = "messages-token-5d21"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}"),
]


async def test_a_slow_answer_to_an_older_filter_does_not_replace_the_newer_one(start_factory, monkeypatch):
    from playwright.async_api import async_playwright, expect

    monkeypatch.setenv("FACTORY_AUTH_TOKEN", TOKEN)
    async with start_factory(worker=False) as h, async_playwright() as pw:
        with BackgroundServer(h.app) as url:
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                for content in ("Working on the parser", "A BOLD claim", "Tests pass"):
                    r = await api.post("/api/messages", json={"sender": "coder", "content": content, "message_type": "info"})
                    assert r.status_code in (200, 201), r.text

            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
            )
            try:
                page = await browser.new_page(viewport={"width": 1360, "height": 860})
                await page.goto(f"{url}/messages")
                await page.fill("#token-input", TOKEN)
                await page.fill("#name-input", "Ana")
                await page.click("#token-save")
                await expect(page.locator("#messages .msg")).to_have_count(3)

                # the page asks first with some filter, so that "clear" has something to clear
                await page.fill("#filter-search", "parser")
                await expect(page.locator("#messages .msg")).to_have_count(1)

                # from now on the unfiltered list is held back until the search's answer has arrived
                searched = asyncio.Event()
                held: list[Any] = []

                async def hold_unfiltered(route: Any) -> None:
                    if "search=" in route.request.url:
                        await route.continue_()
                        return
                    held.append(route)
                    await searched.wait()
                    await route.continue_()

                def is_list(u: str) -> bool:
                    return "/api/messages?" in u

                unfiltered_done = asyncio.Event()

                def finished(req: Any) -> None:
                    if is_list(req.url):
                        (searched if "search=BOLD" in req.url else unfiltered_done).set()

                await page.route(is_list, hold_unfiltered)
                page.on("requestfinished", finished)

                await page.click("#filter-clear")
                await page.fill("#filter-search", "BOLD")
                await expect(page.locator("#messages .msg-body")).to_have_text(["A BOLD claim"])
                assert held, "the cleared (unfiltered) load never went out"

                # the held answer now arrives, after the newer one: it must not redraw the board
                await asyncio.wait_for(unfiltered_done.wait(), 10)
                await page.evaluate("new Promise((r) => setTimeout(() => requestAnimationFrame(() => r()), 50))")
                await expect(page.locator("#messages .msg-body")).to_have_text(["A BOLD claim"])
                assert "search=BOLD" in page.url
            finally:
                await browser.close()
