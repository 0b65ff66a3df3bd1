"""The launcher port: what the API and the inbound handlers may ask of the task lifecycle.

Its one implementation is the task service (`factory/tasks/service.py`), which owns the state
rules and sits on a narrow workflow-engine port (`factory/tasks/ports.py`) that Temporal
implements in `temporal/launcher.py`. This module holds only the port's types, so the inbound
handlers, `factory/specs.py` and the store can name them without importing the service.
"""

from __future__ import annotations

from typing import Any, Protocol

from factory.domain.lifecycle import (
    AlreadyRunning,
    AnswerRefused,
    Cancelled,
    Conflict,
    LaunchError,
    NewTask,
    NotFound,
    TaskStart,
)

__all__ = [
    "AlreadyRunning",
    "AnswerRefused",
    "Cancelled",
    "Conflict",
    "LaunchError",
    "Launcher",
    "NewTask",
    "NotFound",
    "TaskStart",
]


class Launcher(Protocol):
    """Creates, starts, answers, cancels, retries and hands off tasks and workflow runs."""

    schedules: Any  # a `factory.tasks.ports.ScheduleBook`, or None when schedules cannot be reached

    def task_workflow_id(self, task_id: int) -> str:
        """The workflow id of a task's TaskWorkflow."""
        ...

    def run_workflow_id(self, run_id: int) -> str:
        """The workflow id of a configured workflow run."""
        ...

    async def check_health(self) -> None:
        """Raise when the workflow engine cannot be reached."""
        ...

    async def create_task(self, new: NewTask, start: TaskStart | None = None, run: bool = True) -> Any:
        """Validate, create the task row and (with `run`) start its workflow; LaunchError makes no row."""
        ...

    async def start_task(self, task: Any, start: TaskStart | None = None) -> None:
        """Start the workflow of a queued task row (AlreadyRunning, LaunchError)."""
        ...

    async def run_task(self, task_id: int) -> Any:
        """Start a queued task by id (NotFound; Conflict when it is not queued)."""
        ...

    async def task_stage(self, task_id: int) -> str | None:
        """Where the task's workflow stands (preparing, agent, ...); None before it starts."""
        ...

    async def retry_task(self, task_id: int) -> Any:
        """Start a failed or cancelled task again from its pushed branch (NotFound, Conflict, LaunchError)."""
        ...

    async def start_workflow_run(
        self, name: str, title: str, description: str, repo: str, plane_issue_id: str | None = None
    ) -> Any:
        """Create a configured workflow run's row and start it (LaunchError)."""
        ...

    async def deliver_answer(
        self, task_id: int, answer: str, answered_by: str = "user", question_id: int | None = None
    ) -> None:
        """Hand an answer to the task's waiting workflow (AnswerRefused)."""
        ...

    async def answer_task(
        self, task_id: int, answer: str, answered_by: str = "user", question_id: int | None = None
    ) -> None:
        """`deliver_answer` after the state rules: NotFound, LaunchError for an empty answer, Conflict when finished."""
        ...

    async def cancel_task(self, task_id: int) -> Cancelled:
        """Cancel the task's workflow, or mark the row cancelled when it never started (NotFound, Conflict)."""
        ...

    async def cancel_run(self, run_id: int) -> Cancelled:
        """Cancel a workflow run, or mark its row cancelled when it never started (NotFound, Conflict)."""
        ...

    async def hand_off(
        self, from_task_id: int, to_agent: str, context: str = "", title: str | None = None
    ) -> tuple[Any, Any]:
        """Pass a finished task's work to another agent type: (Handoff row, new Task row)."""
        ...
