"""A task that never started a Docker environment on this host costs no docker call at the end of an
agent run, at cleanup or before its PR; one that did (or might have) is looked up as before."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from activities.environments import EnvironmentActivities
from factory.contracts import CleanupEnvInput
from factory.environments import broker as broker_mod
from factory.environments import docker
from factory.environments.broker import EnvironmentBroker
from factory.environments.marks import Marks

pytestmark = pytest.mark.fast


class _Cfg:
    def __init__(self, root: Path) -> None:
        self.workspace_path = root
        self.previews = None
        self.temporal = SimpleNamespace(id_prefix="")  # the default deployment namespace


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    seen: list[tuple[str, ...]] = []

    async def fake_docker(*args: str, timeout: float = 0) -> tuple[int, str, str]:
        seen.append(args)
        return 0, "", ""

    monkeypatch.setattr(docker, "_docker", fake_docker)
    return seen


def test_until_the_marks_are_complete_every_task_may_have_one(tmp_path: Path) -> None:
    marks = Marks(tmp_path)
    assert marks.may_have(7, "test") and marks.may_have(7, "preview")
    marks.complete([(3, "preview")])  # what Docker said ran already
    assert not marks.may_have(7, "test")
    assert marks.may_have(3, "preview") and not marks.may_have(3, "test")
    marks.add(7, "test")
    assert marks.may_have(7, "test")
    with pytest.raises(ValueError):
        marks.add(7, "../x")


def test_cleanup_and_the_end_of_a_run_ask_docker_only_for_a_marked_task(tmp_path: Path, calls: list) -> None:
    cfg: Any = _Cfg(tmp_path)
    Marks(tmp_path).complete([])
    acts = EnvironmentActivities(cfg)
    broker = EnvironmentBroker.__new__(EnvironmentBroker)
    broker.cfg, broker._grants, broker._targets, broker._locks, broker.ns = cfg, {}, {}, {}, ""
    broker.marks = Marks(tmp_path)

    async def main() -> None:
        await acts.cleanup_task_environments.__wrapped__(acts, CleanupEnvInput(task_id=1, kinds=["test"]))
        await broker.end_run(1)
        assert calls == []  # never started one here: nothing asked
        Marks(tmp_path).add(2, "test")
        await acts.cleanup_task_environments.__wrapped__(acts, CleanupEnvInput(task_id=2, kinds=["test"]))
        await broker.end_run(2)

    asyncio.run(main())
    assert calls and all("factory.task=2" in " ".join(c) for c in calls if any("label=" in a for a in c))


def test_the_broker_marks_an_environment_before_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    async def start(req: Any, previews: Any) -> Any:
        seen.append(Marks(tmp_path).may_have(req.task_id, req.kind))
        raise docker.DockerUnavailable("no engine here")

    monkeypatch.setattr(broker_mod, "start_environment", start)
    Marks(tmp_path).complete([])
    assert not Marks(tmp_path).may_have(5, "test")
    broker = EnvironmentBroker.__new__(EnvironmentBroker)
    broker.cfg, broker._targets, broker._locks, broker.marks = _Cfg(tmp_path), {}, {}, Marks(tmp_path)

    class _Req:
        task_id, kind = 5, "test"

    monkeypatch.setattr(broker, "_request", lambda grant, kind, body: _Req(), raising=False)
    monkeypatch.setattr(broker, "_authorize", lambda request, task_id: None, raising=False)

    class _H:
        target, method = b"/v1/tasks/5/environments/test", b"POST"

    with pytest.raises(broker_mod._HttpError):
        asyncio.run(broker._handle(_H(), b"{}"))  # type: ignore[arg-type]
    assert seen == [True]
