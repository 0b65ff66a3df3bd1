"""The model gateway: the only holder of the model API key, and the meter of what each run spends.

An agent's `ANTHROPIC_BASE_URL` is `http://model.factory.internal`, a virtual host of its own run's
proxy channel (with no network namespace, a loopback port opened for the run). Its
`ANTHROPIC_API_KEY` is a stand-in: random, made for this run, accepted only on this run's
channel and only while the run lasts. The gateway checks it, drops the agent's auth headers,
adds the real key (`anthropic_api_key`/`ANTHROPIC_API_KEY`, or `ANTHROPIC_AUTH_TOKEN`) and
forwards to the real `ANTHROPIC_BASE_URL` of Factory's own environment, streaming the answer back
as it comes.

What it trusts: the model server's own `usage` (SSE `message_start`/`message_delta`, or a JSON
body's `usage`), priced by `sandbox.model_prices`. Nothing the agent or the CLI reports is a
figure here: the ledger, the task's cost and the run's budget all read this meter. The agent may
use only the Messages API paths below (no batches or files, which would be billed unmetered).
Once the metered cost reaches the run's budget, further requests are refused.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from factory.config import FactoryConfig
from factory.config_sections import ModelPrice
from factory.sandbox.gateway_openai import (
    OPENAI_PATHS,
    OpenAIRoute,
    usage_of_body,
    usage_of_event,
    with_usage_requested,
)
from factory.sandbox.upstream import client_options
from factory.sandbox.wire import Header, absolute_target, answer, body_length, parse_headers

log = logging.getLogger("factory.sandbox.gateway")

MODEL_HOST = "model.factory.internal"
MODEL_URL = f"http://{MODEL_HOST}"
ANTHROPIC_DEFAULT = "https://api.anthropic.com"
MAX_BODY = 32 * 1024 * 1024  # the Messages API's own request limit
MAX_CONTAINERS = 1_000_000  # `{` and `[` in a body (in strings too); 32 MiB of `{},` cost the loop 2 s to parse
MAX_OUTPUT_TOKENS = 1_000_000  # above any model's output limit: the most a request is reserved or charged at
# exactly these paths: no dot segments or escapes a URL library could turn into another endpoint
_PATHS = re.compile(r"/v1/messages(/count_tokens)?|/v1/models(/[A-Za-z0-9][A-Za-z0-9._:@-]*)?")
_QUERY = re.compile(r"[A-Za-z0-9_.=&-]*")
_DROP = {
    "host", "content-length", "connection", "keep-alive", "te", "upgrade", "transfer-encoding", "authorization",
    "x-api-key", "accept-encoding", "cookie", "proxy-authorization", "proxy-connection",
}  # fmt: skip
_BACK = ("content-type", "request-id", "retry-after", "x-should-retry", "cache-control")


@dataclass
class Tokens:
    """One model's metered tokens and their cost in USD."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost: float = 0.0


def price_of(prices: Mapping[str, ModelPrice], model: str) -> ModelPrice:
    """The entry with the longest prefix of `model`; "" is the default for models not listed."""
    best = max((p for p in prices if model.startswith(p)), key=len, default=None)
    if best is None:
        return ModelPrice(input_per_mtok=0, output_per_mtok=0)
    return prices[best]


@dataclass(eq=False)
class RunMeter:
    """What one run spent, as the model server reported it."""

    budget: float | None = None
    models: dict[str, Tokens] = field(default_factory=dict)
    requests: int = 0
    refused_for_budget: int = 0
    in_flight: float = 0.0  # what the requests under way could cost (max_tokens at the output price)

    @property
    def cost(self) -> float:
        return sum(t.cost for t in self.models.values())

    def add(self, model: str, usage: Mapping[str, Any], price: ModelPrice) -> None:
        t = self.models.setdefault(model, Tokens())
        got = Tokens(
            _int(usage.get("input_tokens")), _int(usage.get("output_tokens")),
            _int(usage.get("cache_read_input_tokens")), _int(usage.get("cache_creation_input_tokens")),
        )  # fmt: skip
        t.input += got.input
        t.output += got.output
        t.cache_read += got.cache_read
        t.cache_write += got.cache_write
        cached = price.cached_input_per_mtok if price.cached_input_per_mtok is not None else price.input_per_mtok
        write = price.cache_write_per_mtok if price.cache_write_per_mtok is not None else price.input_per_mtok
        t.cost += (
            got.input * price.input_per_mtok + got.output * price.output_per_mtok
            + got.cache_read * cached + got.cache_write * write
        ) / 1e6  # fmt: skip


class _Twice(ValueError):
    """A JSON object with a key given twice."""


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(out := dict(pairs)) != len(pairs):
        raise _Twice
    return out


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


class ModelGateway:
    """The worker's gateway: the real endpoint and key, and the price table; `open_run` per agent run."""

    def __init__(
        self, upstream: str, api_key: str | None, auth_token: str | None, prices: Mapping[str, ModelPrice],
        idle_seconds: float = 300,
    ) -> None:  # fmt: skip
        self.upstream = upstream.rstrip("/")
        self.api_key = api_key
        self.auth_token = auth_token
        self.prices = dict(prices)
        self.idle_seconds = idle_seconds

    @classmethod
    def from_config(cls, cfg: FactoryConfig, env: Mapping[str, str] | None = None) -> ModelGateway:
        env = os.environ if env is None else env
        key = cfg.anthropic_api_key.get_secret_value() if cfg.anthropic_api_key else env.get("ANTHROPIC_API_KEY")
        return cls(
            env.get("ANTHROPIC_BASE_URL") or ANTHROPIC_DEFAULT, key or None, env.get("ANTHROPIC_AUTH_TOKEN") or None,
            cfg.sandbox.model_prices, cfg.sandbox.proxy_idle_seconds,
        )  # fmt: skip

    @property
    def has_credential(self) -> bool:
        return bool(self.api_key or self.auth_token)

    def open_run(self, budget: float | None, route: OpenAIRoute | None = None) -> GatewayRun:
        """A run's stand-in key and meter, `close()`d when the run ends (the stand-in dies with it); `route`: the
        run's OpenAI upstream (Codex, OpenCode), without which a run has only the Anthropic route."""
        return GatewayRun(self, RunMeter(budget=budget), route)


class GatewayRun:
    """One agent run's side of the gateway: its stand-in credential, its meter and its upstream client."""

    def __init__(self, gateway: ModelGateway, meter: RunMeter, route: OpenAIRoute | None = None) -> None:
        self.gateway = gateway
        self.meter = meter
        self.route = route
        self.stand_in = "sk-ant-factory-" + secrets.token_urlsafe(32)
        self.base_url = MODEL_URL
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(gateway.idle_seconds, connect=20), **client_options())
        self.server: asyncio.AbstractServer | None = None
        self.conns: set[asyncio.Task[None]] = set()  # loopback connections, ended (and metered) at close
        self.closed = False

    async def listen(self) -> str:
        """Serve on a loopback port instead of a proxy channel (runs without their own network)."""
        self.server = await asyncio.start_server(self._serve_loopback, "127.0.0.1", 0, limit=64 * 1024)
        self.base_url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self.base_url

    async def close(self) -> None:
        self.closed = True  # the stand-in is worthless from now on
        if self.server is not None:
            self.server.close()
        for t in list(self.conns):  # as a proxy channel does: what they streamed is metered before the ledger
            t.cancel()
        await asyncio.gather(*self.conns, return_exceptions=True)
        await self.client.aclose()

    async def _serve_loopback(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.conns.add(task)
            task.add_done_callback(self.conns.discard)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ")
            headers = parse_headers(lines[1:])
            path = target if target.startswith("/") else absolute_target(target)[2]
            await self.serve(method, path, headers, body_length(headers), reader, writer)
        except (ValueError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await answer(writer, 400, "bad request")
        except (ConnectionError, asyncio.CancelledError):  # cancelled only by close()
            pass
        finally:
            writer.close()

    def _authorised(self, headers: list[Header]) -> bool:
        if self.closed:
            return False
        given = [v for n, v in headers if n.lower() == "x-api-key"]
        given += [v[7:].strip() for n, v in headers if n.lower() == "authorization" and v[:7].lower() == "bearer "]
        return bool(given) and all(hmac.compare_digest(v.encode(), self.stand_in.encode()) for v in given)

    async def serve(
        self, method: str, path: str, headers: list[Header], length: int,
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
    ) -> None:  # fmt: skip
        """Answer one request from the agent (the proxy's virtual host for MODEL_HOST:80)."""
        if not self._authorised(headers):
            return await _error(writer, 401, "authentication_error", "Factory gateway: not this run's credential")
        bare, _, query = path.partition("?")
        if method == "HEAD" and bare == "/":
            return await _raw(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        openai = self.route is not None and method == "POST" and bool(OPENAI_PATHS.fullmatch(bare))
        if not (openai or _PATHS.fullmatch(bare)) or not _QUERY.fullmatch(query) or method not in ("GET", "POST"):
            return await _error(writer, 404, "not_found_error", f"Factory gateway: {bare} is not served")
        if length > MAX_BODY:
            return await _error(writer, 413, "request_too_large", "Factory gateway: request too large")
        body = await asyncio.wait_for(reader.readexactly(length), self.gateway.idle_seconds) if length else b""
        m = self.meter
        # what is metered plus what the requests under way could still cost: a request in flight alone
        # is let through as before, a second one only if the first cannot spend what is left
        if m.budget is not None and m.cost + m.in_flight >= m.budget and (openai or bare == "/v1/messages"):
            m.refused_for_budget += 1
            text = f"Factory gateway: budget ${m.budget:.4f} spent (${m.cost:.4f}, ${m.in_flight:.4f} under way)"
            return await _error(writer, 402, "billing_error", text)
        if body.count(b"{") + body.count(b"[") > MAX_CONTAINERS:  # counted in C, before any parsing
            return await _error(writer, 400, "invalid_request_error", "Factory gateway: too many JSON objects")
        try:  # a key given twice could be read one way here (the last) and another by the model API
            sent = json.loads(body, object_pairs_hook=_once) if body else {}
            model, ceiling = sent.get("model"), sent.get("max_tokens", sent.get("max_output_tokens"))
        except _Twice:
            return await _error(writer, 400, "invalid_request_error", "Factory gateway: a key given twice")
        except (ValueError, AttributeError):
            model, ceiling = None, None
        # an absurd max_tokens (10**308) made the reservation inf, then nan, and every budget check false
        ceiling = min(_int(ceiling), MAX_OUTPUT_TOKENS)
        if openai:
            body = with_usage_requested(bare, body)
        # reserved in the same step as the check above (no await between): the next request sees it
        route = self.route if openai else None
        price = route.price if route is not None else price_of(self.gateway.prices, str(model or ""))
        reserved = ceiling * price.output_per_mtok / 1e6
        m.in_flight += reserved
        try:
            await self._forward(method, path, headers, body, str(model or ""), writer, openai, ceiling)
        finally:
            m.in_flight -= reserved

    async def _forward(
        self, method: str, path: str, headers: list[Header], body: bytes, model: str, writer: asyncio.StreamWriter,
        openai: bool = False, ceiling: int = 0,
    ) -> None:  # fmt: skip
        g = self.gateway
        out = {n: v for n, v in headers if n.lower() not in _DROP and not n.lower().startswith("proxy-")}
        out["accept-encoding"] = "identity"  # the meter reads the stream as it passes
        if openai and self.route is not None:  # the backend's upstream and Factory's OpenAI key
            url = self.route.url(path)
            if self.route.api_key:
                out["authorization"] = f"Bearer {self.route.api_key}"
        elif g.api_key:
            url = g.upstream + path
            out["x-api-key"] = g.api_key
        else:
            url = g.upstream + path
            out["authorization"] = f"Bearer {g.auth_token}"
        request = self.client.build_request(method, url, headers=out, content=body)
        try:
            resp = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:  # the key is never in these messages: it is a header we set
            return await _error(
                writer, 502, "api_error", f"Factory gateway: model API unreachable ({type(exc).__name__})"
            )
        self.meter.requests += 1
        usage = _UsageReader(self, model, resp.headers.get("content-type", ""), openai)
        client_gone = False
        try:
            back = [
                f"{n}: {v}" for n, v in resp.headers.items() if n.lower() in _BACK or n.lower().startswith("anthropic-")
            ]
            status = f"HTTP/1.1 {resp.status_code} {resp.reason_phrase}"
            await _raw(writer, "\r\n".join([status, *back, "Connection: close", "", ""]).encode("latin-1"))
            async for chunk in resp.aiter_bytes():
                usage.feed(chunk)
                if not client_gone:
                    try:
                        await _raw(writer, chunk)
                    except (ConnectionError, TimeoutError):
                        # the model keeps generating (and billing) after the agent hangs up: keep metering
                        client_gone = True
        except httpx.HTTPError:
            pass
        except asyncio.CancelledError:
            # the run ended with the stream under way (the agent can time that): the model bills what it
            # generated until the cut, which no usage event reports, so the request counts at its ceiling
            usage.cut(ceiling)
            raise
        finally:
            usage.done()
            await resp.aclose()


class _UsageReader:
    """Reads usage off a response as it streams past (SSE events or one JSON body)."""

    def __init__(self, run: GatewayRun, model: str, content_type: str, openai: bool = False) -> None:
        self.run = run
        self.openai = openai
        self.model = model
        self.sse = content_type.startswith("text/event-stream")
        self.buf = b""
        self.current: dict[str, Any] = {}  # the usage of the message being streamed

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        if not self.sse:
            if len(self.buf) > MAX_BODY:
                self.buf = b""  # not a Messages answer; nothing to meter
            return
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                self._event(line[5:])

    def _event(self, data: bytes) -> None:
        try:
            ev = json.loads(data)
        except ValueError:
            return
        if not isinstance(ev, dict):
            return
        if self.openai:
            return self._openai(usage_of_event(ev))
        if ev.get("type") == "message_start" and isinstance(ev.get("message"), dict):
            self._commit()
            msg = ev["message"]
            self.model = str(msg.get("model") or self.model)
            self.current = dict(msg.get("usage") or {}) if isinstance(msg.get("usage"), dict) else {}
        elif ev.get("type") == "message_delta" and isinstance(ev.get("usage"), dict):
            self.current.update({k: v for k, v in ev["usage"].items() if _int(v)})  # cumulative counts

    def _openai(self, found: tuple[str, dict[str, int]] | None) -> None:
        route = self.run.route
        if found is not None and route is not None:  # priced by the backend's table, whatever the model
            self.run.meter.add(found[0] or self.model, found[1], route.price)

    def cut(self, ceiling: int) -> None:
        """The stream was cut before its end: its output counts as the request's max_tokens."""
        if not self.openai:
            self.current["output_tokens"] = max(_int(self.current.get("output_tokens")), ceiling)

    def _commit(self) -> None:
        if self.current:
            self.run.meter.add(self.model, self.current, price_of(self.run.gateway.prices, self.model))
        self.current = {}

    def done(self) -> None:
        if self.sse:
            if self.buf.startswith(b"data:"):
                self._event(self.buf[5:])
            return self._commit()
        try:
            body = json.loads(self.buf) if self.buf else None
        except ValueError:
            return
        if self.openai:
            return self._openai(usage_of_body(body))
        if isinstance(body, dict) and isinstance(body.get("usage"), dict) and body.get("type") == "message":
            self.model = str(body.get("model") or self.model)
            self.current = body["usage"]
            self._commit()


async def _raw(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await asyncio.wait_for(writer.drain(), 60)


async def _error(writer: asyncio.StreamWriter, status: int, kind: str, message: str) -> None:
    """An Anthropic-shaped error the CLI shows as it is and does not retry."""
    body = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {kind}\r\nContent-Type: application/json\r\nx-should-retry: false\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    await _raw(writer, head.encode() + body)


__all__ = ["MODEL_HOST", "MODEL_URL", "GatewayRun", "ModelGateway", "RunMeter", "Tokens", "price_of"]
