"""Red team: the agent against the model gateway's meter, its budget and its forwarding.

The real gateway (`ModelGateway`, `GatewayRun`) on its loopback port, in front of a real HTTP server
standing in for the model API that streams SSE with usage as Anthropic does, and can be told to hold a
stream open. The agent's side is a raw socket speaking HTTP/1.1, as curl in the sandbox would.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field

import pytest

from factory.config_sections import ModelPrice
from factory.sandbox.gateway import ModelGateway

pytestmark = pytest.mark.adversarial

# a dollar an output token: a request's cost is its output tokens, in USD
PRICES = {"": ModelPrice(input_per_mtok=0, output_per_mtok=1_000_000)}


@dataclass
class Upstream:
    """The model API: every request it got (head and body), and how long a stream waits before its usage."""

    hold: float = 0.0
    output_tokens: int = 10
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    server: asyncio.AbstractServer | None = None

    async def start(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
            body = await reader.readexactly(length)
            self.requests.append(head + body)
            if b"/redirect" in head.split(b"\r\n")[0]:
                writer.write(b"HTTP/1.1 307 x\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n")
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            start = {
                "type": "message_start",
                "message": {"model": "claude-test", "usage": {"input_tokens": 0, "output_tokens": 1}},
            }
            writer.write(f"event: message_start\ndata: {json.dumps(start)}\n\n".encode())
            writer.write(b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"hi"}}\n\n')
            await writer.drain()
            await asyncio.sleep(self.hold)
            delta = {"type": "message_delta", "usage": {"output_tokens": self.output_tokens}}
            writer.write(f"event: message_delta\ndata: {json.dumps(delta)}\n\n".encode())
            writer.write(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def _ask(url: str, key: str, body: dict | None = None, extra: str = "", path: str = "/v1/messages") -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(body or {"model": "claude-test", "max_tokens": 5000, "stream": True}).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\n{extra}"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(-1), 30)
    finally:
        writer.close()


@pytest.fixture
async def upstream():
    up = await Upstream().start()
    yield up
    up.stop()


async def test_concurrent_requests_cannot_spend_far_past_the_budget(upstream):
    upstream.hold, upstream.output_tokens = 0.5, 10  # each request: $10, usage after half a second
    gw = ModelGateway(f"http://127.0.0.1:{upstream.port}", "sk-ant-real", None, PRICES)
    run = gw.open_run(budget=5.0)
    url = await run.listen()
    try:
        answers = await asyncio.gather(*(_ask(url, run.stand_in) for _ in range(20)))
    finally:
        await run.close()
    served = sum(a.startswith(b"HTTP/1.1 200") for a in answers)
    # one request past the budget is what a budget checked before the request can allow; 20 are not
    assert run.meter.cost <= 5.0 + 2 * 10, f"{served} requests served, ${run.meter.cost:.0f} spent of a $5 budget"


async def test_a_stream_cut_at_the_runs_end_is_not_metered_as_free(upstream):
    upstream.hold, upstream.output_tokens = 30, 5000  # the usage would come after 30 s
    gw = ModelGateway(f"http://127.0.0.1:{upstream.port}", "sk-ant-real", None, PRICES)
    run = gw.open_run(budget=None)
    url = await run.listen()
    pending = asyncio.ensure_future(_ask(url, run.stand_in))
    while not upstream.requests:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # the stream is under way: message_start and text have passed the meter
    await run.close()  # the run ends (the agent killed its CLI, or the watchdog did)
    pending.cancel()
    # the model may have generated up to max_tokens (5000) before the cut: the meter must not say 1
    assert run.meter.models["claude-test"].output >= 5000, run.meter.models


async def test_header_injection_smuggling_upgrades_and_redirects_go_nowhere(upstream):
    gw = ModelGateway(f"http://127.0.0.1:{upstream.port}", "sk-ant-real", None, PRICES)
    run = gw.open_run(budget=None)
    url = await run.listen()
    try:
        # a bare LF inside a header value (the gateway splits heads on CRLF only), a CR, an upgrade
        for extra in ("x-a: 1\nx-injected: 1\r\n", "x-b: 1\rx-injected: 1\r\n",
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n", "Transfer-Encoding: chunked\r\n"):  # fmt: skip
            await _ask(url, run.stand_in, extra=extra)
        # a second request smuggled after the first one's body, on the same connection
        smuggled = f"POST /v1/messages HTTP/1.1\r\nx-api-key: {run.stand_in}\r\nContent-Length: 2\r\n\r\n{{}}"
        body = {"model": "claude-test", "max_tokens": 1}
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        data = json.dumps(body).encode()
        writer.write(f"POST /v1/messages HTTP/1.1\r\nx-api-key: {run.stand_in}\r\nContent-Length: {len(data)}\r\n\r\n"
                     .encode() + data + smuggled.encode())  # fmt: skip
        await writer.drain()
        await asyncio.wait_for(reader.read(-1), 10)
        writer.close()
        # the model API's redirect is not followed with the real key
        redirected = await _ask(url, run.stand_in, path="/v1/models/redirect")
    finally:
        await run.close()
    for req in upstream.requests:
        head = req.split(b"\r\n\r\n")[0].lower()
        assert b"\nx-injected" not in head and b"upgrade" not in head and b"transfer-encoding" not in head, req
        assert b"sk-ant-factory" not in req, req
    smuggled_seen = [r for r in upstream.requests if r.endswith(b"{}")]
    assert smuggled_seen == [], smuggled_seen
    assert not redirected.startswith(b"HTTP/1.1 200"), redirected


async def test_a_bare_lf_or_cr_in_a_header_cannot_add_a_header_upstream(upstream):
    # the proxy splits heads on CRLF; a value holding a bare LF reached the allowed server as is, where a
    # lenient parser (nginx, node) reads a second Host: the vhost the proxy bound the request to, undone
    from factory.sandbox.proxy import Destination, EgressProxy

    proxy = EgressProxy()
    try:
        ch = await proxy.open(1, [Destination("127.0.0.1", upstream.port)])
        for extra in ("X-A: 1\nHost: internal.example", "X-A: 1\rHost: internal.example", "X-A: 1\x00"):
            reader, writer = await asyncio.open_unix_connection(str(ch.path))
            writer.write(f"GET http://127.0.0.1:{upstream.port}/ HTTP/1.1\r\nHost: x\r\n{extra}\r\n\r\n".encode())
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(-1), 10)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 400"), (extra, answer[:200])
    finally:
        await proxy.close()
    assert all(b"internal.example" not in r for r in upstream.requests), upstream.requests


async def test_the_request_line_cannot_carry_a_header_upstream(upstream):
    # the method was forwarded as the agent wrote it: anything without a space, a bare LF included
    from factory.sandbox.proxy import Destination, EgressProxy

    proxy = EgressProxy()
    target = f"http://127.0.0.1:{upstream.port}/"
    try:
        ch = await proxy.open(1, [Destination("127.0.0.1", upstream.port)])
        for line in (f"GET\nHost:internal.example {target} HTTP/1.1", f"GET {target}\nHost:internal.example HTTP/1.1",
                     f"GET\rHost:internal.example {target} HTTP/1.1"):  # fmt: skip
            reader, writer = await asyncio.open_unix_connection(str(ch.path))
            writer.write(f"{line}\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            await asyncio.wait_for(reader.read(-1), 10)
            writer.close()
    finally:
        await proxy.close()
    for req in upstream.requests:  # no line break of any kind starts a header of the agent's
        assert not any(part.lower().startswith(b"host:internal") for part in re.split(rb"[\r\n]", req)), req


async def test_the_budget_reservation_cannot_be_poisoned_or_read_two_ways(upstream):
    # max_tokens 10**308 made the reservation inf, its release inf - inf = nan, and every later budget check
    # (cost + nan >= budget) false; a key given twice may be read first by the model API and last by Python
    upstream.hold, upstream.output_tokens = 0.3, 10
    gw = ModelGateway(f"http://127.0.0.1:{upstream.port}", "sk-ant-real", None, PRICES)
    run = gw.open_run(budget=5.0)
    url = await run.listen()
    try:
        twice = b'{"model": "claude-test", "max_tokens": 5000, "max_tokens": 1, "stream": true}'
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"POST /v1/messages HTTP/1.1\r\nx-api-key: {run.stand_in}\r\nContent-Length: {len(twice)}\r\n\r\n"
                     .encode() + twice)  # fmt: skip
        await writer.drain()
        dup = await asyncio.wait_for(reader.read(-1), 10)
        writer.close()
        poison = await _ask(url, run.stand_in, {"model": "claude-test", "max_tokens": 10**308, "stream": True})
        answers = await asyncio.gather(*(_ask(url, run.stand_in) for _ in range(10)))
    finally:
        await run.close()
    assert dup.startswith(b"HTTP/1.1 400"), dup[:200]
    served = sum(a.startswith(b"HTTP/1.1 200") for a in answers)
    assert served == 0 and run.meter.cost <= 5.0 + 2 * 10, (poison[:100], served, run.meter)
