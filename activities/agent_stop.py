"""Stop a task's running agent at once: the direct kill path of a cancel.

A cancel reaches the agent activity only with a heartbeat's answer, and the SDK sends heartbeats
at most every 80% of the heartbeat timeout (24 s with the default 30 s): the agent went on for
~20 s and ~19 model calls after a cancel. The workflow therefore also runs this activity on the
queue of the host that holds the task (never behind busy agent slots), which kills the process
group recorded in the task's pid file. The agent activity then sees its process end and returns.

Trusted: the pid file, which only Factory writes (`workspace_root/run`, never bound into a
sandbox); its pid is killed only while that process has the recorded start time and program.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity

from activities._agent_process import PidFile
from factory.config import FactoryConfig

log = logging.getLogger("factory.agent")


class AgentStopper:
    def __init__(self, cfg: FactoryConfig):
        self.run_dir = cfg.workspace_path / "run"

    @activity.defn
    async def stop_agent(self, task_id: int) -> bool:
        """Kill the task's agent process group on this host; whether one was running."""
        killed = await asyncio.to_thread(PidFile(self.run_dir / f"task-{int(task_id)}.pid").kill_stale)
        if killed:
            log.info("task #%s cancelled: its agent's process group was killed", task_id)
        return killed
