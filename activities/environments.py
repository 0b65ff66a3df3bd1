"""Environment activities: remove a task's Docker environments when the task ends.

Test environments go when their task finishes; previews stay until their pull request
is merged or closed (the janitor sees to those and to anything left behind).
"""

from __future__ import annotations

from temporalio import activity

from activities._heartbeat import heartbeats
from factory.config import FactoryConfig
from factory.contracts import CleanupEnvInput  # noqa: F401 (the wire forms live in factory.contracts)
from factory.environments import docker as environments
from factory.environments.broker import EnvironmentBroker
from factory.environments.compose import namespace
from factory.environments.marks import Marks


class EnvironmentActivities:
    def __init__(self, cfg: FactoryConfig, broker: EnvironmentBroker | None = None):
        self.cfg = cfg
        self.broker = broker
        self.marks = Marks(cfg.workspace_path)

    @activity.defn
    @heartbeats
    async def cleanup_task_environments(self, inp: CleanupEnvInput) -> int:
        """Remove the task's environments of the given kinds; how many were removed.

        Never fails the task: docker being missing or down counts as nothing removed.
        """
        kinds = [k for k in inp.kinds if self.marks.may_have(inp.task_id, k)]  # never started here: no docker call
        ns = namespace(self.cfg.temporal.id_prefix)  # only ever this deployment's
        removed = await environments.cleanup_task_environments(inp.task_id, kinds, ns) if kinds else 0
        if self.broker is not None:  # the egress proxy stops letting the agent reach them
            self.broker.forget(inp.task_id, inp.kinds)
        return removed
