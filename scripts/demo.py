"""A realistic, scripted demo of Factory on one machine, and the README's screenshots taken from it.

    python -m scripts.demo --screenshots docs/screenshots   # run the demo, write the PNGs, stop
    python -m scripts.demo --serve                          # run the demo and keep the dashboard up

It starts Factory on its embedded defaults (the Temporal dev server, SQLite, the real worker and API,
the real `claude` CLI in the real sandbox) with the stand-ins of the test suite for what is hosted:
the scripted Messages API model and the fake GitHub (`tests/fakes/`). It makes a small Python package
with a real bug and real tests (`invoice-kit`), and runs what a team's day looks like: a fix that opens
a pull request, a coder → reviewer → revision run, a task waiting on a question with option buttons
(its edits shown live), a task with a follow-up round, one still at work, a cancelled task and a queued one. The agents'
commands really run (the test suite fails, then passes). Screenshots are Chromium at 1440×900 through
Playwright (Debian's `/usr/bin/chromium`). Needs what the tests need: `bash scripts/test.sh` installs it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.anthropic import FAKE_API_KEY, ScriptedModel, Stall, Text, ToolUse, cli_env  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402
from tests.fakes.http import BackgroundServer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
TOKEN = "demo-token"
REPO = "invoice-kit"
STEP_RE = re.compile(r"step \d+ of \d+ \((\w+)\) of workflow \S+ #\d+, iteration (\d+)")

# ---- the repository ------------------------------------------------------------------------------

FILES = {
    ".gitignore": "__pycache__/\n*.egg-info/\n.venv/\n",
    "README.md": "# invoice-kit\n\nSmall helpers for invoices: money in integer cents, VAT, splitting amounts.\n",
    "pyproject.toml": '[project]\nname = "invoice-kit"\nversion = "0.3.1"\nrequires-python = ">=3.11"\n',
    "invoice_kit/__init__.py": 'from .invoice import Invoice, Line\nfrom .money import format_cents, split_evenly\n\n__all__ = ["Invoice", "Line", "format_cents", "split_evenly"]\n',
    "invoice_kit/money.py": '''"""Money helpers. Amounts are integer cents."""


def format_cents(cents: int, currency: str = "EUR") -> str:
    """`1050` -> `10.50 EUR`."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d} {currency}"


def split_evenly(total_cents: int, parts: int) -> list[int]:
    """Split an amount into `parts` shares that add up to the total."""
    if parts <= 0:
        raise ValueError("parts must be positive")
    share = total_cents // parts
    return [share] * parts
''',
    "invoice_kit/invoice.py": '''"""An invoice: lines, subtotal and VAT, in integer cents."""

from dataclasses import dataclass, field


@dataclass
class Line:
    description: str
    quantity: int
    unit_cents: int


@dataclass
class Invoice:
    number: str
    lines: list[Line] = field(default_factory=list)
    vat_rate: float = 0.21

    def subtotal(self) -> int:
        return sum(line.quantity * line.unit_cents for line in self.lines)

    def vat(self) -> int:
        return int(self.subtotal() * self.vat_rate)

    def total(self) -> int:
        return self.subtotal() + self.vat()
''',
    "tests/__init__.py": "",
    "tests/test_money.py": """import unittest

from invoice_kit.money import format_cents, split_evenly


class SplitEvenly(unittest.TestCase):
    def test_shares_add_up_to_the_total(self):
        self.assertEqual(sum(split_evenly(1000, 3)), 1000)

    def test_shares_differ_by_at_most_a_cent(self):
        shares = split_evenly(1001, 4)
        self.assertLessEqual(max(shares) - min(shares), 1)

    def test_no_parts_is_an_error(self):
        with self.assertRaises(ValueError):
            split_evenly(100, 0)


class FormatCents(unittest.TestCase):
    def test_positive(self):
        self.assertEqual(format_cents(1050), "10.50 EUR")

    def test_negative(self):
        self.assertEqual(format_cents(-5), "-0.05 EUR")
""",
    "tests/test_invoice.py": """import unittest

from invoice_kit import Invoice, Line


class Totals(unittest.TestCase):
    def test_subtotal_adds_the_lines(self):
        inv = Invoice("2026-041", [Line("Consulting", 3, 12000), Line("Travel", 1, 4550)])
        self.assertEqual(inv.subtotal(), 40550)
""",
}

FIXED_SPLIT = """    share, left = divmod(total_cents, parts)
    # the first `left` shares carry one cent more, so the shares add up to the total
    return [share + 1 if i < left else share for i in range(parts)]
"""

REVISED_INVOICE = (
    FILES["invoice_kit/invoice.py"]
    .replace(
        "from dataclasses import dataclass, field\n",
        "from dataclasses import dataclass, field\nfrom decimal import ROUND_HALF_UP, Decimal\n",
    )
    .replace(
        "        return int(self.subtotal() * self.vat_rate)\n",
        "        # half a cent rounds up, as tax offices expect (round() would round half to even)\n"
        "        exact = Decimal(self.subtotal()) * Decimal(str(self.vat_rate))\n"
        '        return int(exact.quantize(Decimal("1"), rounding=ROUND_HALF_UP))\n',
    )
)

VAT_TEST = """

class Vat(unittest.TestCase):
    def test_vat_rounds_half_up(self):
        self.assertEqual(Invoice("2026-042", [Line("Hosting", 1, 250)]).vat(), 53)  # 52.5 -> 53

    def test_vat_of_19_99(self):
        self.assertEqual(Invoice("2026-043", [Line("Plan", 1, 1999)]).vat(), 420)
"""


def make_repo(path: Path) -> Path:
    """A bare repository holding invoice-kit on `main`, as its remote."""
    work = path.with_name("invoice-kit-seed")
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    for name, content in FILES.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content)
    who = {"GIT_AUTHOR_NAME": "Maya Chen", "GIT_AUTHOR_EMAIL": "maya@example.com"}
    env = {
        **os.environ,
        **who,
        "GIT_COMMITTER_NAME": who["GIT_AUTHOR_NAME"],
        "GIT_COMMITTER_EMAIL": who["GIT_AUTHOR_EMAIL"],
    }
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "invoice-kit 0.3.1"], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(path)], check=True)
    shutil.rmtree(work)
    return path


# ---- what the agents say and do ------------------------------------------------------------------


def ask(question: str, options: list[str], before: str) -> Text:
    return Text(before + "\n\n" + json.dumps({"type": "question", "question": question, "options": options}))


def verdict(v: str, *issues: dict[str, Any]) -> Text:
    body = json.dumps({"verdict": v, "issues": list(issues)})
    return Text(f"I read the change and its tests.\n\n```json\n{body}\n```")


def run_tests(description: str = "Run the test suite") -> ToolUse:
    return ToolUse("Bash", {"command": "python3 -m unittest 2>&1 | tail -n 15", "description": description})


TASKS: list[dict[str, Any]] = [
    {
        "key": "split",
        "title": "Fix split_evenly dropping cents on uneven splits",
        "description": "Splitting 10.00 EUR three ways gives 3 × 3.33 = 9.99 EUR: a cent disappears. Shares must "
        "add up to the total; hand the leftover cents to the first shares. Keep the tests green.",
        "turns": [
            [Text("Let me reproduce it with the test suite first."), run_tests()],
            [ToolUse("Read", {"file_path": "invoice_kit/money.py"})],
            [
                Text(
                    "`split_evenly` floors every share, so the remainder (`total % parts`) is lost. "
                    "I'll give one extra cent to the first `remainder` shares."
                ),
                ToolUse(
                    "Edit",
                    {
                        "file_path": "invoice_kit/money.py",
                        "old_string": "    share = total_cents // parts\n    return [share] * parts\n",
                        "new_string": FIXED_SPLIT,
                    },
                ),
            ],
            [run_tests("Run the tests again")],
            Text(
                "Fixed **split_evenly**: the leftover cents now go to the first shares.\n\n"
                "- `split_evenly(1000, 3)` → `[334, 333, 333]`\n"
                "- shares always add up to the total and differ by at most one cent\n\n"
                "All 6 tests pass (`python3 -m unittest`)."
            ),
        ],
    },
    {
        "key": "currency",
        "title": "Support invoices in more than one currency",
        "description": "Customers in the UK want their invoices in GBP. Today an invoice has no currency and "
        "format_cents always prints EUR.",
        "turns": [
            [
                Text("Looking at how amounts carry their currency."),
                ToolUse("Bash", {"command": "grep -rn currency invoice_kit/", "description": "Find currency handling"}),
            ],
            [ToolUse("Read", {"file_path": "invoice_kit/invoice.py"})],
            [
                ToolUse(
                    "Edit",
                    {
                        "file_path": "invoice_kit/invoice.py",
                        "old_string": "    number: str\n",
                        "new_string": '    number: str\n    currency: str = "EUR"  # ISO 4217 code\n',
                    },
                )
            ],
            ask(
                "Lines in different currencies: reject them, or convert at the invoice date's rate?",
                ["Reject mixed currencies", "Convert at the invoice date's rate"],
                "`format_cents` already takes a currency, but an `Invoice` had none, so I added a `currency` "
                "field (default `EUR`).\n\nOne decision is yours before I go on:",
            ),
        ],
    },
    {
        "key": "readme",
        "title": "Document the public API in the README",
        "description": "The README says nothing about how to use the package. Add a short usage section.",
        "turns": [
            [ToolUse("Read", {"file_path": "README.md"})],
            [
                ToolUse(
                    "Edit",
                    {
                        "file_path": "README.md",
                        "old_string": "splitting amounts.\n",
                        "new_string": "splitting amounts.\n\n## Usage\n\n```python\nfrom invoice_kit import "
                        'Invoice, Line, format_cents\n\ninv = Invoice("2026-041", [Line("Consulting", 3, 12000)])\n'
                        "print(format_cents(inv.total()))  # 435.60 EUR\n```\n",
                    },
                )
            ],
            Text("Added a **Usage** section with a complete example: an invoice, its total, and `format_cents`."),
            # the follow-up round resumes the same session
            [ToolUse("Read", {"file_path": "README.md"})],
            [
                ToolUse(
                    "Edit",
                    {
                        "file_path": "README.md",
                        "old_string": "## Usage\n\n",
                        "new_string": "## Usage\n\nAmounts are integer cents: `1050` is 10.50.\n\n",
                    },
                )
            ],
            Text("Done: the README now says up front that every amount is in integer cents."),
        ],
    },
    {
        "key": "typer",
        "title": "Migrate the command line to Typer",
        "description": "Replace the argparse entry point with Typer and keep the same options.",
        "turns": [
            [
                Text("Starting with the entry point."),
                ToolUse("Bash", {"command": "ls invoice_kit", "description": "List the package"}),
            ],
            Stall(900),
        ],
    },
]

RUNNING = {
    "key": "reminders",
    "title": "Send a reminder for invoices 14 days overdue",
    "description": "Finance wants an automatic reminder when an invoice is 14 days past its due date. Add a "
    "due date to Invoice and a function that lists the overdue ones.",
    "turns": [
        [
            Text("Reading the invoice model first."),
            ToolUse(
                "Bash", {"command": "grep -n 'def \\|class ' invoice_kit/*.py", "description": "Outline the package"}
            ),
        ],
        Stall(1800),
    ],
}

REVIEW = {
    "title": "Round VAT half-up instead of truncating",
    "description": "Invoice.vat() truncates: 19.99 EUR at 21% gives 4.19 EUR instead of 4.20 EUR. Round half "
    "up to the cent and add tests.",
    "steps": {
        ("coder", 1): [
            [ToolUse("Read", {"file_path": "invoice_kit/invoice.py"})],
            [
                ToolUse(
                    "Edit",
                    {
                        "file_path": "invoice_kit/invoice.py",
                        "old_string": "return int(self.subtotal() * self.vat_rate)",
                        "new_string": "return round(self.subtotal() * self.vat_rate)",
                    },
                )
            ],
            Text("`vat()` now rounds with `round()` instead of truncating."),
        ],
        ("reviewer", 1): [
            [ToolUse("Read", {"file_path": "invoice_kit/invoice.py"})],
            verdict(
                "changes_requested",
                {
                    "severity": "major",
                    "file": "invoice_kit/invoice.py",
                    "comment": "round() rounds half to even: 250 cents at 21% is 52.5 and becomes 52. "
                    "Use Decimal with ROUND_HALF_UP, and add a test for the half-cent case.",
                },
            ),
        ],
        ("coder_revision", 1): [
            [ToolUse("Read", {"file_path": "invoice_kit/invoice.py"})],
            [ToolUse("Write", {"file_path": "invoice_kit/invoice.py", "content": REVISED_INVOICE})],
            [ToolUse("Read", {"file_path": "tests/test_invoice.py"})],
            [
                ToolUse(
                    "Write",
                    {"file_path": "tests/test_invoice.py", "content": FILES["tests/test_invoice.py"] + VAT_TEST},
                )
            ],
            [run_tests()],
            Text(
                "Switched to `Decimal.quantize(..., ROUND_HALF_UP)` and added two tests: the half-cent case "
                "(52.5 → 53) and the issue's example (19.99 EUR → 4.20 EUR VAT)."
            ),
        ],
        ("reviewer", 2): [
            [ToolUse("Read", {"file_path": "tests/test_invoice.py"})],
            verdict(
                "approved",
                {"severity": "nit", "file": "invoice_kit/invoice.py", "comment": "vat_rate could be a Decimal too"},
            ),
        ],
    },
}


def script(model: ScriptedModel) -> None:
    """Give the scripted model every agent's turns, picked by a phrase of each task's own description."""
    for t in [*TASKS, RUNNING]:
        model.add_scenario(f"demo-{t['key']}", t["turns"], match=t["description"][:60])
    steps = REVIEW["steps"]

    def turn(i: int) -> Any:
        def pick(rec: Any) -> Any:
            m = STEP_RE.search(rec.first_user_text)
            turns = steps.get((m.group(1), int(m.group(2))) if m else ("?", 0), [])
            return turns[i] if i < len(turns) else Text("Done.")

        return pick

    model.add_scenario(
        "demo-review", [turn(i) for i in range(max(len(v) for v in steps.values()))], match=REVIEW["description"][:60]
    )


HISTORY = [
    ("Add a due date to invoices", "coder", "done"),
    ("Reject negative quantities on invoice lines", "coder", "done"),
    ("Explain the rounding rules in the README", "coder", "done"),
    ("Speed up the test suite", "coder", "failed"),
    ("Format amounts with thousands separators", "coder", "done"),
    ("Review the VAT module for edge cases", "reviewer", "done"),
    ("Add type hints to invoice.py", "coder", "done"),
    ("Support credit notes", "coder", "cancelled"),
    ("Research e-invoicing formats (UBL, Peppol)", "researcher", "done"),
    ("Fix format_cents for amounts under one euro", "coder", "done"),
    ("Add a CHANGELOG", "coder", "done"),
    ("Validate ISO 4217 currency codes", "coder", "failed"),
    ("Pin the test matrix to Python 3.11 and 3.12", "devops", "done"),
    ("Compute totals per VAT rate", "coder", "done"),
]


def write_history(engine: Any) -> None:
    """Five weeks of earlier finished tasks, written straight into the database, so Analytics has a past to draw.

    The tasks the demo runs are real runs; these rows are only history (no branch, no log).
    """
    import random
    from datetime import UTC, datetime, timedelta

    from factory.store.tables import Task, WorkflowRun, session_scope

    rnd = random.Random(41)
    now = datetime.now(UTC)
    with session_scope(engine) as s:
        for day in range(35, 0, -1):
            for _ in range(rnd.choice([0, 1, 1, 2, 2, 3]) if day % 7 not in (0, 6) else 0):
                title, agent, status = rnd.choice(HISTORY)
                start = now - timedelta(days=day, hours=rnd.uniform(1, 8))
                took = timedelta(seconds=rnd.uniform(90, 1500))
                s.add(Task(title=title, description="", repo=REPO, agent_type=agent, status=status,
                           created_at=start, started_at=start, finished_at=start + took,
                           cost_usd=round(rnd.uniform(0.05, 1.4), 4), num_turns=rnd.randint(4, 40)))  # fmt: skip
            if day % 4 == 0:
                rounds = rnd.choice([1, 2, 2, 3])
                start = now - timedelta(days=day, hours=2)
                s.add(WorkflowRun(name="code_review", title="Review: " + rnd.choice(HISTORY)[0], repo=REPO,
                                  status="completed", iteration=rounds, approved=rounds < 3, created_at=start,
                                  started_at=start, finished_at=start + timedelta(minutes=20 * rounds)))  # fmt: skip
        s.commit()


# ---- running it ----------------------------------------------------------------------------------


async def until(check: Any, what: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo waited too long for {what}")
        await asyncio.sleep(0.3)


async def status_of(api: Any, task_id: int, wanted: set[str], timeout: float = 180) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        t = (await api.get(f"/api/tasks/{task_id}")).json()
        return t if t["status"] in wanted else None

    return await until(check, f"task {task_id} to be {'/'.join(sorted(wanted))}", timeout)


async def create(api: Any, t: dict[str, Any], run: bool = True) -> dict[str, Any]:
    body = {"title": t["title"], "description": t["description"], "repo": REPO}
    r = await api.post("/api/tasks", params={"auto_run": str(run).lower()}, json=body)
    r.raise_for_status()
    return r.json()


async def play(api: Any, model: ScriptedModel, say: Any) -> dict[str, int]:
    """Run the day's work through the API; the ids of the tasks the screenshots show."""
    ids: dict[str, int] = {}
    split, currency, readme, typer = TASKS
    r = await api.post(
        "/api/workflows/code_review",
        json={"title": REVIEW["title"], "description": REVIEW["description"], "repo": REPO},
    )
    r.raise_for_status()
    run_id = r.json()["id"]
    for t in (split, readme, typer):
        ids[t["key"]] = (await create(api, t))["id"]
    say("tasks started; waiting for the agents")
    await status_of(api, ids["split"], {"done"}, 240)
    await status_of(api, ids["readme"], {"done"}, 240)
    r = await api.post(
        f"/api/tasks/{ids['readme']}/follow-up",
        json={"message": "Also say that amounts are integer cents.", "sent_by": "Maya"},
    )
    r.raise_for_status()
    ids["readme-round"] = r.json()["task_id"]
    await until(lambda: _stalled(model, "demo-typer"), "the Typer task to get going")
    (await api.post(f"/api/tasks/{ids['typer']}/cancel")).raise_for_status()
    await status_of(api, ids["typer"], {"cancelled"})
    ids["currency"] = (await create(api, currency))["id"]
    await status_of(api, ids["currency"], {"awaiting_input"}, 240)
    await status_of(api, ids["readme-round"], {"done"}, 240)

    async def run_done() -> bool:
        return (await api.get(f"/api/workflows/{run_id}")).json()["status"] in ("completed", "failed")

    await until(run_done, "the code-review run", 400)
    ids["running"] = (await create(api, RUNNING))["id"]  # still at work when the screenshots are taken
    await until(lambda: _stalled(model, "demo-reminders"), "the reminders task to get going")
    ids["queued"] = (
        await create(
            api,
            {
                "title": "Export invoices as CSV",
                "description": "One row per line, with the invoice number.",
                "repo": REPO,
            },
            run=False,
        )
    )["id"]
    ids["run"] = run_id
    return ids


async def _stalled(model: ScriptedModel, scenario: str) -> bool:
    return any(r.turn == 1 for r in model.requests_for(scenario))


BOARD_JS = """() => Object.fromEntries([...document.querySelectorAll('#board .column')].map((c) =>
  [c.dataset.status, [...c.querySelectorAll('.task-title')].map((t) => t.textContent.trim())]))"""


async def screenshots(url: str, ids: dict[str, int], out: Path, say: Any) -> tuple[list[Path], dict[str, list[str]]]:
    """Board, a task page, analytics (the README's three), and a few more, at 1440×900."""
    from playwright.async_api import async_playwright, expect

    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    board: dict[str, list[str]] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        try:
            for dark in (False, True):
                ctx = await browser.new_context(
                    viewport={"width": 1440, "height": 900}, color_scheme="dark" if dark else "light"
                )
                page = await ctx.new_page()
                await page.goto(f"{url}/#/tasks")
                await page.fill("#token-input", TOKEN)
                await page.fill("#name-input", "Maya")
                await page.click("#token-save")
                await expect(page.locator("#board .task-card").first).to_be_visible(timeout=30_000)
                await expect(
                    page.locator(f'.task-card[data-task-id="{ids["currency"]}"] .card-question')
                ).to_be_visible()
                await page.wait_for_timeout(500)
                if not dark:  # what the board shows, by column, for whoever checks the demo
                    board.update(await page.evaluate(BOARD_JS))
                made.append(out / ("board-dark.png" if dark else "board.png"))
                await page.screenshot(path=str(made[-1]))
                if dark:
                    break
                # the fixed task: its thread, the tool calls with their output, the diff
                await page.goto(f"{url}/#/tasks/{ids['split']}")
                await expect(page.locator("#diff .diff-file")).to_have_count(1, timeout=30_000)
                await expect(page.locator("#logs .tool-bash").first).to_be_visible()
                await page.wait_for_timeout(500)
                made.append(out / "task.png")
                await page.screenshot(path=str(made[-1]))
                await page.click("#diff-split")
                await page.locator("#diff").evaluate("(d) => d.closest('section').scrollIntoView()")
                made.append(out / "diff-split.png")
                await page.screenshot(path=str(made[-1]))
                # the waiting task: the question with its options, and its edit live
                await page.goto(f"{url}/#/tasks/{ids['currency']}")
                await expect(page.locator("#question .option-btn")).to_have_count(2, timeout=30_000)
                await expect(page.locator("#diff-live")).to_be_visible(timeout=30_000)
                await page.wait_for_timeout(500)
                made.append(out / "question.png")
                await page.screenshot(path=str(made[-1]))
                await page.goto(f"{url}/#/analytics")
                # a day with runs (a day without has a bar of height 0, which is hidden)
                await expect(page.locator('#chart-runs rect.bar:not([data-value="0"])').first).to_be_visible(timeout=30_000)
                await page.wait_for_timeout(500)
                made.append(out / "analytics.png")
                await page.screenshot(path=str(made[-1]))
                await ctx.close()
        finally:
            await browser.close()
    say(f"screenshots: {', '.join(str(p) for p in made)}")
    return made, board


async def demo(shots: Path | None, serve: bool, workdir: Path, say: Any = print) -> dict[str, Any]:
    """Run the demo in `workdir`; screenshots to `shots`; with `serve`, keep the dashboard up until Ctrl-C."""
    from temporalio.testing import WorkflowEnvironment

    from api.main import create_app
    from factory.config import load_config
    from factory.search_attributes import SEARCH_ATTRIBUTES
    from factory.store.tables import make_engine
    from temporal.client import data_converter
    from temporal.devserver import temporal_binary
    from temporal.worker import Runtime, run_worker

    model, github = ScriptedModel(), FakeGitHub()
    model.start()
    github.start()
    saved = dict(os.environ)
    os.environ.update(cli_env(model.base_url, str(workdir / "home")))
    os.environ.update({"ANTHROPIC_API_KEY": FAKE_API_KEY, "FACTORY_AUTH_TOKEN": TOKEN})
    script(model)
    remote = make_repo(workdir / "invoice-kit.git")
    cfg_path = workdir / "config.yml"
    prompts = ROOT / "prompts"
    tools = ["Read", "Edit", "Write", "Bash", "Glob", "Grep"]
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "max_concurrent_agents": 4,
                "agent_timeout_minutes": 10,
                "workspace_root": str(workdir / "ws"),
                "data_dir": str(workdir / "data"),
                "repos": {REPO: {"url": f"file://{remote}", "github": "acme/invoice-kit"}},
                "github": {"api_url": github.url},
                "temporal": {"task_queue": "factory-demo", "worker_id": "demo-host", "heartbeat_timeout_seconds": 10},
                "memory": {"enabled": False},
                "previews": {"janitor_interval_minutes": 0},
                "agent_templates": {
                    name: {
                        "system_prompt_file": str(prompts / f"{name}.md"),
                        "allowed_tools": tools if name != "reviewer" else ["Read", "Glob", "Grep"],
                    }
                    for name in ("coder", "coder_revision", "reviewer")
                },
            }
        )
    )
    cfg = load_config(cfg_path)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter,
        dev_server_extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
    )
    rt = await Runtime.create(cfg, make_engine(cfg.db_url))
    write_history(rt.engine)
    app = create_app(cfg, client=env.client, engine=rt.engine, memory=rt.memory, board=rt.board)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(cfg, env.client, stop, rt))
    server = BackgroundServer(app, port=8100 if serve else None)
    url = server.start()
    import httpx

    result: dict[str, Any] = {"url": url}
    try:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as api:
            say(f"Factory is up at {url} (token {TOKEN}); running the demo's tasks")
            ids = await play(api, model, say)
            result["ids"] = ids
            result["board"] = [t["title"] for t in (await api.get("/api/tasks")).json()]
            if shots is not None:
                made, board = await screenshots(url, ids, shots, say)
                result["screenshots"], result["board_columns"] = [str(p) for p in made], board
            if serve:
                say(f"The demo stays up at {url} (token {TOKEN}); Ctrl-C ends it")
                await asyncio.Event().wait()
    finally:
        app.state.stopping = True
        model.release_stalls()
        stop.set()
        await asyncio.wait_for(worker, 120)
        await rt.close()
        server.stop()
        await env.shutdown()
        model.stop()
        github.stop()
        os.environ.clear()
        os.environ.update(saved)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--screenshots", type=Path, help="write the PNGs here (the README's: docs/screenshots)")
    p.add_argument("--serve", action="store_true", help="keep the dashboard up at http://127.0.0.1:8100 afterwards")
    p.add_argument("--workdir", type=Path, help="where the demo's Factory keeps its state (default: a temporary dir)")
    p.add_argument("--summary", type=Path, help="write what was run and shown here, as JSON (the smoke test reads it)")
    args = p.parse_args(argv)
    if args.screenshots and not os.path.exists(CHROMIUM):
        p.error(f"screenshots need Chromium at {CHROMIUM} (apt-get install chromium)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="factory-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(
            demo(args.screenshots.resolve() if args.screenshots else None, args.serve, workdir.resolve())
        )
        if args.summary:
            args.summary.write_text(json.dumps(result, indent=2))
    except KeyboardInterrupt:
        pass
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
