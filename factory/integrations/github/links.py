"""What Factory remembers about its GitHub work, as small durable facts in the key-value table.

- which issue a task or workflow run came from, and that issue's status comment;
- the line comments a revision task answers (to reply in their threads when it is done);
- how many fix rounds a PR has had, per kind (`ci`, `conflict`);
- the check run Factory keeps on a PR's head commit;
- the ids of Factory's own comments (so its comments are never read as answers or mentions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from factory.store.kv import kv_get, kv_set

MARKER = "<!-- factory -->"
"""Starts every comment Factory writes: a second guard, beside the recorded ids, against reading itself."""


@dataclass
class IssueLink:
    """A GitHub issue some of Factory's work came from."""

    repo: str  # owner/name
    number: int
    task_ids: list[int] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    status_comment_id: int | None = None


def _get(engine: Engine, key: str) -> Any:
    raw = kv_get(engine, key)
    return json.loads(raw) if raw else None


def _put(engine: Engine, key: str, value: Any) -> None:
    kv_set(engine, key, json.dumps(value))


def _issue_key(repo: str, number: int) -> str:
    return f"github:issue:{repo.lower()}#{number}"


def issue_link(engine: Engine, repo: str, number: int) -> IssueLink:
    """The issue's link record (empty when Factory has not worked on it)."""
    data = _get(engine, _issue_key(repo, number)) or {}
    return IssueLink(
        repo=repo, number=number, task_ids=list(data.get("tasks", [])), run_ids=list(data.get("runs", [])),
        status_comment_id=data.get("comment"),
    )  # fmt: skip


def save_issue_link(engine: Engine, link: IssueLink) -> None:
    """Store the issue's record and the way back from each of its tasks and runs."""
    _put(
        engine, _issue_key(link.repo, link.number),
        {"tasks": link.task_ids, "runs": link.run_ids, "comment": link.status_comment_id},
    )  # fmt: skip
    for tid in link.task_ids:
        _put(engine, f"github:issue-of:task:{tid}", [link.repo, link.number])
    for rid in link.run_ids:
        _put(engine, f"github:issue-of:run:{rid}", [link.repo, link.number])


def link_work(engine: Engine, repo: str, number: int, task_id: int | None = None, run_id: int | None = None) -> None:
    """Record that a task or workflow run works on the issue."""
    link = issue_link(engine, repo, number)
    if task_id is not None and task_id not in link.task_ids:
        link.task_ids.append(task_id)
    if run_id is not None and run_id not in link.run_ids:
        link.run_ids.append(run_id)
    save_issue_link(engine, link)


def issue_of(engine: Engine, task_id: int | None = None, run_id: int | None = None) -> tuple[str, int] | None:
    """(owner/name, issue number) the task or run came from, if it came from one."""
    for kind, value in (("task", task_id), ("run", run_id)):
        if value is not None:
            found = _get(engine, f"github:issue-of:{kind}:{value}")
            if found:
                return str(found[0]), int(found[1])
    return None


def set_threads(engine: Engine, task_id: int, repo: str, pr: int, comment_ids: list[int]) -> None:
    """The review line comments a revision task answers."""
    _put(engine, f"github:threads:task:{task_id}", {"repo": repo, "pr": pr, "comments": comment_ids})


def threads_of(engine: Engine, task_id: int) -> tuple[str, int, list[int]] | None:
    """(owner/name, PR number, line comment ids) of a revision task, if it answers a review."""
    data = _get(engine, f"github:threads:task:{task_id}")
    return (data["repo"], int(data["pr"]), [int(c) for c in data["comments"]]) if data else None


def rounds(engine: Engine, kind: str, repo: str, pr: int) -> int:
    """How many `kind` fix rounds (`ci`, `conflict`) the PR has had."""
    return int(kv_get(engine, f"github:rounds:{kind}:{repo.lower()}#{pr}") or 0)


def set_rounds(engine: Engine, kind: str, repo: str, pr: int, count: int) -> None:
    kv_set(engine, f"github:rounds:{kind}:{repo.lower()}#{pr}", str(count))


def check_run_id(engine: Engine, repo: str, sha: str) -> int | None:
    """The id of Factory's check run on a commit, once made."""
    value = kv_get(engine, f"github:check:{repo.lower()}:{sha}")
    return int(value) if value else None


def set_check_run_id(engine: Engine, repo: str, sha: str, run_id: int) -> None:
    kv_set(engine, f"github:check:{repo.lower()}:{sha}", str(run_id))


def remember_own_comment(engine: Engine, comment_id: int) -> None:
    kv_set(engine, f"github:own-comment:{comment_id}", "1")


def is_own_comment(engine: Engine, comment_id: Any, body: str) -> bool:
    """Whether Factory wrote this comment (its id was recorded, or it carries Factory's marker)."""
    return body.lstrip().startswith(MARKER) or kv_get(engine, f"github:own-comment:{comment_id}") is not None
