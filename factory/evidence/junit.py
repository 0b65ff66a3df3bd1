"""JUnit XML read safely: the files come from a test command run on the agent's code, so they are
hostile input. Size-capped, and a document with a DTD (entities, external references) is refused
before parsing (defusedxml where installed does the same)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

try:  # pragma: no cover - depends on the install
    from defusedxml.ElementTree import fromstring as _parse  # type: ignore[import-not-found]
except ImportError:  # the standard parser, with any DTD refused up front (no entity can be declared then)
    from xml.etree.ElementTree import fromstring as _std_parse

    def _parse(text: bytes):  # type: ignore[no-untyped-def]
        if b"<!DOCTYPE" in text.upper() or b"<!ENTITY" in text.upper():
            raise ValueError("JUnit XML with a DTD is refused")
        return _std_parse(text)


MAX_BYTES = 2_000_000
MAX_FAILURES = 200
"""Failure lines kept for the record (the count goes on): 50 files of 2 MB could name 190,000 of them."""


@dataclass
class TestCounts:
    __test__ = False  # not a pytest class
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)  # "classname.name: first line of the error"
    files: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


def read_junit(data: bytes, into: TestCounts) -> None:
    """Add one JUnit document's test cases to `into` (ValueError when it is too big or unsafe)."""
    if len(data) > MAX_BYTES:
        raise ValueError(f"JUnit XML over {MAX_BYTES} bytes")
    root = _parse(data)
    into.files += 1
    for case in root.iter("testcase"):
        name = ".".join(p for p in (case.get("classname"), case.get("name")) if p)[:200]
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            into.failed += 1
            if len(into.failures) < MAX_FAILURES:
                into.failures.append(f"{name}: {_first_line(bad.get('message')) or _first_line(bad.text)}")
        elif case.find("skipped") is not None:
            into.skipped += 1
        else:
            into.passed += 1


def collect(root: Path, pattern: str, into: TestCounts) -> list[str]:
    """Read every regular file under `root` matching `pattern` (no links followed out); the problems."""
    problems = []
    base = root.resolve()
    for path in sorted(root.glob(pattern))[:50]:
        if path.is_symlink() or not path.is_file() or not path.resolve().is_relative_to(base):
            problems.append(f"{path.name}: not a regular file inside the checkout")
            continue
        try:
            with path.open("rb") as fh:
                read_junit(fh.read(MAX_BYTES + 1), into)
        except (ValueError, SyntaxError) as exc:
            problems.append(f"{path.name}: {exc}")
    return problems
