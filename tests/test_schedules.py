"""Schedules: Temporal Schedules from config.yml and the API fire tasks, survive a restart of
`factory up`, and can be paused, unpaused, triggered and deleted through the API.

A real `factory up` (its own Temporal dev server on a file, the worker and the API), the real claude
CLI against the scripted model.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from factory.config import load_config
from tests.conftest import write_config
from tests.fakes.anthropic import Text
from tests.procs import FactoryUp

INTERVAL_S = 2


def scheduled_tasks(api: httpx.Client, marker: str) -> list[dict[str, Any]]:
    r = api.get("/api/tasks", params={"limit": 500})
    assert r.status_code == 200, r.text
    return [t for t in r.json() if marker in t["title"]]


async def until(predicate: Any, timeout: float, what: str, up: FactoryUp) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{up.log.read_text()[-3000:]}")
        await asyncio.sleep(0.2)


async def test_a_schedule_fires_survives_a_restart_and_is_paused_and_triggered_by_the_api(
    tmp_path, model, remote, github
):
    sc = f"sched-{uuid.uuid4().hex[:8]}"
    model.add_scenario(sc, [Text("Checked the dependencies; nothing to change.")])
    title = f"Nightly check [[scenario:{sc}]]"
    schedules = {"nightly": {"cron": f"@every {INTERVAL_S}s", "repo": "demo", "title": title, "agent_type": "coder"}}
    up = FactoryUp(write_config(tmp_path, remote, github.url, schedules=schedules), tmp_path / "up-data")
    await asyncio.to_thread(up.start)
    try:
        api = up.client()
        await until(lambda: scheduled_tasks(api, sc), 30, "the schedule to fire", up)
        r = api.get("/api/schedules")
        assert r.status_code == 200, r.text
        [nightly] = [s for s in r.json() if s["name"] == "nightly"]
        assert nightly["cron"] == f"@every {INTERVAL_S}s" and nightly["paused"] is False and nightly["next_runs"]
        # one made through the API lives in Temporal alone (not in config.yml)
        body = {"name": "weekly", "cron": "0 3 * * 1", "timezone": "Europe/Berlin", "repo": "demo", "title": "Weekly"}
        r = api.post("/api/schedules", json=body)
        assert r.status_code == 201 and r.json()["timezone"] == "Europe/Berlin", r.text
        assert api.post("/api/schedules", json=body).status_code == 409
        bad = api.post("/api/schedules", json={**body, "name": "x", "repo": "nope"})
        assert bad.status_code == 422, bad.text
        assert api.post("/api/schedules", json={**body, "name": "y", "cron": "every day"}).status_code == 422
        assert api.post("/api/schedules/missing/pause").status_code == 404
        assert api.post("/api/schedules/weekly/pause").json() == {"name": "weekly", "status": "paused"}
        before = len(scheduled_tasks(api, sc))
    finally:
        assert await asyncio.to_thread(up.stop) == 0

    await asyncio.to_thread(up.start)  # the same data directory: the same Temporal state
    try:
        api = up.client()
        by_name = {s["name"]: s for s in api.get("/api/schedules").json()}
        assert set(by_name) >= {"nightly", "weekly"} and by_name["weekly"]["paused"] is True
        await until(lambda: len(scheduled_tasks(api, sc)) > before, 30, "a firing after the restart", up)

        assert api.post("/api/schedules/nightly/pause").status_code == 200
        assert api.get("/api/schedules/nightly").json()["paused"] is True
        # let a firing already on its way land, then nothing more comes while paused
        await asyncio.sleep(INTERVAL_S)
        paused_count = len(scheduled_tasks(api, sc))
        await asyncio.sleep(INTERVAL_S * 2.5)
        assert len(scheduled_tasks(api, sc)) == paused_count

        async def settled() -> bool:
            tasks = await asyncio.to_thread(scheduled_tasks, api, sc)
            return all(t["status"] in ("done", "failed", "cancelled") for t in tasks)

        deadline = time.monotonic() + 60
        while not await settled():  # a trigger while the last task still runs would be skipped (overlap)
            assert time.monotonic() < deadline, up.log.read_text()[-3000:]
            await asyncio.sleep(0.2)
        assert api.post("/api/schedules/nightly/trigger").json()["status"] == "triggered"
        await until(lambda: len(scheduled_tasks(api, sc)) == paused_count + 1, 30, "the triggered firing", up)
        tasks = scheduled_tasks(api, sc)
        assert all(t["status"] != "failed" for t in tasks), tasks

        assert api.delete("/api/schedules/weekly").status_code == 200
        assert "weekly" not in {s["name"] for s in api.get("/api/schedules").json()}
    finally:
        assert await asyncio.to_thread(up.stop) == 0


def test_schedule_config_is_checked(tmp_path, remote, github):
    ok = {"cron": "30 2 * * *", "timezone": "Europe/Paris", "repo": "demo", "title": "t"}
    cfg = load_config(write_config(tmp_path, remote, github.url, schedules={"a": ok}))
    assert cfg.schedules["a"].timezone == "Europe/Paris"
    for bad, why in (
        ({**ok, "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({**ok, "cron": "every night"}, "schedules.a.cron"),
        ({**ok, "workflow": "nope"}, "unknown workflow"),
        ({**ok, "agent_type": "wizard"}, "unknown agent type"),
    ):
        with pytest.raises(Exception, match=why):
            load_config(write_config(tmp_path, remote, github.url, schedules={"a": bad}))
