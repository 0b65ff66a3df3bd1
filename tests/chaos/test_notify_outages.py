"""Plane and Telegram down for a while: the task finishes on time, and each notice arrives late, once."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.chaos.stages import poll, record_figures
from tests.fakes.anthropic import Text, ToolUse
from tests.test_integrations import CHAT, PLANE_SECRET, post_plane, tg_config

pytestmark = pytest.mark.chaos


async def test_plane_and_telegram_down_hold_no_task_and_each_notice_arrives_once_later(
    start_factory, model, plane, telegram, figures_file
):
    sc = f"notify-down-{uuid.uuid4().hex[:8]}"
    model.add_scenario(sc, [[ToolUse("Write", {"file_path": "n.txt", "content": "n\n"})], Text("Wrote n.txt.")])
    plane_cfg = plane.config(webhook_secret=PLANE_SECRET, default_repo="demo")
    async with start_factory(plane=plane_cfg, telegram=tg_config(telegram)) as h:
        issue = str(uuid.uuid4())
        r = await post_plane(h, plane.issue_payload(issue, "queued", description_html=f"<p>[[scenario:{sc}]]</p>"))
        task_id = r.json()["task_id"]
        telegram.down()  # 502 to every call
        plane.down()  # connections refused
        try:
            done = await h.wait_for(task_id, {"done", "failed"}, timeout=90)
            assert done["status"] == "done", done  # finished while both were still down
            await poll(
                lambda: any(c.method == "sendMessage" and c.status == 502 for c in telegram.attempts()),
                "a send to fail against the outage",
            )
            assert not any("Done" in x for x in telegram.texts(CHAT)), "a notice went through the outage"
        finally:
            telegram.recover()
            plane.recover()
        recovered = time.monotonic()

        await poll(lambda: len(plane.comments_on(issue)) == 1, "the completion comment after the outage", 60)
        plane_late = time.monotonic() - recovered
        await poll(lambda: any("Done" in x for x in telegram.texts(CHAT)), "Telegram's Done after the outage", 60)
        await h.settled(task_id)  # every notification has been sent (or given up): now count them
        sent = telegram.sent(CHAT)
        kinds = sorted(x.split()[1] for x in telegram.texts(CHAT))
        assert kinds == ["<b>Done</b>", "<b>Started</b>"], kinds  # each once
        done_msg = next(s for s in sent if "Done" in s.body["text"])
        assert done_msg.at > telegram.downtime[-1][1], "Done was delivered before the outage ended"
        states = plane.state_names(issue)
        assert states[-1] == "in_review" and states.count("in_review") == 1, states
        assert states.count("in_progress") <= 1, states  # a stale "started" may be skipped, never repeated
        [comment] = plane.comments_on(issue)
        assert done["pr_url"] in comment["comment_html"]
        record_figures(
            figures_file, test="Plane refusing and Telegram 502 until the task was done", crashes=0, tasks=1,
            lost=0, duplicates=len(sent) - 2 + len(plane.comments_on(issue)) - 1,
            worst_notice_after_recovery_s=round(max(done_msg.at - recovered, plane_late), 1),
        )  # fmt: skip
