"""Embeddings for hybrid memory search: an OpenAI-compatible `/embeddings` endpoint.

Embeddings are on when `memory.embeddings` is configured or `OPENAI_API_KEY` is set. A failing
endpoint is left alone for a while (searches fall back to BM25) and logged once per outage.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from factory.config import FactoryConfig
from factory.config_sections import EmbeddingsConfig
from factory.memory.outages import OutageLog

EMBED_MAX_CHARS = 8000


@dataclass
class EmbeddingsEndpoint:
    """Where embeddings come from: the URL, model, optional dimensions and API key."""

    url: str
    model: str
    dimensions: int | None
    api_key: str | None


def embeddings_settings(cfg: FactoryConfig) -> EmbeddingsEndpoint | None:
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
    return EmbeddingsEndpoint(
        url=conf.base_url.rstrip("/") + "/embeddings", model=conf.model, dimensions=conf.dimensions, api_key=key
    )


class Embedder:
    """Calls the embeddings endpoint; after a failure it is left alone for `retry_after` seconds."""

    def __init__(
        self,
        endpoint: EmbeddingsEndpoint,
        outages: OutageLog,
        scrub: Callable[[str], str],
        timeout: float,
        retry_after: float,
    ):
        self.endpoint = endpoint
        self.outages = outages
        self.scrub = scrub
        self.timeout = timeout
        self.retry_after = retry_after
        self.error: str | None = None
        self._retry_at = 0.0

    async def embed(self, http: httpx.AsyncClient | None, texts: list[str]) -> list[list[float]] | None:
        """Embeddings for texts, or None (logged once per outage) when the endpoint fails."""
        emb = self.endpoint
        if http is None or not texts:
            return None
        if self.error and time.monotonic() < self._retry_at:
            return None
        body: dict[str, Any] = {"model": emb.model, "input": [t[:EMBED_MAX_CHARS] or " " for t in texts]}
        if emb.dimensions:
            body["dimensions"] = emb.dimensions
        headers = {"Authorization": f"Bearer {emb.api_key}"} if emb.api_key else {}
        try:
            resp = await http.post(emb.url, json=body, headers=headers, timeout=self.timeout)
            resp.raise_for_status()
            data = sorted(resp.json()["data"], key=lambda d: d.get("index", 0))
            vectors = [[float(x) for x in d["embedding"]] for d in data]
            if len(vectors) != len(texts) or not vectors[0]:
                raise ValueError(f"expected {len(texts)} embeddings, got {len(vectors)}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"HTTP {exc.response.status_code}" if isinstance(exc, httpx.HTTPStatusError) else str(exc)
            self.error = self.scrub(f"{type(exc).__name__}: {reason}")
            self._retry_at = time.monotonic() + self.retry_after
            self.outages.failed("embed", f"agent memory: embeddings unavailable, using BM25 only ({self.error})")
            return None
        if self.error:
            self.error = None
            self.outages.recovered("embed", "agent memory: embeddings available again")
        return vectors
