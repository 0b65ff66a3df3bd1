"""The model gateway end to end: the real CLI in the real sandbox, through its run's proxy channel and
gateway, against the scripted model server.

What holds: the agent sees only the gateway's address and a stand-in key; the model server sees only
the real key; a wrong key, a path outside the Messages API and a spent budget are refused; the
ledger and the task's cost are the gateway's figures, computed from the usage the server reported
and the price table.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlmodel import select

from factory.config import load_config
from factory.sandbox.gateway import MODEL_URL, ModelGateway, price_of
from factory.store.tables import CostEntry, session_scope
from tests.fakes.anthropic import FAKE_API_KEY, Stall, Text, ToolUse
from tests.test_sandbox import bash, tool_results


def _rows(h: Any, task_id: int) -> list[CostEntry]:
    with session_scope(h.runtime.engine) as s:
        return list(s.exec(select(CostEntry).where(CostEntry.task_id == task_id)))


def _expected(h: Any, model: Any, session_id: str) -> tuple[float, int, int]:
    """What the gateway should have charged: the server's reported usage, priced by the config's table."""
    cost, tin, tout = 0.0, 0, 0
    for r in model.requests:
        if r.session_id != session_id or r.usage is None:
            continue
        p = price_of(h.cfg.sandbox.model_prices, r.model or "")
        cost += (r.usage["input_tokens"] * p.input_per_mtok + r.usage["output_tokens"] * p.output_per_mtok) / 1e6
        tin += r.usage["input_tokens"]
        tout += r.usage["output_tokens"]
    return cost, tin, tout


async def test_the_agent_holds_a_stand_in_and_the_ledger_holds_the_gateways_figures(start_factory, model):
    probe = (
        'echo "URL=$ANTHROPIC_BASE_URL"; echo "KEY=$ANTHROPIC_API_KEY"; '
        # a wrong key, no key, and the right key on a path the gateway does not serve (batches: unmetered)
        "curl -s -m 5 -X POST $ANTHROPIC_BASE_URL/v1/messages -H 'x-api-key: sk-ant-wrong' -d '{}'; echo; "
        "curl -s -m 5 -X POST $ANTHROPIC_BASE_URL/v1/messages -d '{}'; echo; "
        'curl -s -m 5 -X POST $ANTHROPIC_BASE_URL/v1/messages/batches -H "x-api-key: $ANTHROPIC_API_KEY" -d "{}"; echo'
    )
    model.add_scenario("gw", [bash(probe), [ToolUse("Write", {"file_path": "a.txt", "content": "a\n"})], Text("Done.")])
    async with start_factory() as h:
        t = await h.create("Through the gateway", "gw")
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        rows = _rows(h, t["id"])
        logs = (await h.api.get(f"/api/tasks/{t['id']}/logs")).json()
    seen = tool_results(model, "gw")
    assert f"URL={MODEL_URL}\n" in seen, seen
    stand_in = seen.split("KEY=", 1)[1].split("\n", 1)[0]
    assert stand_in.startswith("sk-ant-factory-") and len(stand_in) > 40 and FAKE_API_KEY not in seen
    assert seen.count('"authentication_error"') == 2 and '"not_found_error"' in seen, seen
    # the server got the real key on every request of this session, and the stand-in on none
    mine = [r for r in model.requests if r.session_id == done["session_id"]]
    assert mine and all(r.headers.get("x-api-key") == FAKE_API_KEY for r in mine)
    assert not any(stand_in in str(r.headers) for r in model.requests)
    assert not any(r.path.startswith("/v1/messages/batches") for r in model.requests)
    # the ledger: the server's tokens priced by the table; the task's cost is the same figure
    cost, tin, tout = _expected(h, model, done["session_id"])
    assert cost > 0 and sum(e.cost_usd for e in rows) == pytest.approx(cost, rel=1e-9)
    assert (sum(e.input_tokens for e in rows), sum(e.output_tokens for e in rows)) == (tin, tout)
    assert done["cost_usd"] == pytest.approx(cost, rel=1e-9)
    metered = [e["content"] for e in logs if e["content"].startswith("cost: $")]
    assert metered and "metered by the model gateway over" in metered[-1], logs


async def test_a_budget_the_clis_own_cap_does_not_see_stops_at_the_gateway(start_factory, model):
    # the gateway prices every token at $10,000 per million; the CLI prices them at its own list
    # price, so its --max-budget-usd (0.05) is never reached by its own figure: only the gateway stops it
    steep = {"": {"input_per_mtok": 10_000, "output_per_mtok": 10_000}}
    writes = [[ToolUse("Write", {"file_path": f"f{i}.txt", "content": f"{i}\n"})] for i in range(8)]
    model.add_scenario("gw-budget", [*writes, Text("All written.")])
    async with start_factory(budgets={"per_task_usd": 0.05}, sandbox={"model_prices": steep}) as h:
        t = await h.create("Write eight files", "gw-budget")
        waiting = await h.wait_for(t["id"], {"awaiting_input", "done", "failed"}, timeout=120)
        logs = (await h.api.get(f"/api/tasks/{t['id']}/logs")).json()
        rows = _rows(h, t["id"])
    assert waiting["status"] == "awaiting_input", waiting
    q = waiting["pending_question"]
    assert q["text"].startswith("Budget reached: $") and " of $0.05 for this task " in q["text"], q
    assert q["text"].endswith("Raise it?")
    served = model.requests_for("gw-budget")
    assert 1 <= len(served) < len(writes), served  # stopped long before the script's end
    cost, _, _ = _expected(h, model, waiting["session_id"])
    assert waiting["cost_usd"] == pytest.approx(cost, rel=1e-9) and cost >= 0.05
    assert sum(e.cost_usd for e in rows) == pytest.approx(cost, rel=1e-9)
    assert any("refused at the run's budget" in e["content"] for e in logs), logs


async def _post(base_url: str, key: str, body: dict[str, Any]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(body).encode()
    writer.write(
        f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    return reader, writer


async def test_the_gateway_streams_as_it_comes_and_meters_both_answer_forms(model, tmp_path):
    """A run without its own network (loopback listener): SSE passes through before the answer ends, and
    the meter holds the server's usage for a streamed and a JSON answer, priced by the table."""
    prices = load_config(tmp_path / "none.yml").sandbox.model_prices
    model.add_scenario("gw-stall", [Stall(30, then="late")])
    model.add_scenario("gw-json", [Text("plain")])
    run = ModelGateway(model.base_url, FAKE_API_KEY, None, prices).open_run(None)
    await run.listen()
    try:
        ask = {"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": True}
        user = {"role": "user", "content": "[[scenario:gw-stall]] go"}
        reader, writer = await _post(run.base_url, run.stand_in, {**ask, "messages": [user]})
        # the first event arrives while the model is still holding the rest back: nothing is buffered
        first = await asyncio.wait_for(reader.readuntil(b"event: message_start"), 10)
        assert first.startswith(b"HTTP/1.1 200") and b"text/event-stream" in first
        model.release_stalls()
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert b"late" in rest and b"message_stop" in rest
        user = {"role": "user", "content": "[[scenario:gw-json]] go"}
        reader, writer = await _post(run.base_url, run.stand_in, {**ask, "stream": False, "messages": [user]})
        plain = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert plain.startswith(b"HTTP/1.1 200") and b'"plain"' in plain
    finally:
        await run.close()
    (streamed,), (whole,) = model.requests_for("gw-stall"), model.requests_for("gw-json")
    t = run.meter.models["claude-sonnet-4-5"]
    used = [streamed.usage, whole.usage]
    assert (t.input, t.output) == (sum(u["input_tokens"] for u in used), sum(u["output_tokens"] for u in used))
    p = prices["claude-sonnet-4"]
    assert run.meter.cost == pytest.approx((t.input * p.input_per_mtok + t.output * p.output_per_mtok) / 1e6)
    assert run.meter.requests == 2 and all(r.headers["x-api-key"] == FAKE_API_KEY for r in (streamed, whole))


async def test_an_unsandboxed_run_also_holds_only_a_stand_in(start_factory, model):
    """`sandbox.enabled: false`: no channel, so the run's gateway listens on a loopback port of its own."""
    model.add_scenario("gw-open", [bash('echo "URL=$ANTHROPIC_BASE_URL KEY=$ANTHROPIC_API_KEY"'), Text("Done.")])
    async with start_factory(sandbox={"enabled": False}) as h:
        t = await h.create("Unsandboxed", "gw-open")
        done = await h.wait_for(t["id"], {"done", "failed"})
        rows = _rows(h, t["id"])
    assert done["status"] == "done", done
    seen = tool_results(model, "gw-open")
    assert "URL=http://127.0.0.1:" in seen and "KEY=sk-ant-factory-" in seen and FAKE_API_KEY not in seen, seen
    cost, _, _ = _expected(h, model, done["session_id"])
    assert cost > 0 and sum(e.cost_usd for e in rows) == pytest.approx(cost, rel=1e-9)
