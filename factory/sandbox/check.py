"""`factory doctor`'s sandbox check: build a real sandbox, bridge it to a real proxy, ask for a refused host."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from factory.sandbox.bwrap import PROXY_PORT, SandboxSpec, SandboxUnavailable, build_command
from factory.sandbox.proxy import EgressProxy

_PROBE = f"printf 'CONNECT doctor.invalid:443 HTTP/1.1\\r\\n\\r\\n' | socat -t 5 - TCP:127.0.0.1:{PROXY_PORT}"


async def self_test(proxied: bool = True, timeout: float = 30) -> str | None:
    """None when a sandbox starts (and, `proxied`, its proxy answers a refusal); else what went wrong."""
    refused: list[str] = []
    proxy = EgressProxy(on_refused=lambda _task, host, port, _why: refused.append(f"{host}:{port}"))
    try:
        with tempfile.TemporaryDirectory(prefix="factory-doctor-") as tmp:
            worktree, home = Path(tmp, "w"), Path(tmp, "h")
            worktree.mkdir()
            home.mkdir()
            channel = await proxy.open(0, []) if proxied else None
            spec = SandboxSpec(worktree=worktree, home=home, proxy_socket=channel.path if channel else None)
            try:
                cmd = build_command(spec, ["/bin/sh", "-c", _PROBE if proxied else "true"])
            except SandboxUnavailable as exc:
                return str(exc)
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={"PATH": "/usr/bin:/bin"}
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                return f"the sandbox did not finish within {timeout:g}s"
            text = out.decode(errors="replace").strip()
            if proc.returncode != 0:
                return f"bwrap exited {proc.returncode}: {text[-500:]}"
            if proxied and (" 403 " not in text or refused != ["doctor.invalid:443"]):
                return f"the egress proxy did not refuse a host off the allow-list: {text[-500:]!r}"
            return None
    finally:
        await proxy.close()
