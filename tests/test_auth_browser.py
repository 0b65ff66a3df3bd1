"""People in a real browser (Playwright driving Debian's Chromium) against a real Factory: real Temporal,
git, the real CLI on the scripted model, and the OIDC stand-in over real HTTP.

A viewer signs in through OIDC and is offered no New task (the API refuses it with 403); an operator
with a personal token starts a task from the form and answers its question; an admin (signed in
through OIDC, made admin by `auth.admins`) revokes the operator's token and its next request is a
401; the audit page names each of them. A page of another origin on the same host (so the Lax
session cookie is sent) posts a form and a no-cors fetch to the API: both are refused.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from tests.fakes.anthropic import Text, ToolUse
from tests.fakes.http import BackgroundServer
from tests.fakes.oidc import FakeOIDC

CHROMIUM = "/usr/bin/chromium"
BOOT = "auth-browser-boot-61c0a9"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def evil_site(target: str) -> FastAPI:
    """Another origin: a form that posts to Factory, and a script that fetches it with the cookie."""
    app = FastAPI()
    form = (
        f'<form id="f" method="POST" action="{target}/api/users" enctype="application/x-www-form-urlencoded">'
        '<input name="login" value="mallory"><input name="role" value="admin"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    fetcher = (
        "<script>fetch(" + json.dumps(f"{target}/api/users") + ", {method: 'POST', mode: 'no-cors', "
        "credentials: 'include', headers: {'Content-Type': 'text/plain'}, body: '{\"login\":\"eve\",\"role\":\"admin\"}'})"
        ".then(() => document.title = 'sent', () => document.title = 'sent')</script>"
    )

    @app.get("/form")
    def post_form() -> HTMLResponse:
        return HTMLResponse(form)

    @app.get("/fetch")
    def post_fetch() -> HTMLResponse:
        return HTMLResponse(fetcher)

    return app


def on_dashboard(url: str) -> Any:
    """A URL predicate: back on the dashboard after a sign-in (not the sign-in page, not a callback)."""
    return lambda u: u.startswith(url) and "/static/signin.html" not in u and "/auth/" not in u


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}")
async def test_viewer_operator_and_admin_in_the_browser(start_factory, model, monkeypatch, tmp_path):
    from playwright.async_api import async_playwright, expect

    idp = FakeOIDC()
    idp.start()
    monkeypatch.setenv("FACTORY_AUTH_TOKEN", BOOT)
    monkeypatch.setenv("OIDC_CLIENT_SECRET", idp.client_secret)
    model.add_scenario(
        "people-q",
        [
            [ToolUse("Write", {"file_path": "notes.txt", "content": "draft\n"})],
            Text(json.dumps({"type": "question", "question": "Ship it?", "options": ["yes", "no"]})),
            [ToolUse("Write", {"file_path": "notes.txt", "content": "shipped\n"})],
            Text("Shipped."),
        ],
    )
    auth = {"oidc": {"issuer": idp.issuer, "client_id": idp.client_id}, "admins": ["boss"]}
    try:
        async with start_factory(auth=auth) as h, async_playwright() as pw:
            with BackgroundServer(h.app) as url, BackgroundServer(evil_site(url)) as evil:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    # --- a viewer signs in through OIDC: no New task, and the API says 403
                    viewer = await (await browser.new_context()).new_page()
                    idp.next_user = "vera"
                    await viewer.goto(f"{url}/")
                    await viewer.wait_for_url("**/static/signin.html")
                    await viewer.click("#signin-oidc")
                    await viewer.wait_for_url(on_dashboard(url))
                    await expect(viewer.locator("html")).to_have_attribute("data-role", "viewer")
                    await expect(viewer.locator("#topbar")).to_be_visible()
                    await expect(viewer.locator("a[data-nav=new]")).to_be_hidden()
                    status = await viewer.evaluate(
                        """async () => (await fetch('/api/tasks', {method: 'POST', headers: {'Content-Type':
                        'application/json', 'X-CSRF-Token': window.FactorySession.csrf}, body: JSON.stringify(
                        {title: 'nope', repo: 'demo'})})).status"""
                    )
                    assert status == 403

                    # --- an operator with a token made for them starts a task from the form and answers it
                    r = await h.api.post("/api/users", json={"login": "olga", "role": "operator"})
                    assert r.status_code == 201, r.text
                    olga = r.json()
                    r = await h.api.post(f"/api/users/{olga['id']}/tokens", json={"scope": "operate"})
                    assert r.status_code == 201, r.text
                    made = r.json()
                    op = await (await browser.new_context()).new_page()
                    await op.goto(f"{url}/")
                    await op.wait_for_url("**/static/signin.html")
                    await op.click("#use-token")
                    await op.fill("#token-input", made["token"])
                    await op.fill("#name-input", "Olga")
                    await op.click("#token-save")
                    await expect(op.locator("#topbar")).to_be_visible()
                    await expect(op.locator("html")).to_have_attribute("data-role", "operator")
                    await op.click("a[data-nav=new]")
                    await op.fill("#new-repo", "demo")
                    await op.fill("#new-title", "Ship the notes")
                    await op.fill("#new-description", "[[scenario:people-q]] write notes")
                    await op.click("#new-submit")
                    await op.wait_for_url("**/#/tasks/*")
                    task_id = int(op.url.rsplit("/", 1)[1])
                    q = op.locator("#question")
                    await expect(q.locator(".question-text")).to_have_text("Ship it?", timeout=60_000)
                    await q.locator(".option-btn", has_text="yes").click()
                    await expect(op.locator("#task-head .badge")).to_have_text("done", timeout=60_000)
                    # the answer is the person's, whatever name the page offered
                    asked = (await h.api.get(f"/api/tasks/{task_id}/questions")).json()
                    assert [q["answered_by"] for q in asked] == ["olga"]

                    # --- an admin (auth.admins) revokes the operator's token: its next request is a 401
                    admin = await (await browser.new_context()).new_page()
                    idp.next_user = "boss"
                    await admin.goto(f"{url}/static/signin.html")
                    await admin.click("#signin-oidc")
                    await admin.wait_for_url(on_dashboard(url))
                    await expect(admin.locator("html")).to_have_attribute("data-role", "admin")
                    status = await admin.evaluate(
                        """async (id) => (await fetch('/api/tokens/' + id, {method: 'DELETE', headers:
                        {'X-CSRF-Token': window.FactorySession.csrf}})).status""",
                        made["id"],
                    )
                    assert status == 200
                    status = await op.evaluate(
                        "async (t) => (await fetch('/api/tasks', {headers: {Authorization: 'Bearer ' + t}})).status",
                        made["token"],
                    )
                    assert status == 401

                    # --- another origin on this host (the Lax cookie goes along): a form post and a fetch
                    await admin.goto(f"{evil}/form")
                    await admin.wait_for_url(f"{url}/api/users")
                    assert "cross-site" in await admin.content()
                    await admin.goto(f"{evil}/fetch")
                    await expect(admin).to_have_title("sent")
                    logins = [u["login"] for u in (await h.api.get("/api/users")).json()]
                    assert "mallory" not in logins and "eve" not in logins

                    # --- the audit page names each person and what they did
                    await admin.goto(f"{url}/static/audit.html")
                    rows = admin.locator("tr.audit-entry")
                    await expect(rows.first).to_be_visible()
                    for actor, action, outcome in [
                        ("vera", "auth.signin", "ok"),
                        ("vera", "task.create", "denied"),
                        ("olga", "task.create", "ok"),
                        ("olga", "task.answer", "ok"),
                        ("boss", "token.revoke", "ok"),
                        ("boss", "user.create", "denied"),
                    ]:
                        row = (
                            rows.filter(has=admin.locator(".audit-actor", has_text=actor))
                            .filter(has=admin.locator(".audit-action", has_text=action))
                            .filter(has=admin.locator(".audit-outcome", has_text=outcome))
                        )
                        await expect(row.first).to_be_visible()
                    denied = [
                        e for e in (await h.api.get("/api/audit", params={"action": "user.create"})).json()["entries"]
                    ]
                    assert [e["actor"] for e in denied if e["outcome"] == "denied"] == ["boss", "boss"]
                    # the task's own page says who did what
                    await admin.goto(f"{url}/#/tasks/{task_id}")
                    await expect(admin.locator("#task-audit")).to_contain_text("olga · task.answer")
                    await admin.screenshot(path=str(tmp_path / "task-audit.png"), full_page=True)
                finally:
                    await browser.close()
    finally:
        idp.stop()
