"""The scripted demo (`python -m scripts.demo`, the README's screenshots) runs end to end, headless.

It runs as the README says, in a process of its own (it starts its own Temporal dev server, scripted
model and fake GitHub): every screenshot is written as a 1440×900 PNG, and the board it photographed
shows the demo's tasks in the columns the story puts them in.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}"),
]


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_the_demo_runs_and_photographs_its_tasks(tmp_path):
    shots, summary = tmp_path / "shots", tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "FACTORY_"))}
    run = subprocess.run(
        [sys.executable, "-m", "scripts.demo", "--screenshots", str(shots), "--workdir", str(tmp_path / "work"),
         "--summary", str(summary)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    names = {"board.png", "task.png", "analytics.png", "question.png", "diff-split.png", "board-dark.png"}
    assert {p.name for p in shots.iterdir()} == names
    assert all(_png_size(shots / n) == (1440, 900) for n in names)
    board = json.loads(summary.read_text())["board_columns"]
    assert board["awaiting_input"] == ["Support invoices in more than one currency"]
    assert board["in_progress"] == ["Send a reminder for invoices 14 days overdue"]
    assert board["queued"] == ["Export invoices as CSV"]
    assert "Migrate the command line to Typer" in board["cancelled"]
    done = board["done"]
    for title in ("Fix split_evenly dropping cents on uneven splits", "Round VAT half-up instead of truncating",
                  "Document the public API in the README"):  # fmt: skip
        assert title in done, done
    shown = json.dumps(board)
    assert not re.search(r"wf-[0-9a-f]{6}|\btest[-_]|\[\[scenario:|<img", shown), shown  # no test artifacts
