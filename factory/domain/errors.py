"""One rule for whether a failed call to a service or a remote is worth trying again.

Not retried, because retrying cannot fix it: a rejected push (non-fast-forward, a protected branch,
a hook that declined it; but not a ref the remote could not lock, a concurrent push), revoked or missing credentials (HTTP 401/403, git's "Authentication
failed", "could not read Username", "Permission denied"), and any other 4xx. Retried, with capped
backoff inside the step's retry window: 5xx, 408, 409, 429 (after its Retry-After) and network
errors (no HTTP answer at all). GitHub, Plane, Telegram and Factory's git all ask this module
(activities raise through `activities/_errors.py`), and the task's error says which it was:
"not retried: ..." or "gave up after N tries: ...".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# client errors a later try may get past: a timeout, a conflict, rate limiting
RETRYABLE_4XX = frozenset({408, 409, 429})

NOT_RETRIED = "not retried: "

# git's words for what no retry fixes: the remote refused the push, or refused us
_GIT_PERMANENT = re.compile(
    r"\[rejected\]|\[remote rejected\]|non-fast-forward|\(fetch first\)|protected branch|hook declined"
    r"|authentication failed|could not read (username|password)|permission denied|permission to \S+ denied"
    r"|invalid username or password|repository \S+ not found|repository not found|couldn't find remote ref",
    re.IGNORECASE,
)
_HTTP_STATUS = re.compile(r"returned error: (\d{3})")
# ...except a ref the remote could not lock: another push of it was under way (its "[remote rejected]
# ... (failed to update ref)" is a race, not a verdict; a retry pushes again, or finds it done)
_GIT_REF_BUSY = re.compile(r"cannot lock ref|failed to lock|unable to create '[^']*\.lock'", re.IGNORECASE)


def http_retryable(status: int | None) -> bool:
    """Whether a call that answered `status` (None: no answer, a network error) may succeed later."""
    if status is None or status >= 500:
        return True
    if 400 <= status < 500:
        return status in RETRYABLE_4XX
    return True  # a 3xx or an odd status: not a verdict on the request


def git_retryable(message: str) -> bool:
    """Whether a failed git command (its scrubbed stderr) may succeed later: a network or server error."""
    if _GIT_PERMANENT.search(message) and not _GIT_REF_BUSY.search(message):
        return False
    m = _HTTP_STATUS.search(message)  # git over https: "The requested URL returned error: 403"
    return http_retryable(int(m.group(1))) if m else True


def not_retried(message: str) -> str:
    """The error text of a failure no retry can fix."""
    return message if message.startswith(NOT_RETRIED) else NOT_RETRIED + message


def gave_up(message: str, details: Sequence[Any] | None) -> str:
    """The error text of a retryable failure whose retries ran out (`details` carry its last attempt)."""
    attempt = next((d.get("attempt") for d in details or () if isinstance(d, dict)), None)
    if message.startswith(("gave up after", NOT_RETRIED)) or not isinstance(attempt, int):
        return message
    return f"gave up after {attempt} tr{'y' if attempt == 1 else 'ies'}: {message}"
