"""Agent memory: what finished tasks learned, kept in SurrealDB and recalled before new ones.

A memory is one record in the `memory` table: the task's title, outcome, summary,
learnings and files. `search` ranks memories with a BM25 full-text index over
title + summary + learnings; when embeddings are configured (`memory.embeddings`
or `OPENAI_API_KEY`) it also runs an HNSW k-nearest-neighbour search on the
embedding and fuses both rankings by reciprocal rank fusion (`factory.memory.search`).

SurrealDB runs embedded (`surrealkv://<data_dir>/memory`) unless `SURREALDB_URL`
names a server. Memory is an aid, never a dependency: when the database or the
embeddings API is unreachable, nothing here raises, one warning is logged per outage,
searches return what still works (BM25 alone, or nothing) and `health()` says
`degraded`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import httpx

from factory.config import FactoryConfig
from factory.domain.redact import scrub
from factory.memory.database import (
    FIELDS,
    TABLE,
    TERMS_OF,
    MemoryDatabase,
    record_id,
    record_key,
    row_id,
    store_statements,
    to_record,
    without_none,
)
from factory.memory.embeddings import Embedder, embeddings_settings
from factory.memory.outages import OutageLog, Unavailable
from factory.memory.recall import format_section
from factory.memory.records import MemoryHit, MemoryRecord
from factory.memory.search import BM25_BUDGET, MIN_SIMILARITY, content_words, fuse, query_terms, rarest, sum_term_scores

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 15.0
"""How long a failed database or embeddings endpoint is left alone before it is tried again."""


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
        self.timeout = timeout
        self.min_similarity = MIN_SIMILARITY
        self.bm25_budget = BM25_BUDGET
        endpoint = embeddings_settings(cfg)
        self._secrets = list(cfg.secret_values())
        if endpoint and endpoint.api_key and len(endpoint.api_key) >= 6:
            self._secrets.append(endpoint.api_key)
        outages = OutageLog(log)
        self.embedder = Embedder(endpoint, outages, self._scrub, timeout, retry_after) if endpoint else None
        index = (endpoint.dimensions, endpoint.model) if endpoint and endpoint.dimensions else None
        url = url or cfg.surrealdb_url or f"surrealkv://{cfg.data_path / 'memory'}"
        self.db = MemoryDatabase(cfg, url, outages, self._scrub, timeout, retry_after, index)
        self._http = http
        self._own_http = http is None

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
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)))
        return await self.db.connect()

    async def close(self) -> None:
        """Close the database connection and the embeddings client."""
        await self.db.close()
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def available(self) -> bool:
        """Whether the database is connected now (False when disabled or down)."""
        return self.enabled and self.db.connected

    async def health(self) -> dict[str, str]:
        """`{"status": "ok" | "degraded" | "disabled", "detail": ...}` for the health endpoint."""
        if not self.enabled:
            return {"status": "disabled", "detail": "memory.enabled is false"}
        try:
            await self._query("RETURN 1")
        except Unavailable as exc:
            reason = self.db.error or str(exc) or "no connection"
            return {"status": "degraded", "detail": f"database unavailable: {reason}"}
        if self.embedder is None:
            return {"status": "ok", "detail": f"{self.db.safe_url()}; search: bm25"}
        if self.embedder.error:
            return {"status": "degraded", "detail": f"embeddings unavailable, bm25 only: {self.embedder.error}"}
        return {"status": "ok", "detail": f"{self.db.safe_url()}; search: hybrid (bm25 + vector)"}

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
            vectors = await self.embed([r.text() for r in chunk])
            if vectors is not None:
                await self._ensure_vector_index(len(vectors[0]))
            params: dict[str, Any] = {}
            keys = []
            for i, rec in enumerate(chunk):
                # indexed without stop words and punctuation: the 2.x full-text index pays for every
                # term on insert, most for common ones (a third faster writes, measured)
                content = {**asdict(rec), "text": " ".join(content_words(rec.text()))}
                if vectors is not None and self.embedder and self.db.vector_dim == len(vectors[i]):
                    content["embedding"] = vectors[i]
                    content["embedding_model"] = self.embedder.endpoint.model
                keys.append(record_key(rec))
                params[f"k{i}"], params[f"c{i}"] = keys[-1], without_none(content)
            try:
                await self._query_all(store_statements(len(chunk)), params)
            except Unavailable:
                return ids
            ids += keys
        return ids

    async def delete(self, memory_id: str) -> bool:
        """Delete a memory; True if it existed."""
        try:
            rows = await self._query(
                "LET $old = (DELETE $id RETURN BEFORE);\n"
                f"IF $old {{ UPSERT {TERMS_OF.format(text='$old[0].text')} SET df -= 1 RETURN NONE; }};\n"
                "RETURN $old;",
                {"id": record_id(memory_id)},
            )
        except Unavailable:
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
        except Unavailable:
            return 0
        done = 0
        for start in range(0, len(rows), 64):
            chunk = rows[start : start + 64]
            vectors = await self.embed(["\n".join([r["title"], r["summary"], *r["learnings"]]) for r in chunk])
            if vectors is None:
                break
            await self._ensure_vector_index(len(vectors[0]))
            params: dict[str, Any] = {"model": self.embedder.endpoint.model}
            for i, (row, vector) in enumerate(zip(chunk, vectors, strict=True)):
                params[f"id{i}"], params[f"v{i}"] = row["id"], vector
            statements = (
                f"UPDATE $id{i} SET embedding = $v{i}, embedding_model = $model RETURN NONE;" for i in range(len(chunk))
            )
            try:
                await self._query_all("\n".join(statements), params)
            except Unavailable:
                break
            done += len(chunk)
        return done

    # ------------------------------------------------------------------ reads

    async def get(self, memory_id: str) -> MemoryRecord | None:
        """One memory by id, or None if unknown (or memory is unavailable)."""
        try:
            rows = await self._query(f"SELECT {FIELDS} FROM $id", {"id": record_id(memory_id)})
        except Unavailable:
            return None
        return to_record(rows[0]) if rows else None

    async def recent(self, repo: str | None = None, limit: int = 20) -> list[MemoryHit]:
        """The newest memories, optionally of one repo (score 0)."""
        where = "WHERE repo = $repo" if repo else ""
        try:
            rows = await self._query(
                f"SELECT {FIELDS} FROM {TABLE} {where} ORDER BY created_at DESC LIMIT $limit",
                {"repo": repo, "limit": limit},
            )
        except Unavailable:
            return []
        return [MemoryHit(id=row_id(r), record=to_record(r)) for r in rows]

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
        depth = max(limit * 4, 20)
        if self.embedder is None:
            lexical, semantic = await self._bm25(query_terms(query), depth), []
        else:
            # embedding the query, then the k-NN search, run while the BM25 query does
            semantic_search = self._knn(vector, depth) if vector else self._semantic(query, depth)
            lexical, semantic = await asyncio.gather(self._bm25(query_terms(query), depth), semantic_search)
        ranked = fuse(lexical, semantic, repo, limit, self.min_similarity)
        if not ranked:
            return []
        try:
            rows = await self._query(f"SELECT {FIELDS} FROM $ids", {"ids": [record_id(h.id) for h in ranked]})
        except Unavailable:
            return []
        records = {row_id(r): to_record(r) for r in rows or []}
        hits = []
        for h in ranked:
            if h.id in records:  # a memory deleted in between is skipped
                h.record = records[h.id]
                hits.append(h)
        return hits

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
        return format_section(hits, self.cfg.memory.max_prompt_chars) if hits else ""

    async def embed(self, texts: list[str]) -> list[list[float]] | None:
        """The embeddings of texts; None when embeddings are off or the endpoint fails (logged once)."""
        return await self.embedder.embed(self._http, texts) if self.embedder else None

    # ------------------------------------------------------------------ internals

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
            terms = rarest(words, dfs or [], self.bm25_budget)
            if not terms:
                return []
            # one statement per term, summed here: BM25 is a sum over terms, and one statement
            # ORing the terms scores every term for every match, which costs terms x matches
            sql = "\n".join(
                f"SELECT id, repo, search::score(1) AS s FROM {TABLE} WHERE text @1@ $t{i};" for i in range(len(terms))
            )
            results = await self._query_all(sql, {f"t{i}": t for i, t in enumerate(terms)})
        except Unavailable:
            return []
        return sum_term_scores([[{**r, "id": row_id(r)} for r in res or []] for res in results], depth)

    async def _semantic(self, query: str, depth: int) -> list[dict[str, Any]]:
        vectors = await self.embed([query])
        return await self._knn(vectors[0], depth) if vectors else []

    async def _knn(self, vector: list[float], depth: int) -> list[dict[str, Any]]:
        """Ids, repos and cosine distances of the `depth` nearest memories (HNSW)."""
        if self.db.vector_dim is None:
            await self._ensure_vector_index(len(vector))
        if len(vector) != self.db.vector_dim:
            return []
        ef = max(depth, 40)
        sql = f"SELECT id, repo, vector::distance::knn() AS dist FROM {TABLE} WHERE embedding <|{depth},{ef}|> $vec"
        try:
            rows = await self._query(sql, {"vec": vector}) or []
        except Unavailable:
            return []
        return [{**r, "id": row_id(r)} for r in rows]

    async def _ensure_vector_index(self, dim: int) -> None:
        if self.embedder is not None:
            await self.db.ensure_vector_index(dim, self.embedder.endpoint.model)

    async def _query_all(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        if not self.enabled:
            raise Unavailable
        return await self.db.query_all(sql, params)

    async def _query(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        return (await self._query_all(sql, params))[-1]

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
