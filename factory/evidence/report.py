"""Texts made from an evidence record: the agent's next prompt, the PR comment, the verdict line.

The record is Factory's (it ran the checks); the test names and error lines inside it came from the
agent's code, so they are clipped and put in code spans, never trusted as Markdown or as paths.
"""

from __future__ import annotations

from typing import Any

COMMENT_MARKER = "<!-- factory:evidence -->"


def _code(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())[:limit].replace("`", "'")
    return f"`{text}`" if text else ""


def verdict_line(record: dict[str, Any]) -> str:
    t = record.get("tests") or {}
    scen = record.get("scenarios") or []
    ok = sum(1 for s in scen if s.get("ok"))
    parts = [f"checks {record.get('verdict', 'none')} on {str(record.get('commit', ''))[:12]}"]
    if t:
        parts.append(f"tests {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, {t.get('skipped', 0)} skipped")
    if scen:
        parts.append(f"browser {ok}/{len(scen)} scenarios")
    return "; ".join(parts)


def feedback(record: dict[str, Any]) -> str:
    """The next round's prompt: what failed, as Factory saw it."""
    lines = [
        "Factory ran its own checks on your last commit and they failed. Fix the cause, then end your turn.",
        f"Tested commit: {record.get('commit', '')}",
    ]
    t = record.get("tests") or {}
    if t.get("failures"):
        lines.append("Failing tests (name: first error line):")
        lines += [f"- {f}" for f in t["failures"][:20]]
    elif t.get("exit_code") not in (None, 0):
        lines.append(f"The test command exited with {t.get('exit_code')}; the end of its output:")
        lines.append(str(t.get("output_tail", ""))[-1500:])
    for s in record.get("scenarios") or []:
        if s.get("ok"):
            continue
        lines.append(f"Browser scenario {s.get('name')!r} failed: {s.get('error') or 'see below'}")
        lines += [f"  console error: {c}" for c in (s.get("console_errors") or [])[:10]]
        lines += [f"  failed request: {r}" for r in (s.get("failed_requests") or [])[:10]]
        for shot in s.get("screenshots") or []:
            lines.append(f"  screenshot: {shot.get('url')}")
    return "\n".join(lines)


def pr_comment(record: dict[str, Any], base_url: str = "") -> str:
    """The one evidence comment on the PR (edited in place each round)."""
    verdict = record.get("verdict", "none")
    icon = {"passed": "✅", "failed": "❌"}.get(verdict, "➖")
    out = [COMMENT_MARKER, f"### {icon} Factory checks: {verdict}", ""]
    out.append(f"Tested commit: `{str(record.get('commit', ''))[:40]}` (round {record.get('round', 1)})")
    t = record.get("tests") or {}
    if t:
        out.append(f"Tests: {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, {t.get('skipped', 0)} skipped")
        out += [f"- {_code(f)}" for f in (t.get("failures") or [])[:10]]
    for s in record.get("scenarios") or []:
        mark = "✅" if s.get("ok") else "❌"
        shots = ", ".join(f"[screenshot]({base_url}{x['url']})" for x in s.get("screenshots") or [])
        out.append(f"- {mark} browser {_code(s.get('name', ''), 64)} {shots}")
        out += [f"  - console: {_code(c)}" for c in (s.get("console_errors") or [])[:5]]
    if record.get("cost_usd") is not None:
        out.append(
            f"\nCost: ${record.get('cost_usd', 0):.4f}, {record.get('tokens', 0)} tokens, {record.get('turns', 0)} turns"
        )
    out.append(f"\nEvidence: {base_url}/api/tasks/{record.get('task_id')}/evidence")
    return "\n".join(out)
