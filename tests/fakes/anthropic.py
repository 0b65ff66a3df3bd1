"""A scripted stand-in for the Anthropic Messages API, for driving the real ``claude`` CLI in tests.

Usage::

    from tests.fakes.anthropic import ScriptedModel, Text, ToolUse, Stall, Fail, cli_env

    with ScriptedModel() as model:            # or: base_url = model.start(); ...; model.stop()
        model.add_scenario("hello", [
            [ToolUse("Write", {"file_path": "hello.txt", "content": "hi\\n"})],
            Text("Done."),
        ])
        env = cli_env(model.base_url, home=str(tmp_path / "home"))
        subprocess.run(["claude", "-p", "write it [[scenario:hello]]", ...], env=env, cwd=workdir)

A *scenario* is picked by the marker ``[[scenario:NAME]]`` anywhere in the conversation's first user
message (the ``claude -p`` prompt).  Turn ``i`` of the scenario answers the main-conversation request
that already holds ``i`` assistant messages.  A turn is one of:

* a block (``Text`` / ``ToolUse``) or a list of blocks -> one assistant message; its stop reason is
  ``tool_use`` when it holds a ``ToolUse``, else ``end_turn``;
* ``Stall(seconds)`` -> ``message_start`` then silence (connection held open) for ``seconds``
  (or until :meth:`ScriptedModel.release_stalls`), then a final ``end_turn`` text;
* ``Fail(status, body)`` -> an HTTP error (the CLI retries 5xx/429 unless ``retry=False``);
* a callable ``(RecordedRequest) -> turn`` for dynamic behaviour.

After the last scripted turn the model answers ``Text("(end of script)")``.  The CLI's side requests
(session title generation, ``count_tokens``, the ``HEAD /`` pre-connect, ...) and requests without a
marker get a harmless answer and do not count as scenario turns.  Every request is recorded in
:attr:`ScriptedModel.requests`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.fakes.http import BackgroundServer

SCENARIO_RE = re.compile(r"\[\[scenario:([A-Za-z0-9_.\-]+)\]\]")
END_OF_SCRIPT = "(end of script)"
NO_SCENARIO = "(no scenario)"
FAKE_API_KEY = "sk-ant-api03-scripted-model-test-key"

# --------------------------------------------------------------------------------------------------
# Script building blocks


@dataclass
class Text:
    """A text content block."""

    text: str


@dataclass
class ToolUse:
    """A tool_use content block. ``id`` defaults to a fresh ``toolu_<uuid hex>`` each time it is sent."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass
class Stall:
    """Send ``message_start`` and then nothing for ``seconds`` (or until ``release_stalls()``).

    Afterwards the message is finished with ``then`` as an ``end_turn`` text (if the client is still there).
    """

    seconds: float
    then: str = "(stall over)"


@dataclass
class Fail:
    """Answer with an HTTP error.

    ``body``: a dict (sent as JSON), a str (sent as-is) or None (an Anthropic-style error object).
    ``retry``: None leaves the CLI's own retry policy (it retries 408/409/429/5xx with backoff);
    False/True sends ``x-should-retry: false/true``, which the CLI obeys.
    ``times``: fail only the first ``times`` requests at this turn, then answer with ``then``
    (a turn; default ``Text("(recovered)")``).  None = fail every time.
    """

    status: int = 500
    body: dict[str, Any] | str | None = None
    retry: bool | None = None
    times: int | None = None
    then: Any = None


Block = Text | ToolUse
Turn = Block | list | Stall | Fail | Callable[["RecordedRequest"], Any]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


# --------------------------------------------------------------------------------------------------
# Request recording


def _flatten(content: Any) -> str:
    """Every text inside a message content (str or list of blocks), joined with newlines."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, dict):
        content = [content]
    for block in content:
        if isinstance(block, str):
            parts.append(block)
            continue
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(block.get("text", ""))
        elif kind == "tool_result":
            parts.append(_flatten(block.get("content")))
        elif kind == "tool_use":
            parts.append(json.dumps(block.get("input", {}), ensure_ascii=False))
        elif kind == "thinking":
            parts.append(block.get("thinking", ""))
    return "\n".join(p for p in parts if p)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    kind: str  # "main" | "side" | "count_tokens" | "other"
    scenario: str | None = None  # set for main-conversation requests carrying a marker
    turn: int | None = None  # number of assistant messages already in the conversation (main requests)
    time: float = field(default_factory=time.time)
    # the usage this server reported for the request (tokens), which the CLI prices: set once answered
    usage: dict[str, int] | None = None

    @property
    def session_id(self) -> str | None:
        return self.headers.get("x-claude-code-session-id")

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def stream(self) -> bool:
        return bool(isinstance(self.body, dict) and self.body.get("stream"))

    @property
    def system(self) -> str:
        if not isinstance(self.body, dict):
            return ""
        return _flatten(self.body.get("system"))

    @property
    def messages(self) -> list[dict[str, Any]]:
        if not isinstance(self.body, dict):
            return []
        return list(self.body.get("messages") or [])

    @property
    def tool_names(self) -> list[str]:
        if not isinstance(self.body, dict):
            return []
        return [t.get("name", "") for t in self.body.get("tools") or [] if isinstance(t, dict)]

    @property
    def first_user_text(self) -> str:
        for m in self.messages:
            if m.get("role") == "user":
                return _flatten(m.get("content"))
        return ""

    @property
    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return _flatten(m.get("content"))
        return ""

    @property
    def all_text(self) -> str:
        parts = [self.system] + [_flatten(m.get("content")) for m in self.messages]
        return "\n".join(p for p in parts if p)

    @property
    def marker(self) -> str | None:
        """The scenario marker in the first user message, whatever the kind of request."""
        m = SCENARIO_RE.search(self.first_user_text)
        return m.group(1) if m else None

    def __repr__(self) -> str:  # keep pytest failure output readable
        return (
            f"RecordedRequest({self.method} {self.path} kind={self.kind} scenario={self.scenario} "
            f"turn={self.turn} session={self.session_id})"
        )


def _assistant_count(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if m.get("role") == "assistant")


# Side requests the CLI makes with its own system prompt; they can quote the user's prompt (and so the
# marker), so they must not be taken for the main conversation.
_SIDE_SYSTEM_PATTERNS = (
    "Generate a concise, sentence-case title",
    "Your task is to create a detailed summary of the conversation",  # compaction
)


def _classify(path: str, body: Any) -> str:
    if path.rstrip("/").endswith("/count_tokens"):
        return "count_tokens"
    if not path.rstrip("/").endswith("/v1/messages") or not isinstance(body, dict):
        return "other"
    output_config = body.get("output_config")
    if isinstance(output_config, dict) and output_config.get("format"):
        return "side"  # structured-output helper calls (titles, classifiers, ...)
    system = _flatten(body.get("system"))
    if any(p in system for p in _SIDE_SYSTEM_PATTERNS):
        return "side"
    return "main"


# --------------------------------------------------------------------------------------------------
# Response rendering


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _sample_for_schema(schema: Any) -> Any:
    """A small value satisfying a JSON schema (enough for the CLI's structured-output side calls)."""
    if not isinstance(schema, dict):
        return "scripted"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return _sample_for_schema(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: _sample_for_schema(v) for k, v in props.items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "Scripted session"


def _block_json(block: Block) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    return {
        "type": "tool_use",
        "id": block.id or f"toolu_{uuid.uuid4().hex}",
        "name": block.name,
        "input": block.input,
    }


def _normalize_blocks(turn: Any) -> list[Block]:
    if isinstance(turn, (Text, ToolUse)):
        return [turn]
    if isinstance(turn, str):
        return [Text(turn)]
    if isinstance(turn, (list, tuple)):
        blocks: list[Block] = []
        for b in turn:
            if isinstance(b, str):
                b = Text(b)
            if not isinstance(b, (Text, ToolUse)):
                raise TypeError(f"a turn's blocks must be Text or ToolUse, got {b!r}")
            blocks.append(b)
        if not blocks:
            raise ValueError("a turn needs at least one block")
        return blocks
    raise TypeError(f"not a turn: {turn!r}")


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class _Reply:
    """What to answer one request with, decided under the model's lock."""

    def __init__(self, blocks: list[Block] | None = None, stall: Stall | None = None, fail: Fail | None = None):
        self.blocks = blocks
        self.stall = stall
        self.fail = fail


# --------------------------------------------------------------------------------------------------
# The model


class ScriptedModel:
    """A scripted Anthropic Messages API on 127.0.0.1 (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._scenarios: dict[str, list[Turn]] = {}
        self._matchers: list[tuple[str, str]] = []  # (text in the first user message, scenario)
        self._fail_counts: dict[tuple[str, str | None, int], int] = {}
        self._requests: list[RecordedRequest] = []
        self._changed = threading.Condition(self._lock)
        self._release_gen = 0  # bumped by release_stalls(); a stall ends when it changes
        self._stopping = threading.Event()
        self._server: BackgroundServer | None = None
        self.base_url: str | None = None
        self.app = self._build_app()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> str:
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._server = BackgroundServer(self.app)
        self.base_url = self._server.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # ends stalls so uvicorn can close the connections
        self._server.stop()
        self._server = None

    def __enter__(self) -> ScriptedModel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ---------------------------------------------------------------------------------

    def add_scenario(self, name: str, turns: Iterable[Turn], match: str | None = None) -> None:
        """Script scenario `name`; with `match`, a first user message holding that text (and no marker) picks it
        too, so a prompt can be free of markers (the demo's, which people see on its screenshots)."""
        if not SCENARIO_RE.fullmatch(f"[[scenario:{name}]]"):
            raise ValueError(f"bad scenario name {name!r} (letters, digits, _ . - only)")
        with self._lock:
            self._scenarios[name] = list(turns)
            if match:
                self._matchers.append((match, name))

    def _scenario_of(self, rec: RecordedRequest) -> str | None:
        if (marker := rec.marker) is not None:
            return marker
        first = rec.first_user_text
        with self._lock:
            return next((name for text, name in self._matchers if text in first), None)

    def release_stalls(self) -> None:
        """End the Stalls in progress now (they finish with their ``then`` text); later ones stall as usual."""
        with self._lock:
            self._release_gen += 1

    # -- inspection --------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, scenario: str) -> list[RecordedRequest]:
        """Main-conversation requests of one scenario, in arrival order."""
        with self._lock:
            return [r for r in self._requests if r.kind == "main" and r.scenario == scenario]

    def wait_for(self, predicate: Callable[[RecordedRequest], bool], timeout: float = 30.0) -> RecordedRequest:
        """Block until a recorded request matches ``predicate``; return it (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for r in self._requests:
                    if predicate(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching request within {timeout}s; got {self._requests!r}")
                self._changed.wait(left)

    # -- serving -----------------------------------------------------------------------------------

    def _record(self, rec: RecordedRequest) -> None:
        with self._changed:
            self._requests.append(rec)
            self._changed.notify_all()

    def _decide(self, rec: RecordedRequest) -> _Reply:
        body = rec.body if isinstance(rec.body, dict) else {}
        if rec.kind == "side":
            output_config = body.get("output_config") or {}
            fmt = output_config.get("format") if isinstance(output_config, dict) else None
            if isinstance(fmt, dict) and fmt.get("schema"):
                return _Reply([Text(json.dumps(_sample_for_schema(fmt["schema"])))])
            return _Reply([Text("Scripted session")])
        if rec.scenario is None:
            return _Reply([Text(NO_SCENARIO)])
        with self._lock:
            turns = self._scenarios.get(rec.scenario)
        if turns is None:
            return _Reply([Text(f"(unknown scenario {rec.scenario})")])
        assert rec.turn is not None
        if rec.turn >= len(turns):
            return _Reply([Text(END_OF_SCRIPT)])
        turn: Any = turns[rec.turn]
        for _ in range(10):  # resolve callables / recovered failures
            if callable(turn) and not isinstance(turn, (Text, ToolUse, Stall, Fail)):
                turn = turn(rec)
                continue
            if isinstance(turn, Fail) and turn.times is not None:
                key = (rec.scenario, rec.session_id, rec.turn)
                with self._lock:
                    n = self._fail_counts.get(key, 0)
                    self._fail_counts[key] = n + 1
                if n >= turn.times:
                    turn = turn.then if turn.then is not None else Text("(recovered)")
                    continue
            break
        if isinstance(turn, Stall):
            return _Reply(stall=turn)
        if isinstance(turn, Fail):
            return _Reply(fail=turn)
        return _Reply(_normalize_blocks(turn))

    def _build_app(self) -> FastAPI:
        app = FastAPI()
        model = self

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        async def handle(path: str, request: Request) -> Response:
            raw = await request.body()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            full_path = "/" + path
            kind = _classify(full_path, body) if request.method == "POST" else "other"
            rec = RecordedRequest(
                method=request.method,
                path=full_path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                kind=kind,
            )
            if kind == "main":
                rec.scenario = model._scenario_of(rec)
                rec.turn = _assistant_count(rec.messages)
            stall_gen = model._release_gen  # before recording: a release_stalls() seen after wait_for() counts
            model._record(rec)

            if kind == "count_tokens":
                return JSONResponse({"input_tokens": _estimate_tokens(rec.all_text)})
            if kind == "other":
                if request.method in ("HEAD", "GET") and full_path == "/":
                    return Response(status_code=200)
                return JSONResponse(
                    {"type": "error", "error": {"type": "not_found_error", "message": f"no route {full_path}"}},
                    status_code=404,
                )
            reply = await asyncio.to_thread(model._decide, rec)
            return model._respond(rec, reply, stall_gen)

        return app

    def _respond(self, rec: RecordedRequest, reply: _Reply, gen: int) -> Response:
        msg_id = f"msg_{uuid.uuid4().hex}"
        model_name = rec.model or "claude-scripted"
        input_tokens = _estimate_tokens(rec.all_text)

        if reply.fail is not None:
            f = reply.fail
            headers = {"request-id": f"req_{uuid.uuid4().hex}"}
            if f.retry is not None:
                headers["x-should-retry"] = "true" if f.retry else "false"
            if isinstance(f.body, str):
                return Response(f.body, status_code=f.status, headers=headers, media_type="text/plain")
            body = f.body or {
                "type": "error",
                "error": {"type": _ERROR_TYPES.get(f.status, "api_error"), "message": f"scripted failure {f.status}"},
            }
            return JSONResponse(body, status_code=f.status, headers=headers)

        if reply.stall is not None:
            blocks: list[Block] = [Text(reply.stall.then)]
        else:
            blocks = reply.blocks or [Text("")]
        content = [_block_json(b) for b in blocks]
        stop_reason = "tool_use" if any(c["type"] == "tool_use" for c in content) else "end_turn"
        output_tokens = _estimate_tokens(json.dumps(content))
        rec.usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}

        if not rec.stream:
            return self._json_reply(
                msg_id, model_name, content, stop_reason, input_tokens, output_tokens, reply.stall, gen
            )

        stall = reply.stall

        async def events():
            yield _sse(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model_name,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": input_tokens,
                            "output_tokens": 1,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0,
                        },
                    },
                },
            )
            if stall is not None:
                await self._stall(stall.seconds, gen)
            for index, block in enumerate(content):
                if block["type"] == "text":
                    yield _sse(
                        "content_block_start",
                        {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                    )
                    yield _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": block["text"]},
                        },
                    )
                else:
                    yield _sse(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": index,
                            "content_block": {
                                "type": "tool_use",
                                "id": block["id"],
                                "name": block["name"],
                                "input": {},
                            },
                        },
                    )
                    yield _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
                        },
                    )
                yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
            yield _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
            yield _sse("message_stop", {"type": "message_stop"})

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "request-id": f"req_{uuid.uuid4().hex}"},
        )

    def _json_reply(self, msg_id, model_name, content, stop_reason, input_tokens, output_tokens, stall, gen):
        data = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model_name,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        if stall is None:
            return JSONResponse(data)

        async def delayed():  # headers now, the body only once the stall is over
            await self._stall(stall.seconds, gen)
            yield json.dumps(data)

        return StreamingResponse(delayed(), media_type="application/json")

    async def _stall(self, seconds: float, gen: int) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._release_gen == gen and not self._stopping.is_set():
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


# --------------------------------------------------------------------------------------------------
# Environment for the CLI


_DROP_PREFIXES = ("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDE_", "OTEL_", "AWS_BEARER_TOKEN_BEDROCK", "VERTEX_")
_DROP_EXACT = {
    "CLAUDECODE",
    "CLAUDE_CONFIG_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "NODE_OPTIONS",
    "MCP_TIMEOUT",
}


def cli_env(base_url: str, home: str) -> dict[str, str]:
    """Environment to run the real ``claude`` CLI against a ScriptedModel at ``base_url``.

    ``home`` (created if missing) becomes HOME, and ``home/.claude`` the CLI's config dir, so the CLI
    neither reads nor writes the real ``~/.claude``.  Everything that could reach the internet is off.
    """
    os.makedirs(os.path.join(home, ".claude"), exist_ok=True)
    env = {
        k: v for k, v in os.environ.items() if k not in _DROP_EXACT and not any(k.startswith(p) for p in _DROP_PREFIXES)
    }
    env.update(
        {
            "HOME": home,
            "CLAUDE_CONFIG_DIR": os.path.join(home, ".claude"),
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": FAKE_API_KEY,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            # No telemetry, auto-update, error reports, feature-flag fetches, session titles, ...
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_BUG_COMMAND": "1",
            "DISABLE_INSTALLATION_CHECKS": "1",
            "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
        }
    )
    return env
