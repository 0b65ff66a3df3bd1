"""The fast tier: Factory's workflow logic with activities scripted by name (tests/workflow_harness.py).

The real workflows run on the session's real Temporal dev server in the production sandbox; only the
activities are scripted, so each case takes a fraction of a second and needs no CLI, git or database.
Covers the task story (PR or none, failures, questions, answers refused, budget questions and holds,
reviewer verdict reminders, cancel, failover), the step interpreter (loops, goto, conditions, max
iterations, handoffs, one worktree), schedules and the memory service. The wiring (what workflows load,
activity declarations against implementations) is in tests/test_wiring.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from factory.contracts import AnswerInput, MemoryCall, RepoRef, ScheduledWork, TaskResult, WorkflowRunResult
from factory.domain.pull_request import NO_CHANGES_NOTE
from tests.test_pipeline import scheduled_options
from tests.workflow_harness import (
    Scripted,
    WorkflowStepSpec,
    agent,
    answer_when_asked,
    asks,
    budget_stop,
    code_review_steps,
    reply,
    run_input,
    task_input,
    verdict,
)

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parent.parent


async def start_task(env: WorkflowEnvironment, s: Scripted, **kw: Any) -> Any:
    return await env.client.start_workflow(
        "TaskWorkflow", task_input(**kw), id=f"task-{s.task_queue}", task_queue=s.task_queue, result_type=TaskResult
    )


async def run_task(env: WorkflowEnvironment, s: Scripted, **kw: Any) -> TaskResult:
    async with s.worker(env.client):
        return await (await start_task(env, s, **kw)).result()


async def failed_task(env: WorkflowEnvironment, s: Scripted, **kw: Any) -> str:
    with pytest.raises(WorkflowFailureError) as err:
        await run_task(env, s, **kw)
    return str(err.value.cause)


async def run_steps(env: WorkflowEnvironment, s: Scripted, steps: list[WorkflowStepSpec], **kw: Any) -> Any:
    async with s.worker(env.client):
        return await env.client.execute_workflow(
            "ConfiguredWorkflow", run_input(steps, **kw), id=f"run-{s.task_queue}", task_queue=s.task_queue,
            result_type=WorkflowRunResult,
        )  # fmt: skip


def kinds(s: Scripted) -> list[str]:
    return [e.kind for e in s.of("publish_event")]


# --- the task story


async def test_a_task_runs_its_agent_pushes_opens_a_pr_and_cleans_up(temporal_env):
    s = Scripted()
    res = await run_task(temporal_env, s)
    assert res.status == "done" and res.pr_url == "https://github.com/acme/web/pull/7"
    assert [r.prompt != "" for r in s.of("run_agent")] == [True]
    assert kinds(s) == ["started", "completed"]
    assert s.updates()[-1].status == "done" and s.updates()[-1].pr_number == 7
    assert len(s.of("clean_up_here")) == 1 and len(s.of("remember_task")) == 1


async def test_a_task_cleans_up_in_one_step_and_pushes_nothing_again_once_done(temporal_env):
    s = Scripted()
    await run_task(temporal_env, s)
    # in its workflow task, by the worktree's host (patch clean-up-here); its test environments with it
    (done,) = s.of("clean_up_here")
    assert done.pushed and done.environments == ["test"] and not s.of("cleanup_task_environments")
    assert not s.of("cleanup_workspace")
    s = Scripted(replies={"coder": [reply("model overloaded", is_error=True, subtype="error_during_execution")]})
    await failed_task(temporal_env, s)
    (failed,) = s.of("cleanup_workspace")  # a failed task's work is committed as WIP and pushed
    assert not s.of("clean_up_here")  # git to run: the host's own step, under its outage policy
    assert not failed.pushed and failed.wip_message.startswith("WIP: ")


@pytest.mark.parametrize("here", [False, "fail"])
async def test_a_done_tasks_cleanup_is_the_hosts_own_step_when_it_cannot_be_done_in_the_workflow_task(
    temporal_env, here
):
    """The worker holding the workflow task is not the worktree's host (several hosts), or the removal failed:
    the host's cleanup step does it, once (patch one-cleanup's step, as before)."""
    s = Scripted(here=here)
    res = await run_task(temporal_env, s)
    assert res.status == "done" and len(s.of("clean_up_here")) == (1 if here is False else 2)  # tried twice
    (done,) = s.of("cleanup_workspace")
    assert done.pushed and done.environments == ["test"] and done.workspace.host_queue == s.task_queue


async def test_a_task_without_commits_opens_no_pr_and_says_so(temporal_env):
    s = Scripted(commits=[0])
    res = await run_task(temporal_env, s)
    assert res.status == "done" and res.pr_url is None and not s.of("open_pull_request")
    assert s.updates()[-1].note == NO_CHANGES_NOTE
    assert s.of("publish_event")[-1].no_changes


@pytest.mark.parametrize("kw", [{"open_pr": False}, {"repo": RepoRef(name="acme/web", url="file:///nowhere")}])
async def test_no_pr_when_the_task_says_so_or_the_repo_is_not_on_github(temporal_env, kw):
    s = Scripted()
    res = await run_task(temporal_env, s, **kw)
    assert res.status == "done" and not s.of("open_pull_request") and res.changes.commits_ahead == 1


async def test_an_agent_error_fails_the_task_with_its_text_and_still_cleans_up(temporal_env):
    s = Scripted(replies={"coder": [reply("model overloaded", is_error=True, subtype="error_during_execution")]})
    why = await failed_task(temporal_env, s)
    assert "model overloaded" in why
    assert s.updates()[-1].status == "failed" and kinds(s)[-1] == "failed"
    assert len(s.of("cleanup_workspace")) == 1 and not s.of("open_pull_request")


async def test_a_question_waits_for_the_answer_and_the_agent_resumes_with_it(temporal_env):
    s = Scripted(replies={"coder": [asks("Which port?", ["8080", "9090"]), reply("used 9090")]})
    async with s.worker(temporal_env.client):
        h = await start_task(temporal_env, s)
        pq = await answer_when_asked(h, "9090")
        res = await h.result()
    assert pq.text == "Which port?" and pq.options == ["8080", "9090"]
    runs = s.of("run_agent")
    assert res.status == "done" and len(runs) == 2 and runs[1].prompt == "9090" and runs[1].resume
    assert runs[1].session_id == "s-1"  # the session the first run reported goes on
    assert [a.answer for a in s.of("record_answer")] == ["9090"]
    assert [n.channel for n in s.of("send_notification")] == ["telegram"]  # the question reached people
    assert kinds(s) == ["started", "question", "completed"]


async def test_two_questions_in_a_row_each_wait_for_their_own_answer(temporal_env):
    s = Scripted(replies={"coder": [asks("Q1?"), asks("Q2?"), reply("ok")]})
    async with s.worker(temporal_env.client):
        h = await start_task(temporal_env, s)
        assert (await answer_when_asked(h, "A1")).id == 1
        assert (await answer_when_asked(h, "A2")).id == 2
        res = await h.result()
    assert res.status == "done" and [r.prompt for r in s.of("run_agent")[1:]] == ["A1", "A2"]


async def test_answers_to_no_question_a_stale_one_or_empty_are_refused_before_history(temporal_env):
    s = Scripted(replies={"coder": [asks("Which port?"), reply("ok")]})
    async with s.worker(temporal_env.client):
        h = await start_task(temporal_env, s)
        while await h.query("stage") != "awaiting_input":
            await asyncio.sleep(0.05)  # polling a query until the question is pending
        for bad in (AnswerInput(answer="x", question_id=99), AnswerInput(answer="   ")):
            with pytest.raises(WorkflowUpdateFailedError):
                await h.execute_update("answer", bad, result_type=str)
        await answer_when_asked(h, "8080")
        await h.result()
        with pytest.raises((WorkflowUpdateFailedError, RPCError)):  # refused, or no workflow left to take it
            await h.execute_update("answer", AnswerInput(answer="late"), result_type=str)
    assert [a.answer for a in s.of("record_answer")] == ["8080"]


async def test_an_unanswered_question_fails_the_task_after_the_clarification_timeout(temporal_env):
    s = Scripted(replies={"coder": [asks("Which port?")]})
    why = await failed_task(temporal_env, s, clarification_timeout_s=1)
    assert "no answer came" in why
    assert [c.answer for c in s.of("close_question")] == ["expired"]


async def test_a_cancel_while_waiting_for_an_answer_closes_the_question(temporal_env):
    s = Scripted(replies={"coder": [asks("Which port?")]})
    async with s.worker(temporal_env.client):
        h = await start_task(temporal_env, s)
        while await h.query("stage") != "awaiting_input":
            await asyncio.sleep(0.05)  # polling a query until the question is pending
        await h.cancel()
        with pytest.raises(WorkflowFailureError):
            await h.result()
    assert [c.answer for c in s.of("close_question")] == ["cancelled"]
    assert s.updates()[-1].status == "cancelled" and "cancelled" in kinds(s)


async def test_a_budget_stop_pushes_asks_and_a_raise_resumes_with_the_new_limit(temporal_env):
    s = Scripted(replies={"coder": [budget_stop("task", 1.0, 1.2), reply("finished")]})
    async with s.worker(temporal_env.client):
        h = await start_task(temporal_env, s)
        pq = await answer_when_asked(h, "5")
        res = await h.result()
    assert "Stop" in (pq.options or []) and res.status == "done"
    runs = s.of("run_agent")
    assert runs[1].budget_limits == {"task": 5.0} and runs[1].resume and "raised to $5.00" in runs[1].prompt
    assert any("budget reached" in f.message for f in s.of("finalize_changes"))  # the work was pushed first


async def test_a_budget_question_answered_stop_fails_the_task(temporal_env):
    s = Scripted(replies={"coder": [budget_stop()]})
    async with s.worker(temporal_env.client):
        h = await start_task(temporal_env, s)
        await answer_when_asked(h, "Stop")
        with pytest.raises(WorkflowFailureError) as err:
            await h.result()
    assert "stopped at the budget" in str(err.value.cause) and len(s.of("run_agent")) == 1


async def test_a_budget_answer_that_is_no_amount_is_asked_again(temporal_env):
    s = Scripted(replies={"coder": [budget_stop(spent=1.2), reply("ok")]})
    async with s.worker(temporal_env.client):
        h = await start_task(temporal_env, s)
        await answer_when_asked(h, "maybe")
        await answer_when_asked(h, "1.0")  # below what was spent: still no amount
        again = await answer_when_asked(h, "3")
        res = await h.result()
    assert "is neither 'Stop' nor an amount" in again.text and res.status == "done"
    assert s.of("run_agent")[-1].budget_limits == {"task": 3.0}


async def test_a_budget_that_refused_the_start_is_retried_afresh_after_a_raise(temporal_env):
    refused = budget_stop("daily", 10, 10)
    refused.subtype = "budget_exhausted"
    s = Scripted(replies={"coder": [refused, reply("ok")]})
    async with s.worker(temporal_env.client):
        h = await start_task(temporal_env, s)
        await answer_when_asked(h, "20")
        await h.result()
    first, second = s.of("run_agent")
    assert second.prompt == first.prompt and not second.resume and second.budget_limits == {"daily": 20.0}


async def test_a_daily_budget_hold_keeps_the_task_queued_until_it_lifts(temporal_env):
    s = Scripted(holds=[True])
    res = await run_task(temporal_env, s, budget_hold_s=0.2)
    assert res.status == "done" and len(s.of("check_budget_hold")) == 2
    assert s.calls.index(("check_budget_hold", s.of("check_budget_hold")[-1])) < s.calls.index(
        ("prepare_workspace", s.of("prepare_workspace")[0])
    )


async def test_no_budget_check_without_a_daily_budget(temporal_env):
    s = Scripted(holds=[True])
    await run_task(temporal_env, s)
    assert not s.of("check_budget_hold")


async def test_a_reviewer_without_a_verdict_is_reminded_once_then_fails(temporal_env):
    s = Scripted(replies={"reviewer": [reply("looks fine"), reply("still fine")]})
    why = await failed_task(temporal_env, s, agent=agent("reviewer"), require_verdict=True)
    assert "without a parsable verdict" in why and len(s.of("run_agent")) == 2


async def test_a_reminded_reviewer_that_gives_a_verdict_is_done(temporal_env):
    s = Scripted(replies={"reviewer": [reply("looks fine"), verdict("approved")]})
    res = await run_task(temporal_env, s, agent=agent("reviewer"), require_verdict=True)
    assert res.status == "done" and s.of("run_agent")[1].resume


async def test_a_retried_task_resumes_its_earlier_session(temporal_env):
    s = Scripted()
    await run_task(temporal_env, s, resume_session_id="earlier")
    (run,) = s.of("run_agent")
    assert run.resume and run.session_id == "earlier"


async def test_a_lost_host_moves_the_task_to_another_host_which_finishes_it(temporal_env):
    s = Scripted(first_host_queue="nobody-polls-this-queue")
    res = await run_task(temporal_env, s, failover_after_s=0.5)
    first, moved = s.of("prepare_workspace")
    assert not first.moved and moved.moved and moved.branch == "factory/1"
    assert res.status == "done" and res.workspace is not None and res.workspace.host == "this-host"
    assert "This task moved to another host" in s.of("run_agent")[0].prompt
    assert any((u.note or "").startswith("host lost-host is gone") for u in s.updates())


# --- the step interpreter


async def test_code_review_approved_at_once_skips_the_revision_in_one_worktree(temporal_env):
    s = Scripted(replies={"reviewer": [verdict("approved")]})
    res = await run_steps(temporal_env, s, code_review_steps())
    assert res.status == "completed" and res.approved and res.iterations == 1
    assert [o.agent_type for o in res.steps] == ["coder", "reviewer"]
    # the steps are child tasks in the run's one worktree, with one PR and one cleanup for the run
    assert len(s.of("prepare_workspace")) == 1 and len(s.of("open_pull_request")) == 1 and res.pr_url
    assert all(r.cwd == "/work/tasks/101" for r in s.of("run_agent")) and len(s.of("cleanup_workspace")) == 1


async def test_a_runs_steps_remember_with_the_configured_outage_window(temporal_env):
    """`memory.outage_seconds` reaches every step's remember step, not only a lone task's."""
    s = Scripted(replies={"reviewer": [verdict("approved")]})
    assert (await run_steps(temporal_env, s, code_review_steps(), memory_outage_s=7)).status == "completed"
    run = temporal_env.client.get_workflow_handle(f"run-{s.task_queue}")
    children = [
        e.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
        for e in (await run.fetch_history()).events
        if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
    ]
    assert len(children) == 2 and len(s.of("remember_task")) == 2
    for child in children:
        options = scheduled_options(await temporal_env.client.get_workflow_handle(child).fetch_history())
        assert options["remember_task"].schedule_to_close_timeout.ToSeconds() == 7


async def test_changes_requested_loops_back_to_the_review_with_handoffs_then_approves(temporal_env):
    s = Scripted(replies={"reviewer": [verdict("changes_requested", "no tests"), verdict("approved")]})
    res = await run_steps(temporal_env, s, code_review_steps())
    assert [(o.agent_type, o.iteration) for o in res.steps] == [
        ("coder", 1), ("reviewer", 1), ("coder_revision", 1), ("reviewer", 2),
    ]  # fmt: skip
    assert res.approved and res.iterations == 2 and res.note is None
    revision = [r for r in s.of("run_agent") if r.agent.agent_type == "coder_revision"][0]
    assert "no tests" in revision.prompt  # the review's issues reached the revision
    # each step hands on to the next, and each step's task consumes the handoff before it
    handoffs = s.of("record_handoff")
    assert [(h.from_agent, h.to_agent) for h in handoffs] == [
        ("coder", "reviewer"), ("reviewer", "coder_revision"), ("coder_revision", "reviewer"),
        ("reviewer", "coder_revision"),
    ]  # fmt: skip
    assert handoffs[1].verdict == "changes_requested" and handoffs[1].issues
    created = s.of("create_step_task")
    assert [c.input_handoff_id for c in created] == [None, 1, 2, 3]


async def test_a_review_that_never_approves_stops_at_max_iterations(temporal_env):
    s = Scripted(replies={"reviewer": [verdict("changes_requested", "bug")] * 3})
    res = await run_steps(temporal_env, s, code_review_steps(), max_iterations=2)
    assert [o.agent_type for o in res.steps] == ["coder", "reviewer", "coder_revision", "reviewer"]
    assert res.approved is False and "max_iterations (2) was reached" in (res.note or "")


async def test_changes_requested_without_major_issues_does_not_loop_and_no_changes_no_pr(temporal_env):
    s = Scripted(commits=[0], replies={"reviewer": [verdict("changes_requested")]})
    res = await run_steps(temporal_env, s, code_review_steps())
    assert [o.agent_type for o in res.steps] == ["coder", "reviewer"]
    assert res.approved is False and "the last review's verdict was changes_requested" in (res.note or "")
    # and the agents changed nothing: no PR, and the note says so
    assert res.status == "completed" and res.pr_url is None and "no pull request" in (res.note or "")


async def test_a_condition_step_runs_only_when_the_review_approved(temporal_env):
    steps = [
        WorkflowStepSpec(index=0, agent=agent("coder"), output="code"),
        WorkflowStepSpec(index=1, agent=agent("reviewer"), input="code", output="review"),
        WorkflowStepSpec(index=2, agent=agent("devops"), input="review", condition="review_approved"),
    ]
    for v, ran in (("approved", True), ("changes_requested", False)):
        s = Scripted(replies={"reviewer": [verdict(v)]})
        res = await run_steps(temporal_env, s, steps)
        assert ("devops" in [o.agent_type for o in res.steps]) is ran


async def test_no_issues_condition_and_a_step_without_a_review(temporal_env):
    steps = [
        WorkflowStepSpec(index=0, agent=agent("coder"), output="code", condition="has_issues"),  # no review yet
        WorkflowStepSpec(index=1, agent=agent("docs"), condition="no_issues"),
    ]
    res = await run_steps(temporal_env, Scripted(), steps)
    assert [o.agent_type for o in res.steps] == ["docs"] and res.approved is None


async def test_a_failed_step_fails_the_run(temporal_env):
    s = Scripted(replies={"reviewer": [reply("boom", is_error=True, subtype="error")]})
    with pytest.raises(WorkflowFailureError) as err:
        await run_steps(temporal_env, s, code_review_steps())
    assert "step 2 (reviewer, iteration 1)" in str(err.value.cause) and "boom" in str(err.value.cause)
    assert s.of("update_workflow_run")[-1].status == "failed" and not s.of("open_pull_request")


async def test_a_step_question_is_answered_through_its_child_task(temporal_env):
    s = Scripted(replies={"coder": [asks("Which DB?"), reply("used sqlite")], "reviewer": [verdict("approved")]})
    async with s.worker(temporal_env.client):
        inp = run_input(code_review_steps())
        h = await temporal_env.client.start_workflow(
            "ConfiguredWorkflow", inp, id=f"run-{s.task_queue}", task_queue=s.task_queue, result_type=WorkflowRunResult
        )
        child = temporal_env.client.get_workflow_handle(f"{inp.id_prefix}task-101")
        while True:
            try:
                await answer_when_asked(child, "sqlite")
                break
            except Exception as exc:  # the child may not exist yet; anything else is a failure
                if "not found" not in str(exc).lower():
                    raise
                await asyncio.sleep(0.05)
        res = await h.result()
    assert res.approved and [r.prompt for r in s.of("run_agent")][1] == "sqlite"


# --- schedules and the memory service


async def test_a_schedule_starts_its_work_once(temporal_env):
    s = Scripted()
    async with s.worker(temporal_env.client):
        res = await temporal_env.client.execute_workflow(
            "ScheduledWorkWorkflow", ScheduledWork(schedule="nightly", repo="acme/web", title="deps"),
            id=f"sched-{s.task_queue}", task_queue=s.task_queue,
        )  # fmt: skip
    assert res["task_id"] == 42 if isinstance(res, dict) else res.task_id == 42
    assert [w.schedule for w in s.of("start_scheduled_work")] == ["nightly"]


async def test_the_memory_service_serves_a_call(temporal_env):
    s = Scripted()
    async with s.worker(temporal_env.client):
        res = await temporal_env.client.execute_workflow(
            "MemoryServiceWorkflow", MemoryCall(op="health"), id=f"mem-{s.task_queue}", task_queue=s.task_queue,
        )  # fmt: skip
    assert (res["text"] if isinstance(res, dict) else res.text) == "recalled"
