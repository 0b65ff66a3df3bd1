"""Protocol lines are data: the values an agent's `message`, `learning` and `question` lines carry.

An agent prints these lines itself, so every value in them is chosen by the agent (or by whoever
wrote the text it read). Each one is checked here before it reaches the board or the database: a
number that does not fit its column, a string with a NUL byte (PostgreSQL refuses it) or one of
unbounded length would make the database write fail, the activity fail and Temporal retry the whole
run, which an agent could use to get a second run of its own choosing. Such a value is dropped or
cut, with a log line; it never raises.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("factory.agent.protocol")

INT32_MAX = 2**31 - 1  # message ids are INTEGER columns (32-bit in PostgreSQL)
MAX_CONTENT = 20_000  # characters of a message, learning or question kept
MAX_NAME = 100  # a recipient or message type


def column_int(value: Any, what: str, task_id: int) -> int | None:
    """`value` as a positive 32-bit id, or None (logged) when it is anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= INT32_MAX:
        log.warning("task %s: protocol line with %s %.40r ignored (not an id that fits a column)", task_id, what, value)
        return None
    return value


def clean_text(value: Any, cap: int = MAX_CONTENT) -> str:
    """A string value of a protocol line: NUL bytes removed, at most `cap` characters, stripped."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value).replace("\0", "")[:cap].strip()


def message_fields(obj: dict[str, Any], task_id: int) -> dict[str, Any] | None:
    """The board fields of a `message` line (content, type, recipient, reply_to); None when it has no content."""
    content = clean_text(obj.get("content"))
    if not content:
        return None
    return {
        "content": content,
        "message_type": clean_text(obj.get("message_type"), MAX_NAME) or "info",
        "recipient": clean_text(obj.get("to"), MAX_NAME) or None,
        "reply_to": column_int(obj.get("reply_to"), "reply_to", task_id),
    }
