"""Run a script in a real agent sandbox, built exactly as the agent activity builds it.

`AgentSandbox(cfg, EgressProxy())` with a test config, `command()` (limits, seccomp, uid drop as
root, the real proxy channel in `allowlist` mode) and `spawn()`; the script takes the CLI's place.

    python -m tests.adversarial.run_in_sandbox            # serve: one JSON request per stdin line
    python -m tests.adversarial.run_in_sandbox '<json>'   # one request

A request: {"workspace": dir (made and owned by whoever runs this), "script": text,
"interpreter": "sh" | "python" (default "sh"), "network": "allowlist" | "host",
"limits": {sandbox.limits fields}, "timeout": seconds, "task_id": N, "worker_path": the worker's PATH while the
sandbox is built (default: the harness's own; the sandbox's PATH is then made from it as Factory makes it)}. The answer, one JSON line:
{"rc", "stdout", "stderr", "worktree", "home"}; rc is -signal when the sandbox was killed by one,
"timeout" when it ran over (its process group is then killed).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from activities._agent_process import AgentSandbox, kill_group, spawn
from factory.config import load_config
from factory.sandbox.policy import sandbox_environment
from factory.sandbox.proxy import EgressProxy

_PROXY: EgressProxy | None = None


async def run(req: dict[str, Any]) -> dict[str, Any]:
    global _PROXY
    ws = Path(req["workspace"])
    task = int(req.get("task_id", 1))
    sandbox = {"network": req.get("network", "allowlist"), "limits": req.get("limits", {})}
    cfg = load_config(ws / "none.yml", workspace_root=str(ws / "ws"), data_dir=str(ws / "data"), sandbox=sandbox)
    worktree = cfg.workspace_path / "worktrees" / f"task-{task}"
    (worktree / ".git").mkdir(parents=True, exist_ok=True)
    if _PROXY is None:
        _PROXY = EgressProxy()
    agent = AgentSandbox(cfg, _PROXY)
    home = agent.ensure_home(task)
    py = req.get("interpreter", "sh") == "python"
    inner = ["/usr/bin/python3", "-c", req["script"]] if py else ["/bin/sh", "-c", req["script"]]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    stderr_path = ws / f"stderr-{task}-{os.urandom(3).hex()}"
    own_path = os.environ["PATH"]
    if "worker_path" in req:  # the PATH Factory finds its programs on and makes the run's from
        os.environ["PATH"] = req["worker_path"]
        env["PATH"] = sandbox_environment(cfg, str(home), agent.proxied, base={"PATH": req["worker_path"]})["PATH"]
    try:
        async with agent.command(task, str(worktree), inner) as cmd:
            proc = await spawn(cmd, str(worktree), env, stderr_path)
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), float(req.get("timeout", 60)))
                rc: int | str = proc.returncode if proc.returncode is not None else "?"
            except TimeoutError:
                await kill_group(proc)
                out, rc = b"", "timeout"
    finally:
        os.environ["PATH"] = own_path
    err = stderr_path.read_text(errors="replace")
    stderr_path.unlink()
    return {"rc": rc, "stdout": out.decode(errors="replace"), "stderr": err, "worktree": str(worktree), "home": str(home)}


async def serve() -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        try:
            answer = await run(json.loads(line))
        except Exception as exc:  # the test sees why the harness itself failed
            answer = {"rc": "error", "stdout": "", "stderr": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
    else:
        asyncio.run(serve())
