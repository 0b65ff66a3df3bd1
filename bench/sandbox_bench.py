"""What the agent sandbox costs: start and teardown per run, and the egress proxy's latency per request.

    python -m bench.sandbox_bench [--runs 40]

- per run: wall time of `/bin/true` started directly, in a sandbox sharing the host's network, and
  in a sandbox with its own network (socat bridge started and waited for, proxy channel opened and
  closed), as `run_agent` does it: with the run's limits (cgroups made and removed), the seccomp
  filter and, as root, the drop to the sandbox uid (chown, staged binds); the difference is the
  sandbox's cost;
- per request: an HTTP GET to a local server, directly and through a proxy channel (a fresh
  connection each time, as the CLI makes through the proxy), whose difference is the proxy's cost
  (the socat hop inside the sandbox is not in it: it is a local copy of the same bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from factory.config_sections import SandboxConfig
from factory.sandbox.bwrap import SandboxSpec, build_command
from factory.sandbox.launch import prepare_launch
from factory.sandbox.proxy import Destination, EgressProxy
from tests.fakes.http import BackgroundServer


async def _timed(fn: Callable[[], Awaitable[None]], runs: int) -> list[float]:
    await fn()  # warm the page cache and the loop
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def _run(cmd: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(*cmd, env={"PATH": "/usr/bin:/bin"})
    if await proc.wait() != 0:
        raise RuntimeError(f"{cmd[:3]}... exited {proc.returncode}")


async def _sandboxed(spec: SandboxSpec) -> None:
    """`/bin/true` in the sandbox of `spec`, started as the agent activity starts a run."""
    launch = await asyncio.to_thread(prepare_launch, spec, SandboxConfig(), "bench")
    try:
        cmd = build_command(spec, ["/bin/true"])
        proc = await asyncio.create_subprocess_exec(
            *cmd, env={"PATH": "/usr/bin:/bin"}, start_new_session=True, preexec_fn=launch.preexec, pass_fds=launch.pass_fds
        )
        if await proc.wait() != 0:
            raise RuntimeError(f"{cmd[:3]}... exited {proc.returncode}")
    finally:
        await asyncio.to_thread(launch.close)


def _line(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=20)
    return f"| {name} | {statistics.median(ms):.1f} | {q[18]:.1f} |"


async def main(runs: int) -> None:
    proxy = EgressProxy()
    app = FastAPI()

    @app.get("/")
    def hello() -> PlainTextResponse:
        return PlainTextResponse("hello")

    server = BackgroundServer(app)
    url = server.start()
    host, port = url.removeprefix("http://").split(":")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            worktree, home = Path(tmp, "w"), Path(tmp, "h")
            worktree.mkdir()
            home.mkdir()

            async def proxied() -> None:
                ch = await proxy.open(1, [])
                try:
                    await _sandboxed(SandboxSpec(worktree=worktree, home=home, proxy_socket=ch.path))
                finally:
                    await proxy.close_channel(ch)

            direct = await _timed(lambda: _run(["/bin/true"]), runs)
            shared = await _timed(lambda: _sandboxed(SandboxSpec(worktree=worktree, home=home)), runs)
            own = await _timed(proxied, runs)
        channel = await proxy.open(1, [Destination(host, int(port))])
        request = f"GET {url}/ HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

        async def through_proxy() -> None:
            reader, writer = await asyncio.open_unix_connection(str(channel.path))
            writer.write(request)
            await reader.read()
            writer.close()

        async def straight() -> None:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            await reader.read()
            writer.close()

        plain = await _timed(straight, runs)
        proxied_get = await _timed(through_proxy, runs)
    finally:
        await proxy.close()
        server.stop()
    print(f"{runs} runs each; milliseconds\n")
    print("| what | p50 | p95 |\n|---|---|---|")
    for name, ms in (
        ("`/bin/true` directly", direct),
        ("in a sandbox, host network", shared),
        ("in a sandbox, own network + proxy channel + socat bridge", own),
        ("HTTP GET to a local server, directly", plain),
        ("the same GET through the egress proxy", proxied_get),
    ):
        print(_line(name, ms))
    print(
        f"\nsandbox cost per run (p50): {statistics.median(shared) - statistics.median(direct):.1f} ms (host network), "
        f"{statistics.median(own) - statistics.median(direct):.1f} ms (own network); proxy per request (p50): "
        f"{statistics.median(proxied_get) - statistics.median(plain):.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    asyncio.run(main(parser.parse_args().runs))
