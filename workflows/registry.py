"""Every workflow a Factory worker runs."""

from __future__ import annotations

from workflows.scheduled import ScheduledWorkWorkflow
from workflows.singletons import SingletonWorkflow
from workflows.step_interpreter import ConfiguredWorkflow
from workflows.task import TaskWorkflow

WORKFLOWS: list[type] = [TaskWorkflow, ConfiguredWorkflow, ScheduledWorkWorkflow, SingletonWorkflow]
