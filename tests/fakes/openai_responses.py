"""A scripted stand-in for the OpenAI Responses API (`POST /v1/responses`, SSE), for the real `codex` CLI.

Usage::

    model = ScriptedResponses(); model.start()
    model.add_scenario("hello", [Exec("printf 'hi\\n' > hello.txt"), Say("Done.")])
    # codex exec --json -c openai_base_url=<model.base_url>/v1 ... "do it [[scenario:hello]]"

A scenario is picked by the marker ``[[scenario:NAME]]`` in any user text of the request's ``input``.
Turn ``i`` answers the request whose ``input`` already holds ``i`` model items (assistant messages and
function calls): codex sends the whole conversation each time, a resumed thread included. A turn is
``Exec(cmd)`` (a `function_call` to codex's ``exec_command`` tool) or ``Say(text)`` (an assistant
message, which ends codex's turn). After the script: ``Say("(end of script)")``. Every answer ends
with ``response.completed`` carrying ``usage`` (what the gateway meters). Anything but the POST gets a
404, which is what makes codex fall back from its WebSocket attempt to SSE.
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
END_OF_SCRIPT = "(end of script)"


@dataclass
class Exec:
    """A function_call to codex's `exec_command` tool."""

    cmd: str


@dataclass
class Say:
    """An assistant message."""

    text: str


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any
    scenario: str | None = None
    turn: int | None = None
    usage: dict[str, int] = field(default_factory=dict)
    time: float = field(default_factory=time.time)  # when it arrived (for the README's figures)

    def texts(self) -> list[str]:
        out = []
        for item in (self.body or {}).get("input") or []:
            if isinstance(item, dict):
                for c in item.get("content") or []:
                    if isinstance(c, dict) and isinstance(c.get("text"), str):
                        out.append(c["text"])
                if isinstance(item.get("output"), str):
                    out.append(item["output"])
        return out


def _model_items(body: dict[str, Any]) -> int:
    n = 0
    for item in body.get("input") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call" or (item.get("type") == "message" and item.get("role") == "assistant"):
            n += 1
    return n


def _sse(data: dict[str, Any]) -> str:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"


class ScriptedResponses:
    def __init__(self, input_tokens: int = 1000, output_tokens: int = 200, cached_tokens: int = 100) -> None:
        self.lock = threading.Lock()
        self.scenarios: dict[str, list[Exec | Say]] = {}
        self.requests: list[Recorded] = []
        self.usage = {"input": input_tokens, "output": output_tokens, "cached": cached_tokens}
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
            self.server = None

    def add_scenario(self, name: str, turns: Iterable[Exec | Say]) -> None:
        with self.lock:
            self.scenarios[name] = list(turns)

    def requests_for(self, scenario: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.scenario == scenario]

    def _turn(self, rec: Recorded) -> Exec | Say:
        marker = next((m.group(1) for t in rec.texts() for m in [SCENARIO_RE.search(t)] if m), None)
        rec.scenario = marker
        rec.turn = _model_items(rec.body)
        with self.lock:
            self.requests.append(rec)
            turns = self.scenarios.get(marker or "")
        if turns is None:
            return Say(f"(no scenario {marker})")
        return turns[rec.turn] if rec.turn < len(turns) else Say(END_OF_SCRIPT)

    def _build(self) -> FastAPI:
        app = FastAPI()
        fake = self

        @app.api_route("/{path:path}", methods=["GET", "POST", "HEAD"])
        async def handle(path: str, request: Request) -> Response:
            if request.method != "POST" or not path.endswith("responses"):
                return JSONResponse({"error": {"message": f"no route /{path}"}}, status_code=404)
            body = json.loads(await request.body() or b"{}")
            rec = Recorded("/" + path, {k.lower(): v for k, v in request.headers.items()}, body)
            turn = fake._turn(rec)
            rid = f"resp_{uuid.uuid4().hex[:12]}"
            if isinstance(turn, Exec):
                item: dict[str, Any] = {
                    "type": "function_call", "id": f"fc_{uuid.uuid4().hex[:8]}", "status": "completed",
                    "call_id": f"call_{uuid.uuid4().hex[:8]}", "name": "exec_command",
                    "arguments": json.dumps({"cmd": turn.cmd}),
                }  # fmt: skip
            else:
                item = {
                    "type": "message", "id": f"msg_{uuid.uuid4().hex[:8]}", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": turn.text, "annotations": []}],
                }  # fmt: skip
            u = fake.usage
            usage = {
                "input_tokens": u["input"], "input_tokens_details": {"cached_tokens": u["cached"]},
                "output_tokens": u["output"], "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": u["input"] + u["output"],
            }  # fmt: skip
            rec.usage = usage
            model = body.get("model") or "gpt-scripted"
            base = {"id": rid, "object": "response", "model": model, "output": []}

            async def events():
                yield _sse({"type": "response.created", "response": {**base, "status": "in_progress"}})
                yield _sse({"type": "response.output_item.added", "output_index": 0, "item": item})
                yield _sse({"type": "response.output_item.done", "output_index": 0, "item": item})
                done = {**base, "status": "completed", "output": [item], "usage": usage}
                yield _sse({"type": "response.completed", "response": done})

            return StreamingResponse(events(), media_type="text/event-stream")

        return app
