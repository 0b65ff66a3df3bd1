"""Fixtures of the fault-injection suite: where its runs leave their figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def figures_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The JSON-lines file the crash and outage tests append their figures to (`CHAOS_FIGURES` sets it);
    `python -m bench.chaos_figures FILE` writes bench/CHAOS.md from it."""
    path = Path(os.environ.get("CHAOS_FIGURES") or tmp_path_factory.getbasetemp() / "chaos-figures.jsonl")
    print(f"chaos figures: {path}")
    return path
