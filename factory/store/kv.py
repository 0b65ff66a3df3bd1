"""Small durable facts in the KeyValue table: offsets, sent-message ids, Factory's own comment ids."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from factory.store.tables import KeyValue, WebhookDelivery, session_scope


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
