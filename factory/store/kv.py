"""Small durable facts in the KeyValue table: offsets, sent-message ids, Factory's own comment ids."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from factory.store.tables import KeyValue, WebhookDelivery, session_scope, utcnow

ONCE_PREFIX = "once:"
"""Keys of activity writes already made (`first_write`), so a retried activity writes nothing twice."""

DEDUP_PREFIXES = (
    "telegram:sent:", "telegram:question:", "plane:comment:", "plane:sent:", ONCE_PREFIX,
    "github:sent:", "github:own-comment:", "github:gave-up:", "github:ci-fix:", "github:ci-green:", "schedule:fired:",
)  # fmt: skip
"""Keys that only de-duplicate (retention prunes them after `retention_days`). Any other key is state
(an offset, say) and is kept: a new kind of dedup mark is pruned only once its prefix is listed here."""


def kv_get(engine: Engine, key: str) -> str | None:
    with session_scope(engine) as s:
        row = s.get(KeyValue, key)
        return row.value if row else None


def kv_set(engine: Engine, key: str, value: str) -> None:
    with session_scope(engine) as s:
        row = s.get(KeyValue, key)
        if row is None:
            row = KeyValue(key=key, value=value)
        else:
            row.value = value
            row.updated_at = utcnow()
        s.add(row)
        s.commit()


def claim_delivery(engine: Engine, source: str, delivery_id: str) -> bool:
    """Record a webhook delivery id; False when it was handled (or is being handled) already."""
    with session_scope(engine) as s:
        s.add(WebhookDelivery(id=f"{source}:{delivery_id}"[:300]))
        try:
            s.commit()
        except IntegrityError:
            return False
    return True


def release_delivery(engine: Engine, source: str, delivery_id: str) -> None:
    """Forget a claimed delivery so that the sender's retry is processed (after a transient failure)."""
    with session_scope(engine) as s:
        row = s.get(WebhookDelivery, f"{source}:{delivery_id}"[:300])
        if row is not None:
            s.delete(row)
            s.commit()


def first_write(s: Session, key: str | None) -> int | None:
    """The id the write keyed `key` stored already (in this session's transaction), or None."""
    if not key:
        return None
    row = s.get(KeyValue, ONCE_PREFIX + key)
    return int(row.value) if row is not None else None


def mark_written(s: Session, key: str | None, row_id: int) -> None:
    """Remember, in the caller's transaction, that the write keyed `key` stored row `row_id`.

    Committed with the row itself: an earlier attempt that committed wins on the primary key
    (IntegrityError), and the caller then reads that attempt's row with `first_write`.
    """
    if key:
        s.add(KeyValue(key=ONCE_PREFIX + key, value=str(row_id)))
