"""Parsing of the Claude Code CLI's stream-json output and of the JSON-line protocols agents print."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from factory.domain.text import clip_noted

PROTOCOL_TYPES = ("message", "question", "learning")


@dataclass
class LogEntry:
    """One line for the task's log: its kind (assistant, tool_use, ...) and text."""

    kind: str
    content: str


@dataclass
class ParsedLine:
    """What one stream-json line means to Factory."""

    session_id: str | None = None
    logs: list[LogEntry] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # assistant text blocks
    result: dict[str, Any] | None = None


def _tool_result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text")
    return json.dumps(content)


def parse_line(line: str) -> ParsedLine:
    """Turn one stream-json line into log entries, assistant texts and the final result."""
    out = ParsedLine()
    line = line.strip()
    if not line:
        return out
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        out.logs.append(LogEntry("stdout", clip_noted(line, 2000)))
        return out
    if not isinstance(obj, dict):
        out.logs.append(LogEntry("stdout", clip_noted(line, 2000)))
        return out
    t = str(obj.get("type", ""))
    out.session_id = obj.get("session_id")
    if t == "system":
        sub = obj.get("subtype", "")
        if sub == "init":
            out.logs.append(
                LogEntry("system", f"session {obj.get('session_id')} model={obj.get('model')} tools={obj.get('tools')}")
            )
    elif t == "assistant":
        for block in (obj.get("message") or {}).get("content") or []:
            if block.get("type") == "text":
                out.texts.append(block.get("text", ""))
                out.logs.append(LogEntry("assistant", clip_noted(block.get("text", ""), 4000)))
            elif block.get("type") == "tool_use":
                out.logs.append(LogEntry("tool_use", f"{block.get('name')}: {clip_noted(block.get('input'), 1500)}"))
            elif block.get("type") == "thinking":
                out.logs.append(LogEntry("thinking", clip_noted(block.get("thinking", ""), 1500)))
    elif t == "user":
        content = (obj.get("message") or {}).get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    prefix = "error: " if block.get("is_error") else ""
                    out.logs.append(
                        LogEntry("tool_result", prefix + clip_noted(_tool_result_text(block.get("content")), 2000))
                    )
    elif t == "result":
        out.result = obj
        text = obj.get("result") or ""
        summary = f"{obj.get('subtype')} turns={obj.get('num_turns')} cost=${obj.get('total_cost_usd', 0)}"
        out.logs.append(LogEntry("result", f"{summary}\n{clip_noted(text, 3000)}"))
    return out


_FENCE = re.compile(r"^`{1,3}(?:json)?|`{1,3}$")


def protocol_lines(text: str) -> list[dict[str, Any]]:
    """JSON objects with a protocol `type` (message, question, learning), one per line."""
    found = []
    for raw in text.splitlines():
        s = _FENCE.sub("", raw.strip()).strip()
        if not (s.startswith("{") and s.endswith("}")):
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj.get("type") in PROTOCOL_TYPES:
            found.append(obj)
    return found
