"""Every workflow a Factory worker runs."""

from __future__ import annotations


def all_workflows() -> list[type]:
    from workflows.task import TaskWorkflow

    return [TaskWorkflow]
