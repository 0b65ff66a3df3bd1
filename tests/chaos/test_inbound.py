"""Answers and reviews arriving while Temporal is unreachable, then retried by their sender: each counts once.

The outage is real: the API's launcher (and the Telegram poller's) is swapped for one whose Temporal
client points at a closed port, so every start and answer fails as it would with the server down;
then the live launcher is put back and the sender retries the way it does (Plane: a new delivery id;
GitHub: a redelivery under the same id; Telegram polling: the same update fetched again).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlmodel import select
from temporalio.client import Client
from temporalio.service import RetryConfig

from factory.store.tables import Task, session_scope
from temporal.launcher import TemporalLauncher
from tests.fakes import github_webhooks as ghw
from tests.fakes.anthropic import Text, ToolUse
from tests.test_integrations import (
    CHAT,
    GH_SECRET,
    PLANE_SECRET,
    _markup,
    issue_tasks,
    post_github,
    post_plane,
    questions,
    scenario,
    tg_config,
)

pytestmark = pytest.mark.chaos


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def temporal_unreachable(h: Any) -> AsyncIterator[None]:
    """Within the block, the API and the Telegram poller reach a Temporal that is not there."""
    client = await Client.connect(f"127.0.0.1:{_closed_port()}", lazy=True, retry_config=RetryConfig(max_retries=0))
    dead = TemporalLauncher(h.cfg, client, h.runtime.engine)
    live_api, live_runtime = h.app.state.launcher, h.runtime.launcher
    h.app.state.launcher = h.runtime.launcher = dead
    try:
        yield
    finally:
        h.app.state.launcher, h.runtime.launcher = live_api, live_runtime


async def test_telegram_reply_while_temporal_is_down_is_delivered_once(start_factory, model, telegram):
    sc = scenario("tg-down")
    model.add_scenario(sc, [Text('{"type": "question", "question": "Which port?"}'), Text("Using it.")])
    async with start_factory(telegram=tg_config(telegram)) as h:
        t = await h.create("Pick a port", sc)
        await h.wait_for(t["id"], "awaiting_input")
        await h.until(lambda: any(_markup(s).get("force_reply") for s in telegram.sent(CHAT)), what="the question")
        ask = next(s for s in telegram.sent(CHAT) if _markup(s).get("force_reply"))
        async with temporal_unreachable(h):
            uid = telegram.reply(CHAT, ask.message_id, "8080")
            polls = len(telegram.offsets)  # the poll under way now returns the update
            # the poller fetched the update, failed to deliver it, and asks for it again (the offset stayed)
            await h.until(
                lambda: any(o is None or o <= uid for o in telegram.offsets[polls:]),
                what="the update fetched again after the failure",
            )
            assert (await h.task(t["id"]))["status"] == "awaiting_input"
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        assert [(q.answer, q.answered_by) for q in questions(h, t["id"])] == [("8080", "telegram:alice")]
        await h.until(lambda: telegram.consumed(uid), what="the offset to move past the handled update")
        assert sum("Answer sent to task" in x for x in telegram.texts(CHAT)) == 1


async def test_plane_comment_while_temporal_is_down_is_delivered_once(start_factory, model, plane):
    sc = scenario("plane-down")
    model.add_scenario(sc, [Text('{"type": "question", "question": "Which colour?"}'), Text("Painted it.")])
    async with start_factory(plane=plane.config(webhook_secret=PLANE_SECRET, default_repo="demo")) as h:
        issue = str(uuid.uuid4())
        r = await post_plane(h, plane.issue_payload(issue, "queued", description_html=f"<p>[[scenario:{sc}]]</p>"))
        task_id = r.json()["task_id"]
        await h.wait_for(task_id, "awaiting_input")
        answer = plane.comment_payload(issue, "<p>green</p>", actor="alice")
        async with temporal_unreachable(h):
            r = await post_plane(h, answer)
            assert r.status_code == 503, r.text  # a status Plane retries
            assert (await h.task(task_id))["status"] == "awaiting_input"
        r = await post_plane(h, answer)  # Plane's retry: the same comment under a new delivery id
        assert r.json()["status"] == "answered", r.text
        r = await post_plane(h, answer)  # and once more: already taken
        assert r.json()["status"] == "ignored", r.text
        done = await h.wait_for(task_id, {"done", "failed"})
        assert done["status"] == "done", done
        assert [(q.answer, q.answered_by) for q in questions(h, task_id)] == [("green", "plane:alice")]
        assert [t.id for t in issue_tasks(h, issue)] == [task_id]


async def test_plane_move_while_temporal_is_down_starts_one_task_on_retry(start_factory, model, plane):
    sc = scenario("plane-move-down")
    model.add_scenario(sc, [Text("Nothing to change.")])
    async with start_factory(plane=plane.config(webhook_secret=PLANE_SECRET, default_repo="demo")) as h:
        issue = str(uuid.uuid4())
        moved = plane.workitem_payload(issue, "queued", description_html=f"<p>[[scenario:{sc}]]</p>")
        async with temporal_unreachable(h):
            r = await post_plane(h, moved)
            assert r.status_code == 503, r.text
        assert issue_tasks(h, issue) == []  # nothing half-made is left behind
        r = await post_plane(h, {**moved, "delivery_id": str(uuid.uuid4())})
        assert r.json()["status"] == "started", r.text
        assert (await h.wait_for(r.json()["task_id"], {"done", "failed"}))["status"] == "done"
        assert len(issue_tasks(h, issue)) == 1


async def test_github_review_while_temporal_is_down_starts_one_revision(start_factory, model, github):
    sc, rev = scenario("gh-orig"), scenario("gh-rev")
    model.add_scenario(sc, [[ToolUse("Write", {"file_path": "greet.txt", "content": "hello\n"})], Text("Said hello.")])
    model.add_scenario(rev, [[ToolUse("Bash", {"command": "echo goodbye > greet.txt"})], Text("Said goodbye.")])
    async with start_factory(github={"webhook_secret": GH_SECRET}) as h:
        t = await h.create("Greet people", sc)
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        await h.settled(t["id"])
        pr = ghw.from_fake(next(p for p in github.prs if p["head"]["ref"] == done["branch"]))
        review = ghw.review_submitted(pr, 5151, f"Say goodbye. [[scenario:{rev}]]", "carol", "COLLABORATOR")
        delivery = str(uuid.uuid4())
        async with temporal_unreachable(h):
            r = await post_github(h, "pull_request_review", review, delivery=delivery)
            assert r.status_code == 503, r.text
        with session_scope(h.runtime.engine) as s:
            assert s.exec(select(Task).where(Task.agent_type == "coder_revision")).all() == []  # no orphan row
        r = await post_github(h, "pull_request_review", review, delivery=delivery)  # redelivered, same id
        assert r.json()["status"] == "started", r.text
        revision_id = r.json()["task_id"]
        r = await post_github(h, "pull_request_review", review)  # a later delivery of the same review
        assert r.json()["status"] == "ignored", r.text
        revised = await h.wait_for(revision_id, {"done", "failed"})
        assert revised["status"] == "done", revised
        assert revised["branch"] == done["branch"]
        with session_scope(h.runtime.engine) as s:
            assert [x.id for x in s.exec(select(Task).where(Task.agent_type == "coder_revision")).all()] == [
                revision_id
            ]
