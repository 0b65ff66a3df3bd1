"""Recall: memories rendered as the "## Relevant past work" section of a task's prompt."""

from __future__ import annotations

from collections.abc import Iterable

from factory.domain.text import clip
from factory.memory.records import MemoryHit

HEADER = (
    "## Relevant past work\n\n"
    "Memories of earlier tasks that look related. They may be out of date: check them against the code.\n"
)


def format_section(hits: Iterable[MemoryHit], max_chars: int) -> str:
    """Render hits as the "## Relevant past work" prompt section, at most max_chars long ("" for no hits)."""
    out = HEADER
    count = 0
    for h in hits:
        entry = _entry(h)
        room = max_chars - len(out)
        if len(entry) > room:
            if count == 0 and room > 80:
                out += clip(entry, room - 1) + "\n"
                count += 1
            break
        out += entry
        count += 1
    return out if count else ""


def _entry(hit: MemoryHit) -> str:
    r = hit.record
    meta = ", ".join(x for x in (r.repo, r.outcome, r.created_at.date().isoformat()) if x)
    lines = [f"\n### {r.title.strip() or '(untitled)'} ({meta})"]
    if r.summary.strip():
        lines.append(clip(" ".join(r.summary.split()), 600))
    lines += [f"- {clip(' '.join(x.split()), 300)}" for x in r.learnings[:8]]
    if r.files:
        lines.append("Files: " + ", ".join(r.files[:10]) + (" …" if len(r.files) > 10 else ""))
    if r.pr_url:
        lines.append(f"PR: {r.pr_url}")
    return "\n".join(lines) + "\n"
