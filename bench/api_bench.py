"""What one polled API request costs the API process: CPU per request and latency, with nothing else running.

    python -m bench.api_bench [--bursts 300] [--token]

A real `factory api` app under uvicorn in a child process, on SQLite with 20 running tasks of 200 log lines
each. The client makes what the load bench's poller makes, one dashboard per task: bursts of 21 requests at
once (`GET /api/tasks` and each task's `GET /api/tasks/{id}/logs?since=<cursor>`), and before each burst 10
of the 20 tasks get a new line (so half the log pages are empty, as between an agent's turns). Reported: the
API process's CPU seconds (user + system, from /proc) per request, and latency p50 / p99. `--token` sends a
personal API token (a user and a `read` token made first), so each request also pays the token's lookup.

The load bench measures the same requests beside 20 agents on a busy machine; this one isolates their cost, so
a change to the API's request path can be compared run by run (bench/LOAD.md, "Twelfth session").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlmodel import Session

ROOT = Path(__file__).resolve().parent.parent
TASKS, LINES, NEW_PER_BURST = 20, 200, 10
BOOT = "b" * 40  # the bootstrap token the app is configured with (auth on, so the gate checks every request)


def serve(data: str, port: int) -> None:
    """Child-process mode: the API app on `port` until killed."""
    import uvicorn

    from api.main import create_app
    from factory.config import FactoryConfig

    cfg = FactoryConfig(
        data_dir=f"{data}/data", database_url=f"sqlite:///{data}/factory.db", workspace_root=f"{data}/ws",
        factory_auth_token=SecretStr(BOOT),
    )  # fmt: skip
    uvicorn.run(create_app(cfg, connect_temporal=False), host="127.0.0.1", port=port, log_level="warning")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")


async def run(bursts: int, token: bool) -> dict[str, object]:
    from factory.auth.people import create_token, create_user
    from factory.store.tables import Task, TaskLog, make_engine

    data = tempfile.mkdtemp(prefix="factory-api-bench-")
    engine = make_engine(f"sqlite:///{data}/factory.db")
    with Session(engine) as s:
        for i in range(1, TASKS + 1):
            s.add(Task(id=i, title=f"t{i}", description="", repo="demo", agent_type="coder", status="in_progress"))
            s.add_all(TaskLog(task_id=i, kind="assistant", content=f"line {n} " + "x" * 120) for n in range(LINES))
        s.commit()
    bearer = BOOT
    if token:
        user = create_user(engine, "bench", "viewer")
        assert user.id is not None
        bearer = create_token(engine, user.id, "read", None)[1]
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.api_bench", "--serve", data, str(port)], cwd=ROOT)
    try:
        headers = {"Authorization": f"Bearer {bearer}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as c:
            for _ in range(300):
                try:
                    (await c.get("/health")).raise_for_status()
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            cursor = dict.fromkeys(range(1, TASKS + 1), 0)
            lat: list[float] = []

            async def one(path: str, task: int | None = None) -> None:
                start = time.perf_counter()
                r = await c.get(path)
                lat.append(time.perf_counter() - start)
                r.raise_for_status()
                if task is not None and (rows := r.json()):
                    cursor[task] = rows[-1]["id"]

            async def burst() -> None:
                pages = (one(f"/api/tasks/{i}/logs?since={cursor[i]}", i) for i in cursor)
                await asyncio.gather(one("/api/tasks"), *pages)

            for _ in range(5):  # warm up
                await burst()
            lat.clear()
            before = cpu_seconds(proc.pid)
            for _ in range(bursts):
                with Session(engine) as s:
                    s.add_all(TaskLog(task_id=i, kind="tool_result", content="T=1.0 " + "y" * 80)
                              for i in range(1, NEW_PER_BURST + 1))  # fmt: skip
                    s.commit()
                await burst()
            spent = cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait()
    requests = bursts * (TASKS + 1)
    return {
        "bursts": bursts, "requests": requests, "token": token,
        "cpu_ms_per_request": round(spent / requests * 1000, 3),
        "latency_ms": {"50": round(_pct(lat, 50) * 1000, 1), "99": round(_pct(lat, 99) * 1000, 1)},
    }  # fmt: skip


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bursts", type=int, default=300)
    ap.add_argument("--token", action="store_true", help="send a personal API token (its lookup on every request)")
    ap.add_argument("--serve", nargs=2, metavar=("DATA", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    res = asyncio.run(run(args.bursts, args.token))
    out = ROOT / "bench" / "results" / "api.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res))


if __name__ == "__main__":
    cli()
