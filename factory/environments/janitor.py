"""The janitor: removes agents' environments nobody needs any more, sweeping and on PR close."""

from __future__ import annotations

import asyncio
import inspect
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable

from factory.config import FactoryConfig
from factory.environments import docker
from factory.environments.compose import LABEL_PROJECT, namespace, parse_project_name, project_name
from factory.environments.docker import EnvironmentInfo
from factory.store.tables import FINISHED

log = logging.getLogger(__name__)

CLOSED_PR_STATES = frozenset({"merged", "closed"})

TaskState = tuple[str, str | None]
"""(task status, pr_state) as the janitor's `task_lookup` returns it."""

TaskLookup = Callable[[int], "TaskState | None | Awaitable[TaskState | None]"]


class Janitor:
    """Removes environments nobody needs any more.

    - a test environment whose task is gone or finished (done, failed, cancelled);
    - a preview whose task is gone or whose pull request is merged or closed;
    - anything older than `previews.max_age_hours`.

    Only ever this deployment's (`temporal.id_prefix`'s namespace): another deployment on the same
    engine has its own task 1, which `task_lookup` knows nothing of.

    Args:
        cfg: Factory's config (`previews.max_age_hours`, `temporal.id_prefix`).
        task_lookup: `task_id -> (status, pr_state)`, or None when there is no such
            task; may be sync or async. When it raises, that environment is kept.
        now: the clock, for tests.
    """

    def __init__(self, cfg: FactoryConfig, task_lookup: TaskLookup, *, now: Callable[[], float] = time.time):
        self.cfg = cfg
        self.ns = namespace(cfg.temporal.id_prefix)
        self.task_lookup = task_lookup
        self.now = now

    async def _lookup(self, task_id: int) -> TaskState | None:
        res = self.task_lookup(task_id)
        if inspect.isawaitable(res):
            res = await res
        return res  # type: ignore[return-value]

    def _too_old(self, env: EnvironmentInfo) -> str | None:
        max_age_s = self.cfg.previews.max_age_hours * 3600
        if env.created is not None and self.now() - env.created > max_age_s:
            return f"older than {self.cfg.previews.max_age_hours:g}h"
        return None

    def reason_to_remove(self, env: EnvironmentInfo, state: TaskState | None) -> str | None:
        """Why `env` should go, or None to keep it."""
        if reason := self._too_old(env):
            return reason
        if state is None:
            return "task is gone"
        status, pr_state = state
        if env.kind == "test" and str(status) in FINISHED:
            return f"task {status}"
        if env.kind == "preview" and str(pr_state or "") in CLOSED_PR_STATES:
            return f"pull request {pr_state}"
        return None

    async def run_once(self) -> list[str]:
        """One sweep; the names of the environments removed."""
        removed: list[str] = []
        for env in await docker.list_environments(ns=self.ns):
            reason = self._too_old(env)
            if reason is None:
                try:
                    state = await self._lookup(env.task_id)
                except Exception:
                    log.warning("janitor: looking up task %s failed; keeping %s", env.task_id, env.name, exc_info=True)
                    continue
                reason = self.reason_to_remove(env, state)
            if reason and await docker.tear_down(env.name, self.ns):
                log.info("janitor: removed %s (%s)", env.name, reason)
                removed.append(env.name)
        await self.sweep_copies()
        return removed

    async def sweep_copies(self, min_age_s: float = 600) -> list[str]:
        """Remove Factory's copies (`<workspace_root>/envs/<project>-<n>`) no container runs from.

        A copy younger than `min_age_s` may belong to a start still building; an older one with
        no container of its project left is what a failed start or a crashed worker left behind.
        """
        root = self.cfg.workspace_path.resolve() / "envs"
        gone: list[str] = []
        for d in sorted(root.glob("factory-*")) if root.is_dir() else []:
            project, _, n = d.name.rpartition("-")
            if parse_project_name(project, self.ns) is None or not n.isdigit() or d.is_symlink():
                continue
            if self.now() - d.stat().st_mtime < min_age_s:
                continue
            try:  # only a clear "no container" from the engine removes a copy: a container's binds point into it
                rc, out, _err = await docker.run(
                    "docker", "container", "ls", "-aq", "--filter", f"label={LABEL_PROJECT}={project}"
                )
            except docker.DockerUnavailable:
                return gone
            if rc != 0:
                return gone
            if out.strip():
                continue
            await asyncio.to_thread(shutil.rmtree, d, True)
            gone.append(d.name)
        return gone


async def janitor_loop(janitor: Janitor, interval_s: float) -> None:
    """Sweep at start and then every `interval_s` seconds, until cancelled."""
    while True:
        try:
            await janitor.run_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("janitor sweep failed")
        await asyncio.sleep(interval_s)


async def remove_previews_of_closed_pr(task_ids: Iterable[int], ns: str = "") -> None:
    """A merged or closed PR's previews (of namespace `ns`) go at once (called by the GitHub inbound code)."""
    for task_id in task_ids:
        try:
            if await docker.tear_down(project_name(task_id, "preview", ns), ns):
                log.info("removed the preview of task %s: its pull request closed", task_id)
        except Exception:  # one failed teardown must not keep the others; the sweep comes later
            log.exception("could not remove the preview of task %s", task_id)
