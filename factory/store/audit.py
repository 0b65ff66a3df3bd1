"""The audit log: one append-only row per action (who, what, on what, when, how it ended, from where).

This module only appends and reads: there is no update or delete here, and no route that does
either. Old rows go only by retention (`auth.audit_retention_days`, factory/store/retention.py).

An actor from an integration (`github:octocat`, `plane:<member id>`, `telegram:<chat id>`) that an
admin linked to a user is written as that user's login, with the service identity kept as the
source; unlinked ones are written as they came.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from factory.domain.text import clip
from factory.store.people import AuditEntry, Identity, User

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "denied", "error")


def person_of(session: Session, actor: str) -> str | None:
    """The login linked to a service identity such as `github:octocat` (None when none is)."""
    service, sep, external = actor.partition(":")
    if not sep or service not in ("github", "plane", "telegram"):
        return None
    user = session.exec(
        select(User)
        .join(Identity, Identity.user_id == User.id)
        .where(Identity.service == service, Identity.external_id == external)
    ).first()
    return user.login if user else None


def record(
    engine: Engine,
    actor: str,
    action: str,
    target: str = "",
    *,
    outcome: str = "ok",
    source: str = "",
    task_id: int | None = None,
) -> AuditEntry | None:
    """Append one entry (blocking). A failure is logged, never raised: the action itself already happened."""
    try:
        with Session(engine, expire_on_commit=False) as s:
            person = person_of(s, actor)
            if person is not None:
                actor, source = person, actor
            row = AuditEntry(
                actor=clip(actor, 200), action=clip(action, 80), target=clip(target, 200),
                outcome=outcome if outcome in OUTCOMES else "error", source=clip(source, 200), task_id=task_id,
            )  # fmt: skip
            s.add(row)
            s.commit()
            return row
    except Exception as exc:  # the database is busy or gone: say so, do not undo the action
        log.warning("audit entry %s %s not written: %s", actor, action, exc)
        return None


def entries(
    engine: Engine,
    *,
    actor: str | None = None,
    action: str | None = None,
    task_id: int | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries newest first, filtered; `before_id` is the cursor (the last id of the previous page)."""
    q = select(AuditEntry)
    if actor:
        q = q.where(AuditEntry.actor == actor)
    if action:
        q = q.where(AuditEntry.action == action)
    if task_id is not None:
        q = q.where(AuditEntry.task_id == task_id)
    if before_id is not None:
        q = q.where(AuditEntry.id < before_id)
    with Session(engine, expire_on_commit=False) as s:
        return list(s.exec(q.order_by(AuditEntry.id.desc()).limit(limit)))


def export(engine: Engine, since: datetime | None = None, page: int = 500) -> Iterator[AuditEntry]:
    """Every entry, oldest first, read a page at a time (for a streamed export)."""
    last = 0
    while True:
        q = select(AuditEntry).where(AuditEntry.id > last)
        if since is not None:
            q = q.where(AuditEntry.at >= since)
        with Session(engine, expire_on_commit=False) as s:
            rows = list(s.exec(q.order_by(AuditEntry.id).limit(page)))
        yield from rows
        if len(rows) < page:
            return
        last = rows[-1].id


async def arecord(engine: Engine, actor: str, action: str, target: str = "", **kw: object) -> None:
    """`record` off the event loop, for the inbound handlers (`actor`: `github:<login>`, `plane:<member id>`, ...)."""
    await asyncio.to_thread(lambda: record(engine, actor, action, target, **kw))  # type: ignore[arg-type]
