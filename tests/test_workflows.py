"""Multi-agent workflows from config.yml: the code-review loop, conditions, handoffs, cancel, replay.

Real Temporal, real git, the real `claude` CLI against the scripted model server. Every step of a
workflow is its own CLI session; one scenario per test routes each request to the script of its
step by the step header Factory puts in the prompt ("step 2 of 3 (reviewer) ..., iteration 1").

The committed histories in tests/histories/ are never regenerated: a history that stops replaying is a
bug in the change (tests/test_replay.py, docs/versioning.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionStatus, WorkflowHistory
from temporalio.worker import Replayer

from factory.domain.review import VERDICT_REMINDER
from factory.specs import run_workflow_id as workflow_id
from factory.store.tables import AgentRun, Message, session_scope
from temporal.client import data_converter as pydantic_data_converter
from tests.conftest import remote_file
from tests.fakes.anthropic import END_OF_SCRIPT, Stall, Text, ToolUse
from tests.procs import alive
from tests.test_pipeline import assert_outlives_a_dead_worker, scheduled_options
from workflows.step_interpreter import ConfiguredWorkflow
from workflows.task import TaskWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
STEP_RE = re.compile(r"step \d+ of \d+ \((\w+)\) of workflow \S+ #\d+, iteration (\d+)")


def role_of(rec: Any) -> tuple[str, int] | None:
    m = STEP_RE.search(rec.first_user_text)
    return (m.group(1), int(m.group(2))) if m else None


def script_steps(model: Any, scripts: dict[tuple[str, int], list[Any]]) -> str:
    """One scenario whose turn i answers each step (agent, iteration) from its own script."""
    name = f"wf-{uuid.uuid4().hex[:8]}"

    def turn(i: int) -> Any:
        def pick(rec: Any) -> Any:
            turns = scripts.get(role_of(rec) or ("?", 0), [])
            return turns[i] if i < len(turns) else Text(END_OF_SCRIPT)

        return pick

    model.add_scenario(name, [turn(i) for i in range(max(len(v) for v in scripts.values()))])
    return name


def step_requests(model: Any, scenario: str, agent: str, iteration: int) -> list[Any]:
    return [r for r in model.requests_for(scenario) if role_of(r) == (agent, iteration)]


def verdict(v: str, *issues: dict[str, Any]) -> Text:
    body = json.dumps({"verdict": v, "issues": list(issues)})
    return Text(f"I read the change.\n\n```json\n{body}\n```")


async def start_run(h: Any, scenario: str, name: str = "code_review", title: str = "Add calc") -> dict[str, Any]:
    # the fake GitHub outlives the test: a title of its own gives the run a branch (and PR) of its own
    title = f"{title} {scenario}"
    body = {"title": title, "description": f"[[scenario:{scenario}]] add an add() function", "repo": "demo"}
    if name == "code_review":
        r = await h.api.post("/api/workflows/code_review", json=body)
    else:
        r = await h.api.post("/api/workflows", json={**body, "name": name})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] in ("pending", "running") and run["workflow_id"] == workflow_id(h.cfg, run["id"])
    return run


async def wait_run(h: Any, run_id: int, statuses: set[str], timeout: float = 90) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        run = (await h.api.get(f"/api/workflows/{run_id}")).json()
        return run if run["status"] in statuses else None

    return await h.until(check, timeout=timeout, what=f"workflow {run_id} to reach {statuses}")


async def closed(h: Any, run_id: int) -> Any:
    """The workflow's result (or error) once it has closed, cleanup included."""
    handle = h.client.get_workflow_handle_for(ConfiguredWorkflow.run, workflow_id(h.cfg, run_id))
    try:
        return await handle.result()
    except Exception as exc:
        return exc


def commits_ahead(remote: Path, branch: str) -> int:
    out = subprocess.run(
        ["git", "-C", str(remote), "rev-list", "--count", f"main..{branch}"], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def summaries(history: WorkflowHistory) -> list[str]:
    """The `summary=` labels of the activities and children a workflow scheduled."""
    out = []
    for e in history.events:
        if e.event_type in (
            EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
            EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
        ) and e.user_metadata.HasField("summary"):
            out.append(json.loads(e.user_metadata.summary.data))
    return out


ADD_BUG = "def add(a, b):\n    return a - b\n"
ADD_FIXED = "def add(a, b):\n    return a + b\n"
ISSUE = {"severity": "major", "file": "calc.py", "comment": "add() subtracts (ISSUE-7f3): return a + b instead"}


async def test_code_review_loop_revises_once_and_approves_on_the_second_review(start_factory, model, github):
    scenario = script_steps(
        model,
        {
            ("coder", 1): [[ToolUse("Write", {"file_path": "calc.py", "content": ADD_BUG})], Text("Added calc.add.")],
            ("reviewer", 1): [verdict("changes_requested", ISSUE)],
            ("coder_revision", 1): [
                [ToolUse("Bash", {"command": "sed -i 's/a - b/a + b/' calc.py"})],  # Write wants a Read first
                Text("Fixed add(): it adds now (REVISION-SUMMARY)."),
            ],
            ("reviewer", 2): [verdict("approved", {"severity": "nit", "file": "calc.py", "comment": "docstring"})],
        },
    )
    async with start_factory() as h:
        run = await start_run(h, scenario)
        done = await wait_run(h, run["id"], {"completed", "failed", "cancelled"})
        assert done["status"] == "completed", done
        assert done["approved"] is True and done["note"] is None and done["iteration"] == 2
        # four agent runs, each a task of its own; the revision step is skipped once the review approves
        steps = done["steps"]
        assert [(s["agent_type"], s["iteration"]) for s in steps] == [
            ("coder", 1), ("reviewer", 1), ("coder_revision", 1), ("reviewer", 2),
        ]  # fmt: skip
        assert [s["verdict"] for s in steps] == [None, "changes_requested", None, "approved"]
        assert all(s["status"] == "done" for s in steps)
        tasks = {t["id"]: t for t in (await h.api.get("/api/tasks")).json()}
        for s in steps:
            assert tasks[s["task_id"]]["workflow_run_id"] == run["id"]
            assert tasks[s["task_id"]]["branch"] == done["branch"]
        logs = (await h.api.get(f"/api/tasks/{steps[2]['task_id']}/logs")).json()
        assert any(e["kind"] == "tool_use" and "Bash" in e["content"] for e in logs)

        # the revision's prompt carries the first review's issue word for word (via prompts/templates/review_to_address.md)
        revision_prompt = step_requests(model, scenario, "coder_revision", 1)[0].first_user_text
        assert ISSUE["comment"] in revision_prompt and "## Review to address" in revision_prompt
        assert "{issues}" not in revision_prompt
        # and its system prompt (prompts/coder_revision.md) shows no unfilled placeholder either
        revision_system = step_requests(model, scenario, "coder_revision", 1)[0].system
        assert "revising after review" in revision_system and "{issues}" not in revision_system
        # the second review is handed the revision, and reminded of its earlier issues
        second_review = step_requests(model, scenario, "reviewer", 2)[0].first_user_text
        assert "REVISION-SUMMARY" in second_review and ISSUE["comment"] in second_review
        # the reviewer's first look at the code: the coder's handoff names the changed file
        assert "- calc.py" in step_requests(model, scenario, "reviewer", 1)[0].first_user_text

        # the branch holds the revision; one PR for the whole workflow
        assert remote_file(h.remote, done["branch"], "calc.py") == ADD_FIXED
        assert commits_ahead(h.remote, done["branch"]) == 2
        prs = [c for c in github.pr_creations() if c.body["head"] == done["branch"]]
        assert len(prs) == 1 and done["pr_url"].endswith(f"/pull/{github.prs[-1]['number']}")
        assert "did not approve" not in prs[0].body["body"]

        handoffs = (await h.api.get(f"/api/workflows/{run['id']}/handoffs")).json()
        assert [(x["from_agent"], x["to_agent"], x["output_key"], x["iteration"]) for x in handoffs] == [
            ("coder", "reviewer", "initial_code", 1),
            ("reviewer", "coder_revision", "review", 1),
            ("coder_revision", "reviewer", "revision", 1),
            ("reviewer", "coder_revision", "review", 2),
        ]
        assert handoffs[1]["issues"][0]["comment"] == ISSUE["comment"]
        assert handoffs[0]["changed_files"] == ["calc.py"] and "1 file changed" in handoffs[0]["diff_stat"]
        assert [x["to_task_id"] for x in handoffs[:3]] == [s["task_id"] for s in steps[1:]]
        one = (await h.api.get(f"/api/handoffs/{handoffs[1]['id']}")).json()
        assert one["verdict"] == "changes_requested"

        # the run's "done" post is sent after the record that marks it completed, so it may land a moment later
        def board() -> list[str]:
            with session_scope(h.runtime.engine) as s:
                return [m.content for m in s.exec(select(Message).where(Message.workflow_run_id == run["id"]))]

        done_post = f"workflow #{run['id']} done"
        await h.until(lambda: any(m.startswith(done_post) for m in board()), timeout=30, what="the run's done post")
        posts = board()
        assert any("iteration 2: code_review: iteration 2 of at most 3" in m for m in posts), posts
        assert any(m.startswith(done_post) and done["pr_url"] in m for m in posts), posts

        listed = (await h.api.get("/api/workflows", params={"status": "completed"})).json()
        assert [r["id"] for r in listed] == [run["id"]]
        assert (await h.api.get("/api/workflows", params={"status": "running"})).json() == []

        # what the Temporal UI shows: the name, each step's label
        result = await closed(h, run["id"])
        assert result.status == "completed" and result.approved is True
        handle = h.client.get_workflow_handle(workflow_id(h.cfg, run["id"]))
        assert await (await handle.describe()).static_summary() == f"code_review: Add calc {scenario}"
        history = await handle.fetch_history()
        labels = summaries(history)
        for label in (
            "coder, iteration 1",
            "reviewer, iteration 1",
            "coder_revision, iteration 1",
            "reviewer, iteration 2",
        ):
            assert label in labels and f"task for {label}" in labels
        options = scheduled_options(history)
        for step in ("prepare_workspace", "open_pull_request", "cleanup_workspace"):
            assert_outlives_a_dead_worker(options[step])
        assert not (h.cfg.workspace_path / "worktrees" / f"task-{steps[0]['task_id']}").exists()


async def test_a_review_that_never_approves_stops_at_max_iterations_with_a_note(start_factory, model, github):
    second = {"severity": "blocker", "file": "calc.py", "comment": "still wrong (ISSUE-2b)"}
    scenario = script_steps(
        model,
        {
            ("coder", 1): [[ToolUse("Write", {"file_path": "calc.py", "content": ADD_BUG})], Text("Added calc.add.")],
            # no verdict at first: Factory reminds the reviewer once in the same session
            ("reviewer", 1): [Text("The change looks questionable."), verdict("changes_requested", ISSUE)],
            ("coder_revision", 1): [[ToolUse("Bash", {"command": "echo 'x = 1' > calc.py"})], Text("Tried.")],
            ("reviewer", 2): [verdict("changes_requested", second)],
        },
    )
    loop = {
        "code_review": {
            "max_iterations": 2,
            "steps": [
                {"agent": "coder", "output": "initial_code"},
                {"agent": "reviewer", "input": "initial_code", "output": "review"},
                {"agent": "coder_revision", "input": "review", "output": "revision", "condition": "has_issues",
                 "loop_to": "review", "prompt_template": "prompts/templates/review_to_address.md"},
            ],
        }
    }  # fmt: skip
    async with start_factory(workflows=loop) as h:
        run = await start_run(h, scenario)
        done = await wait_run(h, run["id"], {"completed", "failed", "cancelled"})
        assert done["status"] == "completed", done
        assert done["approved"] is False and done["iteration"] == 2
        assert "did not approve" in done["note"] and "max_iterations (2)" in done["note"]
        assert [(s["agent_type"], s["iteration"]) for s in done["steps"]] == [
            ("coder", 1), ("reviewer", 1), ("coder_revision", 1), ("reviewer", 2),
        ]  # fmt: skip
        reminded = step_requests(model, scenario, "reviewer", 1)
        assert len(reminded) == 2 and reminded[1].session_id == reminded[0].session_id
        assert VERDICT_REMINDER in reminded[1].last_user_text
        prs = [c for c in github.pr_creations() if c.body["head"] == done["branch"]]
        assert len(prs) == 1
        assert done["note"] in prs[0].body["body"] and second["comment"] in prs[0].body["body"]
        result = await closed(h, run["id"])
        assert result.approved is False and result.note == done["note"]
        assert remote_file(h.remote, done["branch"], "calc.py") == "x = 1\n"


async def test_the_reviewer_gets_read_only_tools_and_cannot_change_the_branch(start_factory, model):
    scenario = script_steps(
        model,
        {
            ("coder", 1): [[ToolUse("Write", {"file_path": "calc.py", "content": ADD_FIXED})], Text("Added calc.add.")],
            ("reviewer", 1): [
                [
                    ToolUse("Bash", {"command": "echo hacked > hacked.txt"}),
                    ToolUse("Edit", {"file_path": "calc.py", "old_string": "a + b", "new_string": "a * b"}),
                    ToolUse("Write", {"file_path": "README.md", "content": "pwned\n"}),
                ],
                verdict("approved"),
            ],
        },
    )
    async with start_factory() as h:
        run = await start_run(h, scenario)
        done = await wait_run(h, run["id"], {"completed", "failed", "cancelled"})
        assert done["status"] == "completed", done
        reviews = step_requests(model, scenario, "reviewer", 1)
        assert len(reviews) == 2
        for req in reviews:
            assert sorted(req.tool_names) == ["Glob", "Grep", "Read"]
        # every write was refused by the CLI itself
        assert reviews[-1].all_text.count("No such tool available") == 3
        assert remote_file(h.remote, done["branch"], "calc.py") == ADD_FIXED
        assert remote_file(h.remote, done["branch"], "README.md") == "# demo\n"
        assert remote_file(h.remote, done["branch"], "hacked.txt") is None
        assert commits_ahead(h.remote, done["branch"]) == 1  # the coder's commit only
        assert [s["agent_type"] for s in done["steps"]] == ["coder", "reviewer"]


async def test_a_custom_three_step_workflow_from_config_runs_with_its_conditions(start_factory, model, tmp_path):
    template = tmp_path / "deploy.md"
    template.write_text("Deploy {title}. The review ({verdict}) said:\n{issues}\nCode summary: {summary}")
    nit = {"severity": "nit", "file": "calc.py", "comment": "NIT-42: name the arguments x and y"}
    ask = json.dumps(
        {"type": "question", "question": "Deploy to staging or production?", "options": ["staging", "production"]}
    )
    scenario = script_steps(
        model,
        {
            ("coder", 1): [[ToolUse("Write", {"file_path": "calc.py", "content": ADD_FIXED})], Text("Added calc.add.")],
            ("reviewer", 1): [verdict("approved", nit)],
            ("devops", 1): [
                Text(f"One question first.\n{ask}"),
                [ToolUse("Bash", {"command": "echo staging > DEPLOYED"})],
                Text("Deployed to staging."),
            ],
        },
    )
    ship = {
        "ship": {
            "max_iterations": 1,
            "steps": [
                {"agent": "coder", "output": "code"},
                {"agent": "reviewer", "input": "code", "output": "review"},
                {"agent": "devops", "input": "review", "output": "deploy", "condition": "review_approved",
                 "prompt_template": str(template)},
            ],
        }
    }  # fmt: skip
    async with start_factory(workflows=ship) as h:
        assert "ship" in (await h.api.get("/api/workflows/definitions")).json()
        run = await start_run(h, scenario, name="ship", title="Ship calc")

        async def asking() -> dict[str, Any] | None:
            r = (await h.api.get(f"/api/workflows/{run['id']}")).json()
            return r if r["pending_question"] or r["status"] in ("completed", "failed") else None

        waiting = await h.until(asking, timeout=90, what="the devops step's question")
        assert waiting["status"] == "running" and waiting["current_agent"] == "devops", waiting
        pq = waiting["pending_question"]
        assert pq["text"] == "Deploy to staging or production?" and pq["options"] == ["staging", "production"]
        r = await h.api.post(f"/api/tasks/{pq['task_id']}/answer", json={"answer": "staging"})
        assert r.status_code == 200, r.text

        done = await wait_run(h, run["id"], {"completed", "failed", "cancelled"})
        assert done["status"] == "completed", done
        assert done["approved"] is True and done["pending_question"] is None
        assert [s["agent_type"] for s in done["steps"]] == ["coder", "reviewer", "devops"]
        devops = step_requests(model, scenario, "devops", 1)
        prompt = devops[0].first_user_text
        assert nit["comment"] in prompt and f"Deploy Ship calc {scenario}. The review (approved) said:" in prompt
        assert "staging" in devops[1].last_user_text and devops[1].session_id == devops[0].session_id
        assert remote_file(h.remote, done["branch"], "DEPLOYED") == "staging\n"
        assert done["pr_url"]


async def test_cancel_during_the_review_kills_the_agent_and_keeps_the_branch(start_factory, model, github):
    scenario = script_steps(
        model,
        {
            ("coder", 1): [[ToolUse("Write", {"file_path": "calc.py", "content": ADD_FIXED})], Text("Added calc.add.")],
            ("reviewer", 1): [Stall(60, then="too late")],
        },
    )
    try:
        async with start_factory() as h:
            run = await start_run(h, scenario)
            await h.until(lambda: step_requests(model, scenario, "reviewer", 1), timeout=90, what="the reviewer")
            review = await wait_run(h, run["id"], {"running"})
            assert review["current_agent"] == "reviewer" and review["iteration"] == 1
            reviewer_task = review["steps"][-1]["task_id"]
            with session_scope(h.runtime.engine) as s:
                runs = list(s.exec(select(AgentRun).where(AgentRun.task_id == reviewer_task)))
            assert len(runs) == 1 and runs[0].pid and alive(runs[0].pid)
            handle = h.client.get_workflow_handle(workflow_id(h.cfg, run["id"]))
            assert (await handle.query(ConfiguredWorkflow.progress))["agent"] == "reviewer"
            meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
            assert meta.current_details == "code_review: step 2/3, reviewer, iteration 1"

            r = await h.api.post(f"/api/workflows/{run['id']}/cancel")
            assert r.status_code == 202, r.text
            done = await wait_run(h, run["id"], {"cancelled", "completed", "failed"})
            assert done["status"] == "cancelled", done
            await closed(h, run["id"])
            assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
            assert not alive(runs[0].pid)
            assert (await h.task(reviewer_task))["status"] == "cancelled"
            assert remote_file(h.remote, done["branch"], "calc.py") == ADD_FIXED  # the branch is kept
            assert not [c for c in github.pr_creations() if c.body["head"] == done["branch"]]
            assert (await h.api.post(f"/api/workflows/{run['id']}/cancel")).status_code == 409
    finally:
        model.release_stalls()


async def test_a_reviewer_without_a_verdict_fails_the_step_clearly(start_factory, model):
    scenario = script_steps(
        model,
        {
            ("coder", 1): [[ToolUse("Write", {"file_path": "calc.py", "content": ADD_FIXED})], Text("Added calc.add.")],
            ("reviewer", 1): [Text("Looks fine to me."), Text("Still fine, really.")],
        },
    )
    async with start_factory() as h:
        run = await start_run(h, scenario)
        done = await wait_run(h, run["id"], {"completed", "failed", "cancelled"})
        assert done["status"] == "failed", done
        assert "without a parsable verdict" in done["error"] and "reviewer, iteration 1" in done["error"]
        assert done["steps"][-1]["status"] == "failed"
        assert len(step_requests(model, scenario, "reviewer", 1)) == 2


async def test_unknown_workflow_names_and_statuses_are_refused(start_factory):
    async with start_factory(worker=False) as h:
        r = await h.api.post("/api/workflows", json={"name": "nope", "title": "x", "repo": "demo"})
        assert r.status_code == 422 and "unknown workflow 'nope'" in r.json()["detail"]
        r = await h.api.post("/api/workflows/code_review", json={"title": "x", "repo": "no-such-repo"})
        assert r.status_code == 422
        assert (await h.api.get("/api/workflows", params={"status": "bogus"})).status_code == 422
        assert (await h.api.get("/api/workflows/999")).status_code == 404
        assert (await h.api.get("/api/handoffs/999")).status_code == 404


async def test_a_manual_handoff_starts_the_next_agent_on_the_same_branch(start_factory, model):
    def by_agent(coder: Any, reviewer: Any) -> Any:
        return lambda rec: reviewer if "Factory's reviewer agent" in rec.system else coder

    model.add_scenario(
        "handoff-manual",
        [
            by_agent([ToolUse("Write", {"file_path": "calc.py", "content": ADD_FIXED})], verdict("approved")),
            by_agent(Text("Added calc.add (CODER-SUMMARY)."), Text(END_OF_SCRIPT)),
        ],
    )
    async with start_factory() as h:
        t = await h.create(f"Add calc {uuid.uuid4().hex[:6]}", "handoff-manual")
        src = await h.wait_for(t["id"], {"done", "failed"})
        assert src["status"] == "done", src
        await h.settled(t["id"])
        r = await h.api.post(
            "/api/handoffs", json={"from_task_id": t["id"], "to_agent": "reviewer", "context": "Focus on HANDOFF-CTX."}
        )
        assert r.status_code == 201, r.text
        ho = r.json()
        assert ho["from_agent"] == "coder" and ho["to_agent"] == "reviewer" and ho["changed_files"] == ["calc.py"]
        new = ho["task"]
        assert new["agent_type"] == "reviewer" and new["parent_task_id"] == t["id"] and ho["to_task_id"] == new["id"]
        finished = await h.wait_for(new["id"], {"done", "failed"})
        assert finished["status"] == "done", finished
        assert finished["branch"] == src["branch"]
        prompt = [r for r in model.requests_for("handoff-manual") if "Factory's reviewer agent" in r.system][0]
        assert "CODER-SUMMARY" in prompt.first_user_text and "HANDOFF-CTX" in prompt.first_user_text
        assert (await h.api.get(f"/api/handoffs/{ho['id']}")).json()["to_task_id"] == new["id"]
        assert [x["id"] for x in (await h.api.get(f"/api/tasks/{t['id']}/handoffs")).json()] == [ho["id"]]
        bad = await h.api.post("/api/handoffs", json={"from_task_id": t["id"], "to_agent": "pilot"})
        assert bad.status_code == 422


async def test_the_recorded_code_review_history_replays():
    for name in ("code_review.json", "code_review_reviewer_step.json"):
        data = (HISTORIES / name).read_text()
        history = WorkflowHistory.from_json(f"replay-{name}", data)
        await Replayer(
            workflows=[ConfiguredWorkflow, TaskWorkflow], data_converter=pydantic_data_converter
        ).replay_workflow(history)
