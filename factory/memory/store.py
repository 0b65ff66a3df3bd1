"""Agent memory: what finished tasks learned, kept in SurrealDB and recalled before new ones.

A memory is one record in the `memory` table: the task's title, outcome, summary,
learnings and files. `search` ranks memories with a BM25 full-text index over
title + summary + learnings; when embeddings are configured (`memory.embeddings`
or `OPENAI_API_KEY`) it also runs an HNSW k-nearest-neighbour search on the
embedding and fuses both rankings by reciprocal rank fusion.

SurrealDB runs embedded (`surrealkv://<data_dir>/memory`) unless `SURREALDB_URL`
names a server. Memory is an aid, never a dependency: when the database or the
embeddings API is unreachable, nothing here raises, one warning is logged per outage,
searches return what still works (BM25 alone, or nothing) and `health()` says
`degraded`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import surrealdb
from surrealdb import RecordID

from factory.config import EmbeddingsConfig, FactoryConfig
from factory.domain.redact import scrub

log = logging.getLogger(__name__)

NAMESPACE = "factory"
DATABASE = "memory"
TABLE = "memory"

RRF_K = 60
"""Reciprocal rank fusion constant (Cormack et al.); damps the weight of the top ranks."""
REPO_BOOST = 1.5
"""Fused-score factor for memories of the task's own repo, so they rank first among comparable hits."""
MIN_SIMILARITY = 0.2
"""Cosine similarity below which a vector neighbour is noise, not a match (nearest neighbours always exist)."""
MAX_QUERY_TERMS = 32
BM25_BUDGET = 150
"""At most this many memories are BM25-scored per search: the rarest query terms are kept while the
memories holding them add up to no more. SurrealDB 2.x scores every memory a term matches (about
0.1 ms each), so a common word would cost a second at 10,000 memories while adding almost no rank."""
EMBED_MAX_CHARS = 8000
RETRY_AFTER_SECONDS = 15.0
"""How long a failed database or embeddings endpoint is left alone before it is tried again."""

_FIELDS = (
    "id, repo, task_id, workflow_id, agent_type, title, outcome, summary, learnings, files, pr_url, kind, created_at"
)

_SCHEMA = f"""
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

# How many memories hold each index term (approximately: a re-stored memory is not re-counted).
_TERMS_OF = "array::map(array::distinct(search::analyze('memory_text', {text})), |$s| type::thing('memory_term', $s))"

_VECTOR_INDEX = "memory_embedding"

# Words that carry no topic; BM25 would weigh them low anyway, but every term is one more index lookup.
_STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be been before being below between both but
    by can could did do does doing done down during each few for from further had has have having he her here
    him his how i if in into is it its itself just let me more most my no nor not now of off on once only or
    other our out over own please same she should so some such than that the their them then there these they
    this those through to too under until up us very was we were what when where which while who whom why will
    with would you your""".split()
)


@dataclass
class MemoryRecord:
    """One memory: what a task (or a person, for a note) left for later tasks."""

    repo: str
    title: str
    summary: str = ""
    learnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    outcome: str | None = None
    task_id: int | None = None
    workflow_id: int | None = None
    agent_type: str | None = None
    pr_url: str | None = None
    kind: Literal["task", "note"] = "task"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def text(self) -> str:
        """The text that is indexed and embedded: title, summary and learnings."""
        return "\n".join([self.title, self.summary, *self.learnings])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


@dataclass
class MemoryHit:
    """A memory found by `search`: the record, its id and how well it matched.

    `score` is the fused rank score (higher is better); `bm25` and `similarity` are the
    full-text score and the embedding cosine similarity where that retriever found it.
    """

    id: str
    record: MemoryRecord
    score: float = 0.0
    bm25: float | None = None
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "bm25": self.bm25,
            "similarity": self.similarity,
            **self.record.to_dict(),
        }


class _Unavailable(Exception):
    """The database cannot be reached now; the caller degrades."""


@dataclass
class _Embedder:
    url: str
    model: str
    dimensions: int | None
    api_key: str | None


def embeddings_settings(cfg: FactoryConfig) -> _Embedder | None:
    """The embeddings endpoint memory uses, or None when embeddings are off."""
    conf = cfg.memory.embeddings
    if conf is None:
        if cfg.openai_api_key is None:
            return None
        conf = EmbeddingsConfig()
    if conf.api_key_env == "OPENAI_API_KEY" and cfg.openai_api_key is not None:
        key: str | None = cfg.openai_api_key.get_secret_value()
    else:
        key = os.environ.get(conf.api_key_env) or None
    return _Embedder(
        url=conf.base_url.rstrip("/") + "/embeddings", model=conf.model, dimensions=conf.dimensions, api_key=key
    )


def content_words(text: str) -> list[str]:
    """Lower-cased words and numbers of text, without punctuation, stop words and single letters."""
    return [w for w in re.findall(r"[^\W\d_]+|\d+", text.lower()) if len(w) > 1 and w not in _STOPWORDS]


def query_terms(text: str) -> list[str]:
    """The distinct content words of a query, in order, at most MAX_QUERY_TERMS.

    SurrealDB's `@@` matches documents holding every term of its query, so a search
    ORs one match per term instead.
    """
    return list(dict.fromkeys(content_words(text)))[:MAX_QUERY_TERMS]


def _rarest(words: list[str], dfs: list[Any], budget: int) -> list[str]:
    """The words worth a BM25 lookup: rarest first, while the memories they match stay within budget.

    A word no memory holds is left out (it matches nothing). When even the rarest word is
    more common than the budget, nothing is looked up: such words barely rank anything.
    """
    known = sorted(((int(df or 0), i) for i, df in enumerate(dfs) if df and int(df) > 0), key=lambda x: x[0])
    chosen, total = [], 0
    for df, i in known:
        if total + df > budget:
            break
        chosen.append(i)
        total += df
    return [words[i] for i in sorted(chosen)]


def _key(raw: str) -> str:
    key = raw.split(":", 1)[1] if raw.startswith(f"{TABLE}:") else raw
    return key.strip("⟨⟩`")


def _record_key(rec: MemoryRecord) -> str:
    # A task's memory has a stable key, so a retried activity overwrites rather than duplicates.
    if rec.kind == "task" and rec.task_id is not None:
        parts = ["task", str(rec.task_id), str(rec.workflow_id or 0), rec.agent_type or "agent"]
        return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts))
    return uuid.uuid4().hex


def _to_record(row: dict[str, Any]) -> MemoryRecord:
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


def _row_id(row: dict[str, Any]) -> str:
    rid = row.get("id")
    return str(rid.id) if isinstance(rid, RecordID) else _key(str(rid))


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | surrealdb.ConnectionUnavailableError):
        return True
    # websockets' ConnectionClosed and friends; imported lazily as the embedded engine never needs them
    return type(exc).__module__.startswith("websockets")


class MemoryStore:
    """Agent memory in SurrealDB. Every public method is safe to call when memory is down.

    Usage::

        store = await MemoryStore.open(cfg)
        await store.add(MemoryRecord(repo="acme/web", title="...", summary="..."))
        hits = await store.search("slow dashboard", repo="acme/web")
        section = await store.recall_section(task.title, task.description, task.repo)
        await store.close()
    """

    def __init__(
        self,
        cfg: FactoryConfig,
        *,
        url: str | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        retry_after: float = RETRY_AFTER_SECONDS,
    ):
        """Make a store; `connect()` (or `MemoryStore.open`) opens the database.

        Args:
            cfg: Factory's config (memory section, SurrealDB and embeddings secrets, data dir).
            url: overrides the database URL (else `surrealdb_url`, else `surrealkv://<data_dir>/memory`).
            http: a client for the embeddings API (one is made and closed here if not given).
            timeout: seconds before a database call or an embeddings call counts as failed.
            retry_after: seconds a failed database or embeddings endpoint is left alone before a retry.
        """
        self.cfg = cfg
        self.enabled = cfg.memory.enabled
        self.url = url or cfg.surrealdb_url or f"surrealkv://{cfg.data_path / 'memory'}"
        self.embedded = self.url.startswith(("mem://", "memory://", "surrealkv", "file://"))
        self.embedder = embeddings_settings(cfg)
        self.timeout = timeout
        self.retry_after = retry_after
        self.min_similarity = MIN_SIMILARITY
        self.bm25_budget = BM25_BUDGET
        self._secrets = list(cfg.secret_values())
        if self.embedder and self.embedder.api_key and len(self.embedder.api_key) >= 6:
            self._secrets.append(self.embedder.api_key)
        self._http = http
        self._own_http = http is None
        self._db: Any = None
        self._lock = asyncio.Lock()
        self._db_error: str | None = None
        self._db_retry_at = 0.0
        self._embed_error: str | None = None
        self._embed_retry_at = 0.0
        self._vector_dim: int | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, cfg: FactoryConfig, **kwargs: Any) -> MemoryStore:
        """Make a store and connect it; never raises for an unreachable database."""
        store = cls(cfg, **kwargs)
        await store.connect()
        return store

    async def connect(self) -> bool:
        """Open the database and define the schema (idempotent). Returns whether memory is usable."""
        if not self.enabled:
            return False
        self._closed = False
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)))
        async with self._lock:
            return await self._connect_locked()

    async def close(self) -> None:
        """Close the database connection and the embeddings client."""
        self._closed = True
        async with self._lock:
            await self._drop_db()
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def available(self) -> bool:
        """Whether the database is connected now (False when disabled or down)."""
        return self.enabled and self._db is not None

    async def health(self) -> dict[str, str]:
        """`{"status": "ok" | "degraded" | "disabled", "detail": ...}` for the health endpoint."""
        if not self.enabled:
            return {"status": "disabled", "detail": "memory.enabled is false"}
        try:
            await self._query("RETURN 1")
        except _Unavailable as exc:
            reason = self._db_error or str(exc) or "no connection"
            return {"status": "degraded", "detail": f"database unavailable: {reason}"}
        search = "bm25" if self.embedder is None else "hybrid (bm25 + vector)"
        if self._embed_error:
            return {"status": "degraded", "detail": f"embeddings unavailable, bm25 only: {self._embed_error}"}
        return {"status": "ok", "detail": f"{self._safe_url()}; search: {search}"}

    # ------------------------------------------------------------------ writes

    async def add(self, record: MemoryRecord) -> str | None:
        """Store a memory (secrets redacted) and return its id; None when memory is unavailable."""
        ids = await self.add_many([record])
        return ids[0] if ids else None

    async def add_many(self, records: Sequence[MemoryRecord], batch: int = 64) -> list[str]:
        """Store several memories, embedding them in batches. Returns the ids stored (empty when down)."""
        if not self.enabled or not records:
            return []
        ids: list[str] = []
        for start in range(0, len(records), batch):
            chunk = [self._redact(r) for r in records[start : start + batch]]
            vectors = await self._embed([r.text() for r in chunk]) if self.embedder else None
            if vectors is not None:
                await self._ensure_vector_index(len(vectors[0]))
            params: dict[str, Any] = {}
            keys = []
            for i, rec in enumerate(chunk):
                # indexed without stop words and punctuation: the 2.x full-text index pays for every
                # term on insert, most for common ones (a third faster writes, measured)
                content = {**asdict(rec), "text": " ".join(content_words(rec.text()))}
                if vectors is not None and self._vector_dim == len(vectors[i]):
                    content["embedding"] = vectors[i]
                    content["embedding_model"] = self.embedder.model if self.embedder else None
                keys.append(_record_key(rec))
                params[f"k{i}"], params[f"c{i}"] = keys[-1], _without_none(content)
            try:
                await self._query_all(_store_statements(len(chunk)), params)
            except _Unavailable:
                return ids
            ids += keys
        return ids

    async def delete(self, memory_id: str) -> bool:
        """Delete a memory; True if it existed."""
        try:
            rows = await self._query(
                "LET $old = (DELETE $id RETURN BEFORE);\n"
                f"IF $old {{ UPSERT {_TERMS_OF.format(text='$old[0].text')} SET df -= 1 RETURN NONE; }};\n"
                "RETURN $old;",
                {"id": RecordID(TABLE, _key(memory_id))},
            )
        except _Unavailable:
            return False
        return bool(rows)

    async def backfill_embeddings(self, limit: int = 1000) -> int:
        """Embed memories stored while embeddings were off or failing. Returns how many were embedded."""
        if not self.embedder:
            return 0
        try:
            rows = await self._query(
                f"SELECT id, title, summary, learnings FROM {TABLE} WHERE embedding IS NONE LIMIT $limit",
                {"limit": limit},
            )
        except _Unavailable:
            return 0
        done = 0
        for start in range(0, len(rows), 64):
            chunk = rows[start : start + 64]
            texts = ["\n".join([r["title"], r["summary"], *r["learnings"]]) for r in chunk]
            vectors = await self._embed(texts)
            if vectors is None:
                break
            await self._ensure_vector_index(len(vectors[0]))
            params: dict[str, Any] = {"model": self.embedder.model}
            for i, (row, vector) in enumerate(zip(chunk, vectors, strict=True)):
                params[f"id{i}"], params[f"v{i}"] = row["id"], vector
            try:
                statements = (
                    f"UPDATE $id{i} SET embedding = $v{i}, embedding_model = $model RETURN NONE;"
                    for i in range(len(chunk))
                )
                await self._query_all("\n".join(statements), params)
            except _Unavailable:
                break
            done += len(chunk)
        return done

    # ------------------------------------------------------------------ reads

    async def get(self, memory_id: str) -> MemoryRecord | None:
        """One memory by id, or None if unknown (or memory is unavailable)."""
        try:
            rows = await self._query(f"SELECT {_FIELDS} FROM $id", {"id": RecordID(TABLE, _key(memory_id))})
        except _Unavailable:
            return None
        return _to_record(rows[0]) if rows else None

    async def recent(self, repo: str | None = None, limit: int = 20) -> list[MemoryHit]:
        """The newest memories, optionally of one repo (score 0)."""
        where = "WHERE repo = $repo" if repo else ""
        try:
            rows = await self._query(
                f"SELECT {_FIELDS} FROM {TABLE} {where} ORDER BY created_at DESC LIMIT $limit",
                {"repo": repo, "limit": limit},
            )
        except _Unavailable:
            return []
        return [MemoryHit(id=_row_id(r), record=_to_record(r)) for r in rows]

    async def search(
        self, query: str, repo: str | None = None, limit: int = 5, *, vector: list[float] | None = None
    ) -> list[MemoryHit]:
        """Memories related to `query`, best first; those of `repo` rank first among comparable hits.

        BM25 alone without embeddings; with embeddings, BM25 and HNSW k-NN fused by
        reciprocal rank fusion. Returns [] when memory is unavailable.

        Args:
            query: what to look for (a task's title and description, say).
            repo: the repo the results are for; its memories rank first among comparable hits.
            limit: how many hits at most.
            vector: the query's embedding when the caller has it already (skips the embeddings call).
        """
        if not self.enabled or limit <= 0 or not query.strip():
            return []
        query = self._scrub(query)
        terms = query_terms(query)
        depth = max(limit * 4, 20)
        if self.embedder is None:
            lexical, semantic = await self._bm25(terms, depth), []
        else:
            # embedding the query, then the k-NN search, run while the BM25 query does
            semantic_search = self._knn(vector, depth) if vector else self._semantic(query, depth)
            lexical, semantic = await asyncio.gather(self._bm25(terms, depth), semantic_search)
        ranked = self._fuse(lexical, semantic, repo, limit)
        if not ranked:
            return []
        try:
            rows = await self._query(f"SELECT {_FIELDS} FROM $ids", {"ids": [RecordID(TABLE, h.id) for h in ranked]})
        except _Unavailable:
            return []
        records = {_row_id(r): _to_record(r) for r in rows or []}
        hits = []
        for h in ranked:
            if h.id in records:  # a memory deleted in between is skipped
                h.record = records[h.id]
                hits.append(h)
        return hits

    async def _bm25(self, words: list[str], depth: int) -> list[dict[str, Any]]:
        """Ids, repos and BM25 scores of the best `depth` matches of the rarest query terms."""
        if not words:
            return []
        try:
            dfs = await self._query(
                "RETURN array::map($words, |$w| type::thing('memory_term', "
                "array::first(search::analyze('memory_text', $w))).df ?? 0)",
                {"words": words},
            )
            terms = _rarest(words, dfs or [], self.bm25_budget)
            if not terms:
                return []
            # one statement per term, summed here: BM25 is a sum over terms, and one statement
            # ORing the terms scores every term for every match, which costs terms x matches
            sql = "\n".join(
                f"SELECT id, repo, search::score(1) AS s FROM {TABLE} WHERE text @1@ $t{i};" for i in range(len(terms))
            )
            results = await self._query_all(sql, {f"t{i}": t for i, t in enumerate(terms)})
        except _Unavailable:
            return []
        rows: dict[str, dict[str, Any]] = {}
        for result in results:
            for row in result or []:
                rid = _row_id(row)
                entry = rows.setdefault(rid, {"id": rid, "repo": row.get("repo"), "bm25": 0.0})
                # a term in over half the memories has a negative idf; it should add nothing, not subtract
                entry["bm25"] += max(float(row.get("s") or 0.0), 0.0)
        return sorted(rows.values(), key=lambda r: r["bm25"], reverse=True)[:depth]

    async def _semantic(self, query: str, depth: int) -> list[dict[str, Any]]:
        vectors = await self._embed([query])
        return await self._knn(vectors[0], depth) if vectors else []

    async def _knn(self, vector: list[float], depth: int) -> list[dict[str, Any]]:
        """Ids, repos and cosine distances of the `depth` nearest memories (HNSW)."""
        if self._vector_dim is None:
            await self._ensure_vector_index(len(vector))
        if len(vector) != self._vector_dim:
            return []
        ef = max(depth, 40)
        sql = f"SELECT id, repo, vector::distance::knn() AS dist FROM {TABLE} WHERE embedding <|{depth},{ef}|> $vec"
        try:
            return await self._query(sql, {"vec": vector}) or []
        except _Unavailable:
            return []

    def _fuse(
        self, lexical: list[dict[str, Any]], semantic: list[dict[str, Any]], repo: str | None, limit: int
    ) -> list[MemoryHit]:
        hits: dict[str, MemoryHit] = {}

        def hit_for(row: dict[str, Any]) -> MemoryHit:
            rid = _row_id(row)
            if rid not in hits:  # the record is fetched for the winners only
                hits[rid] = MemoryHit(id=rid, record=MemoryRecord(repo=row.get("repo") or "", title=""))
            return hits[rid]

        for rank, row in enumerate(lexical, 1):
            h = hit_for(row)
            h.bm25 = float(row.get("bm25") or 0.0)
            h.score += 1.0 / (RRF_K + rank)
        near = sorted(semantic, key=lambda r: r.get("dist", 2.0))
        near = [r for r in near if 1.0 - float(r.get("dist", 2.0)) >= self.min_similarity]
        for rank, row in enumerate(near, 1):
            h = hit_for(row)
            h.similarity = 1.0 - float(row["dist"])
            h.score += 1.0 / (RRF_K + rank)
        if repo:
            for h in hits.values():
                if h.record.repo == repo:
                    h.score *= REPO_BOOST
        ranked = sorted(hits.values(), key=lambda h: (h.score, h.bm25 or 0.0, h.similarity or 0.0), reverse=True)
        return ranked[:limit]

    async def recall_section(
        self,
        title: str,
        description: str,
        repo: str | None,
        top_k: int | None = None,
        *,
        exclude_task_id: int | None = None,
    ) -> str:
        """A markdown section "## Relevant past work" for a task's prompt, or "" when nothing relates.

        Bounded by `memory.max_prompt_chars`. `exclude_task_id` leaves out the task's own memories.
        """
        if not self.enabled:
            return ""
        k = top_k or self.cfg.memory.top_k
        hits = await self.search(f"{title}\n{description}", repo=repo, limit=k + (3 if exclude_task_id else 0))
        if exclude_task_id is not None:
            hits = [h for h in hits if h.record.task_id != exclude_task_id]
        hits = hits[:k]
        if not hits:
            return ""
        return format_section(hits, self.cfg.memory.max_prompt_chars)

    # ------------------------------------------------------------------ internals

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets) if text else text

    def _redact(self, rec: MemoryRecord) -> MemoryRecord:
        return replace(
            rec,
            repo=self._scrub(rec.repo),
            title=self._scrub(rec.title),
            summary=self._scrub(rec.summary),
            learnings=[self._scrub(x) for x in rec.learnings if x and x.strip()],
            files=[self._scrub(x) for x in rec.files if x],
            outcome=self._scrub(rec.outcome) if rec.outcome else rec.outcome,
            pr_url=self._scrub(rec.pr_url) if rec.pr_url else rec.pr_url,
        )

    def _safe_url(self) -> str:
        return self._scrub(self.url.split("@")[-1] if "://" in self.url and "@" in self.url else self.url)

    def _warn_once(self, key: str, message: str) -> None:
        # one warning per kind of failure until it recovers; repeats go to debug
        attr = f"_warned_{key}"
        if getattr(self, attr, False):
            log.debug(message)
            return
        setattr(self, attr, True)
        log.warning(message)

    def _recovered(self, key: str, message: str) -> None:
        if getattr(self, f"_warned_{key}", False):
            setattr(self, f"_warned_{key}", False)
            log.info(message)

    async def _connect_locked(self) -> bool:
        if self._db is not None:
            return True
        if self._closed:
            return False
        if time.monotonic() < self._db_retry_at:
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
            response = await asyncio.wait_for(db.query_raw(_SCHEMA), self.timeout)
            _statement_results(response)
        except asyncio.CancelledError:
            await _close_quietly(db)
            if _really_cancelled():
                raise
            return self._db_down("connection lost while connecting")
        except Exception as exc:
            await _close_quietly(db)
            return self._db_down(f"{type(exc).__name__}: {exc}")
        self._db = db
        self._db_error = None
        self._vector_dim = None
        self._recovered("db", f"agent memory: database {self._safe_url()} reachable again")
        if self.embedder and self.embedder.dimensions:
            await self._ensure_vector_index_locked(self.embedder.dimensions)
        return True

    def _db_down(self, reason: str) -> bool:
        self._db_error = self._scrub(reason)
        self._db_retry_at = time.monotonic() + self.retry_after
        self._warn_once(
            "db", f"agent memory disabled for now: database {self._safe_url()} unavailable ({self._db_error})"
        )
        return False

    async def _drop_db(self) -> None:
        db, self._db = self._db, None
        await _close_quietly(db)

    async def _query_all(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Run statements; return each one's result. Raises _Unavailable when the database is down."""
        if not self.enabled:
            raise _Unavailable
        if self._db is None:
            async with self._lock:
                if not await self._connect_locked():
                    raise _Unavailable
        db = self._db
        try:
            response = await asyncio.wait_for(db.query_raw(sql, params or {}), self.timeout)
        except asyncio.CancelledError:
            # the ws client cancels pending calls when its socket dies; that is an outage, not our cancellation
            if _really_cancelled():
                raise
            await self._lost(db, "connection lost")
            raise _Unavailable from None
        except Exception as exc:
            reason = self._scrub(f"{type(exc).__name__}: {exc}")
            # an embedded engine has no connection to lose: a slow or failed call is just that call's failure
            if not self.embedded and _is_connection_error(exc):
                await self._lost(db, reason)
                raise _Unavailable(reason) from exc
            self._warn_once("query", f"agent memory: a database call failed: {reason}")
            raise _Unavailable(reason) from exc
        try:
            results = _statement_results(response)
        except Exception as exc:
            reason = self._scrub(str(exc))
            self._warn_once("query", f"agent memory: a database statement failed: {reason}")
            raise _Unavailable(reason) from exc
        self._recovered("query", "agent memory: database calls succeed again")
        return results

    async def _query(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        return (await self._query_all(sql, params))[-1]

    async def _lost(self, db: Any, reason: str) -> None:
        async with self._lock:
            if self._db is db:
                await self._drop_db()
        self._db_down(reason)

    async def _ensure_vector_index(self, dim: int) -> None:
        if self._vector_dim == dim or self._db is None:
            return
        async with self._lock:
            await self._ensure_vector_index_locked(dim)

    async def _ensure_vector_index_locked(self, dim: int) -> None:
        if self._vector_dim == dim or self._db is None or self.embedder is None:
            return
        db = self._db
        try:
            info = _statement_results(await asyncio.wait_for(db.query_raw(f"INFO FOR TABLE {TABLE}"), self.timeout))[0]
            existing = (info or {}).get("indexes", {}).get(_VECTOR_INDEX)
            found = re.search(r"DIMENSION (\d+)", existing or "")
            same_dim = bool(found) and int(found.group(1)) == dim
            stale = 0
            if existing and same_dim:
                counted = await asyncio.wait_for(
                    db.query_raw(
                        f"SELECT count() FROM {TABLE} WHERE embedding IS NOT NONE AND embedding_model != $model GROUP ALL",
                        {"model": self.embedder.model},
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
                    self.embedder.model,
                    dim,
                )
                where = "embedding_model != $model" if same_dim else "embedding IS NOT NONE"
                stmts.append(f"REMOVE INDEX {_VECTOR_INDEX} ON {TABLE};")
                stmts.append(f"UPDATE {TABLE} SET embedding = NONE, embedding_model = NONE WHERE {where} RETURN NONE;")
                existing = None
            if not existing:
                stmts.append(
                    f"DEFINE INDEX IF NOT EXISTS {_VECTOR_INDEX} ON {TABLE} FIELDS embedding "
                    f"HNSW DIMENSION {dim} DIST COSINE TYPE F32 EFC 150 M 12;"
                )
            if not stmts:
                self._vector_dim = dim
                return
            response = await asyncio.wait_for(
                db.query_raw("\n".join(stmts), {"model": self.embedder.model}), self.timeout
            )
            _statement_results(response)
            self._vector_dim = dim
        except Exception as exc:
            self._warn_once("index", f"agent memory: could not set up the vector index: {self._scrub(str(exc))}")

    async def _embed(self, texts: list[str]) -> list[list[float]] | None:
        """Embeddings for texts, or None (logged once) when the endpoint fails."""
        emb = self.embedder
        if emb is None or self._http is None or not texts:
            return None
        if self._embed_error and time.monotonic() < self._embed_retry_at:
            return None
        body: dict[str, Any] = {"model": emb.model, "input": [t[:EMBED_MAX_CHARS] or " " for t in texts]}
        if emb.dimensions:
            body["dimensions"] = emb.dimensions
        headers = {"Authorization": f"Bearer {emb.api_key}"} if emb.api_key else {}
        try:
            resp = await self._http.post(emb.url, json=body, headers=headers, timeout=self.timeout)
            resp.raise_for_status()
            data = sorted(resp.json()["data"], key=lambda d: d.get("index", 0))
            vectors = [[float(x) for x in d["embedding"]] for d in data]
            if len(vectors) != len(texts) or not vectors[0]:
                raise ValueError(f"expected {len(texts)} embeddings, got {len(vectors)}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"HTTP {exc.response.status_code}" if isinstance(exc, httpx.HTTPStatusError) else str(exc)
            self._embed_error = self._scrub(f"{type(exc).__name__}: {reason}")
            self._embed_retry_at = time.monotonic() + self.retry_after
            self._warn_once("embed", f"agent memory: embeddings unavailable, using BM25 only ({self._embed_error})")
            return None
        if self._embed_error:
            self._embed_error = None
            self._recovered("embed", "agent memory: embeddings available again")
        return vectors


def format_section(hits: Iterable[MemoryHit], max_chars: int) -> str:
    """Render hits as the "## Relevant past work" prompt section, at most max_chars long."""
    header = (
        "## Relevant past work\n\n"
        "Memories of earlier tasks that look related. They may be out of date: check them against the code.\n"
    )
    out = header
    count = 0
    for h in hits:
        r = h.record
        meta = ", ".join(x for x in (r.repo, r.outcome, r.created_at.date().isoformat()) if x)
        lines = [f"\n### {r.title.strip() or '(untitled)'} ({meta})"]
        if r.summary.strip():
            lines.append(_clip(" ".join(r.summary.split()), 600))
        lines += [f"- {_clip(' '.join(x.split()), 300)}" for x in r.learnings[:8]]
        if r.files:
            lines.append("Files: " + ", ".join(r.files[:10]) + (" …" if len(r.files) > 10 else ""))
        if r.pr_url:
            lines.append(f"PR: {r.pr_url}")
        entry = "\n".join(lines) + "\n"
        room = max_chars - len(out)
        if len(entry) > room:
            if count == 0 and room > 80:
                out += _clip(entry, room - 1) + "\n"
                count += 1
            break
        out += entry
        count += 1
    return out if count else ""


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(n - 1, 0)].rstrip() + "…"


def _store_statements(n: int) -> str:
    """Statements storing records $c0..$c{n-1} under keys $k0..$k{n-1}, counting new ones' terms.

    One statement per record, never a `FOR` loop: on surrealkv, index entries written by
    a `FOR` loop over many records are partly lost when the database is reopened
    (SurrealDB 2.0 engine; see tests/test_memory.py::test_batch_add_survives_reopen).
    """
    out = []
    for i in range(n):
        terms = _TERMS_OF.format(text=f"$c{i}.text")
        out.append(f"IF !record::exists(type::thing('{TABLE}', $k{i})) {{ UPSERT {terms} SET df += 1 RETURN NONE; }};")
        out.append(f"UPSERT type::thing('{TABLE}', $k{i}) CONTENT $c{i} RETURN NONE;")
    return "\n".join(out)


def _without_none(d: dict[str, Any]) -> dict[str, Any]:
    # SurrealDB's option<T> wants the field absent (NONE), not NULL
    return {k: v for k, v in d.items() if v is not None}


def _statement_results(response: dict[str, Any]) -> list[Any]:
    if response.get("error"):
        err = response["error"]
        raise RuntimeError(err.get("message") if isinstance(err, dict) else str(err))
    results = response.get("result") or []
    out = []
    for stmt in results:
        if stmt.get("status") == "ERR":
            raise RuntimeError(str(stmt.get("result")))
        out.append(stmt.get("result"))
    return out


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
