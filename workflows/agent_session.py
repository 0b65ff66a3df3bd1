"""One agent's CLI session inside a TaskWorkflow: run it, answer its questions, want its verdict.

The agent asks by ending its turn with a question; the session records it, tells people, and
waits durably for the answer (an Update on the workflow), then resumes the same CLI session
with it. A reviewer that ends without a parsable verdict is reminded once, in the same session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

from factory.contracts import (
    AgentRequest,
    AgentResult,
    AnswerInput,
    AnswerRecord,
    BudgetStop,
    FinalizeInput,
    PendingQuestion,
    QuestionInput,
    TaskInput,
    WorkspaceInfo,
)
from factory.contracts import activities as acts
from factory.domain.budgets import decide, question, usd
from factory.domain.prompts import task_prompt
from factory.domain.pull_request import commit_message
from factory.domain.review import VERDICT_REMINDER, parse_verdict
from factory.domain.text import clip
from workflows.budget_steps import push_wip, timed_out
from workflows.cancel import cancel_wins
from workflows.common import QUICK, error_text
from workflows.events import Notifications, task_event
from workflows.failover import HostLost, watch_host


class AgentFailed(Exception):
    """The agent's run ended so that the task cannot go on (an error, no answer, no verdict)."""


class Questions:
    """The question an agent waits on and the answer that came: the workflow's Update fills it."""

    def __init__(self) -> None:
        self.pending: PendingQuestion | None = None
        self.answer: AnswerInput | None = None

    def check(self, ans: AnswerInput) -> None:
        """Reject, before it enters history, an answer to no question, a stale one, or an empty one."""
        if self.pending is None:
            raise ApplicationError("this task has no pending question", type="NoPendingQuestion")
        if ans.question_id is not None and ans.question_id != self.pending.id:
            raise ApplicationError(
                f"question #{ans.question_id} is not the pending question (#{self.pending.id})", type="StaleAnswer"
            )
        if not ans.answer.strip():
            raise ApplicationError("the answer is empty", type="EmptyAnswer")

    def accept(self, ans: AnswerInput) -> None:
        self.answer = ans
        self.pending = None


class AgentSession:
    """Runs the task's agent to its final reply, pausing for as many questions as it asks."""

    def __init__(
        self,
        inp: TaskInput,
        ws: WorkspaceInfo,
        questions: Questions,
        notes: Notifications,
        stage_to: Callable[[str, str], None],
    ) -> None:
        self.inp = inp
        self.ws = ws
        self.questions = questions
        self.notes = notes
        self.stage_to = stage_to
        self.label = inp.step_label or inp.agent.agent_type
        self.limits: dict[str, float] = {}  # budgets raised by people's answers, by key

    async def run(self) -> AgentResult:
        """The agent's last reply and everything it learned along the way."""
        # a retried task goes on in its earlier CLI session (the activity starts afresh if none was saved)
        session_id = self.inp.resume_session_id or str(workflow.uuid4())
        prompt = task_prompt(self.inp, self.ws.branch)
        resume = bool(self.inp.resume_session_id)
        reminded = False
        total = AgentResult(session_id=session_id)
        while True:
            self.stage_to("agent", f"{self.label} running" + (" (resumed with an answer)" if resume else ""))
            try:
                res = await self._run_agent(prompt, session_id, resume)
            except HostLost as lost:
                lost.session_id = session_id  # resumed where the session's files travelled, else begun afresh
                raise
            session_id = res.session_id or session_id
            total.session_id = session_id
            total.result_text = res.result_text
            total.learnings += res.learnings
            if res.budget_stop is not None:
                again = await self._budget_reached(res.budget_stop)
                if res.subtype != "budget_exhausted":  # it ran: resume the session where the budget stopped it
                    prompt, resume = again, True
                continue
            if res.is_error:
                raise AgentFailed(f"agent failed ({res.subtype}): {res.result_text or 'no error text'}")
            if res.question is not None:
                prompt = await self._ask(res)
            elif self.inp.require_verdict and parse_verdict(res.result_text) is None:
                if reminded:
                    raise AgentFailed(
                        f"{self.label}: the reviewer ended twice without a parsable verdict (a JSON object like "
                        '{"verdict": "approved" | "changes_requested", "issues": [...]}); '
                        f"its last reply: {clip(res.result_text, 300)!r}"
                    )
                reminded = True  # once, in the same session, then the step fails
                prompt = VERDICT_REMINDER
            else:
                total.changes = res.changes  # pushed by the run itself (None: the workflow's finalize step pushes)
                return total
            resume = True

    async def _run_agent(self, prompt: str, session_id: str, resume: bool) -> AgentResult:
        # a cancel wins over the run's result, and kills the agent on its host at once (workflows/cancel.py)
        return await cancel_wins(self._watched_run(prompt, session_id, resume), self._stop_agent)

    async def _watched_run(self, prompt: str, session_id: str, resume: bool) -> AgentResult:
        if not self.inp.failover_after_s:
            return await self._agent_activity(prompt, session_id, resume)
        # while the run waits for a slot or goes on, its host is checked now and then (workflows/failover.py)
        run = asyncio.ensure_future(self._agent_activity(prompt, session_id, resume))
        try:
            await watch_host(run, self.inp, self.ws)
        except asyncio.CancelledError:  # the task is cancelled: so is its run, as an awaited run would be
            run.cancel()
        return await run

    async def _stop_agent(self, run: asyncio.Future[AgentResult]) -> None:
        """Kill the agent's process on the host holding the worktree (not behind busy agent slots).

        A run between its start and its process's spawn has nothing to kill yet: asked again every
        2 s (five times) until one was killed or the run ended; its heartbeat is the last backstop."""
        if not workflow.patched("stop-agent-on-cancel"):
            return
        for _ in range(5):
            try:
                killed = await workflow.execute_activity(
                    acts.stop_agent, self.inp.task_id, task_queue=self.ws.host_queue,
                    start_to_close_timeout=timedelta(seconds=30), schedule_to_close_timeout=timedelta(minutes=2),
                    summary="stop the agent",
                )  # fmt: skip
            except ActivityError:
                return  # the run's heartbeat carries the cancel to it as well, only later
            if killed or run.done():
                return
            try:
                await workflow.wait_condition(run.done, timeout=timedelta(seconds=2))
                return
            except TimeoutError:
                continue

    async def _agent_activity(self, prompt: str, session_id: str, resume: bool) -> AgentResult:
        inp, ws = self.inp, self.ws
        try:
            return await workflow.execute_activity(
                acts.run_agent,
                AgentRequest(
                    task_id=inp.task_id, agent=inp.agent, cwd=ws.path, prompt=prompt, session_id=session_id,
                    resume=resume, workflow_run_id=inp.workflow_run_id, repo_name=inp.repo.name,
                    title=inp.title, description=inp.description, branch=ws.branch,
                    with_context=inp.memory, budget_limits=dict(self.limits), resume_from_task=inp.resume_from_task,
                    finalize=self._push_here(), require_verdict=inp.require_verdict,
                ),
                task_queue=ws.agent_queue,
                start_to_close_timeout=timedelta(seconds=inp.agent.total_timeout_s + 120),
                heartbeat_timeout=timedelta(seconds=inp.heartbeat_timeout_s),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=self.label,
            )  # fmt: skip
        except ActivityError as exc:
            # a timed-out agent's work is saved before the task fails (histories from before: as they were)
            if timed_out(exc) and workflow.patched("push-wip-on-timeout"):
                pushed = await push_wip(inp, ws, "agent timed out")
                raise AgentFailed(f"{error_text(exc)}; {pushed}") from exc
            raise

    def _push_here(self) -> FinalizeInput | None:
        """What the run commits and pushes itself when its reply ends the session (histories from before: the
        workflow's own finalize step, as they were)."""
        if not workflow.patched("agent-pushes"):
            return None
        return FinalizeInput(task_id=self.inp.task_id, workspace=self.ws, repo=self.inp.repo, message=commit_message(self.inp))

    async def _budget_reached(self, stop: BudgetStop) -> str:
        """Push the work, ask whether to raise the budget; the prompt to go on with, or AgentFailed on stop."""
        pushed = await push_wip(self.inp, self.ws, "budget reached")
        text, options = question(stop.key, stop.label, stop.limit, stop.spent)
        while True:
            answer = await self._question(text, options)
            choice = decide(answer, stop.limit, stop.spent)
            if choice is None:  # neither a stop nor an amount above what was spent: ask again
                text = (
                    f"{clip(answer, 80)!r} is neither 'Stop' nor an amount above {usd(stop.spent)}. "
                    + question(stop.key, stop.label, stop.limit, stop.spent)[0]
                )
                continue
            if choice.stop:
                raise AgentFailed(f"stopped at the budget, {pushed}")
            assert choice.limit is not None
            self.limits[stop.key] = choice.limit
            return (
                f"The budget for {stop.label} was raised to {usd(choice.limit)}. Continue the task where you "
                "stopped; check the working tree first."
            )

    async def _ask(self, res: AgentResult) -> str:
        """Record the agent's question, tell people, and wait for the answer; the answer's text."""
        assert res.question is not None
        return await self._question(res.question.text, res.question.options)

    async def _question(self, text: str, options: list[str] | None) -> str:
        """Record a question, tell people, and wait for the answer; the answer's text."""
        inp = self.inp
        pq = await workflow.execute_activity(
            acts.record_question,
            QuestionInput(task_id=inp.task_id, text=text, options=options, workflow_run_id=inp.workflow_run_id),
            summary="record question",
            **QUICK,
        )  # fmt: skip
        self.questions.pending = pq
        self.stage_to("awaiting_input", f"waiting for an answer to: {clip(pq.text, 200)}")
        await self.notes.emit(
            task_event(
                inp, "question", question_id=pq.id, question=pq.text, options=pq.options,
                agent_type=inp.agent.agent_type,
            )
        )  # fmt: skip
        try:
            await workflow.wait_condition(
                lambda: self.questions.answer is not None, timeout=timedelta(seconds=inp.clarification_timeout_s)
            )
        except TimeoutError:
            self.questions.pending = None
            await workflow.execute_activity(acts.close_question, AnswerRecord(pq.id, "expired", ""), **QUICK)
            hours = inp.clarification_timeout_s / 3600
            raise AgentFailed(
                f"no answer came to the agent's question within {hours:g} hours (clarification_timeout_hours)"
            ) from None
        except asyncio.CancelledError:
            await workflow.execute_activity(acts.close_question, AnswerRecord(pq.id, "cancelled", ""), **QUICK)
            raise
        ans = self.questions.answer
        assert ans is not None
        await workflow.execute_activity(acts.record_answer, AnswerRecord(pq.id, ans.answer, ans.answered_by), **QUICK)
        self.questions.answer = None
        return ans.answer
