"""Budgets without an agent: the smallest budget, the question and its answers, the day in a time zone,
the ledger's rows from a CLI result and its sums, and `GET /api/costs` (grouping, bad input).

Real SQLite; the API over ASGI (no worker).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from factory.config import ConfigError, load_config
from factory.contracts import TaskEvent
from factory.domain import budgets as b
from factory.integrations.telegram.notifier import format_event
from factory.store import ledger
from factory.store.tables import CostEntry, make_engine
from factory.store.writes import insert

CLI_RESULT = {  # a result line of the real CLI (2.1), stopped by --max-budget-usd
    "type": "result",
    "subtype": "error_max_budget_usd",
    "is_error": True,
    "total_cost_usd": 0.025335,
    "usage": {"input_tokens": 3036, "output_tokens": 62, "cache_read_input_tokens": 0},
    "modelUsage": {
        "claude-opus-4-8[1m]": {
            "inputTokens": 4602, "outputTokens": 93, "cacheReadInputTokens": 10, "cacheCreationInputTokens": 20,
            "costUSD": 0.025, "contextWindow": 1000000,
        },
        "claude-haiku-4-5": {"inputTokens": 300, "outputTokens": 5, "costUSD": 0.000335},
    },
    "errors": ["Reached maximum budget ($0.02)"],
}  # fmt: skip


def test_the_smallest_remaining_budget_caps_the_run() -> None:
    names = b.labels("coder", "demo", "Europe/Berlin")
    items = b.budgets({"run": 2.0, "task": 5.0, "workflow": None, "daily": 20.0}, {"task": 4.5, "daily": 1.0}, names)
    assert [i.key for i in items] == ["run", "task", "daily"]
    cap = b.smallest(items)
    assert cap is not None and cap.key == "task" and cap.left == pytest.approx(0.5)
    assert b.exhausted(items) is None
    assert b.smallest([]) is None
    spent = b.budgets({"task": 5.0, "repo_daily": 3.0}, {"task": 5.2, "repo_daily": 3.0}, names)
    assert b.exhausted(spent).key == "task"  # the narrowest first
    held = b.held_by(spent)
    assert held is not None and held.key == "repo_daily"
    reason = b.hold_reason(held, "Europe/Berlin")
    assert reason.startswith("held: daily budget reached, $3.00 of $3.00 for demo today") and "Europe/Berlin" in reason


def test_the_question_its_options_and_the_answers() -> None:
    text, options = b.question("task", "this task (budgets.per_task_usd)", 2.0, 2.1)
    assert text == "Budget reached: $2.10 of $2.00 for this task (budgets.per_task_usd). Raise it?"
    assert options == ["Raise by $2.00 (to $4.00)", "Raise to a given amount (answer e.g. 'raise to $25')", "Stop"]
    assert b.decide(options[0], 2.0, 2.1) == b.Decision(stop=False, limit=4.0)  # the same again
    assert b.decide("raise by 1.5", 2.0, 2.1) == b.Decision(stop=False, limit=3.5)
    assert b.decide("Raise to $25", 2.0, 2.1) == b.Decision(stop=False, limit=25.0)
    assert b.decide("10", 2.0, 2.1) == b.Decision(stop=False, limit=10.0)
    assert b.decide("Stop", 2.0, 2.1) == b.Decision(stop=True)
    assert b.decide("raise to 2", 2.0, 2.1) is None  # not above what was spent
    assert b.decide("maybe later", 2.0, 2.1) is None
    assert b.usd(0.02) == "$0.02" and b.usd(0.0253) == "$0.0253" and b.usd(1234.5) == "$1,234.50"


def test_warnings_fire_once_when_spending_passes_80_percent() -> None:
    budget = b.Budget("daily", "today", 10.0, 8.5)
    assert b.warning(budget, before=7.0) == "budget warning: $8.50 of $10.00 spent for today (85%)"
    assert b.warning(budget, before=8.1) is None  # already past: warned before
    assert b.warning(b.Budget("daily", "today", 10.0, 7.9), before=7.0) is None


def test_telegram_says_what_a_finished_or_failed_task_cost() -> None:
    failed = format_event(TaskEvent(kind="failed", task_id=3, title="Fix", error="boom", cost_usd=0.0253))
    assert failed is not None and failed.endswith("\nCost: $0.0253")
    done = format_event(TaskEvent(kind="completed", task_id=3, title="Fix", pr_url="https://x/pr/1", cost_usd=12.5))
    assert done is not None and done.endswith("\nCost: $12.50")
    started = format_event(TaskEvent(kind="started", task_id=3, title="Fix", cost_usd=1.0))
    assert started is not None and "Cost" not in started


def test_the_day_is_the_configured_time_zones() -> None:
    late = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    assert b.day_of(late, "UTC") == "2026-12-01"
    assert b.day_of(late, "Europe/Berlin") == "2026-12-02"
    assert b.day_of(late, "America/New_York") == "2026-12-01"


def test_budget_keys_are_validated(tmp_path) -> None:
    cfg_file = tmp_path / "config.yml"
    cfg_file.write_text(
        "budgets: {per_task_usd: 2, daily_usd: 50, timezone: Europe/Berlin}\n"
        "agent_templates: {coder: {system_prompt_file: prompts/coder.md, max_budget_usd: 1.5}}\n"
    )
    cfg = load_config(cfg_file)
    assert cfg.budgets.per_task_usd == 2 and cfg.budgets.timezone == "Europe/Berlin"
    assert cfg.agent_templates["coder"].max_budget_usd == 1.5
    for bad, key in (("budgets: {daily_usd: -1}\n", "daily_usd"), ("budgets: {timezone: Mars/Olympus}\n", "timezone")):
        cfg_file.write_text(bad)
        with pytest.raises(ConfigError, match=key):
            load_config(cfg_file)


def test_the_ledger_writes_one_row_per_model_once_and_sums_them(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    run = ledger.RunInfo(
        agent_run_id=7, task_id=1, workflow_run_id=None, repo="demo", agent_type="coder", session_id="s1",
        day="2026-12-01",
    )  # fmt: skip
    assert ledger.record_result(engine, CLI_RESULT, run) == pytest.approx(0.025335)
    ledger.record_result(engine, CLI_RESULT, run)  # a second write of the same run adds nothing
    (opus, haiku) = sorted(ledger.grouped(engine, "model"), key=lambda g: g["key"], reverse=True)
    assert opus["key"] == "claude-opus-4-8[1m]" and haiku["key"] == "claude-haiku-4-5"
    assert (opus["input_tokens"], opus["output_tokens"], opus["cache_read_tokens"], opus["cache_write_tokens"]) == (
        4602, 93, 10, 20,
    )  # fmt: skip
    assert ledger.task_total(engine, 1) == pytest.approx(0.025335)
    # a result without modelUsage: one row from usage and total_cost_usd, under the model asked for
    bare = {"total_cost_usd": 0.5, "usage": {"input_tokens": 100, "output_tokens": 10}}
    run2 = ledger.RunInfo(8, 2, 3, "other", "reviewer", "s2", "2026-12-02", model="claude-sonnet-4-5")
    ledger.record_result(engine, bare, run2)
    assert ledger.spent(engine, 2, 3, "other", "2026-12-02") == {
        "task": 0.5, "workflow": 0.5, "repo_daily": 0.5, "daily": 0.5,
    }  # fmt: skip
    assert ledger.spent(engine, 1, None, "demo", "2026-12-02") == {"task": 0.025335, "repo_daily": 0.0, "daily": 0.5}
    assert ledger.workflow_total(engine, 3) == 0.5


def _row(task_id: int, repo: str, agent_type: str, day: str, cost: float, run: int | None = None) -> CostEntry:
    return CostEntry(
        agent_run_id=task_id * 100 + int(cost * 100), task_id=task_id, workflow_run_id=run, repo=repo,
        agent_type=agent_type, model="m", input_tokens=int(cost * 1000), output_tokens=1, cost_usd=cost, day=day,
    )  # fmt: skip


async def test_costs_are_grouped_by_day_repo_agent_type_and_workflow(start_factory) -> None:
    async with start_factory(worker=False) as h:
        for row in (
            _row(1, "demo", "coder", "2026-11-30", 1.0),
            _row(1, "demo", "coder", "2026-12-01", 2.0),
            _row(2, "demo", "reviewer", "2026-12-01", 0.5, run=9),
            _row(3, "other", "coder", "2026-12-02", 4.0, run=9),
        ):
            insert(h.runtime.engine, row)

        async def costs(**params: str) -> dict:
            r = await h.api.get("/api/costs", params=params)
            assert r.status_code == 200, r.text
            return r.json()

        def sums(body: dict) -> dict:
            return {g["key"]: g["cost_usd"] for g in body["groups"]}

        assert sums(await costs()) == {"2026-11-30": 1.0, "2026-12-01": 2.5, "2026-12-02": 4.0}  # by day
        assert sums(await costs(group_by="repo")) == {"demo": 3.5, "other": 4.0}
        assert sums(await costs(group_by="agent_type")) == {"coder": 7.0, "reviewer": 0.5}
        assert sums(await costs(group_by="workflow")) == {None: 3.0, 9: 4.5}
        window = await costs(group_by="repo", since="2026-12-01", until="2026-12-01")
        assert sums(window) == {"demo": 2.5} and window["total_usd"] == 2.5
        assert window["groups"][0]["runs"] == 2 and window["groups"][0]["input_tokens"] == 2500
        assert sums(await costs(group_by="day", since="2026-12-02")) == {"2026-12-02": 4.0}
        assert (await costs(since="2026-12-02", until="2026-12-01"))["groups"] == []  # an empty window

        for params, fragment in (
            ({"group_by": "host"}, "group_by"),
            ({"since": "yesterday"}, "since"),
            ({"until": "2026-13-01"}, "until"),
        ):
            r = await h.api.get("/api/costs", params=params)
            assert r.status_code == 422, (params, r.text)
            assert fragment in r.text
