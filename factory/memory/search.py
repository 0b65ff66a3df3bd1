"""Ranking memories: query terms, the BM25 term budget and reciprocal rank fusion.

Pure functions over rows the database returned; `MemoryStore.search` runs the queries.
"""

from __future__ import annotations

import re
from typing import Any

from factory.memory.records import MemoryHit, MemoryRecord

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

# Words that carry no topic; BM25 would weigh them low anyway, but every term is one more index lookup.
_STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be been before being below between both but
    by can could did do does doing done down during each few for from further had has have having he her here
    him his how i if in into is it its itself just let me more most my no nor not now of off on once only or
    other our out over own please same she should so some such than that the their them then there these they
    this those through to too under until up us very was we were what when where which while who whom why will
    with would you your""".split()
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


def rarest(words: list[str], dfs: list[Any], budget: int) -> list[str]:
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


def sum_term_scores(results: list[Any], depth: int) -> list[dict[str, Any]]:
    """One row per memory from per-term BM25 results: its id, repo and summed score, best `depth` first."""
    rows: dict[str, dict[str, Any]] = {}
    for result in results:
        for row in result or []:
            entry = rows.setdefault(row["id"], {"id": row["id"], "repo": row.get("repo"), "bm25": 0.0})
            # a term in over half the memories has a negative idf; it should add nothing, not subtract
            entry["bm25"] += max(float(row.get("s") or 0.0), 0.0)
    return sorted(rows.values(), key=lambda r: r["bm25"], reverse=True)[:depth]


def fuse(
    lexical: list[dict[str, Any]],
    semantic: list[dict[str, Any]],
    repo: str | None,
    limit: int,
    min_similarity: float = MIN_SIMILARITY,
) -> list[MemoryHit]:
    """Fuse the BM25 and k-NN rankings by reciprocal rank fusion; the best `limit` hits, records unfilled.

    Args:
        lexical: rows `{id, repo, bm25}`, best first.
        semantic: rows `{id, repo, dist}` (cosine distance), in any order.
        repo: the task's repo; its memories' fused scores are boosted by REPO_BOOST.
        limit: how many hits at most.
        min_similarity: neighbours less similar than this are left out.
    """
    hits: dict[str, MemoryHit] = {}

    def hit_for(row: dict[str, Any]) -> MemoryHit:
        rid = row["id"]
        if rid not in hits:  # the record is fetched for the winners only
            hits[rid] = MemoryHit(id=rid, record=MemoryRecord(repo=row.get("repo") or "", title=""))
        return hits[rid]

    for rank, row in enumerate(lexical, 1):
        h = hit_for(row)
        h.bm25 = float(row.get("bm25") or 0.0)
        h.score += 1.0 / (RRF_K + rank)
    near = sorted(semantic, key=lambda r: r.get("dist", 2.0))
    near = [r for r in near if 1.0 - float(r.get("dist", 2.0)) >= min_similarity]
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
