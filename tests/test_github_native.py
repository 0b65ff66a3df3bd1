"""GitHub-native work end to end: issues and mentions start tasks, failing CI, review comments and
conflicts bring the agent back.

Real Temporal, real git, the real claude CLI against the scripted model; GitHub is the stand-in in
tests/fakes/github.py speaking its REST API, and webhooks are posted signed, with payloads shaped
like GitHub's published examples (tests/fakes/github_webhooks.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from factory.integrations.github.mentions import instruction_of
from factory.store.tables import Task, session_scope
from tests.conftest import remote_file
from tests.fakes import github_webhooks as ghw
from tests.fakes.anthropic import RecordedRequest, Text, ToolUse

SECRET = "github-native-secret-8910"


def scenario(name: str) -> str:
    return f"ghn-{name}-{uuid.uuid4().hex[:8]}"


def question(text: str) -> Text:
    return Text("I need a decision first.\n" + json.dumps({"type": "question", "question": text}))


async def post(h: Any, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }
    r = await h.api.post("/webhooks/github", content=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def tasks_where(h: Any, **eq: Any) -> list[Task]:
    with session_scope(h.runtime.engine) as s:
        q = select(Task)
        for k, v in eq.items():
            q = q.where(getattr(Task, k) == v)
        return list(s.exec(q.order_by(Task.id)).all())


def sha_of(remote: Path, ref: str) -> str:
    return subprocess.run(
        ["git", "-C", str(remote), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()


def fake_pr(github: Any, branch: str) -> dict[str, Any]:
    return next(p for p in github.prs if p["head"]["ref"] == branch)


@pytest.fixture
def live_github(github: Any, remote: Path) -> Any:
    """The GitHub stand-in, its PRs' head and base SHAs following the test's remote (as GitHub's follow pushes)."""
    github.remotes["acme/demo"] = remote
    yield github
    github.remotes.pop("acme/demo", None)


def head_sha(github: Any, pr: dict[str, Any]) -> str:
    return github._public(pr)["head"]["sha"]


async def finished_pr_task(h: Any, github: Any, title: str, sc: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A real task that opened a PR: its row and the stand-in's PR."""
    t = await h.create(title, sc)
    done = await h.wait_for(t["id"], {"done", "failed"})
    assert done["status"] == "done" and done["pr_url"], done
    await h.settled(t["id"])  # the worktree is released before the branch is checked out again
    return done, fake_pr(github, done["branch"])


def status_comments(github: Any, number: int) -> list[dict[str, Any]]:
    return [c for c in github.issue_comments(number) if "**Status:**" in c["body"]]


# --- issues -----------------------------------------------------------------------------------------


async def test_labelled_issue_runs_a_task_edits_one_status_comment_and_an_issue_comment_answers(
    start_factory, model, github
):
    sc = scenario("issue")
    model.add_scenario(
        sc,
        [
            question("Should the greeting be formal?"),
            [ToolUse("Write", {"file_path": "greet.txt", "content": "Good day\n"})],
            Text("Wrote a formal greeting."),
        ],
    )
    number = random.randint(3000, 8999)
    issue = ghw.issue(number, "Add a greeting", f"We need a greeting file. [[scenario:{sc}]]", ["agent:coder"])
    async with start_factory(github={"webhook_secret": SECRET}) as h:
        # another label does nothing; the trigger label starts the task with the agent the labels name
        assert (await post(h, "issues", ghw.issue_labeled(issue, "bug")))["status"] == "ignored"
        out = await post(h, "issues", ghw.issue_labeled(issue, "factory"))
        assert out["status"] == "started" and out["agent_type"] == "coder", out
        task_id = out["task_id"]
        again = await post(h, "issues", ghw.issue_labeled(issue, "factory"))  # a second labelling while it runs
        assert again["status"] == "ignored" and "still working" in again["reason"], again

        await h.wait_for(task_id, "awaiting_input")
        await h.until(
            lambda: [c for c in github.issue_comments(number) if "Should the greeting be formal?" in c["body"]],
            timeout=20, what="the question on the issue",
        )  # fmt: skip
        await h.until(
            lambda: any("waiting for an answer" in c["body"] for c in status_comments(github, number)),
            timeout=20, what="the status comment to say it waits",
        )  # fmt: skip
        # a stranger's reply is not an answer; a collaborator's is
        stranger = ghw.issue_comment(issue, "Make it rude", "mallory", "NONE")
        assert (await post(h, "issue_comment", stranger))["status"] == "ignored"
        answer = await post(h, "issue_comment", ghw.issue_comment(issue, "Yes, formal please", "carol", "MEMBER"))
        assert answer == {"status": "answered", "task_id": task_id, "question_id": answer["question_id"]}, answer

        done = await h.wait_for(task_id, {"done", "failed"})
        assert done["status"] == "done", done
        resumed = model.requests_for(sc)[-1]
        assert "Yes, formal please" in resumed.all_text
        created = [c for c in github.pr_creations() if c.body["head"] == done["branch"]]
        assert len(created) == 1 and f"Fixes #{number}" in created[0].body["body"]

        def final() -> bool:
            status = status_comments(github, number)
            return len(status) == 1 and "**Status:** done" in status[0]["body"]

        await h.until(final, timeout=20, what="the status comment to say done")
        status = status_comments(github, number)[0]
        assert done["pr_url"] in status["body"] and status["edits"] >= 2  # queued, then at least waiting and done
        posts = [c for c in github.calls if c.method == "POST" and c.path.endswith(f"/issues/{number}/comments")]
        assert len(posts) == 2  # the status comment and the question: everything else was an edit


async def test_mentions_from_writers_start_work_and_from_strangers_nothing(start_factory, github):
    number = random.randint(3000, 8999)
    issue = ghw.issue(number, "Tidy the README", "It has typos.", [], author="erin", association="NONE")
    async with start_factory(worker=False, github={"webhook_secret": SECRET}) as h:
        for association in ("NONE", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR"):
            out = await post(h, "issue_comment", ghw.issue_comment(issue, "@factory fix it", "mallory", association))
            assert out == {"status": "ignored", "reason": "the comment's author has no write access to the repository"}
        assert tasks_where(h, title="Tidy the README") == []
        mention = ghw.issue_comment(issue, "Thanks!\n\n@factory fix the typos in README.md", "carol", "COLLABORATOR")
        out = await post(h, "issue_comment", mention)
        assert out["status"] == "started", out
        [task] = tasks_where(h, title="Tidy the README")
        assert task.id == out["task_id"] and task.description.startswith("fix the typos in README.md")
        assert "It has typos." in task.description and f"Fixes #{number}" in task.description
        assert (await post(h, "issue_comment", mention))["status"] == "ignored"  # a redelivery: once

        # on a Factory PR: a follow-up on the PR's branch
        branch = f"factory/task-91-{uuid.uuid4().hex[:6]}"
        with github.lock:
            pr_number = len(github.prs) + 1
            github.prs.append(
                {"_repo": "acme/demo", "number": pr_number, "html_url": f"https://github.example/acme/demo/pull/{pr_number}",
                 "title": "t", "body": "", "head": {"ref": branch, "sha": "abc", "repo": {"full_name": "acme/demo"}},
                 "base": {"ref": "main", "sha": "def"}, "state": "open", "merged": False}
            )  # fmt: skip
        with session_scope(h.runtime.engine) as s:
            s.add(Task(title="ours", repo="demo", status="done", branch=branch, pr_number=pr_number, pr_state="open"))
            s.commit()
        pr_issue = ghw.issue(pr_number, "t", "", pull_request=True)
        out = await post(
            h, "issue_comment", ghw.issue_comment(pr_issue, "@factory rename greet to hello", "dave", "OWNER")
        )
        assert out["status"] == "started" and out["branch"] == branch, out
        follow = tasks_where(h, id=out["task_id"])[0]
        assert follow.agent_type == "coder_revision" and follow.pr_number == pr_number and follow.branch == branch


async def test_issue_labels_choose_a_workflow_and_opened_issues_need_a_writer(start_factory, github):
    workflows = {"gh_flow": {"steps": [{"agent": "coder", "output": "code"}, {"agent": "reviewer", "input": "code"}]}}
    async with start_factory(worker=False, workflows=workflows, github={"webhook_secret": SECRET}) as h:
        number = random.randint(3000, 8999)
        stranger = ghw.issue(number, "Cache it", "Add a cache", ["factory"], author="mallory", association="NONE")
        out = await post(h, "issues", ghw.issue_opened(stranger))  # an issue template may label anyone's issue
        assert out["status"] == "ignored" and "write access" in out["reason"], out
        writer = ghw.issue(number, "Cache it", "Add a cache", ["factory", "workflow:gh_flow"], association="OWNER")
        out = await post(h, "issues", ghw.issue_opened(writer))
        assert out["status"] == "started" and out["workflow"] == "gh_flow", out
        run = (await h.api.get(f"/api/workflows/{out['workflow_run_id']}")).json()
        assert run["title"] == "Cache it" and f"Fixes #{number}" in run["description"], run
        [status] = status_comments(github, number)
        assert f"workflow run #{out['workflow_run_id']}" in status["body"] and "queued" in status["body"]
        unknown = ghw.issue(number + 1, "X", "", ["agent:wizard"])
        out = await post(h, "issues", ghw.issue_labeled(unknown, "factory"))
        assert out["status"] == "ignored" and "wizard" in out["reason"], out


def test_instruction_of_finds_the_handle_not_lookalikes():
    assert instruction_of("factory", "@factory please do X") == "please do X"
    assert instruction_of("factory", "hey @Factory: do Y\nand Z") == "do Y\nand Z"
    assert instruction_of("factory", "mail me at x@factory.dev") is None
    assert instruction_of("factory", "@factory-bot do it") is None
    assert instruction_of("factory", "nothing here") is None


# --- CI failures ------------------------------------------------------------------------------------


def _fix(rec: RecordedRequest) -> Any:
    """Each fix run changes the file (so its push makes a new head commit)."""
    marker = "round 1" if "fix round 1 of" in rec.first_user_text else "round 2"
    return [ToolUse("Bash", {"command": f"echo 'fixed in {marker}' >> fix.txt"})]


async def test_failed_ci_starts_fix_rounds_with_log_tails_then_asks_a_person(start_factory, model, live_github):
    github = live_github
    sc = scenario("ci")
    # the first run writes greet.txt; each fix run (same scenario, from the title) appends to fix.txt
    model.add_scenario(
        sc,
        [
            lambda rec: _fix(rec) if "CI failed" in rec.first_user_text
            else [ToolUse("Write", {"file_path": "greet.txt", "content": "hello\n"})],
            Text("Done."),
        ],
    )  # fmt: skip
    async with start_factory(
        github={"webhook_secret": SECRET, "check_runs": True, "dashboard_url": "http://f.example"}
    ) as h:
        done, pr = await finished_pr_task(h, github, f"Greet [[scenario:{sc}]]", sc)
        fix_ids = []
        for round_no, suite_id in ((1, 7101), (2, 7102)):
            sha = head_sha(github, pr)
            job = 880_000 + round_no
            noise = "\n".join(f"step output line {i}" for i in range(300))
            github.job_logs[job] = f"{noise}\nFAILED tests/test_greet.py::test_round_{round_no} - AssertionError\n"
            github.suites[suite_id] = [ghw.check_run(job, "pytest"), ghw.check_run(job + 50, "lint", "success")]
            out = await post(h, "check_suite", ghw.check_suite_completed(pr, suite_id, sha))
            assert out["status"] == "started" and out["round"] == round_no, out
            # the Actions workflow run of the same commit is the same failure: no second run
            wr = await post(h, "workflow_run", ghw.workflow_run_completed(pr, suite_id + 500, sha))
            assert wr["status"] == "ignored", wr
            fixed = await h.wait_for(out["task_id"], {"done", "failed"})
            assert fixed["status"] == "done" and fixed["branch"] == done["branch"], fixed
            await h.settled(out["task_id"])
            prompt = next(r for r in model.requests_for(sc) if f"round {round_no} of 2" in r.first_user_text)
            text = prompt.first_user_text
            assert f"test_round_{round_no} - AssertionError" in text and "pytest" in text
            assert "step output line 299" in text and "step output line 3\n" not in text  # the tail, not the head
            assert "Failed check: lint" not in text
            fix_ids.append(out["task_id"])
            assert head_sha(github, pr) != sha  # the fix was pushed
        assert remote_file(h.remote, done["branch"], "fix.txt") == "fixed in round 1\nfixed in round 2\n"

        # a third failure: a comment asks a person, and no run starts
        github.suites[7103] = [ghw.check_run(880_003, "pytest")]
        github.job_logs[880_003] = "still broken\n"
        sha = head_sha(github, pr)
        out = await post(h, "check_suite", ghw.check_suite_completed(pr, 7103, sha))
        assert out == {"status": "asked_a_person", "rounds": 2}, out
        asks = [c for c in github.issue_comments(pr["number"]) if "Could a person take a look?" in c["body"]]
        assert len(asks) == 1
        assert len(tasks_where(h, branch=done["branch"])) == 3
        # a stale head's failure does nothing; a green run after the fixes is recorded
        stale = await post(h, "check_suite", ghw.check_suite_completed(pr, 7104, "0" * 40))
        assert stale["status"] == "ignored" and "head commit" in stale["reason"]
        green = await post(h, "check_suite", ghw.check_suite_completed(pr, 7105, sha, "success"))
        assert green == {"status": "recorded", "green_after_rounds": 2}, green

        # Factory's own check run on the head commit, linked to the task, ended in success; none is left
        # "in progress" (one a fix run started on the commit before its push is closed as superseded)
        def check_runs() -> dict[str, dict[str, Any]]:
            return {r["head_sha"]: r for r in github.check_runs.values()}

        await h.until(lambda: check_runs().get(sha, {}).get("conclusion") == "success", 20, "the check run")
        run = check_runs()[sha]
        assert run["name"] == "Factory" and run["details_url"] == f"http://f.example/#/tasks/{fix_ids[-1]}"
        assert not [r for r in github.check_runs.values() if r.get("status") != "completed"]


# --- review comments --------------------------------------------------------------------------------


async def test_review_line_comments_reach_the_revision_prompt_and_get_replies(start_factory, model, github):
    sc = scenario("review")
    model.add_scenario(
        sc,
        [
            lambda rec: [ToolUse("Bash", {"command": "echo goodbye > greet.txt && echo x > util.py"})]
            if "Review comments" in rec.first_user_text
            else [ToolUse("Write", {"file_path": "greet.txt", "content": "hello\n"})],
            Text("Said goodbye and added util.py."),
        ],
    )  # fmt: skip
    async with start_factory(github={"webhook_secret": SECRET}) as h:
        done, pr = await finished_pr_task(h, github, f"Greet [[scenario:{sc}]]", sc)
        github.review_comments[6001] = [
            {"id": 61, "path": "greet.txt", "line": 1, "body": "Say goodbye instead"},
            {"id": 62, "path": "util.py", "line": 12, "original_line": 12, "body": "Add a helper here"},
        ]
        payload = ghw.review_submitted(ghw.from_fake(pr), 6001, "Two things.", "carol", "MEMBER")
        out = await post(h, "pull_request_review", payload)
        assert out["status"] == "started", out
        revised = await h.wait_for(out["task_id"], {"done", "failed"})
        assert revised["status"] == "done", revised
        prompt = next(r for r in model.requests_for(sc) if "Review comments" in r.first_user_text).first_user_text
        assert "`greet.txt:1`: Say goodbye instead" in prompt and "`util.py:12`: Add a helper here" in prompt
        await h.until(lambda: set(github.replies) == {61, 62}, timeout=20, what="a reply in each thread")
        for cid in (61, 62):
            [reply] = github.replies[cid]
            assert "`greet.txt`" in reply["body"] and "Said goodbye" in reply["body"]


# --- conflicts --------------------------------------------------------------------------------------


def _push_to_main(remote: Path, tmp: Path, name: str, content: str) -> str:
    work = tmp / f"base-{uuid.uuid4().hex[:6]}"
    env = ["-c", "user.name=t", "-c", "user.email=t@x"]
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    (work / name).write_text(content)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(work), *env, "commit", "-q", "-m", "base moves"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)
    return sha_of(remote, "main")


MERGE = "git merge origin/main; printf 'hello and hi\\n' > greet.txt && git add greet.txt && git commit --no-edit -q"


async def test_a_conflicting_base_gets_a_merge_run_that_pushes_a_cleanly_merging_branch(
    start_factory, model, live_github, tmp_path
):
    github = live_github
    sc = scenario("conflict")
    model.add_scenario(
        sc,
        [
            lambda rec: [ToolUse("Bash", {"command": MERGE})] if "no longer merges" in rec.first_user_text
            else [ToolUse("Write", {"file_path": "greet.txt", "content": "hello\n"})],
            Text("Merged main; kept both greetings."),
        ],
    )  # fmt: skip
    async with start_factory(github={"webhook_secret": SECRET}) as h:
        done, pr = await finished_pr_task(h, github, f"Greet [[scenario:{sc}]]", sc)
        before = sha_of(h.remote, "main")
        after = _push_to_main(h.remote, tmp_path, "greet.txt", "hi\n")
        merge_base = ["git", "-C", str(h.remote), "merge-tree", "--write-tree", "main", done["branch"]]
        assert subprocess.run(merge_base, capture_output=True).returncode == 1  # it conflicts now
        with github.lock:
            pr.update(mergeable=False, mergeable_state="dirty")
        out = await post(h, "push", ghw.push("refs/heads/main", before, after))
        assert out["status"] == "started" and len(out["task_ids"]) == 1, out
        merged = await h.wait_for(out["task_ids"][0], {"done", "failed"})
        assert merged["status"] == "done" and merged["branch"] == done["branch"], merged
        assert subprocess.run(merge_base, capture_output=True).returncode == 0  # merges cleanly now
        assert remote_file(h.remote, done["branch"], "greet.txt") == "hello and hi\n"
        parents = sha_of(h.remote, f"{done['branch']}^2")
        assert parents == after  # a merge of the moved base, not a rewrite
