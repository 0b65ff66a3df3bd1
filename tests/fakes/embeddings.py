"""A local stand-in for an OpenAI-compatible embeddings API (`POST /embeddings`).

Tests cannot reach the hosted API, so this server speaks its protocol on 127.0.0.1
and computes a small deterministic embedding: words are lower-cased, crudely stemmed,
mapped through a handful of synonym groups to a concept, and each concept is hashed to
a few signed dimensions. So "speed up slow page loads" lands near "improve performance
of the dashboard rendering" although the two share no word, which is what a real
embedding model does and BM25 cannot.

Usage::

    fake = FakeEmbeddings()
    with BackgroundServer(fake.app) as url:
        cfg.memory.embeddings = EmbeddingsConfig(base_url=url + "/v1", model="fake-embed")
        ...
    fake.calls  # every request: model, inputs, Authorization header
    fake.fail = True  # answer 500 from now on
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DIMENSIONS = 256

# Each group is one concept; any of its words (after stemming) maps to it.
SYNONYMS: list[set[str]] = [
    {"speed", "fast", "faster", "slow", "slowness", "perform", "performance", "latency", "quick", "sluggish", "lag"},
    {"page", "dashboard", "screen", "view", "ui", "frontend"},
    {"load", "render", "rendering", "paint", "display"},
    {"improve", "optimize", "optimise", "boost", "tune", "up"},
    {"login", "signin", "sign", "auth", "authentication", "logon", "session"},
    {"bug", "fix", "broken", "crash", "error", "failure", "defect"},
    {"database", "db", "postgres", "sql", "sqlite", "migration", "schema"},
    {"test", "tests", "testing", "spec", "pytest", "flaky"},
    {"deploy", "deployment", "release", "ship", "rollout", "ci", "pipeline"},
    {"email", "mail", "notification", "notify", "smtp"},
]
_STOP = {"the", "a", "an", "of", "to", "in", "on", "for", "and", "is", "it", "with", "our", "we", "make", "this"}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


_CONCEPT: dict[str, str] = {}
for _i, _group in enumerate(SYNONYMS):
    for _w in _group:
        _CONCEPT[_w] = f"concept{_i}"
        _CONCEPT[_stem(_w)] = f"concept{_i}"


def _slots(token: str) -> list[tuple[int, float]]:
    digest = hashlib.sha256(token.encode()).digest()
    return [(digest[2 * k] % DIMENSIONS, 1.0 if digest[2 * k + 1] & 1 else -1.0) for k in range(2)]


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """The deterministic embedding of text: a normalised, hashed bag of concepts."""
    vec = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _STOP:
            continue
        token = _CONCEPT.get(word) or _CONCEPT.get(_stem(word)) or _stem(word)
        for slot, sign in _slots(token):
            vec[slot] += sign
    vec = vec[:dimensions]
    norm = math.sqrt(sum(x * x for x in vec))
    if norm == 0:
        vec[0], norm = 1.0, 1.0  # an empty text still gets a valid unit vector
    return [x / norm for x in vec]


class FakeEmbeddings:
    """The app and its state: `calls` made so far, `fail` to answer 500."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = False
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.post("/embeddings")(self._embeddings)
        self.app.post("/v1/embeddings")(self._embeddings)

    async def _embeddings(self, request: Request) -> JSONResponse:
        body = await request.json()
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        with self._lock:
            self.calls.append(
                {
                    "model": body.get("model"),
                    "input": inputs,
                    "dimensions": body.get("dimensions"),
                    "authorization": request.headers.get("authorization"),
                }
            )
        if self.fail:
            return JSONResponse({"error": {"message": "fake outage", "type": "server_error"}}, status_code=500)
        dims = int(body.get("dimensions") or DIMENSIONS)
        data = [{"object": "embedding", "index": i, "embedding": embed(t, dims)} for i, t in enumerate(inputs)]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": sum(len(t.split()) for t in inputs), "total_tokens": 0},
            }
        )
