"""Plane, Telegram and GitHub integrations end to end.

Real Temporal, real git, the real claude CLI against the scripted model; Plane, Telegram and GitHub
are local HTTP servers speaking their APIs (tests/fakes/plane.py, telegram.py, github.py), and
webhooks are posted the way those services sign them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import types
import uuid
from typing import Any

import pytest
from sqlmodel import select

from factory.contracts import TaskEvent
from factory.domain.signing import valid_hmac_sha256
from factory.integrations.plane.client import html_to_text
from factory.integrations.telegram.client import MAX_CHARS, clip_escaped
from factory.integrations.telegram.notifier import format_event
from factory.launcher import LaunchError
from factory.specs import workflow_definitions
from factory.store.tables import Question, Task, session_scope
from tests.conftest import remote_file
from tests.fakes import github_webhooks as ghw
from tests.fakes.anthropic import Fail, Text, ToolUse
from tests.fakes.plane import signed
from tests.fakes.telegram import FakeTelegram

PLANE_SECRET = "plane-webhook-secret-0123"
GH_SECRET = "github-webhook-secret-4567"
CHAT = 111111
CHAT2 = 222222
BOARD_CHAT = 333333
OTHER_CHAT = 999999


def scenario(name: str) -> str:
    return f"integ-{name}-{uuid.uuid4().hex[:8]}"


def tg_config(t: FakeTelegram, **extra: Any) -> dict[str, Any]:
    return {"bot_token": t.token, "chat_id": str(CHAT), "api_url": t.url, **extra}


async def post_plane(h: Any, payload: dict[str, Any], delivery: str | None = None, signature: str | None = None) -> Any:
    body, headers = signed(payload, PLANE_SECRET, delivery=delivery)
    if signature is not None:
        if signature:
            headers["X-Plane-Signature"] = signature
        else:
            del headers["X-Plane-Signature"]
    return await h.api.post("/webhooks/plane", content=body, headers=headers)


async def post_github(
    h: Any, event: str, payload: dict[str, Any], secret: str = GH_SECRET, delivery: str | None = None
) -> Any:
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sig,
    }
    return await h.api.post("/webhooks/github", content=body, headers=headers)


def issue_tasks(h: Any, issue: str) -> list[Task]:
    with session_scope(h.runtime.engine) as s:
        return list(s.exec(select(Task).where(Task.plane_issue_id == issue)).all())


def questions(h: Any, task_id: int) -> list[Question]:
    with session_scope(h.runtime.engine) as s:
        return list(s.exec(select(Question).where(Question.task_id == task_id).order_by(Question.id)).all())


def pr_closed_payload(pr: dict[str, Any], merged: bool) -> dict[str, Any]:
    return {
        "action": "closed",
        "number": pr["number"],
        "pull_request": {**pr, "state": "closed", "merged": merged},
        "repository": {"full_name": "acme/demo"},
        "sender": {"login": "carol"},
    }


# --- Plane ------------------------------------------------------------------------------------------


async def test_plane_issue_queued_runs_labelled_task_reports_back_and_merge_moves_it_to_done(
    start_factory, model, github, plane
):
    sc = scenario("plane")
    model.add_scenario(
        sc,
        [[ToolUse("Bash", {"command": "echo from plane > plane.txt"})], Text("Wrote plane.txt as the issue asked.")],
    )
    async with start_factory(
        plane=plane.config(webhook_secret=PLANE_SECRET), github={"webhook_secret": GH_SECRET}
    ) as h:
        issue = str(uuid.uuid4())
        payload = plane.issue_payload(
            issue,
            "queued",
            labels=["repo:demo", "devops"],
            name="Write plane.txt",
            description_html=f"<p>Please write <b>plane.txt</b>.</p><p>[[scenario:{sc}]]</p>",
        )
        # a bad or missing signature makes nothing
        assert (await post_plane(h, payload, signature="0" * 64)).status_code == 403
        assert (await post_plane(h, payload, signature="")).status_code == 403
        assert issue_tasks(h, issue) == []

        delivery = str(uuid.uuid4())
        r = await post_plane(h, payload, delivery=delivery)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "started"
        task_id = r.json()["task_id"]
        # the same delivery again, and the issue queued again while its task runs: still one task
        assert (await post_plane(h, payload, delivery=delivery)).json()["status"] == "duplicate"
        again = await post_plane(h, payload)
        assert again.json()["status"] == "ignored" and "already has task" in again.json()["reason"]
        assert [t.id for t in issue_tasks(h, issue)] == [task_id]

        done = await h.wait_for(task_id, {"done", "failed"})
        assert done["status"] == "done", done
        assert (done["repo"], done["agent_type"], done["plane_issue_id"]) == ("demo", "devops", issue)
        assert done["title"] == "Write plane.txt"
        assert done["description"].startswith("Please write plane.txt.")
        assert remote_file(h.remote, done["branch"], "plane.txt") == "from plane\n"

        # Plane saw in_progress, then in_review with a comment holding the PR link and cost
        await h.until(lambda: plane.comments_on(issue), what="the completion comment")
        assert plane.state_names(issue) == ["in_progress", "in_review"]
        [comment] = plane.comments_on(issue)
        assert done["pr_url"] in comment["comment_html"]
        assert "Wrote plane.txt" in comment["comment_html"] and "Cost: $" in comment["comment_html"]
        assert comment["external_source"] == "factory"
        patch = next(c for c in plane.calls if c.method == "PATCH")
        assert patch.headers["x-api-key"] == plane.api_key

        # GitHub: the PR merged marks the task merged and moves the issue to done
        pr = ghw.from_fake(next(p for p in github.prs if p["head"]["ref"] == done["branch"]))
        bad = await post_github(h, "pull_request", ghw.pr_closed(pr, True), secret="wrong")
        assert bad.status_code == 403
        r = await post_github(h, "pull_request", ghw.pr_closed(pr, True))
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "recorded", "pr_state": "merged", "task_ids": [task_id]}
        assert (await h.task(task_id))["pr_state"] == "merged"
        assert plane.state_names(issue)[-1] == "done"
        # told again (a redelivery under a new id): recorded once
        again = await post_github(h, "pull_request", ghw.pr_closed(pr, True))
        assert again.json()["status"] == "ignored", again.text


async def test_failed_task_moves_issue_to_failed_with_scrubbed_error(start_factory, model, plane, telegram):
    sc = scenario("fail")
    leak = "clone https://bob:hunter2secretpass@git.example.com/x.git failed, token ghp_0123456789abcdefghijABCDEFGHIJ"
    model.add_scenario(
        sc,
        [Fail(400, body={"type": "error", "error": {"type": "invalid_request_error", "message": leak}}, retry=False)],
    )
    async with start_factory(
        plane=plane.config(webhook_secret=PLANE_SECRET, default_repo="demo"), telegram=tg_config(telegram)
    ) as h:
        issue = str(uuid.uuid4())
        payload = plane.issue_payload(
            issue, "queued", name="Doomed <task>", description_html=f"<p>[[scenario:{sc}]]</p>"
        )
        r = await post_plane(h, payload)
        assert r.json()["status"] == "started", r.text
        failed = await h.wait_for(r.json()["task_id"], {"done", "failed"})
        assert failed["status"] == "failed" and failed["agent_type"] == "coder"  # the repo's default agent
        await h.until(lambda: plane.comments_on(issue), what="the failure comment")
        assert plane.state_names(issue) == ["in_progress", "failed"]
        html = plane.comments_on(issue)[0]["comment_html"]
        assert "failed" in html and "API Error" in html
        for secret in ("hunter2secretpass", "ghp_0123456789", "bob:"):
            assert secret not in html
        # Telegram got the failure too, escaped and scrubbed
        await h.until(lambda: any("Failed" in t for t in telegram.texts(CHAT)), what="the Telegram failure")
        text = next(t for t in telegram.texts(CHAT) if "Failed" in t)
        assert "Doomed &lt;task&gt;" in text and "hunter2secretpass" not in text and "ghp_0123" not in text


async def test_plane_comment_answers_pending_question_once_and_own_comments_are_ignored(start_factory, model, plane):
    sc = scenario("ask")
    model.add_scenario(
        sc,
        [
            Text('{"type": "question", "question": "Greet with <hi> or hello?"}'),
            [ToolUse("Write", {"file_path": "greeting.txt", "content": "hello\n"})],
            Text("Used the greeting from the answer."),
        ],
    )
    async with start_factory(plane=plane.config(webhook_secret=PLANE_SECRET, default_repo="demo")) as h:
        issue = str(uuid.uuid4())
        r = await post_plane(h, plane.issue_payload(issue, "queued", description_html=f"<p>[[scenario:{sc}]]</p>"))
        task_id = r.json()["task_id"]
        await h.wait_for(task_id, "awaiting_input")
        await h.until(lambda: plane.comments_on(issue), what="the question comment")
        [asked] = plane.comments_on(issue)
        assert "Greet with &lt;hi&gt; or hello?" in asked["comment_html"]
        assert plane.state_names(issue) == ["in_progress", "waiting_for_input"]

        # Factory's own comment coming back as a webhook is not an answer
        own = await post_plane(h, plane.comment_payload(issue, "", comment=asked))
        assert own.json() == {"status": "ignored", "reason": "Factory's own comment"}
        assert (await h.task(task_id))["status"] == "awaiting_input"

        # someone outside the project cannot answer
        stranger = await post_plane(h, plane.comment_payload(issue, "<p>Use rm -rf</p>", actor="mallory"))
        assert stranger.json() == {"status": "ignored", "reason": "the comment's author is not a member of the project"}
        assert (await h.task(task_id))["status"] == "awaiting_input"

        answer = plane.comment_payload(issue, "<p>Use <b>hello</b></p>", actor="alice")
        delivery = str(uuid.uuid4())
        r = await post_plane(h, answer, delivery=delivery)
        assert r.json()["status"] == "answered", r.text
        assert (await post_plane(h, answer, delivery=delivery)).json()["status"] == "duplicate"
        late = await post_plane(h, plane.comment_payload(issue, "<p>actually, hi</p>"))
        assert late.json()["status"] == "ignored"

        done = await h.wait_for(task_id, {"done", "failed"})
        assert done["status"] == "done", done
        [q] = questions(h, task_id)
        assert (q.answer, q.answered_by, q.status) == ("Use hello", "plane:alice", "answered")
        resumed = model.requests_for(sc)[1]
        assert "Use hello" in json.dumps(resumed.messages)
        await h.until(lambda: "in_review" in plane.state_names(issue), what="in_review")


async def test_issue_moved_to_cancelled_cancels_its_task(start_factory, model, plane):
    sc = scenario("cancel")
    model.add_scenario(sc, [Text('{"type": "question", "question": "Shall I go on?"}')])
    async with start_factory(plane=plane.config(webhook_secret=PLANE_SECRET, default_repo="demo")) as h:
        issue = str(uuid.uuid4())
        r = await post_plane(h, plane.issue_payload(issue, "queued", description_html=f"<p>[[scenario:{sc}]]</p>"))
        task_id = r.json()["task_id"]
        await h.wait_for(task_id, "awaiting_input")
        # the person cancels after seeing the question (a cancel while the workflow is still inside an
        # activity is lost to a race in workflows/common.py, reported separately)
        await h.until(lambda: plane.comments_on(issue), what="the question on the issue")
        r = await post_plane(h, plane.issue_payload(issue, "cancelled"))
        assert r.json() == {"status": "cancelled", "task_ids": [task_id], "workflow_run_ids": []}
        await h.wait_for(task_id, "cancelled")
        await h.until(lambda: "cancelled" in plane.state_names(issue), what="the cancelled state")
        # a label change on a queued issue is not a new queueing
        labels_only = plane.issue_payload(issue, "queued", labels=["coder"], field="labels")
        assert (await post_plane(h, labels_only)).json()["status"] == "ignored"


async def test_plane_resend_after_the_task_ended_starts_no_second_task(start_factory, model, plane):
    first, second = scenario("once"), scenario("again")
    model.add_scenario(first, [Text("Nothing to change.")])
    model.add_scenario(second, [Text("Still nothing to change.")])
    async with start_factory(plane=plane.config(webhook_secret=PLANE_SECRET, default_repo="demo")) as h:
        issue = str(uuid.uuid4())
        moved = plane.issue_payload(issue, "queued", description_html=f"<p>[[scenario:{first}]]</p>")
        r = await post_plane(h, moved)
        assert r.json()["status"] == "started", r.text
        task_id = r.json()["task_id"]
        assert (await h.wait_for(task_id, {"done", "failed"}))["status"] == "done"
        # Plane retries a delivery with a new delivery id; arriving after the task ended it starts nothing
        r = await post_plane(h, moved)
        assert r.json() == {"status": "ignored", "reason": "this move to queued was handled already"}, r.text
        assert [t.id for t in issue_tasks(h, issue)] == [task_id]
        # a person moving the issue to queued again is a new move (a new updated_at): a new task
        again = plane.issue_payload(issue, "queued", description_html=f"<p>[[scenario:{second}]]</p>")
        r = await post_plane(h, again)
        assert r.json()["status"] == "started", r.text
        assert r.json()["task_id"] != task_id
        assert (await h.wait_for(r.json()["task_id"], {"done", "failed"}))["status"] == "done"


async def test_plane_v2_workitem_queued_starts_a_task_and_members_comments_answer(start_factory, model, plane):
    sc = scenario("v2")
    model.add_scenario(
        sc,
        [
            Text('{"type": "question", "question": "Tabs or spaces?"}'),
            [ToolUse("Write", {"file_path": "style.txt", "content": "spaces\n"})],
            Text("Used spaces."),
        ],
    )
    async with start_factory(plane=plane.config(webhook_secret=PLANE_SECRET)) as h:
        issue = str(uuid.uuid4())
        labels = ["repo:demo", "devops"]
        renamed = plane.workitem_payload(issue, "queued", labels=labels, previous={"name": "Old name"})
        r = await post_plane(h, renamed)
        assert r.json() == {"status": "ignored", "reason": "name changed, not the state"}, r.text
        moved = plane.workitem_payload(
            issue,
            "queued",
            labels=labels,
            name="Pick a style",
            description_html=f"<p>Choose one.</p><p>[[scenario:{sc}]]</p>",
        )
        r = await post_plane(h, moved)
        assert r.status_code == 200 and r.json()["status"] == "started", r.text
        task_id = r.json()["task_id"]
        task = await h.task(task_id)
        assert (task["repo"], task["agent_type"], task["title"]) == ("demo", "devops", "Pick a style")
        assert task["description"].startswith("Choose one.")  # read through the API: v2 leaves it out
        await h.wait_for(task_id, "awaiting_input")

        r = await post_plane(h, plane.workitem_comment_payload(issue, "tabs", actor="mallory"))
        assert r.json() == {"status": "ignored", "reason": "the comment's author is not a member of the project"}
        assert (await h.task(task_id))["status"] == "awaiting_input"
        r = await post_plane(h, plane.workitem_comment_payload(issue, "spaces", actor="alice"))
        assert r.json()["status"] == "answered", r.text
        done = await h.wait_for(task_id, {"done", "failed"})
        assert done["status"] == "done", done
        assert [(q.answer, q.answered_by) for q in questions(h, task_id)] == [("spaces", "plane:alice")]

        # the same event again under a new delivery id (Plane's retry) after the task ended: nothing starts
        r = await post_plane(h, {**moved, "delivery_id": str(uuid.uuid4())})
        assert r.json()["status"] == "ignored", r.text
        assert [t.id for t in issue_tasks(h, issue)] == [task_id]


async def test_workflow_label_starts_that_workflow(start_factory, plane, monkeypatch):
    started: list[tuple[Any, ...]] = []

    workflows = {
        "plane_flow": {"steps": [{"agent": "coder", "output": "code"}, {"agent": "reviewer", "input": "code"}]}
    }
    async with start_factory(worker=False, plane=plane.config(webhook_secret=PLANE_SECRET), workflows=workflows) as h:

        async def start_workflow_run(name, title, description, repo, plane_issue_id=None):
            if name not in workflow_definitions(h.cfg):
                raise LaunchError(f"unknown workflow {name!r}")
            started.append((name, title, description, repo, plane_issue_id))
            return types.SimpleNamespace(id=7)

        # the run itself is issue 3's to test
        monkeypatch.setattr(h.app.state.launcher, "start_workflow_run", start_workflow_run)
        issue = str(uuid.uuid4())
        payload = plane.issue_payload(
            issue,
            "queued",
            labels=["repo:demo", "workflow:plane_flow"],
            name="Cache it",
            description_html="<p>Add a cache</p>",
        )
        r = await post_plane(h, payload)
        assert r.json() == {"status": "started", "workflow": "plane_flow", "workflow_run_id": 7}, r.text
        assert started == [("plane_flow", "Cache it", "Add a cache", "demo", issue)]
        # an unknown workflow is refused, and the issue says why
        other = str(uuid.uuid4())
        r = await post_plane(h, plane.issue_payload(other, "queued", labels=["repo:demo", "workflow:nope"]))
        assert r.status_code == 422 and "nope" in r.json()["detail"]
        assert "nope" in plane.comments_on(other)[0]["comment_html"]
        assert plane.state_names(other) == ["failed"]


async def test_webhook_door_checks(start_factory, plane):
    async with start_factory(worker=False, plane=plane.config()) as h:
        # no secret and allow_unsigned off: refused
        body, headers = signed(plane.issue_payload("i1", "queued"), "whatever")
        assert (await h.api.post("/webhooks/plane", content=body, headers=headers)).status_code == 403
        assert (
            await h.api.post("/webhooks/github", content=b"{}", headers={"X-GitHub-Event": "ping"})
        ).status_code == 403
        assert (await h.api.post("/webhooks/telegram", json={"update_id": 1})).status_code == 404
    async with start_factory(
        worker=False, plane=plane.config(webhook_secret=PLANE_SECRET), github={"webhook_secret": GH_SECRET}
    ) as h:
        bad = b"{not json"
        sig = hmac.new(PLANE_SECRET.encode(), bad, hashlib.sha256).hexdigest()
        r = await h.api.post("/webhooks/plane", content=bad, headers={"X-Plane-Signature": sig})
        assert r.status_code == 400
        r = await post_plane(h, {"event": "issue", "action": "updated", "data": "oops"})
        assert r.status_code == 400
        r = await post_plane(h, {"event": "cycle", "action": "created", "data": {"id": "c1"}})
        assert r.status_code == 200 and r.json()["status"] == "ignored"
        r = await post_plane(h, plane.issue_payload("i2", "in_progress"))
        assert r.json()["status"] == "ignored"
        assert (await post_github(h, "ping", {"zen": "hi"})).json() == {"status": "pong"}
        r = await post_github(h, "pull_request", pr_closed_payload({"number": 1, "head": {"ref": "feature/x"}}, True))
        assert r.json() == {"status": "ignored", "reason": "not a Factory branch"}
    async with start_factory(worker=False, plane=plane.config(allow_unsigned=True)) as h:
        r = await h.api.post("/webhooks/plane", json={"event": "project", "action": "updated", "data": {}})
        assert r.status_code == 200 and r.json()["status"] == "ignored"


# --- Telegram ---------------------------------------------------------------------------------------


def _markup(sent: Any) -> dict[str, Any]:
    return sent.body.get("reply_markup") or {}


async def test_telegram_messages_escaped_and_answers_from_allowed_chats_only(start_factory, model, telegram):
    sc = scenario("tg")
    board_line = '{"type": "message", "content": "Heads up: <careful> & slow", "message_type": "error"}'
    model.add_scenario(
        sc,
        [
            Text(board_line + '\n{"type": "question", "question": "Pick a color", "options": ["red", "blue"]}'),
            Text('{"type": "question", "question": "And the size?"}'),
            [ToolUse("Write", {"file_path": "color.txt", "content": "blue large\n"})],
            Text("Painted it."),
        ],
    )
    async with start_factory(
        telegram=tg_config(telegram, allowed_chat_ids=[str(CHAT2)]),
        message_board={"telegram_chat_id": str(BOARD_CHAT)},
    ) as h:
        t = await h.create("Fix <b>bold</b> & co", sc)
        await h.wait_for(t["id"], "awaiting_input")
        await h.until(lambda: any(_markup(s).get("inline_keyboard") for s in telegram.sent(CHAT)), what="the options")

        started = next(s for s in telegram.sent(CHAT) if "Started" in s.body["text"])
        assert started.body["parse_mode"] == "HTML"
        assert (
            "Fix &lt;b&gt;bold&lt;/b&gt; &amp; co" in started.body["text"]
            and "<code>factory/task-" in started.body["text"]
        )
        await h.until(lambda: telegram.texts(BOARD_CHAT), what="the forwarded board message")
        assert "Heads up: &lt;careful&gt; &amp; slow" in telegram.texts(BOARD_CHAT)[0]

        ask = next(s for s in telegram.sent(CHAT) if _markup(s).get("force_reply"))
        assert "Pick a color" in ask.body["text"]
        opts = next(s for s in telegram.sent(CHAT) if _markup(s).get("inline_keyboard"))
        buttons = [row[0] for row in _markup(opts)["inline_keyboard"]]
        assert [b["text"] for b in buttons] == ["red", "blue"]
        [q1] = questions(h, t["id"])
        assert q1.telegram_message_id == ask.message_id

        # another chat: neither a reply nor a button press does anything
        u1 = telegram.reply(OTHER_CHAT, ask.message_id, "red", username="mallory")
        u2 = telegram.press(OTHER_CHAT, opts.message_id, buttons[0]["callback_data"], username="mallory")
        await h.until(lambda: telegram.consumed(u1) and telegram.consumed(u2), what="the poller to read the updates")
        assert (await h.task(t["id"]))["status"] == "awaiting_input"
        assert telegram.sent(OTHER_CHAT) == [] and telegram.calls_of("answerCallbackQuery") == []

        # the allowed chat presses "blue"; the bot confirms, the agent resumes and asks again
        telegram.press(CHAT, opts.message_id, buttons[1]["callback_data"])
        await h.until(lambda: len(questions(h, t["id"])) == 2, what="the second question")
        assert questions(h, t["id"])[0].answer == "blue"
        assert questions(h, t["id"])[0].answered_by == "telegram:alice"
        assert telegram.calls_of("answerCallbackQuery")[0]["text"] == "Answer sent"
        assert any("Answer sent to task" in x for x in telegram.texts(CHAT))

        # a reply to the second question's message answers it
        await h.until(lambda: sum(1 for s in telegram.sent(CHAT) if _markup(s).get("force_reply")) == 2, what="ask 2")
        ask2 = [s for s in telegram.sent(CHAT) if _markup(s).get("force_reply")][-1]
        telegram.reply(CHAT, ask2.message_id, "large")
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        assert [(q.answer, q.answered_by) for q in questions(h, t["id"])] == [
            ("blue", "telegram:alice"),
            ("large", "telegram:alice"),
        ]
        await h.until(lambda: any("Done" in x for x in telegram.texts(CHAT)), what="the completion message")
        completed = next(x for x in telegram.texts(CHAT) if "Done" in x)
        assert done["pr_url"] in completed and "Fix &lt;b&gt;bold&lt;/b&gt; &amp; co" in completed


async def test_telegram_500_and_429_never_hold_a_task_back(start_factory, model, telegram):
    sc = scenario("tgdown")
    model.add_scenario(sc, [[ToolUse("Write", {"file_path": "x.txt", "content": "x\n"})], Text("Wrote x.")])
    telegram.fail_sends = [500, (429, 1)]
    async with start_factory(telegram=tg_config(telegram)) as h:
        t = await h.create("Survive a flaky Telegram", sc)
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        # the sends were retried until they went through; after the 429 the retry waited retry_after
        await h.until(lambda: len(telegram.sent(CHAT)) == 2, timeout=30, what="both messages after retries")
        attempts = telegram.attempts()
        assert [a.status for a in attempts if not a.ok] == [500, 429]
        limited = next(a for a in attempts if a.status == 429)
        retry = next(a for a in attempts if a.at > limited.at and a.body["text"] == limited.body["text"])
        assert retry.ok and retry.at - limited.at >= 0.9
        assert sorted(x.split()[1] for x in telegram.texts(CHAT)) == ["<b>Done</b>", "<b>Started</b>"]

    sc2 = scenario("tgdead")
    model.add_scenario(sc2, [Text("Nothing to change.")])
    telegram.always_fail = 500
    async with start_factory(telegram=tg_config(telegram)) as h:
        t = await h.create("Telegram is down", sc2)
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=30)
        assert done["status"] == "done", done
        await h.until(lambda: len(telegram.attempts()) >= 4, what="retries against a dead Telegram")


async def test_telegram_webhook_mode_checks_the_secret_and_answers(start_factory, model, telegram):
    sc = scenario("tghook")
    model.add_scenario(sc, [Text('{"type": "question", "question": "Which port?"}'), Text("Using it.")])
    async with start_factory(telegram=tg_config(telegram, webhook_secret="tg-hook-secret-1")) as h:
        assert "telegram-getUpdates" not in [t.get_name() for t in h.runtime.background]  # no polling
        t = await h.create("Pick a port", sc)
        await h.wait_for(t["id"], "awaiting_input")
        await h.until(lambda: any(_markup(s).get("force_reply") for s in telegram.sent(CHAT)), what="the question")
        ask = next(s for s in telegram.sent(CHAT) if _markup(s).get("force_reply"))
        # the send returns before Factory stores the message id that a reply is matched by (a person is slower)
        await h.until(lambda: [q.telegram_message_id for q in questions(h, t["id"])] == [ask.message_id],
                      what="the question's Telegram message id to be stored")  # fmt: skip
        update = {
            "update_id": 77,
            "message": {
                "message_id": 9001,
                "date": 0,
                "chat": {"id": CHAT, "type": "private"},
                "from": {"id": 5, "is_bot": False, "first_name": "Bob", "username": "bob"},
                "text": "8080",
                "reply_to_message": {"message_id": ask.message_id, "chat": {"id": CHAT, "type": "private"}},
            },
        }
        wrong = {"X-Telegram-Bot-Api-Secret-Token": "nope"}
        assert (await h.api.post("/webhooks/telegram", json=update, headers=wrong)).status_code == 403
        assert (await h.api.post("/webhooks/telegram", json=update)).status_code == 403
        right = {"X-Telegram-Bot-Api-Secret-Token": "tg-hook-secret-1"}
        r = await h.api.post("/webhooks/telegram", json=update, headers=right)
        assert r.status_code == 200 and r.json()["outcome"].startswith("answered"), r.text
        assert (await h.api.post("/webhooks/telegram", json=update, headers=right)).json() == {"status": "duplicate"}
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done"
        assert [(q.answer, q.answered_by) for q in questions(h, t["id"])] == [("8080", "telegram:bob")]
        assert telegram.offsets == []


# --- GitHub -----------------------------------------------------------------------------------------


async def test_changes_requested_review_starts_revision_on_the_same_pr(start_factory, model, github):
    sc, rev = scenario("orig"), scenario("rev")
    model.add_scenario(sc, [[ToolUse("Write", {"file_path": "greet.txt", "content": "hello\n"})], Text("Said hello.")])
    model.add_scenario(rev, [[ToolUse("Bash", {"command": "echo goodbye > greet.txt"})], Text("Said goodbye.")])
    async with start_factory(github={"webhook_secret": GH_SECRET, "allowed_users": ["Dave"]}) as h:
        t = await h.create("Greet people", sc)
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        await h.settled(t["id"])  # the worktree is released before the branch is checked out again
        pr = ghw.from_fake(next(p for p in github.prs if p["head"]["ref"] == done["branch"]))
        github.review_comments[4242] = [{"path": "greet.txt", "line": 1, "body": "Please say goodbye instead"}]
        # dave has no write access (CONTRIBUTOR) but is listed in github.allowed_users
        payload = ghw.review_submitted(pr, 4242, f"Not quite right. [[scenario:{rev}]]", "dave", "CONTRIBUTOR")
        r = await post_github(h, "pull_request_review", payload)
        assert r.status_code == 200 and r.json()["status"] == "started", r.text
        revision_id = r.json()["task_id"]
        again = await post_github(h, "pull_request_review", payload)  # a new delivery of the same review
        assert again.json()["status"] == "ignored"

        revised = await h.wait_for(revision_id, {"done", "failed"})
        assert revised["status"] == "done", revised
        assert revised["agent_type"] == "coder_revision" and revised["parent_task_id"] == t["id"]
        assert revised["branch"] == done["branch"] and revised["pr_url"] == done["pr_url"]
        assert remote_file(h.remote, done["branch"], "greet.txt") == "goodbye\n"
        assert len([c for c in github.pr_creations() if c.body["head"] == done["branch"]]) == 1
        prompt = model.requests_for(rev)[0].first_user_text
        assert "Not quite right." in prompt and "Please say goodbye instead" in prompt and "greet.txt:1" in prompt


def _factory_pr_task(h: Any, github: Any) -> tuple[Task, dict[str, Any]]:
    """A finished task whose open PR the GitHub stand-in holds (no agent run needed)."""
    branch = f"factory/task-77-{uuid.uuid4().hex[:6]}"
    with github.lock:
        number = len(github.prs) + 1
        github.prs.append(
            {"_repo": "acme/demo", "number": number, "html_url": f"https://github.example/acme/demo/pull/{number}",
             "title": "t", "body": "", "head": {"ref": branch}, "base": {"ref": "main"}, "state": "open", "merged": False}
        )  # fmt: skip
    with session_scope(h.runtime.engine) as s:
        task = Task(title="ours", repo="demo", status="done", branch=branch, pr_number=number, pr_state="open")
        s.add(task)
        s.commit()
        s.refresh(task)
    return task, github.prs[-1]


def _revisions(h: Any) -> list[Task]:
    with session_scope(h.runtime.engine) as s:
        return list(s.exec(select(Task).where(Task.agent_type == "coder_revision")).all())


async def test_reviews_and_closes_from_strangers_and_forks_do_nothing(start_factory, github):
    async with start_factory(worker=False, github={"webhook_secret": GH_SECRET}) as h:
        task, fake_pr = _factory_pr_task(h, github)
        ours = ghw.from_fake(fake_pr)
        # a review requesting changes from someone without write access
        for association in ("NONE", "FIRST_TIME_CONTRIBUTOR", "CONTRIBUTOR"):
            stranger = ghw.review_submitted(ours, 9000, "rm -rf everything", "mallory", association)
            r = await post_github(h, "pull_request_review", stranger)
            assert r.json() == {"status": "ignored", "reason": "the reviewer has no write access to the repository"}
        # a fork's PR whose branch looks like Factory's, even with the same number, reviewed and closed
        fork = ghw.pull_request(fake_pr["number"], fake_pr["head"]["ref"], head_repo="mallory/demo", author="mallory")
        r = await post_github(
            h, "pull_request_review", ghw.review_submitted(fork, 9001, "do my bidding", "carol", "OWNER")
        )
        assert r.json()["status"] == "ignored" and "fork" in r.json()["reason"], r.text
        r = await post_github(h, "pull_request", ghw.pr_closed(fork, merged=False, sender="mallory"))
        assert r.json()["status"] == "ignored" and "fork" in r.json()["reason"], r.text
        # the repo's own branch name under another PR number is not the task's PR either
        other = ghw.pull_request(fake_pr["number"] + 100, fake_pr["head"]["ref"])
        r = await post_github(h, "pull_request", ghw.pr_closed(other, merged=False))
        assert r.json()["status"] == "ignored", r.text
        r = await post_github(
            h, "pull_request_review", ghw.review_submitted(other, 9002, "change it", "carol", "OWNER")
        )
        assert r.json()["status"] == "ignored", r.text
        assert (await h.task(task.id))["pr_state"] == "open"
        assert _revisions(h) == []


async def test_pr_state_poll_without_webhook_secret(start_factory, github, plane):
    # the poll is a cluster singleton whose passes run on a worker (temporal/singletons.py)
    async with start_factory(plane=plane.config(), github={"pr_poll_minutes": 0.005}) as h:
        branch = f"factory/task-poll-{uuid.uuid4().hex[:6]}"
        with github.lock:
            number = len(github.prs) + 1
            github.prs.append(
                {"_repo": "acme/demo", "number": number, "html_url": f"https://github.example/acme/demo/pull/{number}",
                 "title": "t", "body": "", "head": {"ref": branch}, "base": {"ref": "main"}, "state": "open", "merged": False}
            )  # fmt: skip
        with session_scope(h.runtime.engine) as s:
            task = Task(
                title="polled", repo="demo", status="done", branch=branch, pr_number=number, plane_issue_id="iss-9"
            )
            s.add(task)
            s.commit()
            s.refresh(task)
        assert (await h.task(task.id))["pr_state"] is None
        github.set_state(number, "closed", merged=True)

        async def merged() -> bool:
            return (await h.task(task.id))["pr_state"] == "merged"

        await h.until(merged, timeout=10, what="the poll to see the merge")
        await h.until(lambda: plane.state_names("iss-9") == ["done"], timeout=10, what="the issue moved to done")


async def test_plane_notifier_errors_become_temporal_retries(factory_config, plane):
    from datetime import timedelta

    from temporalio.exceptions import ApplicationError

    from factory.integrations.plane.notifier import PlaneNotifier
    from factory.store.tables import make_engine

    cfg = factory_config(plane=plane.config())
    engine = make_engine(cfg.db_url)
    with session_scope(engine) as s:
        task = Task(title="t", repo="demo", status="in_progress", plane_issue_id="iss-1")
        s.add(task)
        s.commit()
        s.refresh(task)
    notifier = PlaneNotifier(cfg, engine)
    started = TaskEvent(kind="started", task_id=task.id, title="t")
    assert notifier.wants(started) and not notifier.wants(TaskEvent(kind="started", task_id=task.id + 1))
    plane.fail_next = [(429, 3), 503, 404]
    with pytest.raises(ApplicationError) as limited:
        await notifier.send(started)
    assert limited.value.next_retry_delay == timedelta(seconds=3) and not limited.value.non_retryable
    with pytest.raises(ApplicationError) as down:
        await notifier.send(started)
    assert not down.value.non_retryable
    with pytest.raises(ApplicationError) as gone:
        await notifier.send(started)
    assert gone.value.non_retryable and plane.api_key not in str(gone.value)
    await notifier.send(started)
    assert plane.state_names("iss-1") == ["in_progress"]
    # a late retry of "started" after the task moved on does not move the issue back
    with session_scope(engine) as s:
        row = s.get(Task, task.id)
        row.status = "done"
        s.add(row)
        s.commit()
    await notifier.send(started)
    assert plane.state_names("iss-1") == ["in_progress"]


# --- pure helpers -----------------------------------------------------------------------------------


def test_html_to_text_keeps_paragraphs_and_lists():
    html = "<p>Fix the <b>login</b> &amp; logout</p><ul><li>one</li><li>two</li></ul><p>Thanks<br>Ann</p>"
    assert html_to_text(html) == "Fix the login & logout\n\n- one\n- two\n\nThanks\nAnn"
    assert html_to_text("") == "" and html_to_text(None) == ""


def test_telegram_text_is_escaped_and_cut_under_the_limit():
    assert str(clip_escaped("a<b>&c", 100)) == "a&lt;b&gt;&amp;c"
    cut = str(clip_escaped("<" * 50, 20))
    assert len(cut) <= 20 and cut.endswith("…") and "&l…" not in cut
    huge = TaskEvent(kind="question", task_id=1, title="<t>" * 500, question="&" * 10_000)
    text = format_event(huge)
    assert text is not None and len(text) <= MAX_CHARS
    assert "<t>" not in text.replace("<b>", "").replace("<i>", "")
    failed = format_event(
        TaskEvent(kind="failed", task_id=2, title="x", error="token ghp_abcdefghijklmnopqrstuvwxyz0123")
    )
    assert "ghp_abc" not in failed


def test_github_signature_check():
    body = b'{"a": 1}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert valid_hmac_sha256("s3cret", body, good, prefix="sha256=")
    assert not valid_hmac_sha256("s3cret", body, good.replace("sha256=", ""), prefix="sha256=")
    assert not valid_hmac_sha256("s3cret", body + b" ", good, prefix="sha256=")
    assert not valid_hmac_sha256("s3cret", body, None, prefix="sha256=")
    assert not valid_hmac_sha256("", body, good, prefix="sha256=")


async def test_a_message_posted_through_the_api_is_forwarded_to_telegram(start_factory, telegram):
    async with start_factory(telegram=tg_config(telegram)) as h:
        r = await h.api.post("/api/messages", json={"content": "just info", "message_type": "info"})
        assert r.status_code == 201  # not in forward_types: posted first, so it would be sent first
        r = await h.api.post(
            "/api/messages", json={"content": "deploy <b>failed</b>", "message_type": "error", "to": "user"}
        )
        assert r.status_code == 201, r.text
        await h.until(
            lambda: any("deploy &lt;b&gt;failed&lt;/b&gt;" in x for x in telegram.texts(CHAT)), what="the forward"
        )
        assert not any("just info" in x for x in telegram.texts(CHAT))
