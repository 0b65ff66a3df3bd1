"""One rule for retrying (factory/domain/errors.py), checked on what the services and git really say.

Git's messages come from real git against real remotes: a bare repository that refuses a
non-fast-forward push, and a local HTTP server that answers git's smart-HTTP request with 401, 403
or 503. The "gave up after N tries" text comes from a real Temporal retry policy running out, and
a task whose push is rejected fails at once with "not retried: ..." instead of retrying for hours.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.github import GithubActivities
from factory.contracts import PullRequestInput, RepoRef
from factory.domain.errors import git_retryable, http_retryable
from factory.git.commands import GitError, git
from factory.integrations.errors import ServiceError, failure
from factory.integrations.github.client import GitHubError
from tests.fakes.anthropic import Text, ToolUse
from workflows.common import error_text


@pytest.mark.parametrize(
    ("status", "retry"),
    [(None, True), (500, True), (502, True), (503, True), (408, True), (409, True), (429, True),
     (400, False), (401, False), (403, False), (404, False), (410, False), (422, False)],
)  # fmt: skip
def test_every_service_classifies_a_status_alike(status, retry):
    assert http_retryable(status) is retry
    assert (not ServiceError("x", status).permanent) is retry  # Plane, Telegram
    if status is not None:
        assert GitHubError("x", status).retryable is retry  # GitHub agrees on 408 and 409 now
    err = failure("call failed", "SomeError", http_retryable(status))
    assert err.non_retryable is not retry
    assert err.message.startswith("not retried: ") is not retry


def test_a_github_rate_limit_on_403_is_retried_after_its_wait():
    assert GitHubError("rate limited", 403, retry_after=30).retryable  # x-ratelimit-remaining: 0
    err = ServiceError("slow down", 429, retry_after=12).as_application_error()
    assert not err.non_retryable and err.next_retry_delay == timedelta(seconds=12)


def _run(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _work(tmp: Path, remote: str) -> Path:
    work = tmp / f"work-{uuid.uuid4().hex[:6]}"
    _run("init", "-q", "-b", "main", str(work))
    _run("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", work.name, cwd=work)
    _run("remote", "add", "origin", remote, cwd=work)
    return work


async def _push_error(work: Path, url: str, ref: str = "HEAD:refs/heads/main") -> str:
    with pytest.raises(GitError) as caught:
        await git("push", url, ref, git_dir=work / ".git", work_tree=work, timeout=30)
    return str(caught.value)


async def test_git_rejected_push_is_not_retried(tmp_path):
    remote = tmp_path / "r.git"
    _run("init", "-q", "--bare", "-b", "main", str(remote))
    first = _work(tmp_path, str(remote))
    _run("push", "-q", "origin", "HEAD:refs/heads/main", cwd=first)
    other = _work(tmp_path, str(remote))  # its own history: the push is not a fast-forward
    msg = await _push_error(other, f"file://{remote}")
    assert "rejected" in msg and not git_retryable(msg), msg
    # a branch that does not exist on the remote is not retried either
    fetch = await _fetch_error(other, f"file://{remote}", "refs/heads/nope")
    assert not git_retryable(fetch), fetch


async def test_a_push_the_remote_could_not_lock_the_ref_for_is_retried(tmp_path):
    """Another push of the same branch holds its lock (e.g. one its killed sender started): a race, retried."""
    remote = tmp_path / "r.git"
    _run("init", "-q", "--bare", "-b", "main", str(remote))
    work = _work(tmp_path, str(remote))
    (remote / "refs" / "heads" / "main.lock").touch()
    msg = await _push_error(work, f"file://{remote}")
    assert "[remote rejected]" in msg and git_retryable(msg), msg
    # its hook declining is still a verdict
    (remote / "refs" / "heads" / "main.lock").unlink()
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    msg = await _push_error(work, f"file://{remote}")
    assert not git_retryable(msg), msg


async def _fetch_error(work: Path, url: str, ref: str) -> str:
    with pytest.raises(GitError) as caught:
        await git("fetch", url, ref, git_dir=work / ".git", work_tree=work, timeout=30)
    return str(caught.value)


class _Answer(BaseHTTPRequestHandler):
    status = 503

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        if self.server.status == 401:  # type: ignore[attr-defined]
            self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "retry"), [(401, False), (403, False), (404, False), (503, True), (500, True)])
async def test_git_over_http_classifies_credentials_and_outages(tmp_path, status, retry):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.status = status  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/acme/demo.git"
        msg = await _push_error(_work(tmp_path, url), url)
    finally:
        server.shutdown()
    assert git_retryable(msg) is retry, msg


async def test_git_network_error_is_retried(tmp_path):
    url = "http://127.0.0.1:9/acme/demo.git"  # nothing listens on the discard port
    msg = await _push_error(_work(tmp_path, url), url)
    assert git_retryable(msg), msg


async def test_the_pr_activity_does_not_retry_a_revoked_token(factory_config, github):
    cfg = factory_config()
    github.fail("GET", "/repos/acme/demo/pulls", 401, times=1, body={"message": "Bad credentials"})
    inp = PullRequestInput(
        task_id=1,
        repo=RepoRef(name="demo", url="file:///x", github="acme/demo"),
        branch="factory/task-1-x", base_branch="main", title="t", body="b",
    )  # fmt: skip
    async with httpx.AsyncClient() as http:
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(GithubActivities(cfg, http).open_pull_request, inp)
    assert caught.value.non_retryable and caught.value.message.startswith("not retried: "), caught.value


# --- "gave up after N tries", from a real retry policy running out -----------------------------------


@activity.defn(name="errors_test_flaky")
async def flaky() -> None:
    raise failure("GitHub comment failed: HTTP 503: unavailable", "GitHubError", retryable=True)


@workflow.defn(name="ErrorsTestWorkflow")
class ErrorsTestWorkflow:
    @workflow.run
    async def run(self, window_s: float) -> str:
        # a cap on attempts, or (window_s > 0) a retry window like the outage window of git and GitHub steps
        try:
            await workflow.execute_activity(
                flaky, start_to_close_timeout=timedelta(seconds=10),
                schedule_to_close_timeout=timedelta(seconds=window_s) if window_s else None,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=300), backoff_coefficient=1.0,
                    maximum_attempts=0 if window_s else 3,
                ),
            )  # fmt: skip
        except ActivityError as exc:
            return error_text(exc)
        return "no error"


async def test_a_retryable_failure_says_how_many_tries_it_took(temporal_env):
    queue = f"errors-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with Worker(
        client, task_queue=queue, workflows=[ErrorsTestWorkflow], activities=[flaky],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):  # fmt: skip
        capped = await client.execute_workflow(ErrorsTestWorkflow.run, 0.0, id=queue, task_queue=queue)
        windowed = await client.execute_workflow(ErrorsTestWorkflow.run, 2.0, id=f"{queue}-w", task_queue=queue)
    assert capped == "gave up after 3 tries: GitHub comment failed: HTTP 503: unavailable"
    assert windowed.startswith("gave up after ") and windowed.endswith(
        " tries: GitHub comment failed: HTTP 503: unavailable"
    ), windowed


# --- a task whose push is rejected fails at once ------------------------------------------------------


async def test_a_task_whose_push_is_rejected_fails_at_once_not_retried(start_factory, model):
    sc = f"reject-{uuid.uuid4().hex[:8]}"
    model.add_scenario(
        sc,
        [
            [ToolUse("Write", {"file_path": "mine.txt", "content": "agent\n"})],
            [ToolUse("Bash", {"command": "sleep 4; echo done waiting"})],
            Text("Wrote mine.txt."),
        ],
    )
    async with start_factory() as h:
        t = await h.create("Push gets rejected", sc)
        branch = await h.until(lambda: _branch(h, t["id"]), timeout=60, what="the task's branch")
        await h.until(lambda: len(model.requests_for(sc)) >= 2, timeout=60, what="the agent to be at work")
        # someone else pushes to the task's branch meanwhile: Factory's push is not a fast-forward
        other = _work(h.tmp, str(h.remote))
        _run("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=other)
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=60)
        assert done["status"] == "failed", done
        assert done["error"].startswith("not retried: ") and "rejected" in done["error"], done["error"]
        await h.settled(t["id"])


async def _branch(h: Any, task_id: int) -> str | None:
    await asyncio.sleep(0)
    return (await h.task(task_id)).get("branch")
