"""Cost control end to end: the ledger against what the model server reported, a task budget that stops
a run and asks, a daily budget that holds new tasks, and a timeout that saves the work.

Real Temporal, real git, the real `claude` CLI against the scripted model server (which reports usage
per request; the CLI prices it).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from factory.store import ledger
from factory.store.tables import AgentRun, CostEntry, Message, session_scope
from factory.store.writes import insert
from tests.conftest import remote_file
from tests.fakes.anthropic import Stall, Text, ToolUse
from tests.test_workflows import script_steps, start_run, verdict, wait_run


def entries(h: Any, **where: Any) -> list[CostEntry]:
    with session_scope(h.runtime.engine) as s:
        q = select(CostEntry)
        for k, v in where.items():
            q = q.where(getattr(CostEntry, k) == v)
        return list(s.exec(q.order_by(CostEntry.id)))


def reported(model: Any, session_id: str) -> list[dict[str, int]]:
    """The usage the scripted server reported to this CLI session, request by request."""
    return [r.usage for r in model.requests if r.session_id == session_id and r.usage is not None]


def tokens(usages: list[dict[str, int]]) -> tuple[int, int]:
    return sum(u["input_tokens"] for u in usages), sum(u["output_tokens"] for u in usages)


def writes(prefix: str, n: int) -> list[Any]:
    """A long run: one file written per turn."""
    return [[ToolUse("Write", {"file_path": f"{prefix}-{i}.txt", "content": f"step {i}\n"})] for i in range(n)]


async def test_the_ledger_matches_what_the_model_server_reported(start_factory, model, github):
    asks = {"type": "question", "question": "Tabs or spaces?"}
    model.add_scenario("ledger-ask", [Text(json.dumps(asks)), [ToolUse("Write", {"file_path": "a.txt", "content": "a\n"})], Text("Wrote a.txt.")])  # fmt: skip
    model.add_scenario("ledger-one", [Text("Nothing to change.")])
    wf = script_steps(
        model,
        {
            ("coder", 1): [[ToolUse("Write", {"file_path": "calc.py", "content": "x = 1\n"})], Text("Wrote calc.py.")],
            ("reviewer", 1): [verdict("approved")],
        },
    )
    async with start_factory() as h:
        a = await h.create("Ask first", "ledger-ask")
        one = await h.create("One reply", "ledger-one")
        run = await start_run(h, wf)
        waiting = await h.wait_for(a["id"], "awaiting_input")
        first_run = len(reported(model, waiting["session_id"]))
        r = await h.api.post(f"/api/tasks/{a['id']}/answer", json={"answer": "spaces"})
        assert r.status_code == 200, r.text
        done_a = await h.wait_for(a["id"], {"done", "failed"})
        done_one = await h.wait_for(one["id"], {"done", "failed"})
        finished = await wait_run(h, run["id"], {"completed", "failed"})
        assert (done_a["status"], done_one["status"], finished["status"]) == ("done", "done", "completed")

        # per run: each agent run's rows hold exactly the tokens the server reported for its requests
        usage_a = reported(model, done_a["session_id"])
        runs_a = entries(h, task_id=a["id"])
        assert len({e.agent_run_id for e in runs_a}) == 2
        by_run: dict[int, list[CostEntry]] = {}
        for e in runs_a:
            by_run.setdefault(e.agent_run_id, []).append(e)
        first, second = (by_run[k] for k in sorted(by_run))
        assert (sum(e.input_tokens for e in first), sum(e.output_tokens for e in first)) == tokens(usage_a[:first_run])
        assert (sum(e.input_tokens for e in second), sum(e.output_tokens for e in second)) == tokens(
            usage_a[first_run:]
        )
        assert all(e.cost_usd > 0 and e.model.startswith("claude-") and e.repo == "demo" for e in runs_a)

        # per task: the ledger's total is the task's cost in its JSON, and the tokens are the server's
        for t in (done_a, done_one):
            rows = entries(h, task_id=t["id"])
            assert tokens(reported(model, t["session_id"])) == (
                sum(e.input_tokens for e in rows), sum(e.output_tokens for e in rows),
            )  # fmt: skip
            assert t["cost_usd"] == pytest.approx(sum(e.cost_usd for e in rows), abs=1e-6)

        # per workflow: the run's JSON total is its steps' rows; the API groups them under its id
        wf_rows = entries(h, workflow_run_id=run["id"])
        assert {e.agent_type for e in wf_rows} == {"coder", "reviewer"}
        wf_total = sum(e.cost_usd for e in wf_rows)
        assert finished["cost_usd"] == pytest.approx(wf_total, abs=1e-6)
        by_workflow = (await h.api.get("/api/costs", params={"group_by": "workflow"})).json()
        groups = {g["key"]: g for g in by_workflow["groups"]}
        assert groups[run["id"]]["cost_usd"] == pytest.approx(wf_total, abs=1e-6)
        assert groups[None]["cost_usd"] == pytest.approx(done_a["cost_usd"] + done_one["cost_usd"], abs=1e-6)

        # per repo and per day: everything, server-reported tokens included
        everything = entries(h)
        all_sessions = {e.session_id for e in everything}
        server_in, server_out = tokens([u for s in all_sessions for u in reported(model, s)])
        today = ledger.today(h.cfg.budgets.timezone)
        for group_by, key in (("repo", "demo"), ("day", today)):
            body = (await h.api.get("/api/costs", params={"group_by": group_by})).json()
            (g,) = body["groups"]
            assert g["key"] == key
            assert (g["input_tokens"], g["output_tokens"]) == (server_in, server_out)
            assert g["cost_usd"] == pytest.approx(sum(e.cost_usd for e in everything), abs=1e-6)
            assert g["runs"] == len({e.agent_run_id for e in everything}) == 5


async def test_a_task_budget_stops_the_run_pushes_and_asks(start_factory, model):
    model.add_scenario("budget-raise", [*writes("raise", 10), Text("All ten written.")])
    model.add_scenario("budget-stop", [*writes("stop", 10), Text("All ten written.")])
    async with start_factory(budgets={"per_task_usd": 0.03}) as h:
        raised = await h.create("Write ten files", "budget-raise")
        stopped = await h.create("Write ten more", "budget-stop")
        for t, prefix in ((raised, "raise"), (stopped, "stop")):
            waiting = await h.wait_for(t["id"], {"awaiting_input", "done", "failed"}, timeout=120)
            assert waiting["status"] == "awaiting_input", waiting
            q = waiting["pending_question"]
            assert q["text"].startswith("Budget reached: $0.0") and " of $0.03 for this task " in q["text"]
            assert q["text"].endswith("Raise it?")
            assert q["options"] == ["Raise by $0.03 (to $0.06)", "Raise to a given amount (answer e.g. 'raise to $25')", "Stop"]  # fmt: skip
            # the CLI stopped itself before the script's end, and its work is on the remote branch already
            assert waiting["cost_usd"] >= 0.03
            assert remote_file(h.remote, waiting["branch"], f"{prefix}-0.txt") == "step 0\n"
            with session_scope(h.runtime.engine) as s:
                runs = list(s.exec(select(AgentRun).where(AgentRun.task_id == t["id"])))
            assert len(runs) == 1 and runs[0].ended_at is not None
        session = (await h.task(raised["id"]))["session_id"]
        before = len(model.requests_for("budget-raise"))
        assert before < 11

        r = await h.api.post(f"/api/tasks/{raised['id']}/answer", json={"answer": "raise to $5"})
        assert r.status_code == 200, r.text
        done = await h.wait_for(raised["id"], {"done", "failed"}, timeout=120)
        assert done["status"] == "done", done
        resumed = model.requests_for("budget-raise")[before:]
        assert resumed and all(rq.session_id == session for rq in resumed)  # the same session, resumed
        assert "raised to $5.00" in resumed[0].last_user_text
        assert remote_file(h.remote, done["branch"], "raise-9.txt") == "step 9\n"

        r = await h.api.post(f"/api/tasks/{stopped['id']}/answer", json={"answer": "Stop"})
        assert r.status_code == 200, r.text
        failed = await h.wait_for(stopped["id"], {"done", "failed"})
        assert failed["status"] == "failed"
        assert failed["error"].startswith(f"stopped at the budget, work pushed to {failed['branch']}")
        assert remote_file(h.remote, failed["branch"], "stop-0.txt") == "step 0\n"
        assert remote_file(h.remote, failed["branch"], "stop-9.txt") is None

        # the board warned as the task passed 80% of its budget
        with session_scope(h.runtime.engine) as s:
            board = [m.content for m in s.exec(select(Message).where(Message.task_id == stopped["id"]))]
        assert any(m.startswith("budget warning: ") and "for this task" in m for m in board), board


async def test_a_daily_budget_holds_new_tasks_until_the_day_rolls_over(start_factory, model, monkeypatch):
    monkeypatch.setattr(ledger.CLOCK, "offset", timedelta(0))
    model.add_scenario("held", [Text("Done after the hold.")])
    async with start_factory(
        budgets={"daily_usd": 0.05, "timezone": "Pacific/Auckland", "hold_check_seconds": 0.5}
    ) as h:
        today = ledger.today("Pacific/Auckland")
        insert(h.runtime.engine, CostEntry(task_id=0, repo="demo", agent_type="coder", cost_usd=0.06, day=today))
        t = await h.create("Wait for tomorrow", "held")
        await h.until(lambda: _noted(h, t["id"]), what="the hold's note on the task")
        held = await h.task(t["id"])
        assert held["status"] == "queued"
        assert held["note"].startswith("held: daily budget reached, $0.06 of $0.05 for all of Factory today")
        assert "Pacific/Auckland" in held["note"]
        assert model.requests_for("held") == []  # no agent ran

        monkeypatch.setattr(ledger.CLOCK, "offset", timedelta(days=1))  # the day rolls over
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        assert done["note"] != held["note"]
        assert model.requests_for("held")


async def _noted(h: Any, task_id: int) -> bool:
    return bool((await h.task(task_id))["note"])


async def test_a_timeout_pushes_the_work_in_progress(start_factory, model):
    model.add_scenario("timeout-wip", [[ToolUse("Write", {"file_path": "half.txt", "content": "half done\n"})], Stall(120)])  # fmt: skip
    # 12 s of silence: on a loaded machine (load 11 on 2 cores) the CLI took over 6 s to print its first line
    async with start_factory(agent_activity_timeout_minutes=0.2) as h:
        t = await h.create("Half a job", "timeout-wip")
        failed = await h.wait_for(t["id"], {"done", "failed"}, timeout=60)
        assert failed["status"] == "failed"
        assert "agent_activity_timeout_minutes" in failed["error"]
        assert f"work pushed to {failed['branch']} (1 commit, 1 file changed, head " in failed["error"]
        assert remote_file(h.remote, failed["branch"], "half.txt") == "half done\n"
    model.release_stalls()
