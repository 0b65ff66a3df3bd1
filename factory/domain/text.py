"""Cutting text to a size: the one place that decides how a long text is shortened."""

from __future__ import annotations

import json
from typing import Any


def clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, ending with … when it was cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def clip_noted(value: Any, limit: int) -> str:
    """`value` (a string, or anything JSON can show) cut at `limit`, saying how much was left out."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"


def tail(text: str, max_lines: int, limit: int) -> str:
    """The end of `text`: its last `max_lines` lines in at most `limit` characters, saying what was left out."""
    lines = text.rstrip("\n").splitlines()
    kept = "\n".join(lines[-max_lines:])
    if len(kept) > limit:
        kept = kept[-limit:]
    dropped = len(text.rstrip("\n")) - len(kept)
    return f"[… {dropped} earlier characters]\n{kept}" if dropped > 0 else kept
