"""Every workflow a Factory worker runs."""

from __future__ import annotations


def all_workflows() -> list[type]:
    from workflows.configured import ConfiguredWorkflow
    from workflows.task import TaskWorkflow

    return [TaskWorkflow, ConfiguredWorkflow]
