"""The SurrealDB side of memory: schema, rows, and a connection that degrades instead of raising.

SurrealDB runs embedded (`surrealkv://<data_dir>/memory`) unless `SURREALDB_URL` names a
server. A failed connection is left alone for `retry_after` seconds; every call then raises
`Unavailable`, which `MemoryStore` turns into an empty answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import surrealdb
from surrealdb import RecordID

from factory.config import FactoryConfig
from factory.memory.outages import OutageLog, Unavailable
from factory.memory.records import MemoryRecord

log = logging.getLogger(__name__)

NAMESPACE = "factory"
DATABASE = "memory"
TABLE = "memory"
VECTOR_INDEX = "memory_embedding"

FIELDS = (
    "id, repo, task_id, workflow_id, agent_type, title, outcome, summary, learnings, files, pr_url, kind, created_at"
)

SCHEMA = f"""
DEFINE ANALYZER IF NOT EXISTS memory_text TOKENIZERS class, blank, punct FILTERS lowercase, ascii, snowball(english);
DEFINE TABLE IF NOT EXISTS {TABLE} SCHEMAFULL;
DEFINE FIELD IF NOT EXISTS repo ON {TABLE} TYPE string;
DEFINE FIELD IF NOT EXISTS task_id ON {TABLE} TYPE option<int>;
DEFINE FIELD IF NOT EXISTS workflow_id ON {TABLE} TYPE option<int>;
DEFINE FIELD IF NOT EXISTS agent_type ON {TABLE} TYPE option<string>;
DEFINE FIELD IF NOT EXISTS title ON {TABLE} TYPE string;
DEFINE FIELD IF NOT EXISTS outcome ON {TABLE} TYPE option<string>;
DEFINE FIELD IF NOT EXISTS summary ON {TABLE} TYPE string;
DEFINE FIELD IF NOT EXISTS learnings ON {TABLE} TYPE array<string>;
DEFINE FIELD IF NOT EXISTS files ON {TABLE} TYPE array<string>;
DEFINE FIELD IF NOT EXISTS pr_url ON {TABLE} TYPE option<string>;
DEFINE FIELD IF NOT EXISTS kind ON {TABLE} TYPE string ASSERT $value IN ["task", "note"];
DEFINE FIELD IF NOT EXISTS created_at ON {TABLE} TYPE datetime;
DEFINE FIELD IF NOT EXISTS text ON {TABLE} TYPE string;
DEFINE FIELD IF NOT EXISTS embedding ON {TABLE} TYPE option<array<float>>;
DEFINE FIELD IF NOT EXISTS embedding_model ON {TABLE} TYPE option<string>;
DEFINE INDEX IF NOT EXISTS memory_repo ON {TABLE} FIELDS repo;
DEFINE INDEX IF NOT EXISTS memory_created ON {TABLE} FIELDS created_at;
DEFINE INDEX IF NOT EXISTS memory_fulltext ON {TABLE} FIELDS text SEARCH ANALYZER memory_text BM25;
DEFINE TABLE IF NOT EXISTS memory_term SCHEMAFULL;
DEFINE FIELD IF NOT EXISTS df ON memory_term TYPE int DEFAULT 0;
"""

TERMS_OF = "array::map(array::distinct(search::analyze('memory_text', {text})), |$s| type::thing('memory_term', $s))"
"""The `memory_term` records of a text's index terms: how many memories hold each term (approximately:
a re-stored memory is not re-counted)."""


# ------------------------------------------------------------------ rows


def record_id(memory_id: str) -> RecordID:
    """The database id of a memory id as the API shows it."""
    key = memory_id.split(":", 1)[1] if memory_id.startswith(f"{TABLE}:") else memory_id
    return RecordID(TABLE, key.strip("⟨⟩`"))


def record_key(rec: MemoryRecord) -> str:
    """The key a new memory is stored under; a task's memory has a stable one, so a retry overwrites it."""
    if rec.kind == "task" and rec.task_id is not None:
        parts = ["task", str(rec.task_id), str(rec.workflow_id or 0), rec.agent_type or "agent"]
        return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts))
    return uuid.uuid4().hex


def row_id(row: dict[str, Any]) -> str:
    """A row's memory id as the API shows it (the key, without the table)."""
    rid = row.get("id")
    return str(rid.id) if isinstance(rid, RecordID) else str(record_id(str(rid)).id)


def to_record(row: dict[str, Any]) -> MemoryRecord:
    """A row of FIELDS as a MemoryRecord."""
    created = row.get("created_at")
    if not isinstance(created, datetime):
        created = datetime.now(UTC)
    return MemoryRecord(
        repo=row.get("repo") or "",
        title=row.get("title") or "",
        summary=row.get("summary") or "",
        learnings=list(row.get("learnings") or []),
        files=list(row.get("files") or []),
        outcome=row.get("outcome"),
        task_id=row.get("task_id"),
        workflow_id=row.get("workflow_id"),
        agent_type=row.get("agent_type"),
        pr_url=row.get("pr_url"),
        kind=row.get("kind") or "task",
        created_at=created,
    )


def store_statements(n: int) -> str:
    """Statements storing records $c0..$c{n-1} under keys $k0..$k{n-1}, counting new ones' terms.

    One statement per record, never a `FOR` loop: on surrealkv, index entries written by
    a `FOR` loop over many records are partly lost when the database is reopened
    (SurrealDB 2.0 engine; see tests/test_memory.py::test_batch_add_survives_reopen).
    """
    out = []
    for i in range(n):
        terms = TERMS_OF.format(text=f"$c{i}.text")
        out.append(f"IF !record::exists(type::thing('{TABLE}', $k{i})) {{ UPSERT {terms} SET df += 1 RETURN NONE; }};")
        out.append(f"UPSERT type::thing('{TABLE}', $k{i}) CONTENT $c{i} RETURN NONE;")
    return "\n".join(out)


def without_none(d: dict[str, Any]) -> dict[str, Any]:
    """`d` without its None values: SurrealDB's option<T> wants the field absent (NONE), not NULL."""
    return {k: v for k, v in d.items() if v is not None}


# ------------------------------------------------------------------ the connection


class MemoryDatabase:
    """One SurrealDB connection, opened lazily and re-opened after an outage."""

    def __init__(
        self,
        cfg: FactoryConfig,
        url: str,
        outages: OutageLog,
        scrub: Callable[[str], str],
        timeout: float,
        retry_after: float,
        vector_index: tuple[int, str] | None = None,
    ):
        """Prepare a connection to `url`; nothing is opened until `connect` or the first query.

        Args:
            vector_index: (dimensions, model) of the HNSW index to ensure on every (re)connect, if known.
        """
        self.cfg = cfg
        self.vector_index = vector_index
        self.url = url
        self.embedded = url.startswith(("mem://", "memory://", "surrealkv", "file://"))
        self.outages = outages
        self.scrub = scrub
        self.timeout = timeout
        self.retry_after = retry_after
        self.error: str | None = None
        self.vector_dim: int | None = None
        self.closed = False
        self._db: Any = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        return self._db is not None

    def safe_url(self) -> str:
        """The URL without credentials, for logs and the health endpoint."""
        return self.scrub(self.url.split("@")[-1] if "://" in self.url and "@" in self.url else self.url)

    async def connect(self) -> bool:
        """Open the connection and define the schema (idempotent). Returns whether it is usable."""
        self.closed = False
        async with self._lock:
            return await self._connect_locked()

    async def close(self) -> None:
        """Close the connection; later calls raise Unavailable until `connect`."""
        self.closed = True
        async with self._lock:
            await self._drop()

    async def query_all(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Run statements; return each one's result. Raises Unavailable when the database is down."""
        if self._db is None:
            async with self._lock:
                if not await self._connect_locked():
                    raise Unavailable
        db = self._db
        try:
            response = await asyncio.wait_for(db.query_raw(sql, params or {}), self.timeout)
        except asyncio.CancelledError:
            # the ws client cancels pending calls when its socket dies; that is an outage, not our cancellation
            if _really_cancelled():
                raise
            await self._lost(db, "connection lost")
            raise Unavailable from None
        except Exception as exc:
            reason = self.scrub(f"{type(exc).__name__}: {exc}")
            # an embedded engine has no connection to lose: a slow or failed call is just that call's failure
            if not self.embedded and _is_connection_error(exc):
                await self._lost(db, reason)
                raise Unavailable(reason) from exc
            self.outages.failed("query", f"agent memory: a database call failed: {reason}")
            raise Unavailable(reason) from exc
        try:
            results = _statement_results(response)
        except Exception as exc:
            reason = self.scrub(str(exc))
            self.outages.failed("query", f"agent memory: a database statement failed: {reason}")
            raise Unavailable(reason) from exc
        self.outages.recovered("query", "agent memory: database calls succeed again")
        return results

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        """Run statements; return the last one's result. Raises Unavailable when the database is down."""
        return (await self.query_all(sql, params))[-1]

    async def ensure_vector_index(self, dim: int, model: str) -> None:
        """An HNSW index for `dim`-dimensional vectors of `model`; other models' vectors are dropped."""
        if self.vector_dim == dim or self._db is None:
            return
        async with self._lock:
            await self._ensure_vector_index_locked(dim, model)

    async def _connect_locked(self) -> bool:
        if self._db is not None:
            return True
        if self.closed or time.monotonic() < self._retry_at:
            return False
        db = None
        try:
            if self.url.startswith("surrealkv://"):
                self.cfg.data_path.mkdir(parents=True, exist_ok=True)
            db = surrealdb.AsyncSurreal(self.url)
            await asyncio.wait_for(db.connect(), self.timeout)
            if self.cfg.surrealdb_user and not self.embedded:
                password = self.cfg.surrealdb_pass.get_secret_value() if self.cfg.surrealdb_pass else ""
                await asyncio.wait_for(
                    db.signin({"username": self.cfg.surrealdb_user, "password": password}), self.timeout
                )
            await asyncio.wait_for(db.use(NAMESPACE, DATABASE), self.timeout)
            _statement_results(await asyncio.wait_for(db.query_raw(SCHEMA), self.timeout))
        except asyncio.CancelledError:
            await _close_quietly(db)
            if _really_cancelled():
                raise
            return self._down("connection lost while connecting")
        except Exception as exc:
            await _close_quietly(db)
            return self._down(f"{type(exc).__name__}: {exc}")
        self._db = db
        self.error = None
        self.vector_dim = None
        self.outages.recovered("db", f"agent memory: database {self.safe_url()} reachable again")
        if self.vector_index:
            await self._ensure_vector_index_locked(*self.vector_index)
        return True

    def _down(self, reason: str) -> bool:
        self.error = self.scrub(reason)
        self._retry_at = time.monotonic() + self.retry_after
        self.outages.failed(
            "db", f"agent memory disabled for now: database {self.safe_url()} unavailable ({self.error})"
        )
        return False

    async def _drop(self) -> None:
        db, self._db = self._db, None
        await _close_quietly(db)

    async def _lost(self, db: Any, reason: str) -> None:
        async with self._lock:
            if self._db is db:
                await self._drop()
        self._down(reason)

    async def _ensure_vector_index_locked(self, dim: int, model: str) -> None:
        if self.vector_dim == dim or self._db is None:
            return
        db = self._db
        try:
            info = _statement_results(await asyncio.wait_for(db.query_raw(f"INFO FOR TABLE {TABLE}"), self.timeout))[0]
            existing = (info or {}).get("indexes", {}).get(VECTOR_INDEX)
            found = re.search(r"DIMENSION (\d+)", existing or "")
            same_dim = bool(found) and int(found.group(1)) == dim
            stale = 0
            if existing and same_dim:
                counted = await asyncio.wait_for(
                    db.query_raw(
                        f"SELECT count() FROM {TABLE} WHERE embedding IS NOT NONE AND embedding_model != $model GROUP ALL",
                        {"model": model},
                    ),
                    self.timeout,
                )
                rows = _statement_results(counted)[0]
                stale = rows[0]["count"] if rows else 0
            stmts = []
            if existing and (not same_dim or stale):
                # another model's vectors live in another space: drop them (backfill_embeddings re-embeds)
                log.warning(
                    "agent memory: embedding model is now %s (%d dimensions); dropping embeddings of other models",
                    model,
                    dim,
                )
                where = "embedding_model != $model" if same_dim else "embedding IS NOT NONE"
                stmts.append(f"REMOVE INDEX {VECTOR_INDEX} ON {TABLE};")
                stmts.append(f"UPDATE {TABLE} SET embedding = NONE, embedding_model = NONE WHERE {where} RETURN NONE;")
                existing = None
            if not existing:
                stmts.append(
                    f"DEFINE INDEX IF NOT EXISTS {VECTOR_INDEX} ON {TABLE} FIELDS embedding "
                    f"HNSW DIMENSION {dim} DIST COSINE TYPE F32 EFC 150 M 12;"
                )
            if stmts:
                response = await asyncio.wait_for(db.query_raw("\n".join(stmts), {"model": model}), self.timeout)
                _statement_results(response)
            self.vector_dim = dim
        except Exception as exc:
            self.outages.failed("index", f"agent memory: could not set up the vector index: {self.scrub(str(exc))}")


def _statement_results(response: dict[str, Any]) -> list[Any]:
    if response.get("error"):
        err = response["error"]
        raise RuntimeError(err.get("message") if isinstance(err, dict) else str(err))
    out = []
    for stmt in response.get("result") or []:
        if stmt.get("status") == "ERR":
            raise RuntimeError(str(stmt.get("result")))
        out.append(stmt.get("result"))
    return out


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | surrealdb.ConnectionUnavailableError):
        return True
    # websockets' ConnectionClosed and friends; imported lazily as the embedded engine never needs them
    return type(exc).__module__.startswith("websockets")


def _really_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _close_quietly(db: Any) -> None:
    if db is None:
        return
    try:
        await asyncio.wait_for(db.close(), 5)
    except Exception:
        pass
