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
        return await remove_environments(self.cfg, self.marks, self.broker, inp.task_id, inp.kinds)


async def remove_environments(
    cfg: FactoryConfig, marks: Marks, broker: EnvironmentBroker | None, task_id: int, kinds: list[str]
) -> int:
    """Remove the task's environments of `kinds` (never failing); how many were removed."""
    wanted = [k for k in kinds if marks.may_have(task_id, k)]  # never started one here: no docker call
    ns = namespace(cfg.temporal.id_prefix)  # only ever this deployment's
    removed = await environments.cleanup_task_environments(task_id, wanted, ns) if wanted else 0
    if broker is not None:  # the egress proxy stops letting the agent reach them
        broker.forget(task_id, kinds)
    return removed
