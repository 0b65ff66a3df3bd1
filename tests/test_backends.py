"""Codex CLI and OpenCode beside Claude Code (factory/backends/): the real CLIs from npm against scripted
servers that speak their wire protocols, through Factory's sandbox and its model gateway."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from factory.store.tables import CostEntry
from tests.conftest import ROOT, remote_file
from tests.fakes.openai_responses import Exec, Say, ScriptedResponses

OPENAI_KEY = "sk-proj-factory-real-openai-key-for-tests"
PRICE = {"input_per_mtok": 2.0, "output_per_mtok": 8.0, "cached_input_per_mtok": 0.5}
TOOLS_RW = ["Read", "Edit", "Write", "Bash", "Glob", "Grep"]

pytestmark = pytest.mark.skipif(not shutil.which("codex"), reason="npm install -g @openai/codex@0.171.0")


@pytest.fixture(scope="module")
def responses() -> Iterator[ScriptedResponses]:
    m = ScriptedResponses(input_tokens=1000, output_tokens=200, cached_tokens=100)
    m.start()
    yield m
    m.stop()


@pytest.fixture
def openai_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)  # Factory's own key: the gateway adds it upstream
    return OPENAI_KEY


def templates(**backends: str) -> dict[str, Any]:
    tpl = ROOT / "prompts"
    out = {
        "coder": {"system_prompt_file": str(tpl / "coder.md"), "allowed_tools": TOOLS_RW},
        "coder_revision": {"system_prompt_file": str(tpl / "coder_revision.md"), "allowed_tools": TOOLS_RW},
        "reviewer": {"system_prompt_file": str(tpl / "reviewer.md"), "allowed_tools": ["Read", "Glob", "Grep"]},
    }
    for name, backend in backends.items():
        out[name]["backend"] = backend
    return out


def config(responses: ScriptedResponses, **backends: str) -> dict[str, Any]:
    return {
        "agent_templates": templates(**backends),
        "backends": {"codex": {"base_url": responses.base_url + "/v1", "model": "gpt-5-codex", "prices": PRICE}},
    }


def entries(h: Any, task_id: int) -> list[CostEntry]:
    with Session(h.runtime.engine) as s:
        return list(s.exec(select(CostEntry).where(CostEntry.task_id == task_id)))


def per_request_cost() -> float:
    # the scripted usage: 1000 input of which 100 cached, 200 output
    return (900 * PRICE["input_per_mtok"] + 100 * PRICE["cached_input_per_mtok"] + 200 * PRICE["output_per_mtok"]) / 1e6


async def test_codex_coder_task_ends_done_with_a_pr_and_its_cost_under_codex(
    start_factory, responses, github, openai_key
):
    responses.add_scenario("cx-hello", [Exec("printf 'hello from codex\\n' > hello.txt"), Say("I added hello.txt.")])
    async with start_factory(**config(responses, coder="codex")) as h:
        t = await h.create("Add a hello file", "cx-hello")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=120)
        assert done["status"] == "done", done
        assert remote_file(h.remote, done["branch"], "hello.txt") == "hello from codex\n"
        assert [c for c in github.pr_creations() if c.body["head"] == done["branch"]]
        reqs = responses.requests_for("cx-hello")
        assert [r.turn for r in reqs] == [0, 1]
        # the agent held a stand-in; the upstream got Factory's key, added by the gateway
        assert all(r.headers["authorization"] == f"Bearer {OPENAI_KEY}" for r in reqs)
        # the session is Codex's thread id, and the ledger has the gateway's figure under codex
        assert done["session_id"] and done["session_id"] != t.get("session_id")
        rows = entries(h, t["id"])
        assert {(e.backend, e.model) for e in rows} == {("codex", "gpt-5-codex")}
        assert sum(e.input_tokens for e in rows) == 900 * len(reqs)
        assert sum(e.cache_read_tokens for e in rows) == 100 * len(reqs)
        assert sum(e.output_tokens for e in rows) == 200 * len(reqs)
        assert done["cost_usd"] == pytest.approx(per_request_cost() * len(reqs), abs=1e-9)
        by = (await h.api.get("/api/costs", params={"group_by": "backend"})).json()
        assert {g["key"] for g in by["groups"]} >= {"codex"}
        logs = (await h.api.get(f"/api/tasks/{t['id']}/logs")).json()
        assert {"assistant", "tool_use", "tool_result", "result"} <= {e["kind"] for e in logs}
        assert not any(OPENAI_KEY in e["content"] for e in logs)


async def test_a_question_mid_task_with_codex_resumes_the_same_thread(start_factory, responses, openai_key):
    ask = json.dumps({"type": "question", "question": "Which greeting?", "options": ["hi", "hello"]})
    responses.add_scenario("cx-ask", [Say(ask), Exec("printf 'hi\\n' > greeting.txt"), Say("Wrote greeting.txt.")])
    async with start_factory(**config(responses, coder="codex")) as h:
        t = await h.create("Add a greeting", "cx-ask")
        waiting = await h.wait_for(t["id"], {"awaiting_input", "failed", "done"}, timeout=120)
        assert waiting["status"] == "awaiting_input", waiting
        thread = waiting["session_id"]
        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "hi"})
        assert r.status_code == 200, r.text
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=120)
        assert done["status"] == "done", done
        assert remote_file(h.remote, done["branch"], "greeting.txt") == "hi\n"
        reqs = responses.requests_for("cx-ask")
        # the resumed run sent the first run's conversation (the question) and the answer: one thread
        assert [r.turn for r in reqs] == [0, 1, 2]
        assert any("hi" in text for text in reqs[1].texts())
        assert reqs[1].headers.get("thread-id") == reqs[0].headers.get("thread-id") == thread
        assert done["session_id"] == thread
        rows = entries(h, t["id"])
        assert len({e.agent_run_id for e in rows}) == 2 and {e.backend for e in rows} == {"codex"}


async def test_code_review_with_a_codex_coder_and_a_claude_reviewer(start_factory, responses, model, openai_key):
    from tests.test_workflows import start_run, verdict, wait_run

    responses.add_scenario(
        "mixed-review", [Exec("printf 'def add(a, b):\\n    return a + b\\n' > calc.py"), Say("Added add().")]
    )
    model.add_scenario("mixed-review", [verdict("approved")])
    async with start_factory(**config(responses, coder="codex")) as h:
        run = await start_run(h, "mixed-review")
        finished = await wait_run(h, run["id"], {"completed", "failed"}, timeout=180)
        assert finished["status"] == "completed", finished
        assert len(responses.requests_for("mixed-review")) == 2  # the coder, on Codex
        assert model.requests_for("mixed-review")  # the reviewer, on Claude Code
        with Session(h.runtime.engine) as s:
            rows = list(s.exec(select(CostEntry).where(CostEntry.workflow_run_id == run["id"])))
        assert {(e.agent_type, e.backend) for e in rows} == {("coder", "codex"), ("reviewer", "claude")}
        by = {g["key"]: g for g in (await h.api.get("/api/costs", params={"group_by": "backend"})).json()["groups"]}
        assert by["codex"]["cost_usd"] > 0 and by["claude"]["cost_usd"] > 0


async def test_a_reviewer_on_codex_cannot_write_the_checkout(start_factory, responses, openai_key):
    attempt = "printf 'pwned\\n' > pwned.txt && echo wrote || echo refused"
    responses.add_scenario("cx-ro", [Exec(attempt), Exec("git -C . status --porcelain"), Say("Looked only.")])
    async with start_factory(**config(responses, reviewer="codex")) as h:
        t = await h.create("Review the repo", "cx-ro", agent_type="reviewer")
        done = await h.wait_for(t["id"], {"done", "failed", "awaiting_input"}, timeout=120)
        logs = (await h.api.get(f"/api/tasks/{t['id']}/logs")).json()
        results = [e["content"] for e in logs if e["kind"] == "tool_result"]
        assert results and "Read-only file system" in results[0] and "refused" in results[0], (done, results)
        worktree = Path(h.cfg.workspace_path) / "worktrees" / f"task-{t['id']}"
        assert not (worktree / "pwned.txt").exists()
        assert done["branch"] is None or remote_file(h.remote, done["branch"], "pwned.txt") is None


async def test_a_task_asks_for_codex_over_its_claude_template(start_factory, responses, model, openai_key):
    responses.add_scenario("cx-override", [Exec("printf 'x\\n' > x.txt"), Say("Wrote x.txt.")])
    async with start_factory(**config(responses)) as h:  # every template on Claude Code
        bad = await h.api.post("/api/tasks", json={"title": "t", "repo": "demo", "backend": "gemini"})
        assert bad.status_code == 422
        t = await h.create("Write x", "cx-override", backend="codex")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=120)
        assert done["status"] == "done", done
        assert len(responses.requests_for("cx-override")) == 2 and not model.requests_for("cx-override")
        assert {e.backend for e in entries(h, t["id"])} == {"codex"}


def test_a_workflow_step_names_its_backend(tmp_path):
    from factory.config import load_config
    from factory.contracts import RepoRef
    from factory.specs import workflow_input
    from factory.store.tables import WorkflowRun

    path = tmp_path / "config.yml"
    path.write_text(
        "agent_templates:\n"
        f"  coder: {{system_prompt_file: {ROOT / 'prompts/coder.md'}, allowed_tools: [Read, Write]}}\n"
        f"  reviewer: {{system_prompt_file: {ROOT / 'prompts/reviewer.md'}, allowed_tools: [Read], backend: codex}}\n"
        "workflows:\n  mixed:\n    steps:\n      - {agent: coder, backend: opencode}\n      - {agent: reviewer}\n"
    )
    cfg = load_config(path, workspace_root=str(tmp_path / "ws"), data_dir=str(tmp_path / "d"))
    run = WorkflowRun(id=1, workflow_name="mixed", title="t", description="", repo="demo")
    inp = workflow_input(cfg, run, cfg.workflows["mixed"], RepoRef(name="demo", url="file:///x"))
    assert [s.agent.backend for s in inp.steps] == ["opencode", "codex"]


# --- OpenCode ---------------------------------------------------------------------------------------

from tests.fakes.openai_chat import Call, Reply, ScriptedChat  # noqa: E402

needs_opencode = pytest.mark.skipif(not shutil.which("opencode"), reason="npm install -g opencode-ai@1.18.33")


@pytest.fixture(scope="module")
def chat() -> Iterator[ScriptedChat]:
    m = ScriptedChat(prompt_tokens=800, completion_tokens=100, cached_tokens=200)
    m.start()
    yield m
    m.stop()


def oc_config(chat: ScriptedChat, **backends: str) -> dict[str, Any]:
    return {
        "agent_templates": templates(**backends),
        "backends": {"opencode": {"base_url": chat.base_url + "/v1", "model": "m1", "prices": PRICE}},
    }


@needs_opencode
async def test_opencode_coder_task_ends_done_with_a_pr_and_its_cost_under_opencode(
    start_factory, chat, github, openai_key
):
    chat.add_scenario("oc-hello", [Call("write", {"filePath": "hello.txt", "content": "hello from opencode\n"}), Reply("Added hello.txt.")])  # fmt: skip
    async with start_factory(**oc_config(chat, coder="opencode")) as h:
        t = await h.create("Add a hello file", "oc-hello")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=150)
        assert done["status"] == "done", done
        assert remote_file(h.remote, done["branch"], "hello.txt") == "hello from opencode\n"
        assert [c for c in github.pr_creations() if c.body["head"] == done["branch"]]
        reqs = chat.requests_for("oc-hello")
        assert all(r.headers["authorization"] == f"Bearer {OPENAI_KEY}" for r in reqs)
        assert done["session_id"].startswith("ses_")
        rows = entries(h, t["id"])
        assert {(e.backend, e.model) for e in rows} == {("opencode", "m1")}
        # every request metered, the title request included: 600 uncached + 200 cached in, 100 out each
        assert sum(e.input_tokens for e in rows) == 600 * len(reqs) and sum(e.output_tokens for e in rows) == 100 * len(
            reqs
        )
        cost = (
            600 * PRICE["input_per_mtok"] + 200 * PRICE["cached_input_per_mtok"] + 100 * PRICE["output_per_mtok"]
        ) / 1e6
        assert done["cost_usd"] == pytest.approx(cost * len(reqs), abs=1e-9)


@needs_opencode
async def test_a_question_mid_task_with_opencode_resumes_the_same_session(start_factory, chat, openai_key):
    ask = json.dumps({"type": "question", "question": "Which greeting?"})
    chat.add_scenario(
        "oc-ask", [Reply(ask), Call("write", {"filePath": "greeting.txt", "content": "hi\n"}), Reply("Done.")]
    )
    async with start_factory(**oc_config(chat, coder="opencode")) as h:
        t = await h.create("Add a greeting", "oc-ask")
        waiting = await h.wait_for(t["id"], {"awaiting_input", "failed", "done"}, timeout=150)
        assert waiting["status"] == "awaiting_input", waiting
        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "hi"})
        assert r.status_code == 200, r.text
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=150)
        assert done["status"] == "done", done
        assert remote_file(h.remote, done["branch"], "greeting.txt") == "hi\n"
        assert done["session_id"] == waiting["session_id"]
        turns = [r.turn for r in chat.requests_for("oc-ask") if not r.title]
        assert turns == [0, 1, 2]  # the resumed session carried the question on


@needs_opencode
async def test_a_reviewer_on_opencode_cannot_write(start_factory, chat, openai_key):
    chat.add_scenario(
        "oc-ro",
        [
            Call("write", {"filePath": "pwned.txt", "content": "pwned\n"}),
            Call("bash", {"command": "printf 'pwned\\n' > pwned2.txt", "description": "write"}),
            Reply("Looked only."),
        ],
    )
    async with start_factory(**oc_config(chat, reviewer="opencode")) as h:
        t = await h.create("Review the repo", "oc-ro", agent_type="reviewer")
        done = await h.wait_for(t["id"], {"done", "failed", "awaiting_input"}, timeout=150)
        logs = (await h.api.get(f"/api/tasks/{t['id']}/logs")).json()
        worktree = Path(h.cfg.workspace_path) / "worktrees" / f"task-{t['id']}"
        assert not (worktree / "pwned.txt").exists() and not (worktree / "pwned2.txt").exists()
        assert len(chat.requests_for("oc-ro")) >= 3, (done, [e["content"] for e in logs])  # both attempts were made
        results = [e["content"] for e in logs if e["kind"] == "tool_result"]
        # denied tools are not offered at all (the checkout is read-only besides, as for Codex)
        assert len(results) == 2 and all("unavailable tool" in r for r in results), results


async def test_the_gateway_stops_codex_at_the_task_budget_and_the_task_asks(start_factory, responses, openai_key):
    # Codex has no cost cap of its own: the gateway meters each request (0.00345 USD here) and refuses
    # the one after the budget is spent
    turns = [Exec(f"printf 'step {i}\\n' > b-{i}.txt") for i in range(4)]
    responses.add_scenario("cx-budget", [*turns, Say("All written.")])
    async with start_factory(budgets={"per_task_usd": 0.005}, **config(responses, coder="codex")) as h:
        t = await h.create("Write four files", "cx-budget")
        waiting = await h.wait_for(t["id"], {"awaiting_input", "done", "failed"}, timeout=150)
        assert waiting["status"] == "awaiting_input", waiting
        assert waiting["pending_question"]["text"].startswith("Budget reached: $0.0069")
        assert len(responses.requests_for("cx-budget")) == 2  # the third never reached the model
        assert remote_file(h.remote, waiting["branch"], "b-1.txt") == "step 1\n"
        assert remote_file(h.remote, waiting["branch"], "b-2.txt") is None
        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "raise to $5"})
        assert r.status_code == 200, r.text
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=150)
        assert done["status"] == "done", done
        assert remote_file(h.remote, done["branch"], "b-3.txt") == "step 3\n"
        assert done["cost_usd"] == pytest.approx(per_request_cost() * len(responses.requests_for("cx-budget")))


async def test_the_gateways_openai_routes_take_only_this_runs_stand_in_and_two_posts(responses):
    import httpx

    from factory.config_sections import ModelPrice
    from factory.sandbox.gateway import ModelGateway
    from factory.sandbox.gateway_openai import OpenAIRoute

    responses.add_scenario("gw-routes", [Say("ok")])
    gw = ModelGateway("http://127.0.0.1:9", "sk-ant-real", None, {})
    route = OpenAIRoute("codex", responses.base_url + "/v1", OPENAI_KEY, ModelPrice(**PRICE))
    body = {"model": "gpt-5-codex", "stream": True, "input": [{"role": "user", "content": [{"type": "input_text", "text": "[[scenario:gw-routes]]"}]}]}  # fmt: skip
    claude_run, codex_run = gw.open_run(None), gw.open_run(None, route)
    try:
        for run in (claude_run, codex_run):
            await run.listen()
        async with httpx.AsyncClient(timeout=30) as c:
            auth = {"authorization": f"Bearer {codex_run.stand_in}"}
            ok = await c.post(codex_run.base_url + "/v1/responses", json=body, headers=auth)
            assert ok.status_code == 200 and "response.completed" in ok.text
            assert responses.requests_for("gw-routes")[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"
            assert codex_run.meter.cost == pytest.approx(per_request_cost())
            # a WebSocket attempt (a GET), another path, another run's stand-in, a run with no OpenAI route
            assert (await c.get(codex_run.base_url + "/v1/responses", headers=auth)).status_code == 404
            assert (await c.post(codex_run.base_url + "/v1/files", json={}, headers=auth)).status_code == 404
            other = {"authorization": f"Bearer {claude_run.stand_in}"}
            assert (await c.post(codex_run.base_url + "/v1/responses", json=body, headers=other)).status_code == 401
            assert (await c.post(claude_run.base_url + "/v1/responses", json=body, headers=other)).status_code == 404
        assert len(responses.requests_for("gw-routes")) == 1
    finally:
        await claude_run.close()
        await codex_run.close()
