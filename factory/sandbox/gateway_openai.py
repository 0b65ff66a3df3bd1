"""The model gateway's OpenAI routes: the Responses API (Codex) and chat completions (OpenCode).

An agent on an OpenAI-speaking backend is given `<gateway>/v1` as its base URL and the run's
stand-in as its key; the gateway checks the stand-in exactly as on the Anthropic route, drops the
agent's auth headers, adds Factory's own `OPENAI_API_KEY` and forwards to the backend's configured
`base_url` (`backends.<name>.base_url`, by default OpenAI's). Only `POST /v1/responses` and
`POST /v1/chat/completions` are served (a WebSocket upgrade or any other path is a 404, which makes
Codex fall back to SSE at once).

What it trusts: the model server's own usage — `response.completed`'s `response.usage` on the
Responses stream, a chat chunk's `usage` (Factory asks for it: `stream_options.include_usage` is
set on every streamed chat request) or a JSON body's `usage` — priced by the backend's `prices`.
Cached input tokens are reported inside the input count by OpenAI: they are split out here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from factory.config_sections import ModelPrice

OPENAI_DEFAULT = "https://api.openai.com/v1"
OPENAI_PATHS = re.compile(r"/v1/responses|/v1/chat/completions")


@dataclass
class OpenAIRoute:
    """Where one run's OpenAI-API requests go and what their tokens cost."""

    backend: str
    upstream: str  # e.g. https://api.openai.com/v1 (the agent's /v1/<rest> becomes <upstream>/<rest>)
    api_key: str | None
    price: ModelPrice

    def url(self, path: str) -> str:
        return self.upstream.rstrip("/") + path[len("/v1") :]


def with_usage_requested(path: str, body: bytes) -> bytes:
    """A streamed chat request with `stream_options.include_usage` set, so the meter sees the usage."""
    if path != "/v1/chat/completions" or not body:
        return body
    try:
        req = json.loads(body)
    except ValueError:
        return body
    if not isinstance(req, dict) or not req.get("stream"):
        return body
    opts = req.get("stream_options") if isinstance(req.get("stream_options"), dict) else {}
    req["stream_options"] = {**opts, "include_usage": True}
    return json.dumps(req).encode()


def _n(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def _as_anthropic(usage: dict[str, Any]) -> dict[str, int]:
    """OpenAI usage in the meter's (Anthropic's) names: input without the cached part, cache reads apart."""
    details = usage.get("input_tokens_details") or usage.get("prompt_tokens_details") or {}
    cached = _n(details.get("cached_tokens")) if isinstance(details, dict) else 0
    given = _n(usage.get("input_tokens")) or _n(usage.get("prompt_tokens"))
    output = _n(usage.get("output_tokens")) or _n(usage.get("completion_tokens"))
    return {"input_tokens": max(0, given - cached), "output_tokens": output, "cache_read_input_tokens": cached}


def usage_of_event(ev: dict[str, Any]) -> tuple[str, dict[str, int]] | None:
    """(model, usage) from one SSE event of either OpenAI API, or None when it carries none."""
    if ev.get("type") == "response.completed" and isinstance(ev.get("response"), dict):
        resp = ev["response"]
        if isinstance(resp.get("usage"), dict):
            return str(resp.get("model") or ""), _as_anthropic(resp["usage"])
    elif ev.get("object") == "chat.completion.chunk" and isinstance(ev.get("usage"), dict):
        return str(ev.get("model") or ""), _as_anthropic(ev["usage"])
    return None


def usage_of_body(body: Any) -> tuple[str, dict[str, int]] | None:
    """(model, usage) from a whole JSON answer (`response` or `chat.completion`), or None."""
    if isinstance(body, dict) and body.get("object") in ("response", "chat.completion"):
        if isinstance(body.get("usage"), dict):
            return str(body.get("model") or ""), _as_anthropic(body["usage"])
    return None
