"""A scripted stand-in for OpenAI chat completions (`POST /v1/chat/completions`, streamed), for `opencode`.

Usage::

    model = ScriptedChat(); model.start()
    model.add_scenario("hello", [Call("write", {"filePath": "hello.txt", "content": "hi\\n"}), Reply("Done.")])

A scenario is picked by ``[[scenario:NAME]]`` in any user message. Turn ``i`` answers the request whose
``messages`` already hold ``i`` assistant messages. ``Call(tool, args)`` streams one ``tool_calls`` delta
(finish reason ``tool_calls``); ``Reply(text)`` streams text (``stop``). A request without ``tools``
(OpenCode's session-title request) gets a short title and is not a turn. Every stream ends with a chunk
carrying ``usage`` when ``stream_options.include_usage`` is set (the gateway sets it), then ``[DONE]``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.fakes.http import BackgroundServer

SCENARIO_RE = re.compile(r"\[\[scenario:([A-Za-z0-9_.\-]+)\]\]")


@dataclass
class Call:
    tool: str
    args: dict[str, Any]


@dataclass
class Reply:
    text: str


@dataclass
class Recorded:
    headers: dict[str, str]
    body: dict[str, Any]
    scenario: str | None = None
    turn: int | None = None
    title: bool = False
    usage: dict[str, int] = field(default_factory=dict)
    time: float = field(default_factory=time.time)  # when it arrived (for the README's figures)

    def user_texts(self) -> list[str]:
        out = []
        for m in self.body.get("messages") or []:
            c = m.get("content") if isinstance(m, dict) else None
            if isinstance(c, str):
                out.append(c)
            elif isinstance(c, list):
                out += [p.get("text", "") for p in c if isinstance(p, dict)]
        return out


class ScriptedChat:
    def __init__(self, prompt_tokens: int = 800, completion_tokens: int = 100, cached_tokens: int = 0) -> None:
        self.lock = threading.Lock()
        self.scenarios: dict[str, list[Call | Reply]] = {}
        self.requests: list[Recorded] = []
        self.usage = (prompt_tokens, completion_tokens, cached_tokens)
        self.server: BackgroundServer | None = None
        self.base_url = ""
        self.app = self._build()

    def start(self) -> str:
        self.server = BackgroundServer(self.app)
        self.base_url = self.server.start()
        return self.base_url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def add_scenario(self, name: str, turns: Iterable[Call | Reply]) -> None:
        with self.lock:
            self.scenarios[name] = list(turns)

    def requests_for(self, scenario: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.scenario == scenario]

    def _decide(self, rec: Recorded) -> Call | Reply:
        texts = rec.user_texts()
        rec.scenario = next((m.group(1) for t in texts for m in [SCENARIO_RE.search(t)] if m), None)
        rec.title = not rec.body.get("tools")
        msgs = [m for m in rec.body.get("messages") or [] if isinstance(m, dict)]
        rec.turn = sum(1 for m in msgs if m.get("role") == "assistant")
        with self.lock:
            self.requests.append(rec)
            turns = self.scenarios.get(rec.scenario or "")
        if rec.title:
            return Reply("Scripted session")
        if turns is None:
            return Reply(f"(no scenario {rec.scenario})")
        return turns[rec.turn] if rec.turn < len(turns) else Reply("(end of script)")

    def _build(self) -> FastAPI:
        app = FastAPI()
        fake = self

        @app.api_route("/{path:path}", methods=["GET", "POST"])
        async def handle(path: str, request: Request) -> Response:
            if request.method != "POST" or not path.endswith("chat/completions"):
                return JSONResponse({"error": {"message": f"no route /{path}"}}, status_code=404)
            body = json.loads(await request.body() or b"{}")
            rec = Recorded({k.lower(): v for k, v in request.headers.items()}, body)
            turn = fake._decide(rec)
            cid, model = f"chatcmpl-{uuid.uuid4().hex[:10]}", body.get("model") or "m1"
            p, c, cached = fake.usage
            usage = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                     "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip
            want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            if want_usage:
                rec.usage = usage

            def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
                data = {"id": cid, "object": "chat.completion.chunk", "created": 0, "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip
                return f"data: {json.dumps(data)}\n\n"

            async def events():
                yield chunk({"role": "assistant", "content": ""})
                if isinstance(turn, Call):
                    call = {"index": 0, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "function",
                            "function": {"name": turn.tool, "arguments": json.dumps(turn.args)}}  # fmt: skip
                    yield chunk({"tool_calls": [call]})
                    yield chunk({}, "tool_calls")
                else:
                    yield chunk({"content": turn.text})
                    yield chunk({}, "stop")
                if want_usage:
                    data = {"id": cid, "object": "chat.completion.chunk", "created": 0, "model": model,
                            "choices": [], "usage": usage}  # fmt: skip
                    yield f"data: {json.dumps(data)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        return app
