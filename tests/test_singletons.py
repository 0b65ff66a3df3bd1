"""Telegram polling and the PR poll run once per cluster, however many workers run.

Two workers (two `run_worker`s with their own host ids, on one Temporal dev server, one task queue
and one SQLite database) each ask at start for the singleton workflows (temporal/singletons.py).
The stand-in Telegram counts the getUpdates calls open at once: it must never see two, and each
update must be handled once. The stand-in GitHub counts the PR poll's calls: one poller's pace, not two.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from factory.config import FactoryConfig, load_config
from factory.store.tables import Task, TaskStatus, make_engine, session_scope
from temporal.client import data_converter
from temporal.singletons import JOBS, ensure_singletons, singleton_id
from temporal.worker import run_worker
from tests.conftest import make_remote, write_config
from tests.fakes.github import FakeGitHub
from tests.fakes.telegram import FakeTelegram

CHAT = 555001
PR = 4242
POLL_EVERY_S = 1.2  # github.pr_poll_minutes = 0.02
HINT = "To answer a question, reply to the question&#39;s message."  # as sent: HTML-escaped


@pytest.fixture
def gh() -> Any:
    g = FakeGitHub()
    g.start()
    yield g
    g.stop()


def host_config(tmp: Path, base: Path, telegram: FakeTelegram, gh: FakeGitHub, host: str) -> FactoryConfig:
    return load_config(
        write_config(
            tmp / host,
            base,
            gh.url,
            telegram={"bot_token": telegram.token, "chat_id": str(CHAT), "api_url": telegram.url, "polling": True},
            github={"api_url": gh.url, "pr_poll_minutes": POLL_EVERY_S / 60},
            workspace_root=str(tmp / host / "ws"),
        )
    )


async def until(check: Any, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_two_workers_run_one_telegram_poller_and_one_pr_poll(temporal_env, tmp_path, telegram, gh):
    remote = make_remote(tmp_path / "remote.git")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = host_config(tmp_path, remote, telegram, gh, "a")
    # the same cluster (one queue, id prefix and database: a's data_dir), another host and workspace
    b = a.model_copy(
        update={
            "temporal": a.temporal.model_copy(update={"worker_id": a.temporal.worker_id + "-b"}),
            "workspace_root": str(tmp_path / "b" / "ws"),
        }
    )
    engine = make_engine(a.db_url)
    with session_scope(engine) as s:  # an open Factory PR for the PR poll to ask GitHub about
        s.add(Task(title="t", repo="demo", agent_type="coder", status=TaskStatus.done, branch="factory/1-t",
                   pr_number=PR, pr_url=f"https://github.com/acme/demo/pull/{PR}"))  # fmt: skip
        s.commit()

    client = temporal_env.client
    # one client per host, as two processes would have (the SDK refuses two workers of a queue on one client)
    other = await Client.connect(
        client.service_client.config.target_host, namespace=client.namespace, data_converter=data_converter
    )
    stops = [asyncio.Event(), asyncio.Event()]
    workers = [asyncio.create_task(run_worker(a, client, stops[0]))]
    try:
        await until(lambda: telegram.polling >= 1, "a getUpdates poll")  # on the first host: the only one yet
        workers.append(asyncio.create_task(run_worker(b, other, stops[1])))
        await asyncio.sleep(1.5)  # both workers are up and have asked for the singletons by now
        assert not any(w.done() for w in workers), [w.exception() for w in workers if w.done()]
        updates = [telegram.push(_message(f"hello {i}")) for i in range(4)]
        await until(lambda: all(telegram.consumed(u) for u in updates), "the updates to be read")
        await until(lambda: len(telegram.texts(CHAT)) >= len(updates), "the replies")

        pulls = f"/repos/acme/demo/pulls/{PR}"
        seen = sum(1 for c in gh.calls if c.method == "GET" and c.path == pulls)
        window = 6.0
        await asyncio.sleep(window)
        polls = sum(1 for c in gh.calls if c.method == "GET" and c.path == pulls) - seen

        assert telegram.most_polling == 1, "two getUpdates polls were open at once"
        assert telegram.texts(CHAT) == [HINT] * len(updates)  # each update handled once, by one poller
        # one poller's pace: a pass, then POLL_EVERY_S; two pollers would make about twice as many calls
        assert 2 <= polls <= window / POLL_EVERY_S + 1, polls
        handles = [client.get_workflow_handle(singleton_id(a, job)) for job in ("telegram", "pull_requests")]
        for h in handles:  # each started once: the second worker adopted the first's run
            assert (await h.describe()).status.name == "RUNNING"
            first = [
                e async for e in h.fetch_history_events() if e.HasField("workflow_execution_started_event_attributes")
            ]
            assert len(first) == 1

        # the first host, which polls, stops: the other polls on (the span cut short is taken up again there)
        stops[0].set()
        await asyncio.wait_for(workers[0], 60)
        more = [telegram.push(_message(f"again {i}")) for i in range(2)]
        await until(lambda: all(telegram.consumed(u) for u in more), "the other host to poll", timeout=40)
        await until(lambda: len(telegram.texts(CHAT)) >= len(updates) + len(more), "the replies")
        assert telegram.most_polling == 1
        assert telegram.texts(CHAT) == [HINT] * (len(updates) + len(more))
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        for job in JOBS:  # leave nothing running on the shared dev server
            try:
                await client.get_workflow_handle(singleton_id(a, job)).terminate("test over")
            except Exception:
                pass


def _message(text: str) -> dict[str, Any]:
    return {
        "message": {
            "message_id": int(time.monotonic_ns() % 1_000_000),
            "date": int(time.time()),
            "chat": {"id": CHAT, "type": "private"},
            "from": {"id": 42, "is_bot": False, "first_name": "Alice", "username": "alice"},
            "text": text,
        }
    }


async def test_a_second_start_adopts_the_running_singleton_and_a_job_turned_off_is_cancelled(
    temporal_env, tmp_path, telegram, gh
):
    remote = make_remote(tmp_path / "remote.git")
    (tmp_path / "a").mkdir()
    on = host_config(tmp_path, remote, telegram, gh, "a")
    off = on.model_copy(update={"telegram": on.telegram.model_copy(update={"webhook_secret": "tg-hook-secret-1"})})
    client = temporal_env.client
    await ensure_singletons(client, on)
    handle = client.get_workflow_handle(singleton_id(on, "telegram"))
    first = (await handle.describe()).run_id
    await ensure_singletons(client, on)  # another worker's start (no worker runs here: nothing polls)
    assert (await handle.describe()).run_id == first
    await ensure_singletons(client, off)  # webhook mode: the poller must stop
    await cancel_requested(handle)
    for job in JOBS:
        try:
            await client.get_workflow_handle(singleton_id(on, job)).terminate("test over")
        except Exception:
            pass


async def cancel_requested(handle: Any, timeout: float = 10) -> None:
    """No worker runs here, so the cancel shows as the request recorded in the workflow's history."""
    end = time.monotonic() + timeout
    while True:
        events = [e async for e in handle.fetch_history_events()]
        if any(e.HasField("workflow_execution_cancel_requested_event_attributes") for e in events):
            return
        assert time.monotonic() < end, f"{handle.id} was not asked to cancel"
        await asyncio.sleep(0.1)
