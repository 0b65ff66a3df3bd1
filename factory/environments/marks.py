"""Which tasks this host has started Docker environments for, so that a task that never asked for one
costs no docker call: removing a task's test environments after each agent run and at cleanup, and
looking for its preview before the PR, took 9 docker processes (and dockerd's work) for every task.

A mark is a file `<workspace_root>/run/environments/task-<id>.<kind>`, written *before* the
environment starts (a crash after the start leaves it: the next cleanup still looks) and kept (a
teardown cannot tell "nothing there" from "Docker was down"; a stale mark only costs the docker
calls every task used to make). The directory is Factory's own: agents never see the run dir
(docs/sandbox.md). Until the marks are known to be complete (`ready`: every environment that
already ran on this host when the first worker with marks started, read from Docker's labels),
every question is answered "maybe", i.e. ask Docker as before.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("factory.environments")

_READY = "ready"
_KIND = re.compile(r"^[a-z]+$")


class Marks:
    """Marks of the environments started on this host, under `workspace_root`."""

    def __init__(self, workspace_root: Path) -> None:
        self.dir = workspace_root / "run" / "environments"

    def _path(self, task_id: int, kind: str) -> Path:
        if not _KIND.match(kind):
            raise ValueError(f"not an environment kind: {kind!r}")
        return self.dir / f"task-{int(task_id)}.{kind}"

    @property
    def ready(self) -> bool:
        return (self.dir / _READY).exists()

    def add(self, task_id: int, kind: str) -> None:
        """Before an environment of `kind` starts for the task."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._path(task_id, kind).touch()

    def may_have(self, task_id: int, kind: str) -> bool:
        """False only when the task has certainly never had an environment of `kind` on this host."""
        return not self.ready or self._path(task_id, kind).exists()

    def complete(self, running: list[tuple[int, str]]) -> None:
        """Mark what Docker says runs already (environments from before marks existed), then trust the marks."""
        if self.ready:
            return
        for task_id, kind in running:
            if _KIND.match(kind):
                self.add(task_id, kind)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / _READY).touch()
        log.info("environment marks complete (%d environments already running)", len(running))
