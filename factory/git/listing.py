"""Reading what Factory's git printed about a task's clone."""

from __future__ import annotations

import re


async def known(refs: dict[str, str]) -> dict[str, str]:
    """Refs already read, as an awaitable beside a read still to make."""
    return dict(refs)


_STAGED = re.compile(r"(\d{6}) [0-9a-f]+ \d\t(.*)", re.DOTALL)


def gitlinks_and_nested(listing: str) -> tuple[list[str], list[str]]:
    """From `ls-files -z --stage --others`: the index's gitlinks, and the untracked nested repositories
    (listed as "dir/"; an untracked entry has no mode, object and stage before a tab)."""
    gitlinks, nested = [], []
    for entry in listing.split("\0"):
        staged = _STAGED.fullmatch(entry)
        if staged:
            if staged.group(1) == "160000":
                gitlinks.append(staged.group(2))
        elif entry.endswith("/"):
            nested.append(entry.rstrip("/"))
    return gitlinks, nested
