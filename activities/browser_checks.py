"""Proof of work's browser scenarios: Chromium (Playwright) against the preview Factory started itself.

The preview is started from Factory's copy of the commit through the broker's own code
(factory/environments/launch.py: the compose file read once, checked against the allow-list, run
from Factory's copy with internal networks and no published port) as a `test` environment of the
task, and removed when the scenarios end. Every scenario gets a fresh browser context whose
requests may go to the preview's origin only: the page is the agent's code, so anything else it
asks for (Factory's API, the host's loopback, the internet) is refused and counted as a failed
request. What this trusts: the repo's config (scenarios, service, port), nothing in the page.
Chromium runs inside Factory's bwrap sandbox as the sandbox uid (factory/sandbox/browser.py), with
its own sandbox off inside it; downloads are refused and a screenshot is kept only as a capped PNG.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from factory.config import FactoryConfig
from factory.config_sections import BrowserScenario, ChecksConfig
from factory.contracts.checks import ChecksInput
from factory.environments import docker as environments
from factory.environments.checks import UnsafeComposeError
from factory.environments.compose import namespace
from factory.environments.launch import EnvironmentFailure, Request, start_environment
from factory.environments.marks import Marks
from factory.environments.prepare import PrepareError
from factory.evidence.store import ArtifactStore
from factory.sandbox.browser import CHROMIUM as CHROMIUM  # noqa: PLC0414 - tests launch the same binary
from factory.sandbox.browser import BrowserJail

STEP_TIMEOUT_MS = 10_000
SMOKE = BrowserScenario(name="smoke", path="/")
MAX_SHOT_BYTES = 8 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _shot(store: ArtifactStore, png: bytes) -> dict[str, str]:
    # the bytes come from a browser that ran the agent's page: kept only as a PNG of bounded size
    if len(png) > MAX_SHOT_BYTES or not png.startswith(PNG_SIGNATURE):
        raise ValueError(f"screenshot refused ({len(png)} bytes, not a PNG under {MAX_SHOT_BYTES})")
    digest = store.put(png, "png")
    return {"url": f"/api/artifacts/{digest}", "sha256": digest}


async def _expect_text(page: Any, text: str) -> None:
    await page.wait_for_function(
        "t => document.body && document.body.innerText.includes(t)", arg=text, timeout=STEP_TIMEOUT_MS
    )


async def _step(page: Any, base: str, step: dict[str, Any]) -> None:
    """One step: {open: path} | {click: selector} | {fill: selector, value: text} | {expect_text: t} | {wait: ms}."""
    if "open" in step:
        path = str(step["open"])
        if not path.startswith("/"):
            raise ValueError(f"open: {path!r} is not a path on the preview")
        await page.goto(base + path, timeout=STEP_TIMEOUT_MS)
    elif "click" in step:
        await page.click(str(step["click"]), timeout=STEP_TIMEOUT_MS)
    elif "fill" in step:
        await page.fill(str(step["fill"]), str(step.get("value", "")), timeout=STEP_TIMEOUT_MS)
    elif "expect_text" in step:
        await _expect_text(page, str(step["expect_text"]))
    elif "wait" in step:
        await page.wait_for_timeout(min(int(step["wait"]), 10_000))
    else:
        raise ValueError(f"unknown step {sorted(step)}")


async def _scenario(browser: Any, store: ArtifactStore, base: str, sc: BrowserScenario) -> dict[str, Any]:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
    out: dict[str, Any] = {"name": sc.name, "ok": False, "screenshots": [], "console_errors": [], "failed_requests": []}
    context = await browser.new_context(viewport={"width": 1024, "height": 700}, accept_downloads=False)
    await context.tracing.start(screenshots=True, snapshots=True)

    async def only_the_preview(route: Any) -> None:
        if route.request.url.startswith(origin + "/") or route.request.url == origin:
            await route.continue_()
        else:  # the page is the agent's: it reaches nothing but its own preview
            out["failed_requests"].append(f"refused (not the preview): {route.request.url[:200]}")
            await route.abort()

    ws_origin = origin.replace("http", "ws", 1)

    async def sockets_only_to_the_preview(ws: Any) -> None:  # WebSockets pass by context.route: their own wall
        if ws.url.startswith(ws_origin + "/"):
            ws.connect_to_server()
        else:
            out["failed_requests"].append(f"refused (not the preview): {ws.url[:200]}")
            await ws.close()

    await context.route("**/*", only_the_preview)
    await context.route_web_socket("**/*", sockets_only_to_the_preview)
    page = await context.new_page()
    page.on("console", lambda m: out["console_errors"].append(m.text[:300]) if m.type == "error" else None)
    page.on("pageerror", lambda e: out["console_errors"].append(str(e)[:300]))
    page.on("requestfailed", lambda r: out["failed_requests"].append(f"{r.url[:200]}: {r.failure}"))
    page.on(
        "response",
        lambda r: out["failed_requests"].append(f"{r.url[:200]}: HTTP {r.status}") if r.status >= 400 else None,
    )
    started = time.monotonic()
    try:
        await page.goto(base + sc.path, timeout=STEP_TIMEOUT_MS)
        for step in sc.steps:
            await _step(page, base, step)
        if sc.expect_text:
            await _expect_text(page, sc.expect_text)
        out["ok"] = True
    except Exception as exc:  # a failed step is the scenario's result, not the activity's failure
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    finally:
        out["seconds"] = round(time.monotonic() - started, 2)
        try:
            png = await page.screenshot(full_page=True, timeout=STEP_TIMEOUT_MS, animations="disabled")
            out["screenshots"].append(_shot(store, png))
        except Exception as exc:  # noqa: BLE001 - a page that cannot be shot is said so
            out.setdefault("error", f"no screenshot: {type(exc).__name__}")
        with tempfile.TemporaryDirectory(prefix="factory-trace-") as tmp:
            trace = Path(tmp) / "trace.zip"
            await context.tracing.stop(path=str(trace))
            out["trace"] = {"url": f"/api/artifacts/{store.put(trace.read_bytes(), 'zip')}"}
        await context.close()
    if out["console_errors"] or out["failed_requests"]:
        out["ok"] = False
        out.setdefault("error", "console errors or failed requests")
    return out


async def run_scenarios(
    cfg: FactoryConfig, store: ArtifactStore, inp: ChecksInput, copy: Path, checks: ChecksConfig
) -> list[dict[str, Any]]:
    """Start the preview from Factory's copy, run the smoke scenario and the configured ones, tear it down."""
    if not (copy / checks.preview_compose).is_file():
        return [{"name": "preview", "ok": False, "error": f"{checks.preview_compose} is not in the commit",
                 "screenshots": [], "console_errors": [], "failed_requests": []}]  # fmt: skip
    from playwright.async_api import async_playwright

    ns = namespace(cfg.temporal.id_prefix)  # the deployment's: another's task of this id is not this one
    req = Request(
        task_id=inp.task_id, kind="test", worktree=str(copy), compose_file=checks.preview_compose,
        repo=inp.repo.name, service=checks.preview_service, port=checks.preview_port,
        workspace_root=str(cfg.workspace_path), max_copy_mb=cfg.previews.max_copy_mb, ns=ns,
    )  # fmt: skip
    started = time.monotonic()
    Marks(cfg.workspace_path).add(inp.task_id, "test")  # before it starts (factory/environments/marks.py)
    try:
        env = await start_environment(req, cfg.previews)
    except (EnvironmentFailure, PrepareError, UnsafeComposeError) as exc:
        await environments.cleanup_task_environments(inp.task_id, ["test"], ns)
        return [{"name": "preview", "ok": False, "error": f"the preview did not start: {str(exc)[:500]}",
                 "screenshots": [], "console_errors": [], "failed_requests": []}]  # fmt: skip
    results: list[dict[str, Any]] = []
    try:
        boot = round(time.monotonic() - started, 2)
        jail = BrowserJail(cfg.sandbox.uid, cfg.sandbox.gid)
        async with async_playwright() as pw:
            try:
                browser = await pw.chromium.launch(executable_path=str(jail.executable), args=[])
            except BaseException:
                jail.close()
                raise
            try:
                for sc in [SMOKE, *checks.browser]:
                    results.append(await _scenario(browser, store, env.url, sc))
            finally:
                await browser.close()
                jail.close()
        for r in results:
            r["preview_seconds"] = boot
    finally:
        await environments.cleanup_task_environments(inp.task_id, ["test"], ns)
    return results
