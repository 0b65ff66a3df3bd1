"""Scrub secrets out of text before it is logged, stored or sent anywhere."""

from __future__ import annotations

import re
from collections.abc import Iterable

_PATTERNS = [
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # credentials in URLs
    re.compile(r"\b(?:sk-ant-|sk-)[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bplane_api_[A-Za-z0-9]{8,}"),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{12,}"),
    re.compile(r"\b\d{8,10}:[A-Za-z0-9_-]{30,}\b"),  # telegram bot tokens
]

MASK = "***"


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace known secret values and anything that looks like a key with `***`."""
    if not text:
        return text
    for s in secrets:
        if s:
            text = text.replace(s, MASK)
    for pat in _PATTERNS:
        if pat.pattern.startswith("(?i)"):
            text = pat.sub(lambda m: m.group(1) + " " + MASK, text)
        else:
            text = pat.sub(MASK, text)
    return text
