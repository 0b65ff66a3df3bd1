"""Where Factory's per-task overhead goes, and what candidate changes would save (experiments).

    python -m bench.pipeline_profile --tasks 8 --blocks 3   # baseline, unsandboxed, nodocker, lean
    python -m bench.pipeline_profile --tasks 20 --variants baseline --py-spy /tmp/factory.pyspy.txt

Runs Factory tasks one at a time (as `bench.pipeline_bench` does: the real CLI, the scripted
model, a Temporal dev server, the in-process worker + API) under *variants*, alternated in
blocks so machine noise hits them alike. A variant monkeypatches the worker in this process
only, to measure what a product change would gain before anyone makes it:

* ``baseline``: the tree as it is.
* ``unsandboxed``: workflows run with ``UnsandboxedWorkflowRunner`` (no per-run sandbox).
* ``passthrough``: the sandbox stays, with every module passed through
  (``SandboxRestrictions.default.with_passthrough_all_modules()``): no per-run re-imports.
* ``nodocker``: the environment activities (``find_new_preview``, ``cleanup_task_environments``)
  answer at once instead of running ``docker`` (as they would if they skipped docker for a
  task that never started an environment).
* ``tacache``: the pydantic payload converter keeps one process-wide TypeAdapter cache (the
  converter gets a fresh per-instance cache for every workflow run, so it rebuilds its schemas).
* ``lean``: ``unsandboxed`` + ``nodocker`` + ``tacache``.

Prints per variant: non-agent time (wall - CLI lifetime) p50/p95, workflow-task time, and
CPU seconds per task of this process and of the Temporal server. With ``--py-spy FILE`` the
whole run is sampled by py-spy (all threads, collapsed stacks) for a flame graph.
Writes ``bench/results/pipeline_profile.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pipeline_bench import (  # noqa: E402
    CpuAccumulator,
    CpuMeter,
    DbPoller,
    Fakes,
    factory_enrich,
    factory_one,
    find_pid,
    foreign_cpu,
    log,
    machine,
    path_summary,
    seq_summary,
    tree_state,
    write_wrapper,
)


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """Monkeypatch this process's worker for one variant; undone on exit."""
    import temporal.worker as tw
    from factory.environments import docker as environments

    saved: list[tuple[Any, str, Any]] = []

    def patch(obj: Any, attr: str, value: Any) -> None:
        saved.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    if name in ("unsandboxed", "lean"):
        from temporalio.worker import UnsandboxedWorkflowRunner, Worker

        class _Worker(Worker):
            def __init__(self, *a: Any, **kw: Any) -> None:
                if kw.get("workflows"):
                    kw.setdefault("workflow_runner", UnsandboxedWorkflowRunner())
                super().__init__(*a, **kw)

        patch(tw, "Worker", _Worker)
    if name == "passthrough":
        from temporalio.worker import Worker
        from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

        class _PWorker(Worker):
            def __init__(self, *a: Any, **kw: Any) -> None:
                if kw.get("workflows"):
                    restrictions = SandboxRestrictions.default.with_passthrough_all_modules()
                    kw.setdefault("workflow_runner", SandboxedWorkflowRunner(restrictions=restrictions))
                super().__init__(*a, **kw)

        patch(tw, "Worker", _PWorker)
    if name in ("nodocker", "lean"):

        async def no_envs(task_id: int | None = None, kind: str | None = None, ns: str = "") -> list[Any]:
            return []

        async def no_teardown(project: str, *a: Any, **kw: Any) -> bool:
            return False

        patch(environments, "list_environments", no_envs)
        patch(environments, "tear_down", no_teardown)
    if name in ("tacache", "lean"):  # one process-wide TypeAdapter cache for the pydantic payload converter
        import functools

        import temporalio.contrib.pydantic as tp
        from pydantic import TypeAdapter

        shared = functools.lru_cache(maxsize=1024)(TypeAdapter)
        orig_init = tp.PydanticJSONPlainPayloadConverter.__init__

        def init(self: Any, *a: Any, **kw: Any) -> None:
            orig_init(self, *a, **kw)
            self._type_adapter = shared

        def setstate(self: Any, state: dict[str, Any]) -> None:
            self.__dict__.update(state)
            self._type_adapter = shared

        patch(tp.PydanticJSONPlainPayloadConverter, "__init__", init)
        patch(tp.PydanticJSONPlainPayloadConverter, "__setstate__", setstate)
    try:
        yield
    finally:
        for obj, attr, value in reversed(saved):
            setattr(obj, attr, value)


class _Counter:
    """Counts pydantic TypeAdapter constructions (schema builds) in this process."""

    n = 0

    @classmethod
    def install(cls) -> None:
        from pydantic import type_adapter

        orig = type_adapter.TypeAdapter.__init__

        def init(self: Any, *a: Any, **kw: Any) -> None:
            cls.n += 1
            orig(self, *a, **kw)

        type_adapter.TypeAdapter.__init__ = init  # type: ignore[method-assign]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from temporalio.testing import WorkflowEnvironment

    from factory.config import load_config
    from factory.search_attributes import SEARCH_ATTRIBUTES
    from temporal.client import data_converter as pydantic_data_converter
    from temporal.devserver import temporal_binary
    from tests.conftest import make_remote, run_factory, write_config
    from tests.fakes.anthropic import FAKE_API_KEY, cli_env

    variants = args.variants.split(",")
    tree = tree_state()
    tmp = Path(tempfile.mkdtemp(prefix="factory-pipeline-profile-"))
    tmp.chmod(0o711)  # as root the sandbox runs as sandbox.uid, which needs search permission here
    fakes = Fakes()
    fakes.start()
    saved_env = dict(os.environ)
    env = None
    spy = None
    recs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    adapters: dict[str, int] = {v: 0 for v in variants}
    _Counter.install()
    cpu: dict[str, CpuAccumulator] = {}
    try:
        os.environ.update(cli_env(fakes.model_url, str(tmp / "home")))
        os.environ["ANTHROPIC_API_KEY"] = FAKE_API_KEY
        wrapper, cli_log = write_wrapper(tmp)
        remote = make_remote(tmp / "remote.git")
        cfg = load_config(
            write_config(tmp, remote, fakes.github_url, max_concurrent_agents=2, claude_command=str(wrapper))
        )
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(),
            search_attributes=SEARCH_ATTRIBUTES,
            data_converter=pydantic_data_converter,
            dev_server_extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
        )
        meter = CpuMeter(find_pid("temporal server start-dev"), fakes.proc.pid if fakes.proc else None)
        cpu = {v: CpuAccumulator(meter) for v in variants}
        from factory.store.tables import make_engine

        make_engine(cfg.db_url).dispose()  # the tables, before the read-only poller opens the file
        import bench.pipeline_bench as pipeline_bench

        pipeline_bench.RUN_DIR = cfg.workspace_path / "run"  # the sandboxed CLI's times are in its stderr there
        poller = DbPoller(Path(cfg.db_url.removeprefix("sqlite:///")))
        poll_s = args.poll_ms / 1000
        if args.py_spy:
            spy = subprocess.Popen(
                ["py-spy", "record", "-p", str(os.getpid()), "-o", args.py_spy, "--format", "raw", "-r", "250", "--threads", *(["--gil"] if os.environ.get("PYSPY_GIL") else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        n = 0
        for block in range(args.blocks):
            for v in variants:
                with variant(v):
                    async with run_factory(cfg, env.client, object(), None, remote, tmp) as h:  # type: ignore[arg-type]
                        await asyncio.sleep(0.5)
                        for _ in range(args.warmup if block == 0 else 1):  # a new worker's first workflow is slower
                            await factory_one(h, poller, 9000 + n, poll_s, False)
                            n += 1
                        log(f"block {block + 1}/{args.blocks}: {args.tasks} tasks, variant {v}")
                        batch = []
                        before = _Counter.n
                        for _ in range(args.tasks):
                            cpu[v].start()
                            batch.append(await factory_one(h, poller, n, poll_s, False))
                            cpu[v].stop()
                            n += 1
                        adapters[v] += _Counter.n - before
                        recs[v] += await factory_enrich(h, poller, batch, cli_log)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(60)
        if env is not None:
            await env.shutdown()
        fakes.stop()
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(tmp, ignore_errors=True)

    out: dict[str, Any] = {"machine": machine(), "tree": tree, "settings": vars(args), "variants": {}}
    for v in variants:
        rs = recs[v]
        c = cpu[v].result(len(rs))
        wft = [
            sum(w["completed"] - w.get("started", w["scheduled"]) for w in r["profile"]["workflow_tasks"]) for r in rs
        ]
        first = [
            r["profile"]["workflow_tasks"][0]["completed"] - r["profile"]["workflow_tasks"][0]["started"] for r in rs
        ]
        out["variants"][v] = {
            "tasks": len(rs),
            "overhead": seq_summary(rs, "overhead_s"),
            "overhead_to_closed": seq_summary(rs, "overhead_to_closed_s"),
            "cli": seq_summary(rs, "cli_s"),
            "workflow_task_run_total_s": statistics.median(wft),
            "first_workflow_task_run_s": statistics.median(first),
            "workflow_tasks": statistics.fmean(len(r["profile"]["workflow_tasks"]) for r in rs),
            "activities": statistics.fmean(len(r["profile"]["activities"]) for r in rs),
            "cpu_per_task": c["per_task"],
            "type_adapters_built_per_task": adapters[v] / max(len(rs), 1),
            "foreign_cpu_per_task_s": foreign_cpu(c) / max(len(rs), 1),
            "path": path_summary(rs),
        }
    return out


def render(res: dict[str, Any]) -> str:
    lines = [
        "| variant | non-agent p50 | p95 | to closed p50 | workflow tasks (n, run time) | first WFT | CPU s/task: Python | Temporal | others | TypeAdapters built/task |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v, r in res["variants"].items():
        c = r["cpu_per_task"]
        lines.append(
            f"| {v} | {r['overhead']['p50'] * 1000:.0f} ms | {r['overhead']['p95'] * 1000:.0f} ms | "
            f"{r['overhead_to_closed']['p50'] * 1000:.0f} ms | {r['workflow_tasks']:.0f}, {r['workflow_task_run_total_s'] * 1000:.0f} ms | "
            f"{r['first_workflow_task_run_s'] * 1000:.0f} ms | {c['bench_process']:.3f} | {c['temporal_server']:.3f} | "
            f"{r['foreign_cpu_per_task_s']:.2f} | {r['type_adapters_built_per_task']:.1f} |"
        )
    keys = sorted({k for r in res["variants"].values() for k in r["path"]})
    lines += [
        "",
        "| segment (p50 ms) | " + " | ".join(res["variants"]) + " |",
        "| --- |" + " --- |" * len(res["variants"]),
    ]
    for k in keys:
        vals = [f"{r['path'].get(k, {}).get('p50', 0) * 1000:.1f}" for r in res["variants"].values()]
        lines.append(f"| {k} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=10, help="tasks per variant per block")
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--variants", default="baseline,unsandboxed,nodocker,lean")
    p.add_argument("--poll-ms", type=float, default=10)
    p.add_argument("--py-spy", default="", help="record the run with py-spy into this file (collapsed stacks)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "pipeline_profile.json"))
    args = p.parse_args()
    res = asyncio.run(main(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    print(render(res))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli()
