"""Environment activities: remove a task's Docker environments when the task ends.

Test environments go when their task finishes; previews stay until their pull request
is merged or closed (the janitor sees to those and to anything left behind).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from temporalio import activity

from factory import environments
from factory.config import FactoryConfig
from factory.db import Task, session_scope


@dataclass
class CleanupEnvInput:
    task_id: int
    kinds: list[str] = field(default_factory=lambda: ["test"])


class EnvironmentActivities:
    def __init__(self, cfg: FactoryConfig, engine: Engine | None = None):
        self.cfg = cfg
        self.engine = engine

    @activity.defn
    async def find_new_preview(self, task_id: int) -> str | None:
        """The URL of a preview the task's agent started, if it is new; stored on the task."""
        previews = [e for e in await environments.list_environments(task_id=task_id, kind="preview") if e.url]
        if not previews or self.engine is None:
            return None
        url = previews[0].url
        with session_scope(self.engine) as s:
            task = s.get(Task, task_id)
            if task is None or task.preview_url == url:
                return None
            task.preview_url = url
            s.add(task)
            s.commit()
        return url

    @activity.defn
    async def cleanup_task_environments(self, inp: CleanupEnvInput) -> int:
        """Remove the task's environments of the given kinds; how many were removed.

        Never fails the task: docker being missing or down counts as nothing removed.
        """
        activity.heartbeat()
        return await environments.cleanup_task_environments(inp.task_id, inp.kinds)
