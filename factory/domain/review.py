"""Review verdicts: parsing the reviewer's JSON verdict and testing workflow conditions.

Pure functions over plain data, so workflows can call them (deterministic, no I/O).
The reviewer ends its reply with `{"verdict": "approved" | "changes_requested", "issues":
[{"severity": ..., "file": ..., "comment": ...}]}`; `parse_verdict` takes the last JSON
object in the text that carries a `verdict`, fenced or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

APPROVED = "approved"
CHANGES_REQUESTED = "changes_requested"
SEVERITIES = ("blocker", "major", "minor", "nit")
SIGNIFICANT = frozenset({"blocker", "major"})

_VERDICT_ALIASES = {
    "approved": APPROVED,
    "approve": APPROVED,
    "lgtm": APPROVED,
    "accepted": APPROVED,
    "changes_requested": CHANGES_REQUESTED,
    "changes requested": CHANGES_REQUESTED,
    "request_changes": CHANGES_REQUESTED,
    "request changes": CHANGES_REQUESTED,
    "needs_changes": CHANGES_REQUESTED,
    "rejected": CHANGES_REQUESTED,
}

VERDICT_REMINDER = (
    "Your reply did not end with the review verdict Factory needs. Reply now with only the verdict as "
    "one JSON object, for example:\n"
    '{"verdict": "changes_requested", "issues": [{"severity": "major", "file": "src/app.py", '
    '"comment": "what is wrong and what to do"}]}\n'
    'or {"verdict": "approved", "issues": []}. '
    "Severity is one of blocker, major, minor, nit."
)


@dataclass
class Review:
    """A parsed review verdict."""

    verdict: str  # approved | changes_requested
    issues: list[dict[str, Any]] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.verdict == APPROVED


def _json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Top-level JSON objects in a text, in order (objects nested in others are not yielded)."""
    decoder = json.JSONDecoder()
    i = 0
    while True:
        i = text.find("{", i)
        if i < 0:
            return
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        if isinstance(obj, dict):
            yield obj
        i = end


def _issue(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, str):
        raw = {"comment": raw}
    if not isinstance(raw, dict):
        return None
    severity = str(raw.get("severity") or "major").strip().lower()
    if severity not in SEVERITIES:
        severity = "major"  # an unlabelled problem counts until the reviewer says it is small
    comment = raw.get("comment") or raw.get("description") or raw.get("message") or ""
    issue: dict[str, Any] = {"severity": severity, "file": raw.get("file"), "comment": str(comment)}
    if raw.get("line") is not None:
        issue["line"] = raw.get("line")
    return issue


def parse_verdict(text: str) -> Review | None:
    """The review in the last JSON object holding a `verdict`; None when there is none.

    Args:
        text: the reviewer's result text (prose, fenced JSON, or bare JSON).
    """
    found: dict[str, Any] | None = None
    for obj in _json_objects(text or ""):
        if "verdict" in obj:
            found = obj
    if found is None:
        return None
    verdict = _VERDICT_ALIASES.get(str(found.get("verdict") or "").strip().lower())
    if verdict is None:
        return None
    raw_issues = found.get("issues") or []
    if not isinstance(raw_issues, list):
        raw_issues = [raw_issues]
    issues = [i for i in (_issue(r) for r in raw_issues) if i is not None]
    return Review(verdict=verdict, issues=issues)


def has_significant_issues(issues: list[dict[str, Any]] | None) -> bool:
    return any(str(i.get("severity", "")).lower() in SIGNIFICANT for i in issues or [])


def condition_met(condition: str | None, verdict: str | None, issues: list[dict[str, Any]] | None) -> bool:
    """Whether a step's `condition` holds for the latest review (verdict None: no review yet).

    `has_issues`: a blocker or major issue; `no_issues`: none; `review_approved`: the verdict says approved.
    """
    if condition is None:
        return True
    if condition == "has_issues":
        return verdict is not None and has_significant_issues(issues)
    if condition == "no_issues":
        return not has_significant_issues(issues)
    if condition == "review_approved":
        return verdict == APPROVED
    raise ValueError(f"unknown condition {condition!r}")


def format_issues(issues: list[dict[str, Any]] | None) -> str:
    """The review's issues as a list, each comment word for word."""
    if not issues:
        return "(the review listed no issues)"
    lines = []
    for i in issues:
        where = i.get("file") or "general"
        if i.get("line") is not None:
            where = f"{where}:{i['line']}"
        lines.append(f"- [{i.get('severity', 'major')}] {where}: {i.get('comment', '')}")
    return "\n".join(lines)


def ends_session(is_error: bool, asked: bool, budget_stopped: bool, require_verdict: bool, text: str) -> bool:
    """Whether an agent run's reply ends its session (the workflow then pushes; nothing is asked or reminded).

    The agent activity and the workflow decide it alike: the activity pushes in the same step when it does.
    """
    if is_error or asked or budget_stopped:
        return False
    return not require_verdict or parse_verdict(text) is not None
