"""Answers that arrive from an integration are audited by who wrote them: the person their identity is
linked to, else the service identity. A real Factory (Temporal, the CLI on the scripted model, git) and
the Plane stand-in over real HTTP; the webhook is signed as Plane signs it.
"""

from __future__ import annotations

import uuid

from tests.fakes.anthropic import Text, ToolUse
from tests.test_integrations import PLANE_SECRET, post_plane


async def test_a_plane_answer_from_a_linked_member_names_the_person(start_factory, model, plane, monkeypatch):
    monkeypatch.setenv("FACTORY_AUTH_TOKEN", "inbound-boot-4f1e9a")
    sc = f"auth-inbound-{uuid.uuid4().hex[:8]}"
    model.add_scenario(
        sc,
        [
            Text('{"type": "question", "question": "Which greeting?"}'),
            [ToolUse("Write", {"file_path": "greeting.txt", "content": "hello\n"})],
            Text("Done."),
        ],
    )
    async with start_factory(plane=plane.config(webhook_secret=PLANE_SECRET, default_repo="demo")) as h:
        ana = (await h.api.post("/api/users", json={"login": "ana", "role": "operator"})).json()
        member = plane.user_id("alice")
        r = await h.api.post(f"/api/users/{ana['id']}/identities", json={"service": "plane", "external_id": member})
        assert r.status_code == 201, r.text
        issue = str(uuid.uuid4())
        r = await post_plane(h, plane.issue_payload(issue, "queued", description_html=f"<p>[[scenario:{sc}]]</p>"))
        task_id = r.json()["task_id"]
        await h.wait_for(task_id, "awaiting_input")
        r = await post_plane(h, plane.comment_payload(issue, "<p>hello</p>", actor="alice"))
        assert r.json()["status"] == "answered", r.text
        entries = (await h.api.get(f"/api/tasks/{task_id}/audit")).json()
        answers = [(e["actor"], e["source"], e["outcome"]) for e in entries if e["action"] == "task.answer"]
        assert answers == [("ana", f"plane:{member}", "ok")]
        assert (await h.wait_for(task_id, {"done", "failed"}))["status"] == "done"
