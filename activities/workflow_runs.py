"""Record-keeping for configured workflows: one Task row per step, one Handoff row per output.

Both activities are idempotent: a retried attempt finds the row the first attempt made
(a step is identified by run, step index and iteration). They are plain `def`: the worker
runs them on its thread-pool executor, off the event loop.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio import activity

from factory.contracts import HandoffInput, StepTaskInput  # noqa: F401 (the wire forms live in factory.contracts)
from factory.store.board import Board
from factory.store.tables import Handoff, Task, session_scope


def _of_step(model: Any, step_column: Any, run_id: int, step: int, iteration: int) -> Any:
    """The rows of `model` made for one step run (a run, a step index, an iteration)."""
    return select(model).where(model.workflow_run_id == run_id, step_column == step, model.iteration == iteration)


class WorkflowRunActivities:
    """Step tasks and handoffs of configured workflows (register the bound methods)."""

    def __init__(self, engine: Engine, board: Board | None = None):
        self.engine = engine
        self.board = board

    @activity.defn
    def create_step_task(self, inp: StepTaskInput) -> int:
        """Create (or find, on retry) the Task row of one step run; link the handoff it consumes."""
        with session_scope(self.engine) as s:
            task = s.exec(_of_step(Task, Task.workflow_step, inp.run_id, inp.step, inp.iteration)).first()
            if task is None:
                task = Task(
                    title=inp.title,
                    description=inp.description,
                    repo=inp.repo,
                    agent_type=inp.agent_type,
                    workflow_run_id=inp.run_id,
                    workflow_step=inp.step,
                    iteration=inp.iteration,
                )
                s.add(task)
                s.commit()
                s.refresh(task)
            if inp.input_handoff_id is not None:
                h = s.get(Handoff, inp.input_handoff_id)
                if h is not None and h.to_task_id is None:
                    h.to_task_id = task.id
                    s.add(h)
                    s.commit()
            return task.id

    @activity.defn
    def record_handoff(self, inp: HandoffInput) -> int:
        """Store a step's output as a handoff (once per run, step and iteration)."""
        with session_scope(self.engine) as s:
            existing = s.exec(_of_step(Handoff, Handoff.step, inp.run_id, inp.step, inp.iteration)).first()
            if existing is not None:
                return existing.id
            h = Handoff(
                workflow_run_id=inp.run_id,
                from_task_id=inp.from_task_id,
                from_agent=inp.from_agent,
                to_agent=inp.to_agent,
                step=inp.step,
                iteration=inp.iteration,
                output_key=inp.output_key,
                summary=inp.summary,
                issues=inp.issues,
                verdict=inp.verdict,
                changed_files=inp.changed_files,
                diff_stat=inp.diff_stat,
            )
            s.add(h)
            s.commit()
            s.refresh(h)
            hid = h.id
        if self.board is not None and inp.to_agent:
            what = f"review: {inp.verdict}" if inp.verdict else (inp.output_key or "output")
            # no recipient: the handoff reaches the next agent in its prompt, not through its inbox
            self.board.post(
                sender=inp.from_agent,
                content=f"handoff #{hid} to {inp.to_agent} ({what}) from task #{inp.from_task_id}",
                message_type="handoff",
                task_id=inp.from_task_id,
                workflow_run_id=inp.run_id,
            )
        return hid
