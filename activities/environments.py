"""Environment activities: remove a task's Docker environments when the task ends.

Test environments go when their task finishes; previews stay until their pull request
is merged or closed (the janitor sees to those and to anything left behind).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import activity

from factory.config import FactoryConfig
from factory.environments import docker as environments


@dataclass
class CleanupEnvInput:
    task_id: int
    kinds: list[str] = field(default_factory=lambda: ["test"])


class EnvironmentActivities:
    def __init__(self, cfg: FactoryConfig):
        self.cfg = cfg

    @activity.defn
    async def cleanup_task_environments(self, inp: CleanupEnvInput) -> int:
        """Remove the task's environments of the given kinds; how many were removed.

        Never fails the task: docker being missing or down counts as nothing removed.
        """
        activity.heartbeat()
        return await environments.cleanup_task_environments(inp.task_id, inp.kinds)
