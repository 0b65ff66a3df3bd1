"""Red team: proof of work's browser checks, where the page is the agent's code.

Each test serves a hostile page as "the preview" (a local HTTP server) and runs it through Factory's
own scenario code (activities/browser_checks._scenario) in Factory's jailed Chromium
(factory/sandbox/browser.BrowserJail: setpriv → bwrap → chromium --no-sandbox). What the page finds
it reports back to the preview at /report; a test fails if a report or a request shows the wall gave.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from activities import browser_checks
from activities.browser_checks import MAX_SHOT_BYTES, PNG_SIGNATURE, _scenario
from factory.config_sections import BrowserScenario
from factory.evidence.store import ArtifactStore
from factory.sandbox.browser import BrowserJail
from tests.adversarial.reach import ROOT

pytestmark = [pytest.mark.adversarial]

CANARY = "factory-canary-7f3a91"


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class _Recorder:
    def __init__(self, pages: dict[str, str]) -> None:
        self.pages, self.seen, self.reports = pages, [], []
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rec.seen.append(self.path)
                if self.path.startswith("/report"):
                    rec.reports.append(self.path)
                body = rec.pages.get(self.path.split("?")[0], "").encode()
                self.send_response(200 if body or self.path.startswith("/report") else 404)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.srv = _serve(H)
        self.url = f"http://127.0.0.1:{self.srv.server_port}"


@asynccontextmanager
async def _jailed() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    jail = BrowserJail(65534, 65534)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(jail.executable), args=[])
            try:
                yield browser
            finally:
                await browser.close()
    finally:
        jail.close()


@pytest.fixture
def short_steps(monkeypatch) -> None:
    """Each step's budget shortened from 10 s to 3 s (the same code path): a check that must fail (a hanging
    page, text that never shows) fails sooner."""
    monkeypatch.setattr(browser_checks, "STEP_TIMEOUT_MS", 3_000)


async def _run(tmp_path: Path, page: str, **scenario: Any) -> tuple[dict[str, Any], _Recorder]:
    preview = _Recorder({"/": page})
    try:
        async with _jailed() as browser:
            out = await _scenario(browser, ArtifactStore(tmp_path / "evidence"), preview.url,
                                  BrowserScenario(name="attack", path="/", **scenario))  # fmt: skip
    finally:
        preview.srv.shutdown()
    return out, preview


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _descendants(top: int) -> list[int]:
    """This test's own processes only (other engineers' browsers run beside it)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    out, frontier = [], [top]
    while frontier:
        kids = [pid for pid, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A file of Factory's (a stand-in for its config), readable by anyone on the host."""
    secret = tmp_path / "config.yml"
    secret.write_text(f"github_token: {CANARY}\n")
    os.chmod(tmp_path, 0o755)
    secret.chmod(0o644)
    return secret


async def test_the_page_cannot_read_host_files(tmp_path, canary, short_steps):
    targets = ["file:///etc/shadow", f"file://{canary}", "file:///proc/1/environ", "chrome://version"]
    probes = "".join(
        f'fetch("{t}").then(r => r.text()).then(x => report("fetch", x)).catch(() => {{}});'
        f'document.body.insertAdjacentHTML("beforeend", \'<iframe src="{t}"></iframe>\');'
        for t in targets
    )
    page = (
        "<html><body><h1>app</h1><script>"
        "function report(k, x) { new Image().src = '/report?' + k + '=' + encodeURIComponent(String(x).slice(0, 200)); }"
        f"{probes}"
        "setTimeout(() => { for (const f of document.querySelectorAll('iframe')) {"
        " try { report('iframe', f.contentDocument.body.innerText) } catch (e) {} } }, 500);"
        "</script></body></html>"
    )
    out, preview = await _run(tmp_path, page, steps=[{"wait": 1500}])
    leaked = [r for r in preview.reports if CANARY in r or "root:" in r]
    assert not leaked, leaked
    # and a navigation of the whole page: the scenario's own goto is to the preview only, so the
    # page navigates itself
    nav = f'<html><body>x<script>location.href = "file://{canary}"</script></body></html>'
    out, _ = await _run(tmp_path, nav, steps=[{"wait": 1000}], expect_text=CANARY)
    assert not out["ok"] and CANARY not in str(out), out


async def test_the_page_reaches_no_other_local_service(tmp_path):
    victim = _Recorder({"/": "<p>factory</p>"})
    v = victim.url
    ws = v.replace("http", "ws")
    page = (
        f'<html><body><h1>app</h1><img src="{v}/api/img">'
        f'<script>fetch("{v}/api/fetch").catch(() => {{}});'
        f'try {{ new WebSocket("{ws}/api/ws") }} catch (e) {{}}'
        f'window.open("{v}/api/window");'
        f'navigator.sendBeacon("{v}/api/beacon", "x");'
        "</script></body></html>"
    )
    try:
        out, _ = await _run(tmp_path, page, steps=[{"wait": 1500}])
    finally:
        victim.srv.shutdown()
    assert victim.seen == [], victim.seen
    assert not out["ok"] and out["failed_requests"], out


async def test_a_download_does_not_reach_the_workers_disk(tmp_path):
    name = f"{CANARY}-download.bin"
    page = (
        "<html><body><h1>app</h1><a id=d download="
        f'"{name}" href="data:application/octet-stream;base64,QUFBQQ==">get</a>'
        "<script>document.getElementById('d').click()</script></body></html>"
    )
    await _run(tmp_path, page, steps=[{"wait": 1500}])
    found = [
        os.path.join(d, name)
        for top in ("/tmp", "/root", str(ROOT))
        for d, _dirs, files in os.walk(top, onerror=lambda _e: None)  # other tests' dirs come and go meanwhile
        if name in files
    ]
    assert not found, found


async def test_a_hanging_page_times_out_and_says_so(tmp_path, short_steps):
    page = "<html><body><h1>app</h1><script>while (true) {}</script></body></html>"
    out, _ = await _run(tmp_path, page)
    assert not out["ok"] and "Timeout" in out["error"], out
    assert out["seconds"] < 12, out


async def test_a_page_eating_memory_is_cut_off(tmp_path):
    page = (
        "<html><body><h1>app</h1><script>const a = [];"
        "for (;;) a.push(new Array(1 << 20).fill(Math.random()));</script></body></html>"
    )
    out, _ = await _run(tmp_path, page, expect_text="app")
    assert not out["ok"], out
    assert out["seconds"] < 30, out


async def test_hidden_text_does_not_pass_expect_text(tmp_path, short_steps):
    """Decision: expect_text is what a person sees (innerText). Text the page shows is the page's claim
    and counts; text it hides (display:none) does not."""
    page = f'<html><body><h1>app</h1><span style="display:none">{CANARY}</span></body></html>'
    out, _ = await _run(tmp_path, page, expect_text=CANARY)
    assert not out["ok"], out


async def test_a_huge_page_gives_no_oversized_screenshot(tmp_path):
    page = '<html><body style="margin:0"><div style="height:60000px;width:4000px;background:' \
           'repeating-linear-gradient(45deg,red,blue 3px,green 5px)"></div></body></html>'  # fmt: skip
    out, _ = await _run(tmp_path, page)
    for shot in out["screenshots"]:
        blob = (tmp_path / "evidence").rglob(shot["sha256"] + "*")
        for p in blob:
            data = p.read_bytes()
            assert len(data) <= MAX_SHOT_BYTES and data.startswith(PNG_SIGNATURE)


async def test_the_browser_runs_as_the_sandbox_uid_seeing_no_factory_paths(tmp_path, canary):
    page = "<html><body><h1>app</h1></body></html>"
    preview = _Recorder({"/": page})
    try:
        async with _jailed() as browser:
            ctx = await browser.new_context()
            await (await ctx.new_page()).goto(preview.url + "/")
            mine = [pid for pid in _descendants(os.getpid()) if "chromium" in _exe(pid)]
            assert mine, "no Chromium process found"
            for pid in mine:
                status = Path(f"/proc/{pid}/status").read_text()
                uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
                cap_eff = next(line for line in status.splitlines() if line.startswith("CapEff:"))
                if os.geteuid() == 0:
                    assert uid_line.split()[1:] == ["65534"] * 4, (pid, uid_line)
                assert cap_eff.split()[1] == "0000000000000000", (pid, cap_eff)
                root = Path(f"/proc/{pid}/root")
                seen = {p.name for p in root.iterdir()}
                assert not {"work", "root", "srv"} & seen, seen  # no workspace, data dir or home
                assert not (root / "var" / "lib").exists()  # /var: the sandbox's own, not the host's
                assert not (root / str(canary).lstrip("/")).exists()
            await ctx.close()
    finally:
        preview.srv.shutdown()


def test_a_junit_glob_cannot_leave_the_copy_and_a_huge_file_is_capped(tmp_path):
    """The junit pattern and the files are the repo's (the agent's): `../../` and links out are refused,
    a 1 GB (sparse) file is read only up to the cap, and a FIFO is not opened (it would block)."""
    from factory.evidence.junit import MAX_BYTES, TestCounts, collect

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "stolen.xml").write_text('<testsuite><testcase name="leak"/></testsuite>')
    copy = tmp_path / "a" / "copy"
    (copy / "reports").mkdir(parents=True)
    (copy / "reports" / "out").symlink_to(outside)
    with (copy / "reports" / "huge.xml").open("wb") as fh:
        fh.truncate(1 << 30)
    os.mkfifo(copy / "reports" / "pipe.xml")
    counts = TestCounts()
    problems = collect(copy, "../../outside/*.xml", counts) + collect(copy, "reports/**/*.xml", counts)
    assert counts.passed == 0 and counts.files <= 1, (counts, problems)
    assert any("stolen.xml" in p for p in problems) and any("pipe.xml" in p for p in problems), problems
    assert any("huge.xml" in p for p in problems), problems
    assert MAX_BYTES < 1 << 30
