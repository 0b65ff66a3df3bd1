"""The dashboard at `/` in a real browser (Playwright driving Debian's Chromium), the real CLI
against the scripted model, real Temporal and git.

One Factory serves the whole story, as a person would use it: the token gate, a task created from
the form that shows its output live, asks a question answered with an option button, and ends
with a diff and a PR link; what an agent writes staying text; a running task cancelled and retried
from its branch; a code-review run's timeline; analytics of what was just run; settings without a
secret; and phone-width pages without horizontal overflow. Screenshots go to the test's tmp dir (the
README's come from the scripted demo, `python -m scripts.demo`).
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import select

from factory.store.analytics import analytics, percentile
from factory.store.tables import Task, WorkflowRun, make_engine, session_scope
from tests.conftest import remote_file, write_config
from tests.fakes.anthropic import Stall, Text, ToolUse
from tests.fakes.http import BackgroundServer
from tests.test_workflows import ISSUE, script_steps, verdict

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dash-token-5be1c9d2"
WEBHOOK_SECRET = "gh-webhook-secret-93af01"
XSS = "<img src=x onerror=alert(1)>"
ROOT = Path(__file__).resolve().parent.parent


def line(obj: dict[str, Any]) -> str:
    return json.dumps(obj)


def retried(finish: Any, first: Any) -> Any:
    """A turn that stalls on the first attempt and finishes once the task is retried."""
    return lambda rec: finish if "This is a retry" in rec.all_text else first


async def no_horizontal_overflow(page: Any) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert width <= 1, f"the page scrolls sideways by {width}px"


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}")
async def test_the_dashboard_runs_watches_steers_and_judges_tasks(start_factory, model, monkeypatch, tmp_path):
    from playwright.async_api import async_playwright, expect

    monkeypatch.setenv("FACTORY_AUTH_TOKEN", TOKEN)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    model.add_scenario(
        "dash-form",
        [
            [
                Text("Looking at the parser. " + XSS),
                ToolUse("Write", {"file_path": "parser.py", "content": f"def parse(s):\n    return s  # {XSS}\n"}),
            ],
            Text(line({"type": "question", "question": "Which output format?", "options": ["json", "text"]})),
            [ToolUse("Write", {"file_path": "format.txt", "content": "json\n"})],
            Text("Switched the output to json."),
        ],
    )
    model.add_scenario(
        "dash-retry",
        [
            [ToolUse("Write", {"file_path": "partial.txt", "content": "half done\n"})],
            # a resumed session holds one or two assistant turns (the stalled one may be saved): either writes
            retried([ToolUse("Write", {"file_path": "rest.txt", "content": "the rest\n"})], Stall(120)),
            retried([ToolUse("Write", {"file_path": "rest.txt", "content": "the rest\n"})], Stall(120)),
            Text("Finished after the retry."),
        ],
    )
    review = script_steps(
        model,
        {
            ("coder", 1): [
                [ToolUse("Write", {"file_path": "calc.py", "content": "def add(a, b):\n    return a - b\n"})],
                Text("Added add()."),
            ],
            ("reviewer", 1): [verdict("changes_requested", ISSUE)],
            ("coder_revision", 1): [
                [ToolUse("Write", {"file_path": "calc.py", "content": "def add(a, b):\n    return a + b\n"})],
                Text("Fixed."),
            ],
            ("reviewer", 2): [verdict("approved")],
        },
    )
    overrides = {"github": {"webhook_secret": WEBHOOK_SECRET}}
    async with start_factory(**overrides) as h, async_playwright() as pw:
        with BackgroundServer(h.app) as url:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
            )
            try:
                page = await browser.new_page(viewport={"width": 1360, "height": 900})
                errors: list[str] = []
                dialogs: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

                # without the token the app asks for it and shows nothing else
                await page.goto(f"{url}/#/settings")
                await expect(page.locator("#token-gate")).to_be_visible()
                await expect(page.locator("#topbar")).to_be_hidden()
                await expect(page.locator("#view")).to_be_hidden()
                assert await page.locator("#view").inner_text() == ""
                await page.fill("#token-input", "wrong-token")
                await page.click("#token-save")
                await expect(page.locator("#token-reason")).to_contain_text("refused")
                await expect(page.locator("#view")).to_be_hidden()
                await page.fill("#token-input", TOKEN)
                await page.fill("#name-input", "Ana")
                await page.click("#token-save")
                await expect(page.locator("#topbar")).to_be_visible()

                # settings: the effective config with sources, and no secret anywhere on the page
                await expect(page.locator('tr[data-key="FACTORY_AUTH_TOKEN"]')).to_contain_text("environment")
                await expect(page.locator('tr[data-key="github.webhook_secret"]')).to_contain_text("********")
                await expect(page.locator('tr[data-key="max_concurrent_agents"]')).to_contain_text("config.yml")
                html = await page.content()
                assert TOKEN not in html and WEBHOOK_SECRET not in html
                await page.screenshot(path=str(shots / "settings.png"), full_page=True)

                # the empty board, then a task made from the form; the form shows errors by field
                await page.click("a[data-nav=tasks]")
                await expect(page.locator("#board-empty")).to_contain_text("No tasks yet")
                await page.click("a[data-nav=new]")
                await page.fill("#new-repo", "no-such-repo")
                await page.fill("#new-title", "Change the output format")
                await page.click("#new-submit")
                await expect(page.locator('.field-error[data-for="repo"]')).to_contain_text("unknown repo")
                await page.fill("#new-repo", "demo")
                await page.fill("#new-title", "   ")
                await page.click("#new-submit")
                await expect(page.locator('.field-error[data-for="title"]')).to_be_visible()
                await page.fill("#new-title", "Change the output format")
                await page.fill("#new-description", "[[scenario:dash-form]] make it json")
                await page.click("#new-submit")
                await page.wait_for_url("**/#/tasks/*")
                form_id = int(page.url.rsplit("/", 1)[1])

                # its output appears live; what the agent wrote stays text
                await expect(page.locator("#logs .log-assistant", has_text="Looking at the parser")).to_be_visible(
                    timeout=60_000
                )
                await expect(page.locator("#logs .log-tool_use")).not_to_have_count(0)
                assert await page.locator("#logs .log-tool_use details[open]").count() == 0  # folded
                # the question, answered with an option button; the task resumes and ends done
                q = page.locator("#question")
                await expect(q.locator(".question-text")).to_have_text("Which output format?", timeout=60_000)
                await expect(q.locator(".option-btn")).to_have_text(["json", "text"])
                await page.screenshot(path=str(shots / "task-question.png"), full_page=True)
                await q.locator(".option-btn", has_text="json").click()
                await expect(page.locator("#task-head .badge")).to_have_text("done", timeout=60_000)
                await expect(page.locator("#past-qa")).to_contain_text("json")
                await expect(page.locator("#past-qa")).to_contain_text("Ana")
                # the diff against the base: files, counts, the patch coloured, the agent's HTML as text
                diff = page.locator("#diff")
                await expect(diff.locator(".diff-files")).to_contain_text("parser.py", timeout=30_000)
                await expect(diff.locator(".diff-files")).to_contain_text("format.txt")
                await expect(diff.locator(".pl-add", has_text="json")).to_have_count(1)
                await expect(diff.locator(".patch .tok-kw", has_text="def")).not_to_have_count(0)
                await expect(diff.locator(".patch")).to_contain_text(XSS)
                await expect(page.locator("#logs")).to_contain_text(XSS)
                assert await page.locator("img").count() == 0
                # the PR link opens the pull request Factory opened
                task = await h.task(form_id)
                pr = page.locator("#pr-link")
                await expect(pr).to_have_attribute("href", task["pr_url"])
                await expect(pr).to_have_attribute("target", "_blank")
                await expect(page.locator(".temporal-link")).to_have_attribute(
                    "href",
                    f"http://127.0.0.1:8233/namespaces/default/workflows/{h.cfg.temporal.id_prefix}task-{form_id}",
                )
                await page.screenshot(path=str(shots / "task.png"), full_page=True)

                # a running task: cancel it from its page, retry it, it resumes from its branch and ends done
                t = await h.create("Write the report", "dash-retry")
                await page.goto(f"{url}/#/tasks/{t['id']}")
                await h.until(lambda: any(r.turn == 1 for r in model.requests_for("dash-retry")), what="the stall")
                page.once("dialog", lambda d: d.accept())
                await page.click("#action-cancel")
                await expect(page.locator("#task-head .badge")).to_have_text("cancelled", timeout=30_000)
                first_session = (await h.task(t["id"]))["session_id"]
                await page.click("#action-retry")
                await expect(page.locator("#task-head .badge")).to_have_text("done", timeout=90_000)
                done = await h.task(t["id"])
                assert remote_file(h.remote, done["branch"], "partial.txt") == "half done\n"
                assert remote_file(h.remote, done["branch"], "rest.txt") == "the rest\n"
                after = [r for r in model.requests_for("dash-retry") if "This is a retry" in r.all_text]
                assert after and {r.session_id for r in after} == {first_session}  # the same CLI session
                await expect(page.locator("#diff .diff-files")).to_contain_text("partial.txt", timeout=30_000)
                assert (await h.api.post(f"/api/tasks/{t['id']}/retry")).status_code == 409  # done: nothing to retry

                # a code-review run: its timeline shows coder, reviewer with the verdict's issues, revision
                r = await h.api.post(
                    "/api/workflows/code_review",
                    json={
                        "title": f"Add calc {review}",
                        "description": f"[[scenario:{review}]] add add()",
                        "repo": "demo",
                    },
                )
                run = r.json()
                await page.goto(f"{url}/#/runs/{run['id']}")
                steps = page.locator("#timeline .step")
                await expect(steps).to_have_count(4, timeout=120_000)
                await expect(page.locator("#run-head .badge").first).to_have_text("completed", timeout=60_000)
                await expect(steps.locator(".step-agent")).to_have_text(
                    ["coder", "reviewer", "coder_revision", "reviewer"]
                )
                await expect(steps.nth(1).locator(".verdict")).to_have_text("changes requested")
                await expect(steps.nth(1).locator(".issues")).to_contain_text("ISSUE-7f3")
                await expect(steps.nth(3).locator(".verdict")).to_have_text("approved")
                await expect(page.locator("#run-pr")).to_be_visible()

                # the board: every task by status, filters, live
                await page.click("a[data-nav=tasks]")
                await expect(page.locator(".col-done .task-card")).not_to_have_count(0)
                await page.select_option("#filter-workflow", "-")
                await expect(page.locator("#board .task-card")).to_have_count(2)
                await page.fill("#filter-text", "report")
                await expect(page.locator("#board .task-card")).to_have_count(1)
                await page.fill("#filter-text", "")
                await page.select_option("#filter-workflow", "")
                await page.screenshot(path=str(shots / "board.png"), full_page=True)

                # analytics: the runs and costs just made
                with session_scope(h.runtime.engine) as s:
                    tasks = s.exec(select(Task)).all()
                cost = sum(x.cost_usd for x in tasks)
                assert cost > 0
                await page.click("a[data-nav=analytics]")
                await expect(page.locator("#stat-runs .stat-value")).to_have_text(str(len(tasks)))
                await expect(page.locator("#stat-cost .stat-value")).to_have_text(f"${cost:.{3 if cost < 1 else 2}f}")
                await expect(page.locator("#chart-runs rect.bar").last).to_have_attribute("data-value", str(len(tasks)))
                await expect(page.locator('#workflow-rounds tr[data-workflow="code_review"]')).to_contain_text("2")
                await page.screenshot(path=str(shots / "analytics.png"), full_page=True)

                # a phone: every page stays usable, with nothing sliding off the side
                await page.set_viewport_size({"width": 390, "height": 844})
                phone_pages = {
                    "#/tasks": "#board .task-card",
                    f"#/tasks/{form_id}": "#diff .patch",
                    f"#/runs/{run['id']}": "#timeline .step",
                    "#/new": "#new-task",
                    "#/analytics": "#chart-runs",
                    "#/settings": "tr[data-key]",
                }
                for hash_, shown in phone_pages.items():
                    await page.goto(f"{url}/{hash_}")
                    await expect(page.locator(shown).first).to_be_visible()
                    await no_horizontal_overflow(page)
                    name = hash_.strip("#/").replace("/", "-") or "tasks"
                    await page.screenshot(path=str(shots / f"phone-{name}.png"), full_page=True)
                # keyboard: from a fresh load, Tab reaches the skip link, then the nav; Enter follows a link
                await page.goto(f"{url}/#/settings")
                await page.reload()
                await expect(page.locator("#view h1")).to_have_text("Settings")
                await page.keyboard.press("Tab")
                await expect(page.locator(".skip")).to_be_focused()
                await page.keyboard.press("Tab")
                await page.keyboard.press("Tab")
                await expect(page.locator("a[data-nav=tasks]")).to_be_focused()
                await page.keyboard.press("Enter")
                await expect(page.locator("#board")).to_be_visible()

                assert dialogs == [] and errors == []
            finally:
                await browser.close()
    model.release_stalls()


def test_analytics_group_runs_cost_durations_and_review_rounds(tmp_path):
    """The grouped figures, by SQL that both SQLite and PostgreSQL speak (here on SQLite)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    now = datetime.now(UTC)
    rows = [
        ("demo", "coder", "done", 0.5, 10), ("demo", "coder", "failed", 0.25, 30),
        ("demo", "reviewer", "done", 0.125, 20), ("other", "coder", "cancelled", 0.0, None),
    ]  # fmt: skip
    with session_scope(engine) as s:
        for repo, agent, status, cost, secs in rows:
            started = now - timedelta(seconds=secs or 0)
            s.add(Task(title="t", repo=repo, agent_type=agent, status=status, cost_usd=cost, num_turns=2,
                       started_at=started if secs else None, finished_at=now if secs else None))  # fmt: skip
        s.add(Task(title="old", repo="demo", status="done", cost_usd=9, created_at=now - timedelta(days=40)))
        s.add(WorkflowRun(name="code_review", title="r", repo="demo", status="completed", iteration=2, approved=True))
        s.add(WorkflowRun(name="code_review", title="r", repo="demo", status="failed", iteration=3))
        s.commit()
    a = analytics(engine, now - timedelta(days=30), now + timedelta(minutes=1))
    assert (a.totals.runs, a.totals.done, a.totals.failed, a.totals.cancelled) == (4, 2, 1, 1)
    assert a.totals.cost_usd == pytest.approx(0.875) and a.totals.turns == 8
    assert a.totals.success_rate == 0.5
    assert a.totals.median_duration_s == pytest.approx(20, abs=0.5)
    assert a.totals.p90_duration_s == pytest.approx(28, abs=0.5)
    by_repo = {r["repo"]: r for r in a.per_repo}
    assert by_repo["demo"]["runs"] == 3 and by_repo["other"]["success_rate"] == 0.0
    by_agent = {r["agent_type"]: r for r in a.per_agent}
    assert by_agent["reviewer"]["cost_usd"] == 0.125 and by_agent["coder"]["failed"] == 1
    assert sum(d["runs"] for d in a.per_day) == 4 and a.per_day[-1]["cost_usd"] == pytest.approx(0.875)
    assert a.workflows == [
        {"name": "code_review", "runs": 2, "completed": 1, "failed": 1, "approved": 1,
         "avg_review_rounds": 2.5, "max_review_rounds": 3}
    ]  # fmt: skip
    only = analytics(engine, now - timedelta(days=30), now + timedelta(minutes=1), repo="other")
    assert only.totals.runs == 1 and only.workflows == []
    assert percentile([], 0.5) is None and percentile([1, 2, 3, 4], 0.5) == 2.5


async def test_the_api_answers_analytics_settings_and_the_diff_of_a_task(start_factory, model, monkeypatch):
    monkeypatch.setenv("FACTORY_AUTH_TOKEN", TOKEN)
    model.add_scenario("dash-api", [[ToolUse("Write", {"file_path": "a.txt", "content": "one\ntwo\n"})], Text("Done.")])
    async with start_factory(github={"webhook_secret": WEBHOOK_SECRET}) as h:
        t = await h.create("Write a", "dash-api")
        assert (await h.api.get(f"/api/tasks/{t['id']}/diff")).status_code in (409, 200)
        await h.wait_for(t["id"], "done")
        d = (await h.api.get(f"/api/tasks/{t['id']}/diff")).json()
        assert [(f["path"], f["additions"], f["deletions"]) for f in d["files"]] == [("a.txt", 2, 0)]
        assert "+two" in d["patch"] and d["base"] == "main"
        r = await h.api.post(f"/api/tasks/{t['id']}/retry")
        assert r.status_code == 409 and "only a failed or cancelled task" in r.json()["detail"]
        a = (await h.api.get("/api/analytics", params={"repo": "demo"})).json()
        assert a["totals"]["runs"] == 1 and a["totals"]["done"] == 1 and a["totals"]["cost_usd"] > 0
        assert (await h.api.get("/api/analytics", params={"since": "yesterday"})).status_code == 422
        empty = await h.api.get("/api/analytics", params={"since": "2026-01-02", "until": "2026-01-01"})
        assert empty.status_code == 200 and empty.json()["totals"]["runs"] == 0 and empty.json()["per_day"] == []
        s = (await h.api.get("/api/settings")).text
        assert TOKEN not in s and WEBHOOK_SECRET not in s and "FACTORY_AUTH_TOKEN" in s
        info = (await h.api.get("/api/settings/dashboard")).json()
        assert [r["name"] for r in info["repos"]] == ["demo"] and "code_review" in info["workflows"]
        # without the token: nothing
        anon = await h.api.get("/api/settings", headers={"Authorization": ""})
        assert anon.status_code == 401
        page = await h.api.get("/", headers={"Authorization": ""})
        assert page.status_code == 200 and "token-gate" in page.text and TOKEN not in page.text


def test_factory_doctor_lists_the_configured_repos_and_whether_each_is_reachable(tmp_path, remote):
    cfg = write_config(tmp_path, remote, "http://127.0.0.1:9")
    data = yaml.safe_load(cfg.read_text())
    data["repos"]["gone"] = {"url": f"file://{tmp_path / 'missing.git'}"}
    cfg.write_text(yaml.safe_dump(data))
    out = subprocess.run(
        ["factory", "doctor", "--config", str(cfg)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "FACTORY_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    assert "repo demo" in out.stdout and "repo gone" in out.stdout, out.stdout
    lines = {ln.split("repo ", 1)[1].split()[0].rstrip(":"): ln for ln in out.stdout.splitlines() if "repo " in ln}
    assert "ok" in lines["demo"] and "MISSING" in lines["gone"], out.stdout
